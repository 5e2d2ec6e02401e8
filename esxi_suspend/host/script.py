"""The host sequence: the busybox ash script a host runs on its own to carry a plan out. Pure.

It runs detached from our session and drives itself: each phase's stop commands go out a few
at a time (esxi.CALLS_AT_ONCE slots, inventory and sequence alike), one loop looks at the
phase's VMs until they are down or its budget is spent, and a watchdog powers the host off at
the deadline whatever still runs, saying it is alive every ALIVE_SECONDS meanwhile (our side
falls back to the plain path when it stops hearing it). The final step suspends only the VMs
still running. Built from constants and integer VM ids only, never from host text; it uses
functions, `while`, `for`, `if`, `case`, `$(( ))`, `&`, `wait`, `grep`, `sleep`, `mkdir` and
nothing fancier (docs/esxi-evidence.md lists each, with its evidence). Every line it prints
starts with LOG_PREFIX; what a host command printed is marked HOST_TEXT after it.

Also the one command of a shutdown that carries it (`shutdown_command`): the inventory, the
script read on its input into a file on the host (checked whole), started as `sh FILE`, its
log streamed back for a bounded time; and the plain path's command (`plain_command`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import HOST_TMP, inventory_command
from esxi_suspend.host.plan import Phase, ShutdownPlan

LOG_PREFIX = "esxi-suspend:"
HOST_TEXT = ">"  # after the prefix: a line a host command printed, never one of our events
HOST_LOG_PREFIX = f"{HOST_TMP}/esxi-suspend-"
ALIVE = "alive"  # the watchdog's line, every ALIVE_SECONDS until the deadline
ALIVE_SECONDS = 2
# Seconds between two rounds of looks at a phase's VMs, on the host's clock: a round is one
# `vim-cmd` per VM not yet down, a few at a time; a phase of at most SMALL_PHASE VMs looks
# every second.
POLL_SECONDS = 2
SMALL_PHASE = 2
SMALL_PHASE_POLL_SECONDS = 1

# `say`: what a host command printed, one log line each, marked as the host's own text (a
# last line without a newline included).
# `down ID`: the VM is off or suspended (an unreadable state counts as still running).
# `look SECONDS EVERY`: one loop for the VMs listed in `w`: a round of looks (CALLS_AT_ONCE at
# a time) every EVERY seconds until all are down or SECONDS are spent; those still running
# go on `r`. `t` is when the sequence started, on the host's clock.
# How a host command is written into the script: `_for_real` for a shutdown, `_stand_in` for
# `check`'s rehearsal. Every host command of the host script goes through one of them, here
# and nowhere else.
Emit = Callable[[str], str]


def _for_real(command: str) -> str:
    """vim-cmd through `call` (a hostd slot, retries); poweroff as it is."""
    return command if command == esxi.POWEROFF else esxi.called(command)


def _vm_command(build: Callable[[int], str], word: str) -> str:
    """One of our per-VM command lines with a shell word (`$1`, `$v`: our own VM ids) for
    its id."""
    return build(0)[: -len(" 0")] + f" {word}"


def _functions(emit: Emit) -> str:
    return f"""P={LOG_PREFIX}
case $0 in
  */esxi-suspend-*.sh) q=$0.q ;;
  *) q={HOST_TMP}/esxi-suspend-calls-$$ ;;
