"""NUT's upsmon.conf and upssched.conf as text: find, set and take out directives, read MONITOR
lines, set NOTIFYCMD and NOTIFYFLAG for the early shutdown, render our upssched.conf.

Pure, so every real shape of these files (Debian's and RHEL's packaged upsmon.conf, an admin's
own NOTIFYCMD, CRLF endings) is proven by table tests without touching one; install.py reads
and writes the files. What we set is marked (`# SHUTDOWNCMD set by esxi-suspend install.sh
...`, the line it replaced kept as `#esxi-suspend-was: ...`), so that --uninstall takes out
exactly our lines and puts back what they replaced, also in a file an older install.sh edited:
the markers are the same text. A CRLF file stays CRLF.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import PurePath

MARKER_TAIL = " set by esxi-suspend install.sh (install.sh --uninstall takes it out)"
WAS = "#esxi-suspend-was: "  # our mark on a line we replaced: --uninstall restores it
SCHED_MARKER = (
    "# upssched.conf written by esxi-suspend install.sh: it rewrites it, --uninstall removes it"
)
SCHED_REPLACED = "# esxi-suspend-replaced: "  # then the copy of the file ours replaced
TIMER = "early-shutdown"  # upssched's timer and the argument of upssched-cmd
EARLY_EVENTS = ("ONBATT", "ONLINE")
OUR_KEYWORDS = ("SHUTDOWNCMD", "NOTIFYCMD", "NOTIFYFLAG")
NOTIFY_KEYWORDS = ("NOTIFYCMD", "NOTIFYFLAG")
ROLES = {"primary": "primary", "master": "primary", "secondary": "secondary", "slave": "secondary"}

_MARKER_RE = re.compile(r"^# ([A-Z]+) ")
_FINALDELAY_RE = re.compile(r"^\s*FINALDELAY\s+([0-9]*)")
_TIMER_RE = re.compile(
    r"^\s*AT\s+ONBATT\s+\S+\s+START-TIMER\s+" + re.escape(TIMER) + r"\s+([0-9]+)"
)
_AT_RE = re.compile(r"^\s*AT\s")


def marker(keyword: str) -> str:
    """The comment above a line we set."""
    return f"# {keyword}{MARKER_TAIL}"


@dataclass(frozen=True)
class _Lines:
    """A file's lines without their endings, and how to put them back: the first line's
    ending for every line (a file of mixed endings comes out with that one), and whether the
    last line had one."""

    lines: list[str]
    newline: str
    final_newline: bool

    @classmethod
    def of(cls, text: str) -> _Lines:
        first = text.find("\n")
        newline = "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"
        final = text.endswith("\n")
        body = text[:-1] if final else text
        lines = [line.removesuffix("\r") for line in body.split("\n")] if text else []
        return cls(lines, newline, final or not text)

    def text(self, lines: Sequence[str]) -> str:
        if not lines:
            return ""
        return self.newline.join(lines) + (self.newline if self.final_newline else "")


def lines_of(text: str) -> list[str]:
    """The lines, without their endings (LF or CRLF)."""
    return _Lines.of(text).lines


def _pattern(keyword: str, first: str | None) -> re.Pattern[str]:
    after = rf"\s+{re.escape(first)}" if first else ""
    return re.compile(rf"^\s*{re.escape(keyword)}{after}(\s|$)")


def active(text: str, keyword: str, first: str | None = None) -> list[str]:
    """The lines upsmon reads as `keyword` (with `first` as its first argument, if given)."""
    pattern = _pattern(keyword, first)
    return [line for line in lines_of(text) if pattern.match(line)]


def finaldelay(text: str) -> str | None:
    """FINALDELAY's seconds, as the last FINALDELAY line says; None when it is not set."""
    found = [m.group(1) for m in map(_FINALDELAY_RE.match, lines_of(text)) if m]
    return found[-1] if found and found[-1] else None


def _marker_keyword(line: str) -> str | None:
    match = _MARKER_RE.match(line)
    return match.group(1) if match and line.endswith(MARKER_TAIL) else None


