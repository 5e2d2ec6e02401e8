"""`check`'s rehearsal on the real host, read-only: what the host proved it can do.

The probes, each a step of `check` that makes it NOT ready when it fails, with the fix:
- `busybox`: the version line of the host's busybox, and each applet our host text runs, tried
  harmlessly (missing: exit 127);
- `vim-cmd latency`: LATENCY_CALLS read-only `vim-cmd vmsvc/getallvms`, one after the other,
  each timed on our side;
- `detached job`: a short sleeper started as the host script is (`( nohup sh FILE & )`) on a
  session of its own, that session closed, the file the sleeper writes read on another one;
- `rehearsal`: the host script of this very plan (script.rehearsal_script: every
  state-changing command a stand-in that only echoes, phases and watchdog in seconds), sent on
  the shutdown command itself as a shutdown sends it, run by the host's own shell, its log
  followed: every line must be ours, its watchdog must fire, its last line must come.

The sleeper and the rehearsal run while the other probes do; what the rehearsal costs on top
of the inventory is timed and printed. Everything the host printed is kept (`Rehearsal.raw`),
for `check --capture`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from esxi_suspend import clock
from esxi_suspend.errors import RemoteCommandFailed, one_line
from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import HOST_TMP, Remote, Talk, new_token
from esxi_suspend.host.plan import ShutdownPlan
from esxi_suspend.host.report import printable
from esxi_suspend.host.script import (
    ALIVE,
    LOG_PREFIX,
    REHEARSAL_OVER,
    STAND_IN,
    STARTED,
    STARTED_WORDS,
    rehearsal_script,
    script_path,
    slot_files,
    start_request,
)

# Real seconds the shutdown command follows the rehearsal's log at most (its follower ends
# then on the host); our own wait for the rehearsal's last line is bounded by it too.
FOLLOW_SECONDS = 30
# Real seconds without a line from the rehearsal: it stopped (its phases and watchdog each
# say something at least every 2 s).
SILENT_SECONDS = 6
LATENCY_CALLS = 3
# A vim-cmd slower than this (seconds a call) is worth a warning: hostd is busy.
SLOW_CALL = 3.0
# Real seconds the clean-up waits for the sleeper's file.
SLEEPER_WAIT = 5
# The applets our host text runs, each tried in a harmless form on files of our own.
APPLET_TRIALS = (
    ("date", "date +%s"),
    ("sleep", "sleep 0"),
    ("grep", "echo x | grep -q -e x"),
    ("cat", "cat $d.f"),
    ("tail", "tail -n 1 $d.f"),
    ("mkdir", "mkdir $d.dir"),
    ("rmdir", "rmdir $d.dir"),
    ("sh", "sh $d.f"),
    ("rm", "rm -f $d.f"),
)
OPTIONAL_APPLETS = ("nohup",)  # missing: the script runs with `trap "" HUP` instead
BUSYBOX_PATHS = ("busybox", "/usr/lib/vmware/busybox/bin/busybox")  # the latter: 7.0.3
SLEEPER_TEXT = "outlived"

Reconnect = Callable[[], "Remote | None"]


@dataclass
class Probe:
    name: str
    ok: bool
    detail: str


@dataclass
class Rehearsal:
    """What the rehearsal proved (or not), the host's own text, and the timings."""

    probes: list[Probe] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)
    busybox: str = ""
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0  # what the rehearsal added to `check`, on the deadline's clock
    token: int = 0  # the marker token of the probes' and the clean-up's output

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.probes.append(Probe(name, ok, detail))

    @property
    def latency(self) -> float | None:
        return sum(self.latencies) / len(self.latencies) if self.latencies else None


def _probe_files(token: int) -> str:
    return f"{HOST_TMP}/esxi-suspend-probe-{int(token)}"


def probe_command(token: int) -> str:
    """The probes' one command, on a session of their own: the busybox version, the applets,
    the vim-cmd calls (a marker line after each), the sleeper started detached."""
    lines = [
        f'm="@@{int(token)}"',
        esxi.MARK_FUNCTION,
        f"d={_probe_files(token)}",
        "mark busybox",
        f"for b in {' '.join(BUSYBOX_PATHS)}; do",
        '  if $b 2>&1 < /dev/null | grep -e "^BusyBox v"; then break; fi',
        "done",
        "mark applets",
        ": > $d.f",
    ]
    for name, trial in APPLET_TRIALS:
        lines.append(f'{{ {trial}; }} > /dev/null 2>&1 < /dev/null; echo "{name} $?"')
    lines += [
        'nohup true > /dev/null 2>&1 < /dev/null; echo "nohup $?"',
        "mark latency",
    ]
    for _ in range(LATENCY_CALLS):
        lines += [f"{esxi.GETALLVMS} > /dev/null 2>&1", "mark call $?"]
    lines += [
        "mark detached",
        f"echo \"trap '' HUP; sleep 1; echo {SLEEPER_TEXT} > $d.out\" > $d.sh",
        "n=",
        "if nohup true > /dev/null 2>&1 < /dev/null; then n=nohup; fi",
        "( $n sh $d.sh > /dev/null 2>&1 < /dev/null & )",
        "mark end",
    ]
    return "\n".join(lines)