esac
{esxi.hostd_functions("$q")}
say() {{ while read -r l || [ -n "$l" ]; do echo "$P {HOST_TEXT} $l"; done; }}
down() {{
  {emit(_vm_command(esxi.power_getstate, "$1"))} 2>/dev/null | grep -q -e "Powered off" -e Suspended
}}
notools() {{
  {emit(_vm_command(esxi.get_summary, "$1"))} 2>/dev/null | grep -q -e guestToolsNotRunning
}}
look() {{
  e=$(( $(date +%s) + $1 ))
  while [ -n "$w" ]; do
    u=$(
      n=0
      for v in $w; do
        {{ down $v || echo $v; }} &
        n=$((n + 1))
        if [ $n -ge {esxi.CALLS_AT_ONCE} ]; then wait; n=0; fi
      done
      wait
    )
    u=$(echo $u)
    for v in $w; do
      case " $u " in *" $v "*) ;; *) echo "$P VM $v down after $(( $(date +%s) - t )) s" ;; esac
    done
    w=$u
    if [ -z "$w" ]; then return 0; fi
    if [ $(date +%s) -ge $e ]; then
      for v in $w; do echo "$P VM $v still running after $1 s"; done
      r="$r $w"
      return 1
    fi
    sleep $2
  done
}}
t=$(date +%s)"""


def _echo(text: str) -> str:
    # Our own words only (and `$v`, one of our VM ids): no quote, no host text.
    if not all(
        ch.isascii() and (ch.isalnum() or ch in " :/.,()=-") for ch in text.replace("$v", "")
    ):
        raise ValueError(f"not an echo-safe text: {text!r}")
    return f'echo "$P {text}"'


def _seconds(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a number of seconds: {value!r}")
    return value


def look_seconds(vms: int) -> int:
    """Seconds between two looks at each VM of a phase of `vms` VMs."""
    return SMALL_PHASE_POLL_SECONDS if vms <= SMALL_PHASE else POLL_SECONDS


def _phase(phase: Phase, number: int, total: int, emit: Emit, poll: int | None) -> list[str]:
    """Its VMs' stop commands, each in its own job (the slots bound how many run at once),
    then one loop looking at them all; or autostop, bounded (see _autostop)."""
    budget = _seconds(phase.budget)
    what = "the autostart sequence" if phase.autostop else f"{len(phase.steps)} VM(s)"
    lines = [_echo(f"phase {number}/{total} {phase.label}: {what}")]
    if phase.autostop:
        return lines + _autostop(budget, emit)
    for step in phase.steps:
        esxi.vm_id(step.vmid)
        stop = " || ".join(emit(action.command(step.vmid)) for action in step.actions)
        lines.append(f"{{ {stop}; }} 2>&1 | say &")
    # A VM the loop saw down needs no second look at the end; the others go on `r`.
    ids = " ".join(str(step.vmid) for step in phase.steps)
    if phase.tools_looks:
        lines += _tools_looks(phase.tools_looks, emit)
        ids = f"{ids} $x".strip()
    every = look_seconds(len(phase.steps) + len(phase.tools_looks)) if poll is None else poll
    lines += [f'w="{ids}"', f"look {budget} {every}"]
    return lines


def _tools_looks(vmids: tuple[int, ...], emit: Emit) -> list[str]:
    """A look at each VM's VMware Tools, CALLS_AT_ONCE at a time; those without (`x`) are
    suspended now, as autostop's guest shutdown would fail on them."""
    ids = " ".join(str(esxi.vm_id(v)) for v in vmids)
    said = _echo("VM $v: no VMware Tools running: suspending it before autostop")
    return [
        "x=$(",
        "  n=0",
        f"  for v in {ids}; do",
        "    { if notools $v; then echo $v; fi; } &",
        "    n=$((n + 1))",
        f"    if [ $n -ge {esxi.CALLS_AT_ONCE} ]; then wait; n=0; fi",
        "  done",
        "  wait",
        ")",
        "x=$(echo $x)",
        "for v in $x; do",
        f"  {{ {said}; {emit(_vm_command(esxi.power_suspend, '$v'))} 2>&1 | say; }} &",
        "done",
    ]


def _autostop(budget: int, emit: Emit) -> list[str]:
    """autostop in a job of its own, which goes on to the final step (`fin`) the moment it
    ends; or the final step at the end of the budget, autostop still running. Whichever
    comes first takes `$q.go` (mkdir: atomic) and runs it; the other does nothing. Its end
    is also told by a file, for the loop that waits for the budget; the script ends with the
    job (`wait $a`), so that run in the foreground it ends with the host poweroff."""
    late = _echo(f"autostop still running after {budget} s")
    return [
        f"{{ {emit(esxi.AUTOSTOP)} 2>&1 | say; : > $q.done; "
        "if mkdir $q.go 2>/dev/null; then fin; fi; } &",
        "a=$!",
        f"e=$(( $(date +%s) + {budget} ))",
        "while [ ! -f $q.done ]; do",
        "  if [ $(date +%s) -ge $e ]; then",
        f"    if mkdir $q.go 2>/dev/null; then {late}; fin; fi",
        "    break",
        "  fi",
        "  sleep 1",
        "done",
        "wait $a",
    ]


