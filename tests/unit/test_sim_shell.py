"""The simulator's shell and host model, without SSH: a recording terminal stands in."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from esxi_suspend.host.autostart import parse_autostartseq, parse_defaults
from esxi_suspend.host.vmlist import parse_getallvms
from esxi_suspend.host.vmstate import PowerState, parse_power_state
from esxi_suspend.simulator import Fate, FleetError, VmSpec, fleet_from_dict
from esxi_suspend.simulator.fleet import Fleet, default_fleet, generated_fleet
from esxi_suspend.simulator.host import HostDown, HostModel, Interrupted
from esxi_suspend.simulator.shell.interpreter import Shell, parse


class Recorder:
    def __init__(self) -> None:
        self.out = ""
        self.err = ""
        self.holders = 0

    def write(self, fd: int, text: str) -> None:
        if fd == 2:
            self.err += text
        else:
            self.out += text

    closed = False

    def hold(self) -> None:
        self.holders += 1

    def release(self) -> None:
        self.holders -= 1


@pytest.fixture
def host() -> Iterator[HostModel]:
    model = HostModel(default_fleet(), time_scale=0.001)
    yield model
    model.stop()


def sh(host: HostModel, command: str) -> tuple[int, str, str]:
    term = Recorder()
    status = Shell(host, 1).run(command, term)
    return status, term.out, term.err


@pytest.mark.parametrize(
    ("command", "status", "out"),
    [
        ("true && echo yes", 0, "yes\n"),
        ("false && echo yes", 1, ""),
        ("false || echo no", 0, "no\n"),
        ("false; echo $?", 0, "1\n"),
        ("true || echo never; echo after", 0, "after\n"),
        ("echo 'a  b' \"c $? d\" e\\ f", 0, "a  b c 0 d e f\n"),
        ("echo '$?'", 0, "$?\n"),
        ("sh -c 'echo inner; exit 3'; echo $?", 0, "inner\n3\n"),
        ("echo x > /tmp/f; echo y >> /tmp/f; cat /tmp/f", 0, "x\ny\n"),
        ("echo gone >/dev/null 2>&1", 0, ""),
        ("nohup setsid echo wrapped", 0, "wrapped\n"),
        ("trap '' HUP; echo trapped", 0, "trapped\n"),
        ("command -v poweroff", 0, "/sbin/poweroff\n"),
        ("[ -x /sbin/poweroff ] && echo x; [ -x /sbin/nothing ] || echo no", 0, "x\nno\n"),
        ("command -v vim-cmd", 0, "/bin/vim-cmd\n"),
        ("command -v nosuch || echo missing $?", 0, "missing 127\n"),
        ("vmware -v", 0, "VMware ESXi 6.7.0 build-17700523\n"),
        ("# a comment\necho one\necho two", 0, "one\ntwo\n"),
    ],
)
def test_shell_semantics(host: HostModel, command: str, status: int, out: str) -> None:
    assert sh(host, command)[:2] == (status, out)


def test_unknown_command_is_127(host: HostModel) -> None:
    assert sh(host, "localcli system shutdown") == (127, "", "sh: localcli: not found\n")
    assert sh(host, "/opt/bin/thing")[0] == 127


def test_stderr_redirections_follow_order(host: HostModel) -> None:
    _, out, err = sh(host, "cat /nope 2>&1")
    assert "can't open" in out and err == ""
    _, out, err = sh(host, "cat /nope 2>&1 >/dev/null")  # stderr to the old stdout
    assert "can't open" in out and err == ""
    _, out, err = sh(host, "cat /nope >/dev/null 2>&1")
    assert out == err == ""


@pytest.mark.parametrize(
    "command",
    ["echo 'open", "&& true", "true &&", "ls |", "echo $(id", "if true; then echo a", "fi",
     "{ echo a }", "case x in", "while true; do done", "echo ${x", "f() echo x", "( )"],
)  # fmt: skip
def test_syntax_errors_exit_2(host: HostModel, command: str) -> None:
    status, out, err = sh(host, command)
    assert status == 2 and out == "" and err.startswith("sh: syntax error")


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("until false; do :; done", "until loops"),
        ("cat <<EOF", "here-documents"),
        ("echo `id`", "backquote"),
        ("x=1 echo", "NAME=value before a command"),
        ("echo ${x#a}", "${x#a}"),
        ("echo ${x%.vmx}", "${x%.vmx}"),
        ("echo $*", "$*"),
        ("for i; do :; done", "for without in"),
        ("echo $((1 < 2))", "arithmetic: <"),
        ("export A=1", "export"),
        ("printf x", "printf"),
        ("kill -9 1000", "kill -9 1000"),
        ("read x", "read x"),
        ("date", "date"),
        ("grep -v x", "grep -v"),
        ("[ -r /etc/x ]", "test -r /etc/x"),
        ("sh -x /tmp/script", "sh -x /tmp/script"),
        ("echo x 0>/tmp/f", "0>/tmp/f"),
        ("cat 3</tmp/f", "3</tmp/f"),
        ("cat <&3", "<&3"),
    ],
)
def test_anything_else_is_not_supported(host: HostModel, command: str, said: str) -> None:
    """Nothing fancier than the scripts need: exit 2 and say so (never 127, never a guess)."""
    status, out, err = sh(host, command)
    assert (status, out) == (2, "")
    assert said in err and "not supported by the ESXi simulator" in err, err


@pytest.mark.parametrize(
    ("command", "status", "out"),
    [
        # $(( )): + - * / % (truncating), parentheses, variables by $x or bare name
        ("x=5; echo $((x * 2)) $(($x + 1)) $(( (2 + 3) * 4 )) $((7 / 2)) $((-7 / 2))", 0,
         "10 6 20 3 -3\n"),
        ("echo $((-7 % 3)) $((7 % -3)) $((unset + 1)) $((-(2)))", 0, "-1 1 1 -2\n"),
        ("n=0; n=$((n + 1)); n=$((n + 1)); echo $n", 0, "2\n"),
        ("echo $((1 / 0)); echo never", 2, ""),
        ("(echo $((1 / 0))); echo $?", 0, "2\n"),
        # $(...): trailing newlines stripped, nested, its status is the assignment's
        ("echo \"[$(echo a; echo; echo)]\"", 0, "[a]\n"),
        ("echo $(echo $(echo deep)) \"$(echo \"in $(echo ner)\")\"", 0, "deep in ner\n"),
        ("x=$(false); echo $?; x=$(sh -c 'exit 6'); echo $?", 0, "1\n6\n"),
        ("echo $(( $(echo 3) + 4 ))", 0, "7\n"),
        ("x=1; y=$(x=2; echo $x); echo $x$y", 0, "12\n"),
        # ${NAME:-word}, splitting of unquoted expansions, no globbing
        ("echo ${U:-/tmp}/x \"${U:-a  b}\" ${U:-c  d}; U=v; echo ${U:-no}", 0,
         "/tmp/x a  b c d\nv\n"),
        ("y=$(echo ' a  b '); echo [$y] \"[$y]\"; for w in $y; do echo -$w-; done", 0,
         "[ a b ] [ a  b ]\n-a-\n-b-\n"),
        ("e=; for i in $e; do echo never; done; echo \"[$e]\" '*' *", 0, "[] * *\n"),
        ("s='a b'; e=; echo ${#s} \"${#e}\" ${#unset}", 0, "3 0 0\n"),
        # functions: $1 $2 $# $@, return N (plain return: the last status)
        ("f() { echo \"$# [$1] [$2] $@\"; return 3; }; f 'a b' c; echo $?", 0,
         "2 [a b] [c] a b c\n3\n"),
        ("f() { for a in \"$@\"; do echo \"<$a>\"; done; }; f '1 2' '' 3", 0,
         "<1 2>\n<>\n<3>\n"),
        ("g() { false; return; }; g; echo $?; f() { return 7; echo no; }; f; echo $?", 0,
         "1\n7\n"),
        ("f()\n{\n  echo braced $1\n}\nf x; command -v f", 0, "braced x\nf\n"),
        ("f() ( x=in; exit 4 ); x=out; f; echo $? $x", 0, "4 out\n"),
        ("echo $# [$1]; sh -c 'echo $0 $# $1' name one", 0, "0 []\nname 1 one\n"),
        # if/elif/else, while, break, for
        ("if false; then echo a; elif true; then echo b; else echo c; fi", 0, "b\n"),
        ("if false; then echo a; fi; echo $?", 0, "0\n"),
        ("i=0; while [ $i -lt 5 ]; do i=$((i + 1)); if [ $i = 3 ]; then break; fi; done; echo $i",
         0, "3\n"),
        ("for i in 1 2 3; do if [ $i = 2 ]; then continue; fi; echo $i; done", 0, "1\n3\n"),
        ("i=0; while [ $i -lt 3 ]; do i=$((i + 1)); case $i in 2) continue ;; esac; echo $i; done",
         0, "1\n3\n"),
        ("for i in 1 2; do for j in a b; do [ $j = b ] && break; echo $i$j; done; done", 0,
         "1a\n2a\n"),
        ("x=1\nwhile [ $x -le 2 ]\ndo\n  echo $x\n  x=$(( x + 1 ))\ndone", 0, "1\n2\n"),
        # case: | alternatives, *, ?, [...], [!...], "" and quoted characters
        ("for v in '' 12 1a; do case $v in *[!0-9]*|\"\") echo no;; *) echo $v;; esac; done", 0,
         "no\n12\nno\n"),
        ("case ab in a?) echo q;; esac; case 'a*' in \"a*\") echo lit;; esac", 0, "q\nlit\n"),
        ("case [x in \\[*) echo br;; esac; case abc in *[bc]) echo m;; esac", 0, "br\nm\n"),
        ("case b in [!a]*) echo not-a;; esac; case a in (a) echo paren;; esac", 0,
         "not-a\nparen\n"),
        ("false; case z in x) ;; esac; echo $?; case x in x) ;; esac; echo $?", 0, "0\n0\n"),
        ("case abc in\n  x) echo x ;;\n  a*)\n    echo multi\n    ;;\nesac\necho after", 0,
         "multi\nafter\n"),
        # !, pipelines (the last command's status), groups and subshells
        ("! true; echo $?; ! false; echo $?; ! true | false; echo $?", 0, "1\n0\n0\n"),
        ("echo 'Powered off' | grep -q -e 'Powered off' -e Suspended && echo down", 0, "down\n"),
        ("echo 'Powered on' | grep -q -e \"Powered off\" -e Suspended; echo $?", 0, "1\n"),
        ("echo abc | grep b; echo abc | grep x; echo $?", 0, "abc\n1\n"),
        ("cat /nope 2>&1 | grep -q nope && echo piped; x=1 | true; echo [$x]", 0, "piped\n[]\n"),
        ("true && { echo one; false; } || echo two", 0, "one\ntwo\n"),
        ("x=1; ( x=2; echo $x ); echo $x; { x=3; }; echo $x", 0, "2\n1\n3\n"),
        # test / [ ]
        ("[ 3 -ge 2 ] && [ 2 -le 2 ] && [ 1 -lt 2 ] && [ 3 -gt 2 ] && [ 1 -eq 1 ] && echo y", 0,
         "y\n"),
        ("[ 1 -ne 1 ] || [ a != a ] || test -z x || test -n '' || echo none", 0, "none\n"),
        ("[ -z '' ] && [ -n x ] && [ a = a ] && [ ! a = b ] && [ x ] && echo y; [ ]; echo $?", 0,
         "y\n1\n"),
        ("[ 1 -lt x ]; echo $?; [ 1 -lt 2; echo $?", 0, "2\n2\n"),
        # grep patterns: fixed strings and a simple regex (. * ^ $ [...])
        ("echo a.c | grep -q 'a.c' && echo abc | grep -q '^a[b]c$' && echo 'a*c' | grep 'a\\*c'",
         0, "a*c\n"),
        ("grep -q x /nope; echo $?", 0, "2\n"),
        # redirections on compound commands, assignments, comments
        ("{ echo a; echo b >&2; } > /tmp/g 2>&1; cat /tmp/g", 0, "a\nb\n"),
        ("if true; then echo x; fi > /tmp/i; for i in 1 2; do echo $i; done >> /tmp/i; cat /tmp/i",
         0, "x\n1\n2\n"),
        ("a=1 b=2; c=\"$a $b\"; d=; echo \"$c[$d]\" # trailing\n# whole line\necho 'x # y' z#w", 0,
         "1 2[]\nx # y z#w\n"),
        ("t=${TMPDIR:-/tmp}/z-$$; echo hi > $t.a; cat $t.a; rm -f $t.a; cat $t.a || echo gone",
         0, "hi\ngone\n"),
        ("rm /tmp/none; echo $?; rm -f /tmp/none; echo $?", 0, "1\n0\n"),
        ("exit 300", 44, ""),
        ("return 4; echo never", 4, ""),
    ],
)  # fmt: skip
def test_constructs(host: HostModel, command: str, status: int, out: str) -> None:
    assert sh(host, command)[:2] == (status, out)


def test_read_splits_lines_and_keeps_the_cr(host: HostModel) -> None:
    host.write_file("/tmp/vms", "Vmid   Name\r\n12   a  b  \r\n3\tx\n\n  7 last")
    script = 'while read -r id rest; do echo "[$id][$rest]"; done < /tmp/vms; echo "[$id]"'
    assert sh(host, script)[1] == "[Vmid][Name\r]\n[12][a  b  \r]\n[3][x]\n[][]\n[7]\n"
    # a last line without its newline is read, but read says EOF (as busybox does)
    script = "{ read -r a; read -r a; read -r a; read -r a; read -r a b; echo $? $a $b; } <"
    script += " /tmp/vms"
    assert sh(host, script)[1] == "1 7 last\n"
    assert sh(host, 'read -r a b < /tmp/vms; echo "$a|$b"; read -r x < /nope')[1] == (
        "Vmid|Name\r\n"
    )
    assert sh(host, "read -r x < /nope")[0] == 1


def test_sleep_and_date_use_the_simulated_clock(host: HostModel) -> None:
    start = host.now()
    _, out, _ = sh(host, "a=$(date +%s); sleep 300; b=$(date +%s); echo $((b - a))")
    assert 300 <= host.now() - start < 400
    assert 300 <= int(out) < 400
    printed = int(sh(host, "date +%s")[1])  # first: the clock only moves on after it
    assert 0 <= host.wall_clock() - printed < 100


def test_background_jobs_wait_and_kill(host: HostModel) -> None:
    script = """sleep 200 & a=$!