def cleanup_command(token: int, log: str) -> str:
    """On a new session: the sleeper's file once it is there (SLEEPER_WAIT s at most), then
    every file of the probes and of the rehearsal removed."""
    return "\n".join(
        [
            f"d={_probe_files(token)}",
            "i=0",
            "while [ ! -f $d.out ]; do",
            "  i=$((i + 1))",
            f"  if [ $i -gt {SLEEPER_WAIT} ]; then break; fi",
            "  sleep 1",
            "done",
            f'echo "@@{int(token)} detached"',
            "cat $d.out 2>/dev/null",
            f'rm -f $d.out $d.sh $d.f "{log}" "{script_path(log)}"',
            # What a script the host killed left: its call slots and autostop's done-file.
            "rmdir "
            + " ".join(f'"{name}"' for name in esxi.slot_names(slot_files(log)))
            + " 2>/dev/null",
            f'rm -f "{slot_files(log)}.done"',
            f'rmdir "{slot_files(log)}.go" 2>/dev/null',
        ]
    )


def rehearse(
    talk: Talk,
    marker: str,
    plan: ShutdownPlan,
    reconnect: Reconnect,
    timeout: int,
    log: str,
) -> Rehearsal:
    """The rehearsal on the shutdown command `talk` (its inventory read, `marker` its
    `@@TOKEN`), the probes on sessions of their own. Never raises for what the host does."""
    done = Rehearsal()
    started = clock.now()
    quick = plan.stops_nothing  # the real run's mode: the script in the command, or detached
    running = True
    try:
        talk.send(start_request(rehearsal_script(plan), quick))
        talk.read_until(f"{marker} {STARTED}", time.monotonic() + timeout)
    except RemoteCommandFailed as exc:
        done.add(
            "rehearsal",
            False,
            f"the host did not start the rehearsal script ({one_line(exc)}): a shutdown would "
            "fall back to the plain path (autostop, then poweroff); send `check --capture` "
            "with a bug report",
        )
        running = False
    token = done.token = new_token()
    _probes(done, reconnect, token, timeout)
    if running:
        _follow(done, talk, quick)
    _cleanup(done, reconnect, token, timeout, log)
    done.seconds = clock.now() - started
    return done


def _probes(done: Rehearsal, reconnect: Reconnect, token: int, timeout: int) -> None:
    second = reconnect()
    if second is None:
        for name in ("busybox", "vim-cmd latency", "detached job"):
            done.add(name, False, "not tried: a second session could not be opened (see above)")
        return
    marks: list[tuple[str, float]] = []  # each marker line, and when it came
    text: list[str] = []
    prefix = f"@@{token} "
    try:
        with second.exchange(probe_command(token), timeout, "the probes") as talk:
            talk.send("")
            for line in talk.lines(time.monotonic() + timeout):
                text.append(line)
                if line.startswith(prefix):
                    marks.append((line[len(prefix) :].strip(), clock.now()))
    except RemoteCommandFailed as exc:
        text.append(f"(our side: {one_line(exc)})")
    finally:
        second.close()  # the sleeper's session ends here: the sleeper must outlive it
    done.raw["probes"] = "\n".join(text)
    sections = esxi.split_marked("\n".join(text) + "\n", token)
    _busybox(done, sections)
    _latency(done, marks)
    if "end" not in sections:
        done.add("detached job", False, "the probes did not finish: the sleeper was not started")


def _busybox(done: Rehearsal, sections: dict[str, str]) -> None:
    version = next((ln.strip() for ln in sections.get("busybox", "").splitlines() if ln), "")
    done.busybox = printable(version)
    results = dict(
        (words[0], words[1])
        for words in (ln.split() for ln in sections.get("applets", "").splitlines())
        if len(words) == 2
    )
    wanted = [name for name, _trial in APPLET_TRIALS]
    missing = [f"{n} (exit {results.get(n, '?')})" for n in wanted if results.get(n) != "0"]
    where = done.busybox or "no `BusyBox v` line from `busybox`"
    if missing:
        done.add(
            "busybox",
            False,
            f"{where}; missing or failing: {', '.join(missing)}: the host script needs them; send "
            "`check --capture` with a bug report",
        )
        return
    extra = [n for n in OPTIONAL_APPLETS if results.get(n) != "0"]
    also = f"; {', '.join(extra)} missing (the script does without)" if extra else ""
    done.add("busybox", True, f"{where}; {', '.join(wanted)} ran{also}")


