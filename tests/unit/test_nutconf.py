"""setup/nutconf.py over real upsmon.conf shapes: Debian's and RHEL's packaged files (their
commented-out defaults must stay comments), MONITOR lines of NUT before and after 2.8, an
admin's own NOTIFYCMD, CRLF endings. Each edit is undone by take_out, byte for byte."""

from __future__ import annotations

import pytest

from esxi_suspend.setup import nutconf
from esxi_suspend.setup.nutconf import Monitor, marker

OURS = 'SHUTDOWNCMD "/usr/local/sbin/esxi-suspend shutdown"'
UPSSCHED = "/usr/sbin/upssched"

# Excerpts of the packaged files, as installed: comments, commented-out defaults, tabs.
DEBIAN = """\
# Network UPS Tools: example upsmon configuration
#
# This file contains passwords, so keep it secure.

# --------------------------------------------------------------------------
# RUN_AS_USER <userid>
#
# By default, upsmon splits into two processes.  One stays as root and
# waits to run the SHUTDOWNCMD.  The other one switches to another userid
# and does everything else.
#
# RUN_AS_USER nut

# --------------------------------------------------------------------------
# MONITOR <system> <powervalue> <username> <password> ("primary"|"secondary")
#
# MONITOR myups@bigserver 1 upswired blah primary
# MONITOR su700@server.example.com 1 monuser secretpass secondary
MONITOR eaton@localhost 1 upsmon "s3cret #1" primary

MINSUPPLIES 1

# --------------------------------------------------------------------------
# SHUTDOWNCMD "<command>"
#
# upsmon runs this command when the system needs to be brought down.
SHUTDOWNCMD "/sbin/shutdown -h +0"

# --------------------------------------------------------------------------
# NOTIFYCMD <command>
#
# upsmon calls this to send messages when things happen
#
# NOTIFYCMD /usr/local/ups/bin/notifyme

POLLFREQ 5
POLLFREQALERT 5
HOSTSYNC 15
DEADTIME 15
POWERDOWNFLAG /etc/killpower

# NOTIFYFLAG ONLINE\tSYSLOG+WALL
# NOTIFYFLAG ONBATT\tSYSLOG+WALL+EXEC
RBWARNTIME 43200
NOCOMMWARNTIME 300
FINALDELAY 5
"""

RHEL = """\
# Network UPS Tools: example upsmon configuration
RUN_AS_USER nut
MONITOR apc@127.0.0.1 1 monuser pass master
MONITOR remote@ups.example.com 0 monuser pass slave
MINSUPPLIES 1
SHUTDOWNCMD "/usr/sbin/shutdown -h +0"
#NOTIFYCMD /usr/local/ups/bin/notifyme
POLLFREQ 5
NOTIFYFLAG ONLINE\tSYSLOG+WALL
NOTIFYFLAG ONBATT\tSYSLOG+WALL
POWERDOWNFLAG /etc/killpower
"""

ADMINS_NOTIFYCMD = """\
MONITOR myups@localhost 1 upsmon secret secondary
SHUTDOWNCMD "/usr/local/sbin/esxi-suspend shutdown"
NOTIFYCMD "/usr/local/bin/page-me --quiet"
NOTIFYFLAG ONBATT SYSLOG+EXEC
"""

BARE = "MONITOR myups@localhost 1 upsmon secret primary\n"
CRLF = DEBIAN.replace("\n", "\r\n")
NO_FINAL_NEWLINE = 'MONITOR myups@localhost 1 upsmon secret primary\nSHUTDOWNCMD "/bin/true"'

SHAPES = {
    "debian": DEBIAN,
    "rhel": RHEL,
    "admins-notifycmd": ADMINS_NOTIFYCMD,
    "bare": BARE,
    "crlf": CRLF,
    "empty": "",
}