(exit 4) & b=$!
{ sleep 5; exit 5; } & c=$!
kill -0 $a && echo a-running
wait $b $c; echo wait=$?
wait $a; echo $?; kill -0 $a || echo a-gone
wait 1; echo unknown=$?
case $a$b in *[!0-9]*) echo not-numbers;; esac"""
    start = host.now()
    status, out, err = sh(host, script)
    assert status == 0
    assert out == "a-running\nwait=5\n0\na-gone\nunknown=127\n"
    assert err.startswith("sh: can't kill pid")
    assert host.now() - start >= 200


def test_wait_without_ids_waits_for_every_child(host: HostModel) -> None:
    start = host.now()
    status, out, _ = sh(host, "sleep 100 & sleep 200 & (sleep 300; exit 3) & wait; echo $?")
    assert (status, out) == (0, "0\n")
    assert 300 <= host.now() - start < 500  # at once: one after the other would take 600
    # a subshell waits for its own children only; the job gets copies of variables
    out = sh(host, "x=1; { x=2; sleep 5; echo job $x; } & (wait; echo sub); wait; echo $x")[1]
    assert out == "sub\njob 2\n1\n"


def test_background_output_and_redirections(host: HostModel) -> None:
    term = Recorder()
    status = Shell(host, 1).run("{ echo one; echo two >&2; } > /tmp/bg 2>&1 & wait", term)
    assert (status, term.out, term.holders) == (0, "", 0)
    assert host.read_file("/tmp/bg") == "one\ntwo\n"
    term = Recorder()
    Shell(host, 1).run("( sleep 500; echo late ) & echo now", term)
    assert term.out == "now\n" and term.holders == 1  # holds the session's stdout
    deadline = time.monotonic() + 5
    while term.holders and time.monotonic() < deadline:
        time.sleep(0.01)
    assert term.out == "now\nlate\n" and term.holders == 0


def test_jobs_of_a_background_job_outlive_the_session(host: HostModel) -> None:
    line = (
        "sh -c '( sleep 100000; echo never > /tmp/x ) & sleep 50; echo outer > /tmp/o' >/dev/null"
    )
    line += " &"
    assert Shell(host, 1).run(line, Recorder()) == 0
    time.sleep(0.02)
    host.cancel_session_jobs(1)
    deadline = time.monotonic() + 5
    while host.read_file("/tmp/o") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.read_file("/tmp/o") == "outer\n"
    assert len(host.background_jobs()) == 1  # the inner job still runs
    events = [e.text for e in host.events if e.kind == "background"]
    assert len(events) == 2 and "runs on after its session's command: sh -c" in events[0]
    assert events[1].endswith(" exit 0")
    host.power_off_host(None)
    while host.background_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.background_jobs() == [] and host.read_file("/tmp/x") is None


def test_the_foreground_dies_with_its_session_its_jobs_do_not(host: HostModel) -> None:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            sh(host, "( sleep 600; echo done > /tmp/j ) & wait")
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.02)
    host.cancel_session_jobs(1)
    worker.join(5)
    assert failure and isinstance(failure[0], Interrupted)
    assert len(host.background_jobs()) == 1
    deadline = time.monotonic() + 5
    while host.read_file("/tmp/j") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.read_file("/tmp/j") == "done\n"


def test_poweroff_in_a_job_ends_the_foreground(host: HostModel) -> None:
    with pytest.raises(HostDown):
        sh(host, "( sleep 5; poweroff ) & while true; do sleep 1; done")
    assert host.powered_off


def test_parse_background_and_lists() -> None:
    items = parse("a && b || c & d ; e")
    assert [item.background for item in items] == [True, False, False]
    assert [joiner for joiner, _ in items[0].rest] == ["&&", "||"]


def test_vim_cmd_outputs_parse_with_our_parsers(host: HostModel) -> None:
    vms = parse_getallvms(sh(host, "vim-cmd vmsvc/getallvms")[1])
    assert [vm.vmid for vm in vms] == [spec.vmid for spec in host.fleet.vms]
    assert [vm.name for vm in vms] == [spec.name for spec in host.fleet.vms]
    assert vms[-1].annotation == "scratch box\nsecond line of notes"
    defaults = parse_defaults(sh(host, "vim-cmd hostsvc/autostartmanager/get_defaults")[1])
    assert (defaults.stop_action, defaults.stop_delay) == ("PowerOff", 120)
    seq = parse_autostartseq(sh(host, "vim-cmd hostsvc/autostartmanager/get_autostartseq")[1])
    assert [e.vmid for e in seq] == [12, 13, 15, 20, 21, 30]
    state = sh(host, "vim-cmd vmsvc/power.getstate 31")[1]
    assert parse_power_state(state) is PowerState.OFF
    assert 'toolsRunningStatus = "guestToolsRunning"' in sh(host, "vim-cmd vmsvc/get.guest 12")[1]
    assert 'uuid = "' in sh(host, "vim-cmd vmsvc/get.config 12")[1]


def test_empty_sequence_shape() -> None:
    model = HostModel(Fleet(vms=(VmSpec(1, "a"),)), time_scale=0.001)
    try:
        out = sh(model, "vim-cmd hostsvc/autostartmanager/get_autostartseq")[1]
        assert out == "(vim.host.AutoStartManager.AutoPowerInfo) []\n"
        assert parse_autostartseq(out) == []
    finally:
        model.stop()


def test_power_errors_like_esxi(host: HostModel) -> None:
    status, out, _ = sh(host, "vim-cmd vmsvc/power.shutdown 20")  # no tools
    assert status == 1 and "vim.fault.ToolsUnavailable" in out
    status, out, _ = sh(host, "vim-cmd vmsvc/power.off 31")  # already off
    assert status == 1
    assert "cannot be performed in the current state (Powered off)." in out
    status, _, err = sh(host, "vim-cmd vmsvc/power.getstate 999")
    assert status == 1 and 'Unable to find a VM corresponding to "999"' in err


def test_guest_shutdown_returns_at_once_then_takes_its_time(host: HostModel) -> None:
    assert sh(host, "vim-cmd vmsvc/power.shutdown 12")[0] == 0
    assert host.power_states()[12] == "Powered on"
    host.sleep(30, None)  # shutdown_seconds 25
    assert host.fates()[12] is Fate.CLEAN_SHUTDOWN
    assert sh(host, "vim-cmd vmsvc/power.suspend 21") == (0, "Suspending VM:\n", "")
    assert host.fates()[21] is Fate.SUSPENDED
    assert sh(host, "vim-cmd vmsvc/power.off 40")[0] == 0
    assert host.fates()[40] is Fate.POWERED_OFF


def test_autostop_semantics(host: HostModel) -> None:
    start = host.now()
    assert sh(host, "vim-cmd hostsvc/autostartmanager/autostop")[0] == 0
    took = host.now() - start
    fates = host.fates()
    # reverse start order: pfSense powerOff (1 s), build-runner suspend (8 s), legacy-erp no
    # tools (left running), win2019 95 s, db-01 70 s, web 25 s
    assert fates[30] is Fate.POWERED_OFF
    assert fates[21] is Fate.SUSPENDED
    assert fates[20] is Fate.RUNNING
    assert fates[15] is fates[13] is fates[12] is Fate.CLEAN_SHUTDOWN
    assert fates[1] is fates[40] is Fate.RUNNING  # outside the sequence: untouched
    assert 1 + 8 + 95 + 70 + 25 <= took < 1 + 8 + 95 + 70 + 25 + 60
    order = [e.vmid for e in host.events if e.kind == "autostop" and "waits up to" in e.text]
    assert order == [30, 21, 20, 15, 13, 12]
    with pytest.raises(HostDown):
        sh(host, "poweroff")
    fates = host.fates()
    assert {vmid for vmid, fate in fates.items() if fate is Fate.HARD_KILLED} == {1, 20, 40}
    assert fates[31] is Fate.WAS_OFF
    assert host.powered_off


def test_stop_delay_bounds_the_wait() -> None:
    slow = VmSpec(5, "slow", shutdown_seconds=500, start_order=1, stop_action="guestShutdown",
                  stop_delay=30)  # fmt: skip
    model = HostModel(Fleet(vms=(slow,)), time_scale=0.001)
    try:
        start = model.now()
        sh(model, "vim-cmd hostsvc/autostartmanager/autostop")
        assert 30 <= model.now() - start < 60
        assert model.fates()[5] is Fate.RUNNING
        model.power_off_host(None)
        assert model.fates()[5] is Fate.HARD_KILLED
        assert "guest shutdown was still running" in model.events[-2].text
    finally:
        model.stop()


def test_background_job_survives_and_poweroff_ends_it(host: HostModel) -> None:
    term = Recorder()
    status = Shell(host, 1).run("sleep 100000 && echo never > /tmp/x &", term)
    assert status == 0 and term.holders == 1  # no redirection: it holds the session's stdout
    assert len(host.background_jobs()) == 1
    host.cancel_session_jobs(1)  # the session drops: a background job is not its foreground
    time.sleep(0.05)
    assert len(host.background_jobs()) == 1
    host.power_off_host(None)
    deadline = time.monotonic() + 5
    while host.background_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.background_jobs() == [] and term.holders == 0
    assert host.read_file("/tmp/x") is None


def test_detached_sequence_runs_to_poweroff(host: HostModel) -> None:
    line = (
        'nohup sh -c "vim-cmd hostsvc/autostartmanager/autostop; /sbin/shutdown.sh && '
        '/sbin/poweroff" >/dev/null 2>&1 </dev/null &'
    )
    term = Recorder()
    assert Shell(host, 1).run(line, term) == 0 and term.holders == 0
    assert host.wait_powered_off(10)
    assert host.fates()[12] is Fate.CLEAN_SHUTDOWN


def test_fleet_validation_lists_every_problem() -> None:
    with pytest.raises(FleetError) as caught:
        fleet_from_dict({"vms": [{"id": 0}, {"id": 2, "name": "x", "tools": "yes"}], "x": 1})
    text = str(caught.value)
    assert "4 problem(s)" in text and "unknown key(s) x" in text and "tools" in text


def test_generated_fleet_mix() -> None:
    fleet = generated_fleet(40)
    assert len(fleet.vms) == 40
    assert sum(not vm.tools for vm in fleet.vms) == 10
    assert sum(not vm.in_autostart for vm in fleet.vms) == 8
