"""ESXi's autostart manager stopping its sequence: `hostsvc/autostartmanager/autostop`.

Apart from `host.py` because it is a policy over the host's operations, not state of its own:
which VMs, in which order, each with which stop action and how long to wait for it. It only
calls `HostModel`'s public operations, one VM after another, as hostd does.
"""

from __future__ import annotations

from typing import Callable

from esxi_suspend.simulator.host import HostModel, Job
from esxi_suspend.simulator.vm import ON, Vm, VmOperationError


def _stopped(vm: Vm) -> Callable[[], bool]:
    return lambda: vm.power != ON


def autostop_sequence(host: HostModel) -> list[Vm]:
    """The VMs in the autostart sequence in the order autostop stops them: the reverse
    of the start order (as ESXi documents: shutdown order is the reverse of startup)."""
    listed = [vm for vm in host.vms.values() if vm.spec.start_order is not None]
    listed.sort(key=lambda vm: (vm.spec.start_order or 0, vm.spec.vmid), reverse=True)
    return listed


def autostop(host: HostModel, job: Job) -> None:
    """`hostsvc/autostartmanager/autostop`: sequential, each VM's stop action and delay."""
    session = job.session
    sequence = autostop_sequence(host)
    if not host.fleet.autostart_enabled:
        host.record("autostop", "autostop: autostart manager disabled: nothing stopped", session)
        return
    host.record("autostop", f"autostop: started ({len(sequence)} VM(s) in the sequence)", session)
    for vm in sequence:
        host.check(job)
        host.settle()
        action, delay = host.effective_stop(vm.spec)
        if vm.power != ON:
            host.record(
                "autostop",
                f"autostop: {vm.label}: {vm.power.lower()}, skipped",
                session,
                vm.spec.vmid,
            )
            continue
        kind = action.lower()
        host.record(
            "autostop",
            f"autostop: {vm.label}: {action}, waits up to {delay} s",
            session,
            vm.spec.vmid,
        )
        try:
            if kind == "guestshutdown":
                host.guest_shutdown(vm, session)
                if not host.sleep(delay, job, until=_stopped(vm)):
                    host.record(
                        "autostop",
                        f"autostop: {vm.label}: still running after "
                        f"its stop delay ({delay} s); moving on",
                        session,
                        vm.spec.vmid,
                    )
            elif kind == "suspend":
                host.suspend(vm, job)
            elif kind == "poweroff":
                host.power_off_vm(vm, job)
            else:
                host.record(
                    "autostop",
                    f"autostop: {vm.label}: stop action {action}: left running",
                    session,
                    vm.spec.vmid,
                )
        except VmOperationError as exc:
            reason = exc.args[0].split('msg = "')[-1].split('"')[0]
            host.record(
                "autostop",
                f"autostop: {vm.label}: {action} failed: {reason}; left running",
                session,
                vm.spec.vmid,
            )
    host.record("autostop", "autostop: finished", session)
