"""Hosts back on when power returns: Wake-on-LAN.

May import: ssh (a host's SSH port answering), settings, machine and the spine's bottom.

    wake.py        magic packets, `esxi-suspend wake`, the wait for the hosts to answer
"""