def _latency(done: Rehearsal, marks: list[tuple[str, float]]) -> None:
    at = next((when for label, when in marks if label == "latency"), None)
    statuses: list[str] = []
    for label, when in marks:
        if label.startswith("call ") and at is not None:
            done.latencies.append(when - at)
            statuses.append(label.split()[1])
            at = when
    failed = [s for s in statuses if s != "0"]
    if len(statuses) < LATENCY_CALLS or failed:
        done.add(
            "vim-cmd latency",
            False,
            f"`{esxi.GETALLVMS}` failed ({len(statuses)} of {LATENCY_CALLS} answered, exit "
            f"{', '.join(failed) or '?'}): hostd is not answering; restart the management "
            "agents (`/etc/init.d/hostd restart`) and check again",
        )
        return
    each = ", ".join(f"{s:.2f}" for s in done.latencies)
    mean = done.latency or 0.0
    slow = f"; WARNING: slower than {SLOW_CALL:g} s: hostd is busy" if mean > SLOW_CALL else ""
    done.add("vim-cmd latency", True, f"{mean:.2f} s a call ({each} s){slow}")


def _follow(done: Rehearsal, talk: Talk, quick: bool) -> None:
    """The rehearsal's log, until its last line (FOLLOW_SECONDS at most)."""
    lines: list[str] = []
    end = time.monotonic() + FOLLOW_SECONDS
    with contextlib.suppress(RemoteCommandFailed):
        while True:
            line = next(iter(talk.lines(min(end, time.monotonic() + SILENT_SECONDS))), None)
            if line is None:
                break
            lines.append(line)
            if line.strip() == f"{LOG_PREFIX} {REHEARSAL_OVER}":
                break
    done.raw["rehearsal"] = "\n".join(lines)
    ours_raw = [ln for ln in lines if ln.startswith(LOG_PREFIX)]
    ours = [ln.strip()[len(LOG_PREFIX) :].strip() for ln in ours_raw]
    foreign = [printable(ln.strip()) for ln in lines if ln.strip() and ln not in ours_raw]
    missing = [
        what
        for what, seen in (
            ("its first line", any(w.startswith(STARTED_WORDS) for w in ours)),
            (f"its watchdog's `{ALIVE}`", ALIVE in ours),
            ("its final poweroff (stand-in)", "host poweroff" in ours),
            ("its watchdog's deadline", "deadline reached: host poweroff" in ours),
            ("its last line", REHEARSAL_OVER in ours),
        )
        if not seen
    ]
    stood_in = sum(1 for w in ours if STAND_IN in w)
    mode = "in the command" if quick else "detached"
    if foreign or missing:
        said = f"; the host's shell said: {' | '.join(foreign[:3])}" if foreign else ""
        lacking = f"; missing: {', '.join(missing)}" if missing else ""
        done.add(
            "rehearsal",
            False,
            f"the host script did not run through on this host's shell{said}{lacking}: a "
            "shutdown would hear it stop and fall back to the plain path; send `check "
            "--capture` with a bug report",
        )
        return
    done.add(
        "rehearsal",
        True,
        f"the host script ran {mode} on this host's shell, stand-ins for its "
        f"{stood_in} state-changing command(s), every phase, the final step and the watchdog "
        f"({len(lines)} log lines, all ours)",
    )


def _cleanup(done: Rehearsal, reconnect: Reconnect, token: int, timeout: int, log: str) -> None:
    """On a new session: the sleeper's file read, every file of ours removed."""
    started = not any(p.name == "detached job" for p in done.probes)
    third = reconnect()
    if third is None:
        if started:
            done.add("detached job", False, "not read: could not open a new session (see above)")
        return
    try:
        ran = third.run(cleanup_command(token, log), timeout + SLEEPER_WAIT)
    except RemoteCommandFailed as exc:
        if started:
            done.add("detached job", False, f"not read: {one_line(exc)}")
        return
    finally:
        third.close()
    if not started:
        return
    done.raw["detached"] = ran.stdout
    read = esxi.split_marked(ran.stdout, token).get("detached", "").strip()
    if read == SLEEPER_TEXT:
        done.add(
            "detached job",
            True,
            "a job started as the host script is outlived its SSH session (read on a new one)",
        )
    else:
        done.add(
            "detached job",
            False,
            f"a job started as the host script is did not outlive its SSH session (read "
            f"{printable(read)[:80]!r}): the host script would die with our session; send "
            "`check --capture` with a bug report",
        )