def has_marker(text: str, keywords: Collection[str]) -> bool:
    """Did we set a line of one of `keywords` in this text?"""
    wanted = {marker(keyword) for keyword in keywords}
    return any(line in wanted for line in lines_of(text))


def set_directive(text: str, keyword: str, line: str, first: str | None = None) -> str:
    """`line` in place of the first active `keyword` line (with `first` as its first argument).

    That line is kept commented out (WAS), then our marker, then `line`; a line right after
    one of our markers is ours and only replaced. No such line: marker and `line` are
    appended, after an empty line unless the file ends with a line of ours.
    """
    parsed = _Lines.of(text)
    pattern = _pattern(keyword, first)
    out: list[str] = []
    done = after_marker = last_ours = False
    for current in parsed.lines:
        if not done and pattern.match(current):
            out.extend([line] if after_marker else [WAS + current, marker(keyword), line])
            done, after_marker, last_ours = True, False, True
            continue
        out.append(current)
        last_ours, after_marker = after_marker, _marker_keyword(current) is not None
    if not done:
        out.extend([*([] if last_ours else [""]), marker(keyword), line])
    return _Lines(out, parsed.newline, True).text(out)


def take_out(text: str, keywords: Collection[str]) -> str:
    """The text without the lines our markers for `keywords` mark (nor the empty line
    set_directive put before them); the lines they replaced (WAS) are back."""
    parsed = _Lines.of(text)
    out: list[str] = []
    skip = held = False
    for current in parsed.lines:
        if skip:
            skip = False
            continue
        if _marker_keyword(current) in keywords:
            held, skip = False, True
            continue
        line = current
        if current.startswith(WAS):
            rest = current[len(WAS) :]
            if rest.split()[:1] and rest.split()[0] in keywords:
                line = rest
        if line == "":  # an empty line waits: it goes if our marker follows it
            if held:
                out.append("")
            held = True
            continue
        if held:
            out.append("")
            held = False
        out.append(line)
    if held:
        out.append("")
    return parsed.text(out)


@dataclass(frozen=True)
class Monitor:
    """One MONITOR line: `MONITOR ups@host[:port] powervalue user password role`."""

    ups: str
    power: int
    role: str  # primary or secondary (NUT before 2.8: master or slave)