@pytest.mark.parametrize(
    ("text", "keyword", "first", "expected"),
    [
        (DEBIAN, "SHUTDOWNCMD", None, ['SHUTDOWNCMD "/sbin/shutdown -h +0"']),
        (DEBIAN, "NOTIFYCMD", None, []),  # only commented out
        (DEBIAN, "NOTIFYFLAG", "ONBATT", []),
        (DEBIAN, "FINAL", None, []),  # a keyword is a whole word
        (RHEL, "NOTIFYFLAG", "ONLINE", ["NOTIFYFLAG ONLINE\tSYSLOG+WALL"]),
        (RHEL, "NOTIFYCMD", None, []),  # "#NOTIFYCMD" without a space is a comment too
        (CRLF, "SHUTDOWNCMD", None, ['SHUTDOWNCMD "/sbin/shutdown -h +0"']),  # no \r
        (
            "  SHUTDOWNCMD x\nSHUTDOWNCMD y\n",
            "SHUTDOWNCMD",
            None,
            ["  SHUTDOWNCMD x", "SHUTDOWNCMD y"],
        ),
        ("shutdowncmd x\n", "SHUTDOWNCMD", None, []),  # upsmon's keywords are upper case
        ("SHUTDOWNCMD\n", "SHUTDOWNCMD", None, ["SHUTDOWNCMD"]),
        (ADMINS_NOTIFYCMD, "NOTIFYCMD", None, ['NOTIFYCMD "/usr/local/bin/page-me --quiet"']),
    ],
)
def test_active_lines(text: str, keyword: str, first: str | None, expected: list[str]) -> None:
    assert nutconf.active(text, keyword, first) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DEBIAN, "5"),
        (RHEL, None),
        ("FINALDELAY 5\nFINALDELAY 12 # later wins\n", "12"),
        ("# FINALDELAY 5\n", None),
        ("FINALDELAY\n", None),
        (CRLF, "5"),
    ],
)
def test_finaldelay(text: str, expected: str | None) -> None:
    assert nutconf.finaldelay(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DEBIAN, [Monitor("eaton@localhost", 1, "primary")]),
        (
            RHEL,
            [
                Monitor("apc@127.0.0.1", 1, "primary"),
                Monitor("remote@ups.example.com", 0, "secondary"),
            ],
        ),
        (ADMINS_NOTIFYCMD, [Monitor("myups@localhost", 1, "secondary")]),
        ("MONITOR ups@host 1 user pass Primary  # comment\n", [Monitor("ups@host", 1, "primary")]),
        ("MONITOR ups@host 1 user pass\n", []),  # no role
        ("MONITOR ups@host one user pass primary\n", []),
        ("MONITOR ups@host 1 user pass observer\n", []),
        ('MONITOR ups@host 1 user "unbalanced primary\n', []),
        ("# MONITOR ups@host 1 user pass primary\n", []),
        (CRLF, [Monitor("eaton@localhost", 1, "primary")]),
    ],
)
def test_monitors(text: str, expected: list[Monitor]) -> None:
    assert nutconf.monitors(text) == expected


SET_SHUTDOWNCMD = [
    (
        "replaces the active line, keeps it commented out",
        'A 1\nSHUTDOWNCMD "/sbin/shutdown -h +0"\nB 2\n',
        f'A 1\n#esxi-suspend-was: SHUTDOWNCMD "/sbin/shutdown -h +0"\n'
        f"{marker('SHUTDOWNCMD')}\n{OURS}\nB 2\n",
    ),
    (
        "appends after an empty line when there is none",
        BARE,
        f"{BARE}\n{marker('SHUTDOWNCMD')}\n{OURS}\n",
    ),
    (
        "a commented-out default is not a line to replace",
        '# SHUTDOWNCMD "/sbin/shutdown -h +0"\n',
        f'# SHUTDOWNCMD "/sbin/shutdown -h +0"\n\n{marker("SHUTDOWNCMD")}\n{OURS}\n',
    ),
    (
        "our own line is only replaced, never commented out again",
        f"{marker('SHUTDOWNCMD')}\nSHUTDOWNCMD old\n",
        f"{marker('SHUTDOWNCMD')}\n{OURS}\n",
    ),
    (
        "a file without a final newline gets one",
        NO_FINAL_NEWLINE,
        f"MONITOR myups@localhost 1 upsmon secret primary\n#esxi-suspend-was: "
        f'SHUTDOWNCMD "/bin/true"\n{marker("SHUTDOWNCMD")}\n{OURS}\n',
    ),
    ("an empty file", "", f"\n{marker('SHUTDOWNCMD')}\n{OURS}\n"),
]


@pytest.mark.parametrize(
    ("before", "after"),
    [row[1:] for row in SET_SHUTDOWNCMD],
    ids=[row[0] for row in SET_SHUTDOWNCMD],
)
def test_set_directive(before: str, after: str) -> None:
    assert nutconf.set_directive(before, "SHUTDOWNCMD", OURS) == after
    assert nutconf.set_directive(after, "SHUTDOWNCMD", OURS) == after  # a rerun: the same


