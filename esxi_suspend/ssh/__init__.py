"""The SSH side: the only importer of fabric and paramiko. A key-only connection with the host
key pinned (the shutdown path), and the password logins of the setting-up commands.

May import: settings and the spine's bottom. The shutdown path never imports logins.py.

    remote.py      the key-only connection to one host and the commands run on it
    hostkeys.py    the pinned known_hosts file: how a host is recognised before anything is sent
    keyline.py     our key's line in authorized_keys: the restrictions each SSH server takes
    logins.py      the setting-up sessions: a key exchange alone (`trust`), a password (`enroll`)
"""
