"""Property-based tests of every parser of host output (hypothesis).

Whatever a host prints: no exception but our own ParseError, and every VM id is a decimal
integer written, as is, in the input (never made up, never read from non-ASCII digits).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from esxi_suspend import esxi

# Text built from the pieces real output is made of, and from anything at all.
PIECES = st.sampled_from(
    [
        "Vmid", "Name", "  ", " ", "\n", "\t", "[", "]", "[datastore1] ", ".vmx", "vmx-13",
        "1", "12", "007", "123456789", "1234567890", "-1", "٣", "१२", "\u2028", "\x85", "\x1c",
        "otherGuest", "$(reboot)", ";", "'", '"', "{", "}", "=", ",", "(", ")",
        "vim.VirtualMachine:", "key = ", "startOrder = ", "stopDelay = ", "stopAction = ",
        "(vim.host.AutoStartManager.AutoPowerInfo) {",
        "(vim.host.AutoStartManager.AutoPowerInfo) [",
        "Powered on", "Powered off", "Suspended", "Retrieved runtime info", "Ünïcode", "日本",
        "Skipping invalid VM '7'",
    ]
)  # fmt: skip
HOSTILE_TEXT = st.one_of(
    st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=60).map("".join),
    st.text(max_size=400),
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ascii_integers_at_line_starts(text: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"(?m)^[^\S\n]*([0-9]{1,9})\s", text, re.ASCII)}


@FUZZ
@given(HOSTILE_TEXT)
@example("١٢     evil   [ds] e/e.vmx   otherGuest   vmx-13\n")  # Arabic-Indic digits
@example("Vmid Name\n1 a [x] y.vmx g vmx-1\n1 b [x] z.vmx g vmx-1\n")  # an id listed twice
def test_getallvms_ids_come_from_the_input(text: str) -> None:
    try:
        vms = esxi.parse_getallvms(text)
    except esxi.ParseError:
        return
    ids = [vm.vmid for vm in vms]
    assert len(ids) == len(set(ids))
    assert set(ids) <= _ascii_integers_at_line_starts(text), (ids, text)
    for vm in vms:
        assert esxi.power_getstate(vm.vmid) == f"vim-cmd vmsvc/power.getstate {vm.vmid}"


@FUZZ
@given(HOSTILE_TEXT)
@example("(vim.host.AutoStartManager.AutoPowerInfo) {\n key = 'vim.VirtualMachine:٣',\n}\n")
def test_autostartseq_ids_come_from_the_input(text: str) -> None:
    try:
        entries = esxi.parse_autostartseq(text)
    except esxi.ParseError:
        return
    written = {int(m) for m in re.findall(r"vim\.VirtualMachine:([0-9]{1,9})", text)}
    assert {entry.vmid for entry in entries} <= written, text


@FUZZ
@given(HOSTILE_TEXT)
@example("stopAction = x\nstopDelay = ١٢٠\n")
def test_defaults_parse_or_refuse(text: str) -> None:
    try:
        defaults = esxi.parse_defaults(text)
    except esxi.ParseError:
        return
    assert str(defaults.stop_delay) in text or str(-defaults.stop_delay) in text


@FUZZ
@given(HOSTILE_TEXT)
def test_power_state_parse_or_refuse(text: str) -> None:
    try:
        state = esxi.parse_power_state(text)
    except esxi.ParseError:
        return
    assert state.value in text


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=999_999_999),
            st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]),
                    min_size=1, max_size=30).map(str.strip).filter(bool),
        ),
        max_size=8,
        unique_by=lambda vm: vm[0],
    )
)  # fmt: skip
def test_getallvms_reads_back_what_a_host_lists(vms: list[tuple[int, str]]) -> None:
    """Well-formed listings with any printable names: every VM read back with its id."""
    lines = ["Vmid   Name   File   Guest OS   Version   Annotation"]
    lines += [f"{vmid:<6} {name}   [ds1] v{vmid}/v.vmx   otherGuest   vmx-13" for vmid, name in vms]
    try:
        parsed = esxi.parse_getallvms("\n".join(lines) + "\n")
    except esxi.ParseError:
        return
    assert [vm.vmid for vm in parsed] == [vmid for vmid, _name in vms]