def test_a_second_directive_after_ours_has_no_empty_line_between() -> None:
    text = nutconf.set_directive(BARE, "SHUTDOWNCMD", OURS)
    text = nutconf.set_directive(text, "NOTIFYCMD", f"NOTIFYCMD {UPSSCHED}")
    assert text.endswith(f"{OURS}\n{marker('NOTIFYCMD')}\nNOTIFYCMD {UPSSCHED}\n")


def configured(text: str) -> str:
    """What --configure-upsmon makes of a file: SHUTDOWNCMD, then NOTIFYCMD and NOTIFYFLAG."""
    text = nutconf.set_directive(text, "SHUTDOWNCMD", OURS)
    if nutconf.notify_conflict(text) is None:
        text, _ = nutconf.set_notify(text, UPSSCHED)
    return text


@pytest.mark.parametrize("name", ["debian", "rhel", "admins-notifycmd", "bare", "crlf"])
def test_take_out_gives_back_the_file_as_it_was(name: str) -> None:
    before = SHAPES[name]
    after = configured(before)
    assert after != before
    assert nutconf.has_marker(after, ["SHUTDOWNCMD"])
    assert nutconf.take_out(after, nutconf.OUR_KEYWORDS) == before
    # the early shutdown alone taken out (UPS_EARLY_SHUTDOWN=0): SHUTDOWNCMD stays ours
    only_shutdowncmd = nutconf.take_out(after, nutconf.NOTIFY_KEYWORDS)
    assert nutconf.active(only_shutdowncmd, "SHUTDOWNCMD") == [OURS]
    assert not nutconf.has_marker(only_shutdowncmd, nutconf.NOTIFY_KEYWORDS)
    assert nutconf.take_out(only_shutdowncmd, ["SHUTDOWNCMD"]) == before


@pytest.mark.parametrize("name", list(SHAPES))
def test_take_out_without_our_lines_changes_nothing(name: str) -> None:
    assert nutconf.take_out(SHAPES[name], nutconf.OUR_KEYWORDS) == SHAPES[name]


def test_take_out_leaves_an_admins_was_line_of_another_keyword() -> None:
    text = "#esxi-suspend-was: POLLFREQ 5\n"
    assert nutconf.take_out(text, nutconf.OUR_KEYWORDS) == text


def test_a_crlf_file_stays_crlf() -> None:
    after = configured(CRLF)
    assert "\n" not in after.replace("\r\n", "")
    assert after.endswith(f"{OURS}\r\n") or after.endswith("EXEC\r\n")
    assert nutconf.active(after, "NOTIFYCMD") == [f"NOTIFYCMD {UPSSCHED}"]


