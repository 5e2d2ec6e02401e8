"""NUT's side of an outage: the UPS status (`upsc`, bounded), the early shutdown, the deadline
from the battery, one shutdown per outage and its record, the wait for power, and the restart
of the local NUT services that re-arms monitoring.

May import: host (one host's shutdown), power (the wake), ssh, settings, machine and the spine's
bottom.

    ups.py         which UPSes this machine watches, their status, the wait for power
    early.py       is upssched's early-shutdown timer set as UPS_EARLY_SHUTDOWN says?
    deadline.py    ESXI_DEADLINE=auto: the battery's estimate minus a margin
    outage.py      one shutdown per outage: hosts already off left alone, the wake
    record.py      the outage record: the hosts this machine powered off, under /run
    powerback.py   power back: the detached wait for steady mains and battery, then the wake
    service.py     restarting the NUT monitor; clearing a forced-shutdown flag
"""
