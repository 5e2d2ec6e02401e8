"""`check`'s rehearsal text can change nothing on a host: every state-changing command of the
host script is a stand-in, written at the one place the script writes host commands; and
what the probes print is read right."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from test_evidence_ledger import commands
from test_plan import FLEET
from test_shutdown import SETTINGS

from esxi_suspend.host import esxi
from esxi_suspend.host.plan import ShutdownPlan, make_plan
from esxi_suspend.host.rehearsal import (
    APPLET_TRIALS,
    LATENCY_CALLS,
    Rehearsal,
    _busybox,
    _latency,
    cleanup_command,
    probe_command,
)
from esxi_suspend.host.script import (
    REHEARSAL_OVER,
    STAND_IN,
    log_path,
    rehearsal_script,
    sequence_script,
)


def plans() -> list[ShutdownPlan]:
    found = []
    for strategy in ("autostop", "parallel"):
        for self_vm in (None, 1):
            settings = replace(SETTINGS, strategy=strategy)
            found.append(make_plan(FLEET, settings, self_vm=self_vm))
            found.append(make_plan(FLEET, replace(settings, deadline=30), self_vm=self_vm))
    return found


def unquoted(text: str) -> str:
    return re.sub(r'"[^"]*"', '""', text)


@pytest.mark.parametrize("plan", plans())
def test_the_rehearsal_cannot_reach_a_state_changing_command(plan: ShutdownPlan) -> None:
    text = rehearsal_script(plan)
    real = sequence_script(plan)
    assert "vmsvc/power." in real and "poweroff" in commands(real)  # what is taken out
    assert "vmsvc/power" not in text  # not even power.getstate: no vim-cmd vmsvc/power.* at all
    assert "autostartmanager" not in text
    # `poweroff` and `autostop` only as words inside our own echo texts (or the name of a
    # file of ours, `$q.done`), never as a command
    assert not re.search(r"(?<![.\w])(poweroff|autostop)\b", unquoted(text)), unquoted(text)
    assert "poweroff" not in commands(text)
    # vim-cmd only in `call`'s body, and `call` is never called; `held` only by `call`
    assert [ln.strip() for ln in text.splitlines() if "vim-cmd" in ln] == [
        'call() { held vim-cmd "$@"; }'
    ]
    assert not re.findall(r"\bcall\b(?!\(\))", unquoted(text))
    assert re.findall(r"\bheld\b(?!\(\))", unquoted(text)) == ["held"]
    assert STAND_IN in text and text.endswith(f'echo "$P {REHEARSAL_OVER}"')


@pytest.mark.parametrize("plan", plans())
def test_the_rehearsal_is_the_same_script(plan: ShutdownPlan) -> None:
    """Line for line the host script, but for its stand-ins, its budgets (1 s), its looks
    (every second) and its deadline; four lines more at its end."""
    text = rehearsal_script(plan).splitlines()
    real = sequence_script(plan).splitlines()
    assert len(text) == len(real) + 4
    numbers = re.compile(r"\d+")
    differ = [
        (a, b)
        for a, b in zip(real, text)
        if a != b
        and "call " not in a
        and "poweroff" not in a
        and numbers.sub("N", a) != numbers.sub("N", b)
    ]
    assert differ == []


def test_the_probes_and_the_clean_up_change_nothing() -> None:
    for text in (probe_command(7), cleanup_command(7, log_path(1, 2))):
        assert not re.search(r"\b(poweroff|autostop)\b|vmsvc/power", text)
        assert [ln for ln in text.splitlines() if "vim-cmd" in ln] in (
            [],
            [f"{esxi.GETALLVMS} > /dev/null 2>&1"] * LATENCY_CALLS,
        )


def test_the_busybox_probe_names_what_is_missing() -> None:
    done = Rehearsal()
    applets = "\n".join(f"{name} {127 if name == 'tail' else 0}" for name, _ in APPLET_TRIALS)
    _busybox(done, {"busybox": "BusyBox v1.20.2 (2012-12-11)", "applets": applets + "\nnohup 127"})
    (probe,) = done.probes
    assert not probe.ok
    assert probe.detail.startswith(
        "BusyBox v1.20.2 (2012-12-11); missing or failing: tail (exit 127)"
    )
    assert "check --capture" in probe.detail
    done = Rehearsal()
    applets = "\n".join(f"{name} 0" for name, _ in APPLET_TRIALS)
    _busybox(done, {"busybox": "", "applets": applets + "\nnohup 127"})
    assert done.probes[0].ok
    assert "nohup missing (the script does without)" in done.probes[0].detail


def test_the_latency_probe_times_each_call_and_fails_on_a_fault() -> None:
    done = Rehearsal()
    _latency(
        done,
        [("busybox", 0.0), ("latency", 1.0), ("call 0", 1.5), ("call 0", 2.25), ("call 0", 3.0)],
    )
    assert done.latencies == [0.5, 0.75, 0.75] and done.probes[0].ok
    assert done.probes[0].detail == "0.67 s a call (0.50, 0.75, 0.75 s)"
    done = Rehearsal()
    _latency(done, [("latency", 1.0), ("call 1", 1.5)])
    assert not done.probes[0].ok
    assert "hostd is not answering" in done.probes[0].detail