SET_NOTIFY = [
    (
        "debian: nothing set, all appended",
        DEBIAN,
        [f"NOTIFYCMD {UPSSCHED}", "NOTIFYFLAG ONBATT SYSLOG+EXEC", "NOTIFYFLAG ONLINE SYSLOG+EXEC"],
        [
            ("changed", f"NOTIFYCMD {UPSSCHED}"),
            ("changed", "NOTIFYFLAG ONBATT SYSLOG+EXEC"),
            ("changed", "NOTIFYFLAG ONLINE SYSLOG+EXEC"),
        ],
    ),
    (
        "rhel: existing flags keep theirs and get EXEC",
        RHEL,
        [
            "NOTIFYFLAG ONLINE SYSLOG+WALL+EXEC",
            "NOTIFYFLAG ONBATT SYSLOG+WALL+EXEC",
            f"NOTIFYCMD {UPSSCHED}",
        ],
        [
            ("changed", f"NOTIFYCMD {UPSSCHED}"),
            ("changed", "NOTIFYFLAG ONBATT SYSLOG+WALL+EXEC, was: NOTIFYFLAG ONBATT\tSYSLOG+WALL"),
            ("changed", "NOTIFYFLAG ONLINE SYSLOG+WALL+EXEC, was: NOTIFYFLAG ONLINE\tSYSLOG+WALL"),
        ],
    ),
    (
        "IGNORE goes: it would stop EXEC",
        "NOTIFYFLAG ONBATT IGNORE\nNOTIFYFLAG ONLINE EXEC\n",
        ["NOTIFYFLAG ONBATT EXEC", "NOTIFYFLAG ONLINE EXEC", f"NOTIFYCMD {UPSSCHED}"],
        [
            ("changed", f"NOTIFYCMD {UPSSCHED}"),
            ("changed", "NOTIFYFLAG ONBATT EXEC, was: NOTIFYFLAG ONBATT IGNORE"),
        ],
    ),
    (
        "upssched already there: kept",
        "NOTIFYCMD /sbin/upssched\nNOTIFYFLAG ONBATT SYSLOG+EXEC\nNOTIFYFLAG ONLINE EXEC\n",
        ["NOTIFYCMD /sbin/upssched", "NOTIFYFLAG ONBATT SYSLOG+EXEC", "NOTIFYFLAG ONLINE EXEC"],
        [("kept", "NOTIFYCMD runs upssched on ONBATT and ONLINE")],
    ),
    (
        "two lines for one event: left, the other still set",
        "NOTIFYFLAG ONBATT SYSLOG\nNOTIFYFLAG ONBATT WALL\n",
        [
            "NOTIFYFLAG ONBATT SYSLOG",
            "NOTIFYFLAG ONBATT WALL",
            f"NOTIFYCMD {UPSSCHED}",
            "NOTIFYFLAG ONLINE SYSLOG+EXEC",
        ],
        [
            ("changed", f"NOTIFYCMD {UPSSCHED}"),
            ("left", "2 NOTIFYFLAG ONBATT lines: keep one, with +EXEC in its flags"),
            ("changed", "NOTIFYFLAG ONLINE SYSLOG+EXEC"),
        ],
    ),
    (
        "ours, with another upssched path: replaced",
        f"{marker('NOTIFYCMD')}\nNOTIFYCMD /sbin/upssched\n"
        "NOTIFYFLAG ONBATT EXEC\nNOTIFYFLAG ONLINE EXEC\n",
        [f"NOTIFYCMD {UPSSCHED}", "NOTIFYFLAG ONBATT EXEC", "NOTIFYFLAG ONLINE EXEC"],
        [("changed", f"NOTIFYCMD {UPSSCHED}, was: NOTIFYCMD /sbin/upssched")],
    ),
]


@pytest.mark.parametrize(
    ("before", "notify_lines", "said"),
    [row[1:] for row in SET_NOTIFY],
    ids=[row[0] for row in SET_NOTIFY],
)
def test_set_notify(before: str, notify_lines: list[str], said: list[tuple[str, str]]) -> None:
    after, told = nutconf.set_notify(before, UPSSCHED)
    active = [
        line.replace("\t", " ") for line in nutconf.lines_of(after) if line.startswith("NOTIFY")
    ]
    assert active == notify_lines
    assert told == said
    again, told_again = nutconf.set_notify(after, UPSSCHED)
    assert again == after  # a rerun changes nothing
    assert all(verb != "changed" for verb, _ in told_again)


@pytest.mark.parametrize(
    ("text", "conflict"),
    [
        (DEBIAN, None),  # none set
        (ADMINS_NOTIFYCMD, 'NOTIFYCMD "/usr/local/bin/page-me --quiet"'),
        ("NOTIFYCMD /sbin/upssched\n", None),  # upssched already: nothing to fight over
        ('NOTIFYCMD "/usr/sbin/upssched"\n', None),
        ("NOTIFYCMD /sbin/upssched\nNOTIFYCMD /bin/other\n", "NOTIFYCMD /sbin/upssched"),
        (f"{marker('NOTIFYCMD')}\nNOTIFYCMD /sbin/upssched\n", None),  # ours
        ("NOTIFYCMD /usr/local/bin/not-upssched.sh\n", "NOTIFYCMD /usr/local/bin/not-upssched.sh"),
    ],
)
def test_an_admins_notifycmd_is_a_conflict(text: str, conflict: str | None) -> None:
    assert nutconf.notify_conflict(text) == conflict


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("SYSLOG", "SYSLOG+EXEC"),
        ("SYSLOG+WALL", "SYSLOG+WALL+EXEC"),
        ("SYSLOG+EXEC", None),
        ("EXEC", None),
        ("IGNORE", "EXEC"),
        ("", "EXEC"),
        ("SYSLOG++WALL", "SYSLOG+WALL+EXEC"),
    ],
)
def test_with_exec(flags: str, expected: str | None) -> None:
    assert nutconf.with_exec(flags) == expected


