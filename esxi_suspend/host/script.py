"""The host sequence: the busybox ash script a host runs on its own to carry a plan out. Pure.

It runs detached from our session and drives itself: each phase moves on as soon as its VMs
are down (each VM watched by its own job), a watchdog powers the host off at the deadline
whatever still runs, and the final step suspends only the VMs still running. Built from
constants and integer VM ids only, never from host text; it uses functions, `while`, `for`,
`if`, `$(( ))`, `&`, `wait`, `grep`, `sleep` and nothing fancier. Every line it prints starts
with LOG_PREFIX; what a host command printed is marked HOST_TEXT after it.

Also the one command of a shutdown that carries it (`shutdown_command`): the inventory, the
script read on its input and started, its log streamed back.
"""

from __future__ import annotations

from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import HOST_TMP, inventory_command
from esxi_suspend.host.plan import Phase, ShutdownPlan

LOG_PREFIX = "esxi-suspend:"
HOST_TEXT = ">"  # after the prefix: a line a host command printed, never one of our events
HOST_LOG_PREFIX = f"{HOST_TMP}/esxi-suspend-"
# Seconds between two looks at a VM's power state, on the host's clock: each look is a
# `vim-cmd` (a hostd round trip), so a phase of many VMs looks every 2 s; one of at most
# SMALL_PHASE VMs looks every second, which is still no more than ~1.3 looks a second.
POLL_SECONDS = 2
SMALL_PHASE = 2
SMALL_PHASE_POLL_SECONDS = 1

# `say`: what a host command printed, one log line each, marked as the host's own text.
# `down ID`: the VM is off or suspended (an unreadable state counts as still running).
# `settle ID SECONDS EVERY`: wait until the VM is down, or the seconds are spent, looking
# every EVERY seconds; `t` is when the sequence started, on the host's clock.
_FUNCTIONS = f"""P={LOG_PREFIX}
say() {{ while read -r l; do echo "$P {HOST_TEXT} $l"; done; }}
down() {{ vim-cmd vmsvc/power.getstate $1 2>/dev/null | grep -q -e "Powered off" -e Suspended; }}
settle() {{
  e=$(( $(date +%s) + $2 ))
  while ! down $1; do
    if [ $(date +%s) -ge $e ]; then echo "$P VM $1 still running after $2 s"; return 1; fi
    sleep $3
  done
  echo "$P VM $1 down after $(( $(date +%s) - t )) s"
}}
t=$(date +%s)"""


# `$v` is one of our own VM ids: from the list the script itself holds.
_SUSPEND_V = "vim-cmd vmsvc/power.suspend $v 2>&1 | say"


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


def _phase(phase: Phase, number: int, total: int) -> list[str]:
    """Its VMs' stop commands at once, each job settling its own VM; or autostop, bounded."""
    budget = _seconds(phase.budget)
    what = "the autostart sequence" if phase.autostop else f"{len(phase.steps)} VM(s)"
    lines = [_echo(f"phase {number}/{total} {phase.label}: {what}")]
    if phase.autostop:
        late = _echo(f"autostop still running after {budget} s")
        lines += [
            f"{esxi.AUTOSTOP} 2>&1 | say &",
            "a=$!",
            f"e=$(( $(date +%s) + {budget} ))",
            "while kill -0 $a 2>/dev/null; do",
            f"  if [ $(date +%s) -ge $e ]; then {late}; break; fi",
            "  sleep 1",
            "done",
        ]
        return lines
    every = look_seconds(len(phase.steps))
    for step in phase.steps:
        vmid = esxi.vm_id(step.vmid)
        stop = f"{{ {step.command()}; }} 2>&1 | say"
        lines += [f"{{ {stop}; settle {vmid} {budget} {every}; }} &", f"w{vmid}=$!"]
    # A VM its job saw down needs no second look at the end; the others go on the list.
    lines += [f'wait $w{step.vmid} || r="$r {step.vmid}"' for step in phase.steps]
    return lines


def _final(plan: ShutdownPlan) -> list[str]:
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
            f"{_echo('VM $v still running: suspending it')}; {_SUSPEND_V}; fi; }} &",
            '  p="$p $!"',
            "done",
            'if [ -n "$p" ]; then wait $p; fi',
        ]
    else:
        lines = [_echo("final: the VMs still running are left to the host poweroff")]
    if plan.self_vm is not None:
        own = esxi.vm_id(plan.self_vm)
        words = _echo(f"final: suspending our own VM {own}")
        lines.append(f"down {own} || {{ {words}; {esxi.power_suspend(own)} 2>&1 | say; }}")
    return [*lines, _echo("host poweroff"), esxi.POWEROFF]


def sequence_script(plan: ShutdownPlan) -> str:
    """The whole sequence, on the host's clock; the watchdog ends it at `plan.deadline`."""
    deadline = _seconds(plan.deadline)
    lines = [
        'trap "" HUP',
        _FUNCTIONS,
        "r=",
        _echo(f"host sequence started: strategy {plan.strategy}, poweroff within {deadline} s"),
        f"( sleep {deadline}; {_echo('deadline reached: host poweroff')}; {esxi.POWEROFF} ) &",
    ]
    total = len(plan.phases)
    for number, phase in enumerate(plan.phases, start=1):
        lines += _phase(phase, number, total)
    lines += _final(plan)
    return "\n".join(lines)


# What the shutdown command prints after the inventory's sections, each on a marker line.
READY = "ready"  # the inventory is out: the host waits for the script on the command's input
STARTED = "started"  # the host sequence runs, detached; its log follows


def shutdown_command(token: int, log: str) -> str:
    """The one command of a shutdown: the inventory; then the script we make of it, read
    from the command's input, started detached (a child of init, as `( ... & )` leaves it);
    then the script's log, line by line as the host writes it (`tail -f`). With `wait` (a
    script that only powers the host off) the script runs in the command itself, and its log
    is printed once it is over.

    The script runs only if it arrived whole (its length is sent first): a session lost in the
    middle of sending it must never run half of it.
    """
    path = _checked(log)
    return f"""{inventory_command(token)}
echo "$m {READY}"
read -r mode size || exit 0
s=$(cat)
[ "${{#s}}" = "$size" ] || {{ echo "$m incomplete"; exit 1; }}
: >> "{path}"
n=
if command -v nohup >/dev/null 2>&1; then n=nohup; fi
echo "$m {STARTED}"
if [ "$mode" = wait ]; then
  $n sh -c "$s" >> "{path}" 2>&1 < /dev/null
  cat "{path}"
else
  ( $n sh -c "$s" >> "{path}" 2>&1 < /dev/null & )
  {follow_log(path)}
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


def follow_log(log: str) -> str:
    """The host's log from its first line, then each line as it is written (a new session's
    one command, after ours was lost)."""
    return f'tail -n 100000 -f "{_checked(log)}"'


def _checked(log: str) -> str:
    shaped = log.startswith(HOST_LOG_PREFIX) and log.endswith(".log")
    if not shaped or not all(ch.isalnum() or ch in "${}:-/_." for ch in log):
        raise ValueError("refusing an unexpected log path")
    return log


def log_path(stamp: int, pid: int) -> str:
    return f"{HOST_LOG_PREFIX}{int(stamp)}-{int(pid)}.log"