def _final(plan: ShutdownPlan, emit: Emit) -> list[str]:
    """A look at each VM not yet seen down; those still running suspended; ours last."""
    settled = {step.vmid for phase in plan.phases for step in phase.steps}
    always = [esxi.vm_id(v) for v in plan.final_check if v not in settled]
    words = " ".join(["$r", *map(str, always)])
    if plan.suspends_stragglers:
        lines = [
            _echo("final: suspending the VMs still running"),
            "p=",
            f"for v in {words}; do",
            f"  {{ if down $v; then {_echo('VM $v down')}; else "
            f"{_echo('VM $v still running: suspending it')}; "
            f"{emit(_vm_command(esxi.power_suspend, '$v'))} 2>&1 | say; fi; }} &",
            '  p="$p $!"',
            "done",
            'if [ -n "$p" ]; then wait $p; fi',
        ]
    else:
        lines = [_echo("final: the VMs still running are left to the host poweroff")]
    if plan.self_vm is not None:
        own = esxi.vm_id(plan.self_vm)
        words = _echo(f"final: suspending our own VM {own}")
        suspend = emit(esxi.power_suspend(own))
        lines.append(f"down {own} || {{ {words}; {suspend} 2>&1 | say; }}")
    return [*lines, _echo("host poweroff"), emit(esxi.POWEROFF)]


def _watchdog(deadline: int, emit: Emit) -> str:
    """The host poweroff at the deadline, whatever the sequence is doing; until then a line
    every ALIVE_SECONDS, so that whoever follows the log knows the sequence still has it."""
    return f"""(
  e=$(( t + {deadline} ))
  while [ $(( e - $(date +%s) )) -gt {ALIVE_SECONDS} ]; do
    {_echo(ALIVE)}
    sleep {ALIVE_SECONDS}
  done
  s=$(( e - $(date +%s) ))
  if [ $s -gt 0 ]; then sleep $s; fi
  {_echo("deadline reached: host poweroff")}
  {emit(esxi.POWEROFF)}
) &"""


STARTED_WORDS = "host sequence started"  # the script's own first line begins with these


def sequence_script(plan: ShutdownPlan) -> str:
    """The whole sequence, on the host's clock; the watchdog ends it at `plan.deadline`."""
    return "\n".join(_script(plan, _for_real, None))


def _script(plan: ShutdownPlan, emit: Emit, poll: int | None) -> list[str]:
    deadline = _seconds(plan.deadline)
    lines = [
        'trap "" HUP',
        _functions(emit),
        "r=",
        _echo(f"{STARTED_WORDS}: strategy {plan.strategy}, poweroff within {deadline} s"),
        _watchdog(deadline, emit),
    ]
    total = len(plan.phases)
    if any(phase.autostop for phase in plan.phases[:-1]):
        raise ValueError("autostop must be the plan's last phase")
    final = _final(plan, emit)
    by_autostop = bool(plan.phases) and plan.phases[-1].autostop
    if by_autostop:
        # The final step is a function, run by whichever ends first: autostop or its budget.
        lines += ["fin() {", *(f"  {line}" for line in final), "}"]
    for number, phase in enumerate(plan.phases, start=1):
        lines += _phase(phase, number, total, emit, poll)
    return lines if by_autostop else lines + final


# `check`'s rehearsal: the same script, every state-changing command (each `vim-cmd
# vmsvc/power.*`, autostop, poweroff) a stand-in that only says what it stands for, each
# phase 1 s, looks every second, the watchdog's deadline REHEARSAL_DEADLINE s; it waits for
# its watchdog, removes its file and says REHEARSAL_OVER.
STAND_IN = "stand-in, not run:"
REHEARSAL_DEADLINE = ALIVE_SECONDS + 3  # its `alive` line comes even a second late
REHEARSAL_OVER = "rehearsal over"


def _stand_in(command: str) -> str:
    """What the rehearsal writes where a host command would be: an echo of its last words
    (`power.shutdown 12`, `autostop`, `poweroff`), in double quotes."""
    what = command.removeprefix("vim-cmd ").rsplit("/", 1)[-1]
    if not all(ch.isalnum() or ch in " ._$" for ch in what):
        raise ValueError(f"not a command we stand in for: {command!r}")
    text = f'echo "{STAND_IN} {what}"'
    return f"{text} | say" if command == esxi.POWEROFF else text


def rehearsal_script(plan: ShutdownPlan) -> str:
    """The host script of `plan` for `check` to run on the host: see STAND_IN above."""
    short = replace(
        plan,
        deadline=REHEARSAL_DEADLINE,
        phases=tuple(replace(phase, budget=min(phase.budget, 1)) for phase in plan.phases),
    )
    lines = _script(short, _stand_in, 1)
    lines += ["wait", "rm -f $q.done", "rmdir $q.go 2>/dev/null", _echo(REHEARSAL_OVER)]
    return "\n".join(lines)


