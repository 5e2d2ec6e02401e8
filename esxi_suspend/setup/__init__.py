"""Setting up, by hand and never on upsmon's path: `trust` (pin a host key after the admin says
yes), `enroll` (authorize our key once, by password), where an authorized key lasts on each ESXi
release, which host a command means, and `install` (install.sh's work once the venv is made).

May import: ssh (logins included), settings, machine and the spine's bottom; never nut or host.

    commands.py    the parsers, help texts and runner of `trust`, `enroll` and `install`
    trust.py       show the host key, pin it after a yes
    enroll.py      authorize our public key on the host
    authkeys.py    the authorized keys file of each ESXi release
    target.py      which host, user and port a setting-up command means
    install.py     install.sh's second half: command link, man page, /etc/esxi-suspend and its
                   key, then NUT's steps; --uninstall
    nutsteps.py    the installer's NUT steps: SHUTDOWNCMD, the early shutdown (upssched)
    files.py       the installer's paths (under --root or not), its report, careful file edits
    nutconf.py     upsmon.conf and upssched.conf as text: find, set, take out our lines (pure)
"""
