"""Everything said to an ESXi host and read back: the command lines, the parsers of what the
host prints, the inventory, the plan (pure), the host script (a small language we emit), the
sequence that starts and follows it, and one host's whole shutdown.

May import: ssh, settings, machine and the spine's bottom (errors, logs, clock, lock). Never
nut, power, setup, demo or simulator.

    esxi.py        the command lines we send and the markers that cut their output apart
    vmlist.py      the parser of `vim-cmd vmsvc/getallvms`
    vmstate.py     one VM's power state, VMware Tools and BIOS UUID (`get.summary`)
    autostart.py   the autostart manager's defaults and sequence
    processlist.py which VMs run, from one call (`esxcli vm process list`, 5.0+)
    inventory.py   what is on a host now, read in one round trip
    plan.py        the shutdown plan: phases of VM stop actions within the deadline (pure)
    script.py      the busybox ash script that carries the plan out on the host (pure)
    report.py      the plan in words: log lines, and the report `check` prints
    keycheck.py    `check`'s read-only look at our key's line: its restrictions on the host
    sequence.py    start the host script detached, follow its log
    shutdown.py    one host's steps: inventory, plan, sequence; or the plain path
    rehearsal.py   `check`'s read-only rehearsal on the host: busybox, latency, a detached job,
                   the host script with stand-ins for every state-changing command
    capture.py     `check --capture`: what a check saw, as a file (a fleet `demo` replays)
"""