# What the shutdown command prints after the inventory's sections, each on a marker line.
READY = "ready"  # the inventory is out: the host waits for the script on the command's input
STARTED = "started"  # the host sequence was started, detached; its log follows
INCOMPLETE = "incomplete"  # the script did not arrive whole: nothing was run
# Whether `nohup` is there, tried rather than looked up (`command -v` is no builtin on every
# busybox): `n` is `nohup` or empty.
_TRY_NOHUP = "n=\nif nohup true > /dev/null 2>&1 < /dev/null; then n=nohup; fi"


def shutdown_command(token: int, log: str, follow_seconds: int, every_summary: bool = False) -> str:
    """The one command of a shutdown: the inventory; then the script we make of it, read
    from the command's input into a file next to the log, started as `sh FILE` detached (a
    child of init, as `( ... & )` leaves it); then the script's log, line by line as the
    host writes it, for `follow_seconds` at most (`follow_log`). With `wait` (a script that
    only powers the host off) the script runs in the command itself, and its log is printed
    once it is over. The command line is the same whatever the number of VMs.

    `every_summary`: the inventory reads each VM's `get.summary` as well (check's rehearsal).
    The script runs only if the file holds it whole (its length is sent first, the file is
    read back): a session lost in the middle of sending it, or a full /tmp, never runs half.
    """
    path = _checked(log)
    script = script_path(path)
    return f"""{inventory_command(token, every_summary)}
mark {READY}
read -r mode size || exit 0
f="{script}"
cat > "$f" || {{ mark {INCOMPLETE}; rm -f "$f"; exit 1; }}
s=$(cat "$f")
[ "${{#s}}" = "$size" ] || {{ mark {INCOMPLETE}; rm -f "$f"; exit 1; }}
s=
: >> "{path}"
{_TRY_NOHUP}
mark {STARTED}
if [ "$mode" = wait ]; then
  $n sh "$f" >> "{path}" 2>&1 < /dev/null
  cat "{path}"
else
  ( $n sh "$f" >> "{path}" 2>&1 < /dev/null & )
{_follow(path, follow_seconds)}
fi"""


def start_request(script: str, wait: bool) -> str:
    """What the shutdown command reads on its input: how to follow, the length, the script.

    ASCII only, with no trailing newline: busybox counts `${#s}` in bytes or in characters
    depending on how it was built, and `$(cat)` drops trailing newlines, so anything else
    would make a whole script look cut and never run.
    """
    if not script.isascii() or script.endswith("\n"):
        raise ValueError("refusing a script the host would count differently")
    return f"{'wait' if wait else 'follow'} {len(script)}\n{script}"


def _follow(log: str, seconds: int) -> str:
    # tail -f, ended after `seconds` by a sleeper that is itself ended once tail is (so that
    # it never kills a process id used again).
    return f"""  tail -n 100000 -f "{log}" &
  k=$!
  ( sleep {_seconds(seconds)}; kill $k ) > /dev/null 2>&1 < /dev/null &
  j=$!
  wait $k
  kill $j 2>/dev/null"""


def follow_log(log: str, seconds: int) -> str:
    """The host's log from its first line, then each line as it is written, for `seconds`
    at most (a new session's one command, after ours was lost)."""
    return _follow(_checked(log), seconds).replace("\n  ", "\n").strip()


def plain_command(token: int, seconds: int) -> str:
    """The plain path, as the original line did it but detached and bounded: autostop, then
    poweroff; and poweroff after `seconds` whatever autostop does. Says `@@TOKEN started`
    once both jobs are out; they go on when the session ends."""
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < 10**9:
        raise ValueError(f"not a marker token: {token!r}")
    then = _seconds(seconds)
    return f"""{_TRY_NOHUP}
( trap "" HUP; $n {esxi.AUTOSTOP}; $n {esxi.POWEROFF} ) > /dev/null 2>&1 < /dev/null &
( trap "" HUP; sleep {then}; $n {esxi.POWEROFF} ) > /dev/null 2>&1 < /dev/null &
echo "@@{token} {STARTED}\""""


def _checked(log: str) -> str:
    shaped = log.startswith(HOST_LOG_PREFIX) and log.endswith(".log")
    if not shaped or not all(ch.isalnum() or ch in "${}:-/_." for ch in log):
        raise ValueError("refusing an unexpected log path")
    return log


def script_path(log: str) -> str:
    """Where the host keeps the script: next to its log."""
    return _checked(log)[: -len(".log")] + ".sh"


def slot_files(log: str) -> str:
    """What the script's call slots and autostop's done-file are named after (`$0.q`): its
    own file, so that a script the host killed can be cleaned up after by name."""
    return script_path(log) + ".q"


def log_path(stamp: int, pid: int) -> str:
    return f"{HOST_LOG_PREFIX}{int(stamp)}-{int(pid)}.log"
