"""Property-based tests of every parser of host output (hypothesis).

Whatever a host prints: no exception but our own ParseError (parse_summary: none at all), and
every VM id is a decimal integer written, as is, in the input (never made up, never read from
non-ASCII digits).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from esxi_suspend.host import esxi
from esxi_suspend.host.autostart import parse_autostartseq, parse_defaults
from esxi_suspend.host.vmlist import Vm, parse_getallvms
from esxi_suspend.host.vmstate import PowerState, VmSummary, parse_power_state, parse_summary

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
        "Skipping invalid VM '7'", "\r\n", "@@vms", "@@summary 7", "@@summary ٣",
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
@example("Skipping invalid VM '3'\r\nSkipping invalid VM '4'\r\n")  # a host of invalid VMs
def test_getallvms_ids_come_from_the_input(text: str) -> None:
    try:
        vms = parse_getallvms(text)
    except esxi.ParseError:
        return
    ids = [vm.vmid for vm in vms]
    assert len(ids) == len(set(ids))
    assert set(ids) <= _ascii_integers_at_line_starts(text), (ids, text)
    for vm in vms:
        assert esxi.power_getstate(vm.vmid) == f"vim-cmd vmsvc/power.getstate {vm.vmid}"


def _parsed_or_error(text: str) -> list[Vm] | str:
    try:
        return parse_getallvms(text)
    except esxi.ParseError as exc:
        return str(exc)


@FUZZ
@given(HOSTILE_TEXT)
@example("Vmid\n1 a  [d] a.vmx g vmx-1 x\r\n\r\nmore\r\n\r\n")
def test_crlf_changes_nothing(text: str) -> None:
    """CRLF line ends read as LF ones, in a listing and in the marked sections around it."""
    crlf = text.replace("\n", "\r\n")
    assert _parsed_or_error(crlf) == _parsed_or_error(text)
    assert esxi.split_marked(crlf) == esxi.split_marked(text)
    for key in esxi.split_marked(text):
        assert re.fullmatch(r"[a-z]+( [0-9]{1,9})?", key)


@FUZZ
@given(HOSTILE_TEXT)
@example("(vim.host.AutoStartManager.AutoPowerInfo) {\n key = 'vim.VirtualMachine:٣',\n}\n")
def test_autostartseq_ids_come_from_the_input(text: str) -> None:
    try:
        entries = parse_autostartseq(text)
    except esxi.ParseError:
        return
    written = {int(m) for m in re.findall(r"vim\.VirtualMachine:([0-9]{1,9})", text)}
    assert {entry.vmid for entry in entries} <= written, text


@FUZZ
@given(HOSTILE_TEXT)
@example("stopAction = x\nstopDelay = ١٢٠\n")
def test_defaults_parse_or_refuse(text: str) -> None:
    try:
        defaults = parse_defaults(text)
    except esxi.ParseError:
        return
    assert str(defaults.stop_delay) in text or str(-defaults.stop_delay) in text


@FUZZ
@given(HOSTILE_TEXT)
def test_power_state_parse_or_refuse(text: str) -> None:
    try:
        state = parse_power_state(text)
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
        parsed = parse_getallvms("\n".join(lines) + "\n")
    except esxi.ParseError:
        return
    assert [vm.vmid for vm in parsed] == [vmid for vmid, _name in vms]


# get.summary: the pieces its output is made of, and the free text a VM's owner or its guest
# chooses (name, annotation, guest host name), which may imitate any of them.
SUMMARY_PIECES = st.sampled_from(
    [
        "\n", "\r\n", " ", "   ", '"', '",', ",", "{", "}", "},", "[", "]", "(", ")", "=",
        "Listsummary:", "(vim.vm.Summary) {", "runtime = (vim.vm.RuntimeInfo) {",
        "guest = (vim.vm.Summary.GuestSummary) {", "config = (vim.vm.Summary.ConfigSummary) {",
        "device = (vim.vm.DeviceRuntimeInfo) [", "(vim.vm.DeviceRuntimeInfo) {",
        'powerState = "poweredOn",', 'powerState = "poweredOff",', 'powerState = "suspended"',
        "powerState = ", '"poweredOff', 'toolsRunningStatus = "guestToolsRunning",',
        "toolsRunningStatus = ", 'uuid = "564d0000-0000-0000-0000-0000000000ff",',
        'instanceUuid = "52aa0000-0000-0000-0000-000000000000",', "uuid = ", "<unset>",
        'annotation = "', 'name = "', "Ünïcode", "\x85", "\u2028", "٣",
    ]
)  # fmt: skip
SUMMARY_TEXT = st.one_of(
    st.lists(st.one_of(SUMMARY_PIECES, st.text(max_size=8)), max_size=80).map("".join),
    HOSTILE_TEXT,
)
STATES = {
    "poweredOn": PowerState.ON,
    "poweredOff": PowerState.OFF,
    "suspended": PowerState.SUSPENDED,
}
TOOLS = ["guestToolsRunning", "guestToolsNotRunning", "guestToolsExecutingScripts"]


def summary(state: str, tools: str, uuid: str, name: str, annotation: str, host: str) -> str:
    """get.summary as a host prints it, the free text put in as is (no escaping assumed)."""
    return (
        "Listsummary:\n\n(vim.vm.Summary) {\n"
        "   vm = 'vim.VirtualMachine:7',\n"
        "   runtime = (vim.vm.RuntimeInfo) {\n"
        "      device = (vim.vm.DeviceRuntimeInfo) [],\n"
        '      connectionState = "connected",\n'
        f'      powerState = "{state}",\n'
        "      question = (vim.vm.QuestionInfo) null\n"
        "   },\n"
        "   guest = (vim.vm.Summary.GuestSummary) {\n"
        f'      toolsRunningStatus = "{tools}",\n'
        f'      hostName = "{host}",\n'
        "   },\n"
        "   config = (vim.vm.Summary.ConfigSummary) {\n"
        f'      name = "{name}",\n'
        f'      vmPathName = "[ds1] {name}/{name}.vmx",\n'
        f'      uuid = "{uuid}",\n'
        f'      instanceUuid = "52{uuid[2:]}",\n'
        f'      annotation = "{annotation}",\n'
        "   },\n"
        "   quickStats = (vim.vm.Summary.QuickStats) {\n"
        '      guestHeartbeatStatus = "green"\n'
        "   }\n"
        "}\n"
    )


@FUZZ
@given(SUMMARY_TEXT)
@example('runtime = (x) {\npowerState = "poweredOn"\n}\nannotation = "\n')
@example('config = (x) {\nuuid = "ZZZZ564d0000000000000000000000000000"\n}\n')
def test_summary_never_raises(text: str) -> None:
    result = parse_summary(text)
    if result.state is not None:
        written = next(key for key, value in STATES.items() if value is result.state)
        assert re.search(rf'powerState\s*=\s*"{written}"', text, re.ASCII), text
    if result.tools_running is not None:
        assert re.search(r'toolsRunningStatus\s*=\s*"', text, re.ASCII), text
    if result.bios_uuid is not None:
        assert re.fullmatch(r"[0-9a-f]{32}", result.bios_uuid)
        assert result.bios_uuid in re.sub(r"[^0-9a-f]", "", text.lower())


SINGLE_LINE = st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=30)


@FUZZ
@given(
    st.sampled_from(sorted(STATES)),
    st.sampled_from(TOOLS),
    st.uuids().map(str),
    SINGLE_LINE,
    SINGLE_LINE,
    SINGLE_LINE,
    st.booleans(),
)
def test_summary_reads_back_what_a_host_prints(
    state: str, tools: str, uuid: str, name: str, annotation: str, host: str, upper: bool
) -> None:
    """Free text on one line, whatever it imitates, changes nothing."""
    uuid = uuid.upper() if upper else uuid
    result = parse_summary(summary(state, tools, uuid, name, annotation, host))
    assert result == VmSummary(
        STATES[state], tools == "guestToolsRunning", uuid.replace("-", "").lower()
    )


@FUZZ
@given(
    st.sampled_from(sorted(STATES)),
    st.sampled_from(TOOLS),
    st.uuids().map(str),
    SUMMARY_TEXT,
    SUMMARY_TEXT,
    SUMMARY_TEXT,
)
@example(
    "poweredOn",
    "guestToolsNotRunning",
    "564d0000-0000-0000-0000-000000000001",
    'x",\n   },\n   runtime = (vim.vm.RuntimeInfo) {\n      powerState = "poweredOff',
    'a\n      uuid = "564d0000-0000-0000-0000-0000000000ff",\n   foo = (t) {\n b',
    'h",\n      toolsRunningStatus = "guestToolsRunning',
)
def test_summary_free_text_never_stands_in_for_a_field(
    state: str, tools: str, uuid: str, name: str, annotation: str, host: str
) -> None:
    """Free text over several lines may make a field unknown, never give it another value."""
    result = parse_summary(summary(state, tools, uuid, name, annotation, host))
    assert result.state in (STATES[state], None)
    assert result.tools_running in (tools == "guestToolsRunning", None)
    assert result.bios_uuid in (uuid.replace("-", ""), None)