def monitors(text: str) -> list[Monitor]:
    """The MONITOR lines upsmon reads; a line that does not parse as one is left out."""
    found = []
    for line in lines_of(text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote: upsmon would not read it either
            continue
        if len(words) != 6 or words[0] != "MONITOR" or not words[2].isdigit():
            continue
        role = ROLES.get(words[5].lower())
        if role is not None:
            found.append(Monitor(words[1], int(words[2]), role))
    return found


def runs_upssched(line: str) -> bool:
    """Does this NOTIFYCMD line run upssched?"""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return False
    return len(words) > 1 and PurePath(words[1]).name == "upssched"


def notify_conflict(text: str) -> str | None:
    """The admin's own NOTIFYCMD (upsmon runs one only), if there is one we must not replace."""
    lines = active(text, "NOTIFYCMD")
    if not lines or has_marker(text, ["NOTIFYCMD"]):
        return None
    if len(lines) == 1 and runs_upssched(lines[0]):
        return None
    return lines[0]


def with_exec(flags: str) -> str | None:
    """NOTIFYFLAG's flags with EXEC added (IGNORE taken out); None when EXEC is there."""
    kept = [flag for flag in flags.split("+") if flag not in ("", "IGNORE")]
    if "EXEC" in kept:
        return None
    return "+".join([*kept, "EXEC"])


def set_notify(text: str, upssched: str) -> tuple[str, list[tuple[str, str]]]:
    """NOTIFYCMD upssched and EXEC on NOTIFYFLAG ONBATT and ONLINE: the new text, and what was
    done as (verb, detail) lines: changed, left (two lines for one event) or kept."""
    said: list[tuple[str, str]] = []
    notifycmd = f"NOTIFYCMD {upssched}"
    lines = active(text, "NOTIFYCMD")
    if not lines or (has_marker(text, ["NOTIFYCMD"]) and lines != [notifycmd]):
        text = set_directive(text, "NOTIFYCMD", notifycmd)
        said.append(("changed", notifycmd + (f", was: {'; '.join(lines)}" if lines else "")))
    for event in EARLY_EVENTS:
        lines = active(text, "NOTIFYFLAG", event)
        if len(lines) > 1:
            said.append(
                (
                    "left",
                    f"{len(lines)} NOTIFYFLAG {event} lines: keep one, with +EXEC in its flags",
                )
            )
            continue
        words = lines[0].split() if lines else []
        flags = with_exec(words[2] if len(words) > 2 else "") if lines else "SYSLOG+EXEC"
        if flags is None:
            continue
        text = set_directive(text, "NOTIFYFLAG", f"NOTIFYFLAG {event} {flags}", event)
        was = f", was: {lines[0]}" if lines else ""
        said.append(("changed", f"NOTIFYFLAG {event} {flags}{was}"))
    if not any(verb == "changed" for verb, _ in said):
        said.append(("kept", "NOTIFYCMD runs upssched on ONBATT and ONLINE"))
    return text, said


def shutdowncmd(command: str, env_file: str | None = None) -> str:
    """Our SHUTDOWNCMD line; with the env file of a --root tree, which upsmon must name."""
    argv = [command, "shutdown", *(["--env-file", env_file] if env_file else [])]
    return f'SHUTDOWNCMD "{shlex.join(argv)}"'


def render_upssched_conf(sample: str, cmdscript: str, seconds: int, note: str = "") -> str:
    """Our upssched.conf: the sample with our timer script and delay, under our marker (and
    `note`, SCHED_REPLACED and the copy of the file it replaced)."""
    out = [SCHED_MARKER, *([note] if note else [])]
    onbatt = re.compile(rf"^AT ONBATT \* START-TIMER {re.escape(TIMER)} [0-9]*$")
    for line in lines_of(sample):
        if line.startswith("CMDSCRIPT "):
            line = f"CMDSCRIPT {cmdscript}"
        elif onbatt.match(line):
            line = f"AT ONBATT * START-TIMER {TIMER} {seconds}"
        out.append(line)
    return "\n".join(out) + "\n"


def is_ours(sched_text: str) -> bool:
    """Did we write this upssched.conf?"""
    return SCHED_MARKER in lines_of(sched_text)


def replaced_note(sched_text: str) -> str:
    """Our upssched.conf's line naming the copy of the file it replaced ('' if none)."""
    return next((line for line in lines_of(sched_text) if SCHED_REPLACED in line), "")


def replaced_copy(sched_text: str) -> str:
    """The copy our upssched.conf replaced, to put back ('' if it replaced none)."""
    lines = lines_of(sched_text)
    return next(
        (line[len(SCHED_REPLACED) :] for line in lines if line.startswith(SCHED_REPLACED)), ""
    )


def schedules(sched_text: str) -> bool:
    """Has this upssched.conf AT lines (an admin's own timers), or none (NUT's sample)?"""
    return any(_AT_RE.match(line) for line in lines_of(sched_text))


def timer_seconds(sched_text: str) -> int | None:
    """The delay of our early-shutdown timer, if the file has one."""
    found = [m.group(1) for m in map(_TIMER_RE.match, lines_of(sched_text)) if m]
    return int(found[0]) if found else None


def manual_lines(upssched: str, sched_conf: str, rendered: str, cmdscript: str) -> list[str]:
    """What to add by hand for the early shutdown: to upsmon.conf and to upssched.conf."""
    lines = [
        "in upsmon.conf (one NOTIFYCMD only; on existing NOTIFYFLAG lines add +EXEC):",
        f"  NOTIFYCMD {upssched}",
        *(f"  NOTIFYFLAG {event} SYSLOG+EXEC" for event in EARLY_EVENTS),
        f"in {sched_conf} (its CMDSCRIPT, one only, must run {cmdscript} {TIMER}):",
    ]
    kept = [
        line for line in lines_of(rendered) if line.strip() and not line.lstrip().startswith("#")
    ]
    return lines + [f"  {line}" for line in kept]