@pytest.mark.parametrize(
    ("command", "env_file", "line"),
    [
        ("/usr/local/sbin/esxi-suspend", None, OURS),
        (
            "/tmp/t/usr/local/sbin/esxi-suspend",
            "/tmp/t/etc/esxi-suspend/esxi-suspend.env",
            'SHUTDOWNCMD "/tmp/t/usr/local/sbin/esxi-suspend shutdown --env-file '
            '/tmp/t/etc/esxi-suspend/esxi-suspend.env"',
        ),
        (
            "/tmp/a b/esxi-suspend",
            "/tmp/a b/x.env",
            "SHUTDOWNCMD \"'/tmp/a b/esxi-suspend' shutdown --env-file '/tmp/a b/x.env'\"",
        ),
    ],
)
def test_shutdowncmd(command: str, env_file: str | None, line: str) -> None:
    assert nutconf.shutdowncmd(command, env_file) == line


SAMPLE = """\
# a comment
CMDSCRIPT /usr/local/lib/esxi-suspend/upssched-cmd
PIPEFN /run/nut/upssched.pipe
LOCKFN /run/nut/upssched.lock

AT ONBATT * START-TIMER early-shutdown 300
AT ONLINE * CANCEL-TIMER early-shutdown
"""


def test_upssched_conf_is_rendered_read_back_and_recognised() -> None:
    text = nutconf.render_upssched_conf(SAMPLE, "/t/upssched-cmd", 45, "")
    assert text.splitlines()[0] == nutconf.SCHED_MARKER
    assert "CMDSCRIPT /t/upssched-cmd\n" in text
    assert nutconf.timer_seconds(text) == 45
    assert nutconf.is_ours(text) and nutconf.schedules(text)
    assert nutconf.replaced_copy(text) == nutconf.replaced_note(text) == ""
    replacing = nutconf.render_upssched_conf(
        SAMPLE, "/t/upssched-cmd", 45, f"{nutconf.SCHED_REPLACED}/etc/nut/upssched.conf.copy"
    )
    assert nutconf.replaced_copy(replacing) == "/etc/nut/upssched.conf.copy"
    assert nutconf.replaced_note(replacing).startswith(nutconf.SCHED_REPLACED)


@pytest.mark.parametrize(
    ("text", "ours", "schedules", "seconds"),
    [
        (
            "# Network UPS Tools - upssched.conf sample file\nCMDSCRIPT /bin/upssched-cmd\n",
            False,
            False,
            None,
        ),
        ("CMDSCRIPT /x\nAT COMMBAD * START-TIMER upsgone 10\n", False, True, None),
        ("AT ONBATT * START-TIMER early-shutdown 60 # one minute\r\n", False, True, 60),
        ("  AT\tONBATT\tups@host\tSTART-TIMER early-shutdown 7\n", False, True, 7),
        ("# AT ONBATT * START-TIMER early-shutdown 60\n", False, False, None),
        (
            f"{nutconf.SCHED_MARKER}\r\nAT ONLINE * CANCEL-TIMER early-shutdown\r\n",
            True,
            True,
            None,
        ),
    ],
)
def test_upssched_conf_shapes(text: str, ours: bool, schedules: bool, seconds: int | None) -> None:
    assert nutconf.is_ours(text) == ours
    assert nutconf.schedules(text) == schedules
    assert nutconf.timer_seconds(text) == seconds


def test_manual_lines_name_both_files_and_only_the_directives() -> None:
    rendered = nutconf.render_upssched_conf(SAMPLE, "/t/upssched-cmd", 300)
    lines = nutconf.manual_lines(UPSSCHED, "/etc/nut/upssched.conf", rendered, "/t/upssched-cmd")
    assert lines[:4] == [
        "in upsmon.conf (one NOTIFYCMD only; on existing NOTIFYFLAG lines add +EXEC):",
        f"  NOTIFYCMD {UPSSCHED}",
        "  NOTIFYFLAG ONBATT SYSLOG+EXEC",
        "  NOTIFYFLAG ONLINE SYSLOG+EXEC",
    ]
    assert lines[5:] == [
        "  CMDSCRIPT /t/upssched-cmd",
        "  PIPEFN /run/nut/upssched.pipe",
        "  LOCKFN /run/nut/upssched.lock",
        "  AT ONBATT * START-TIMER early-shutdown 300",
        "  AT ONLINE * CANCEL-TIMER early-shutdown",
    ]
