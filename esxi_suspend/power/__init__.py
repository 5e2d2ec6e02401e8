"""Hosts back on when power returns (Wake-on-LAN, or IPMI for a host with a BMC), and the BMC's
other work in an outage: the power button when SSH is gone, the power state that confirms a
host off, `check`'s look at it.

May import: ssh (a host's SSH port answering), settings, machine and the spine's bottom.

    wake.py        magic packets, `esxi-suspend wake`, the wait for the hosts to answer; per
                   host, IPMI or Wake-on-LAN
    ipmi.py        the IPMI client: ipmitool, bounded, the password in its environment only
    bmc.py         a host's BMC in an outage: power back, power button, confirmed off, check
"""
