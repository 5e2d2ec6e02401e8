#!/usr/bin/env bash
# install.sh: install esxi-suspend from this source tree (see --help).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: install.sh [--root DIR] [--python PATH] [--pip-args ARGS] [--reinstall]
       install.sh --uninstall [--root DIR]
       install.sh --help

Installs esxi-suspend, the SHUTDOWNCMD for NUT's upsmon, from the directory holding this
script. Run it as root. Rerunning it is safe: what is already right is kept and reported.

What it changes:
  /opt/esxi-suspend/                   a Python venv with esxi-suspend and its dependencies
                                       (created once; the package is upgraded in place when
                                       this source tree has changed since the last install)
  /usr/local/sbin/esxi-suspend         symlink to /opt/esxi-suspend/bin/esxi-suspend
  /etc/esxi-suspend/                   mode 0700
  /etc/esxi-suspend/esxi-suspend.env   settings template, mode 0600; never overwritten
  /etc/esxi-suspend/id_ed25519{,.pub}  SSH key for the ESXi host, made with ssh-keygen if
                                       there is none; never overwritten
It then prints the steps left to do by hand (host key, public key, settings, upsmon.conf).

Options:
  --root DIR        prefix every path above with DIR (default: $DESTDIR, else none), e.g. to
                    install into a temporary tree for a test. The venv, the symlink and the
                    paths written into the env file all point inside DIR, so the tree works
                    where it was made and cannot be moved. Root is not required with --root.
  --python PATH     interpreter that builds the venv (default: python3; needs 3.9 or later)
  --pip-args ARGS   extra arguments for pip install, split on spaces
                    (e.g. --pip-args "--no-index --find-links /srv/wheels");
                    pip's own PIP_* environment variables work as well
  --reinstall       run pip install even if the source tree has not changed
  --uninstall       remove the venv and the symlink; keeps /etc/esxi-suspend (key, settings,
                    known_hosts). Take SHUTDOWNCMD out of upsmon.conf first.
  -h, --help        show this help and exit

Needs: python3 with venv and ensurepip (Debian/Ubuntu: apt-get install python3-venv),
ssh-keygen (apt-get install openssh-client), and pip access to PyPI or a wheel directory.
EOF
}

die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

changed=no

say() {
    # say VERB PATH [DETAIL]: one aligned status line per thing we looked at.
    case $1 in kept | absent | left) ;; *) changed=yes ;; esac
    printf '  %-9s %s%s\n' "$1" "$2" "${3:+ ($3)}"
}

mode_of() {
    stat -c '%a' "$1"
}

ensure_mode() {
    # ensure_mode MODE PATH: sets MODE if it differs, and says what it found.
    local want=$1 path=$2 have
    have=$(mode_of "$path")
    if [[ $have != "$want" ]]; then
        chmod "$want" "$path"
        say "fixed" "$path" "mode $have -> $want"
    fi
}

root=${DESTDIR:-}
python=python3
pip_args=()
action=install
reinstall=no

while (($#)); do
    case $1 in
        --root)
            (($# >= 2)) || die "--root needs a directory"
            root=$2
            shift 2
            ;;
        --root=*)
            root=${1#--root=}
            shift
            ;;
        --python)
            (($# >= 2)) || die "--python needs a path"
            python=$2
            shift 2
            ;;
        --python=*)
            python=${1#--python=}
            shift
            ;;
        --pip-args)
            (($# >= 2)) || die "--pip-args needs a value"
            read -r -a pip_args <<<"$2"
            shift 2
            ;;
        --pip-args=*)
            read -r -a pip_args <<<"${1#--pip-args=}"
            shift
            ;;
        --reinstall)
            reinstall=yes
            shift
            ;;
        --uninstall)
            action=uninstall
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
    esac
done

if [[ -n $root ]]; then
    mkdir -p -- "$root"
    root=$(cd -- "$root" && pwd -P)
    [[ $root != / ]] || root=
elif ((EUID != 0)); then
    die "run as root (or use --root DIR to install into a test tree)"
fi

src=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
[[ -f $src/pyproject.toml && -d $src/esxi_suspend ]] \
    || die "$src is not the esxi-suspend source tree (no pyproject.toml or esxi_suspend/)"
venv=$root/opt/esxi-suspend
command_link=$root/usr/local/sbin/esxi-suspend
command_target=$venv/bin/esxi-suspend
etc=$root/etc/esxi-suspend
env_file=$etc/esxi-suspend.env
key=$etc/id_ed25519
known_hosts=$etc/known_hosts
stamp=$venv/.esxi-suspend-source.sha256

uninstall() {
    echo "Uninstalling esxi-suspend:"
    if [[ -L $command_link && $(readlink -- "$command_link") == "$command_target" ]]; then
        rm -f -- "$command_link"
        say "removed" "$command_link"
    elif [[ -e $command_link || -L $command_link ]]; then
        say "left" "$command_link" "not our symlink: remove it yourself"
    else
        say "absent" "$command_link"
    fi
    if [[ -f $venv/pyvenv.cfg ]]; then
        rm -rf -- "$venv"
        say "removed" "$venv"
    elif [[ -e $venv ]]; then
        say "left" "$venv" "not a venv, not ours: remove it yourself"
    else
        say "absent" "$venv"
    fi
    if [[ -e $etc ]]; then
        say "kept" "$etc" "key, settings, known_hosts: rm -r it yourself when no longer needed"
    fi
    echo
    echo "If upsmon.conf still has SHUTDOWNCMD \"/usr/local/sbin/esxi-suspend shutdown\", change it"
    echo "now: upsmon would otherwise run a missing command and the ESXi hosts would lose power"
    echo "without being shut down."
}

source_digest() {
    # A digest of what pip builds from: reinstall only when it changes.
    (
        cd -- "$src"
        {
            find esxi_suspend -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print
            for f in pyproject.toml setup.cfg setup.py README.md; do
                if [[ -f $f ]]; then echo "$f"; fi
            done
        } | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -d ' ' -f 1
    )
}

install_venv() {
    if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c '' 2>/dev/null; then
        say "kept" "$venv" "venv exists"
    else
        command -v "$python" >/dev/null 2>&1 || die "no Python interpreter '$python' (see --python)"
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
            || die "$python is older than Python 3.9"
        "$python" -c 'import venv, ensurepip' 2>/dev/null \
            || die "$python cannot create a venv with pip: on Debian/Ubuntu run 'apt-get install python3-venv', then rerun"
        mkdir -p -- "$(dirname -- "$venv")"
        "$python" -m venv --clear -- "$venv" \
            || { rm -rf -- "$venv"; die "could not create the venv $venv"; }
        say "created" "$venv" "venv, $("$venv/bin/python" -V 2>&1)"
    fi

    # python -I: the current directory may be the source tree; look only inside the venv.
    local digest
    digest=$(source_digest)
    if [[ $reinstall == no && -f $stamp && $(<"$stamp") == "$digest" && -x $command_target ]] \
        && "$venv/bin/python" -I -c 'import esxi_suspend' 2>/dev/null; then
        say "kept" "$command_target" "installed from this source already; --reinstall forces pip"
        return
    fi
    rm -f -- "$stamp"
    echo "  pip install --upgrade $src (fetches fabric and python-dotenv if missing) ..."
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        "${pip_args[@]}" "$src" || die "pip install failed (see above); rerun when it is fixed"
    [[ -x $command_target ]] || die "pip installed no $command_target: is $src the esxi-suspend source?"
    printf '%s\n' "$digest" >"$stamp"
    say "installed" "$command_target" \
        "esxi-suspend $("$venv/bin/python" -I -c 'from importlib.metadata import version; print(version("esxi-suspend"))')"
}

install_command_link() {
    mkdir -p -- "$(dirname -- "$command_link")"
    if [[ -L $command_link ]]; then
        local current
        current=$(readlink -- "$command_link")
        if [[ $current == "$command_target" ]]; then
            say "kept" "$command_link" "-> $command_target"
            return
        fi
        ln -sfn -- "$command_target" "$command_link"
        say "replaced" "$command_link" "-> $command_target, was -> $current"
    elif [[ -e $command_link ]]; then
        die "$command_link exists and is not a symlink: move it away, then rerun"
    else
        ln -s -- "$command_target" "$command_link"
        say "created" "$command_link" "-> $command_target"
    fi
}

write_env_template() {
    cat <<EOF
# Settings for esxi-suspend, read by every run ("esxi-suspend check", "esxi-suspend shutdown").
# KEY=value, one per line; a line starting with # is a comment. Quote a value with single
# quotes if it holds spaces, '#' or quotes. A required setting that is missing or empty is an
# error; an optional one left commented out takes the default shown.

# Required: the ESXi host to shut down (name or IP address). Set this.
#ESXI_HOST=esxi.example.lan

# User to log in as on the host (default root).
#ESXI_USER=root

# SSH port on the host (default 22).
#ESXI_PORT=22

# Required: private key the host accepts for ESXI_USER (made by install.sh).
ESXI_KEY_FILE=$key

# Passphrase of ESXI_KEY_FILE, if it has one (default: none).
#ESXI_KEY_PASSPHRASE=

# The host's pinned SSH host key (default /etc/esxi-suspend/known_hosts). An unknown or
# changed host key is refused, never learnt. Make it with ssh-keyscan, then compare the
# fingerprint with the host's console (README).
#ESXI_KNOWN_HOSTS=$known_hosts

# Seconds to wait for the SSH connection (default 10).
#ESXI_CONNECT_TIMEOUT=10

# Seconds each remote command may run before it is abandoned (default 300).
#ESXI_COMMAND_TIMEOUT=300

# Local NUT monitor service esxi-suspend restarts when it is done, so that upsmon (which runs
# SHUTDOWNCMD only once) watches the UPS again: auto (the first of nut-monitor, nut-client,
# ups that exists), a service name, or none (default auto).
#UPS_SERVICE=auto

# Full command line to run instead of restarting UPS_SERVICE (default: none).
#UPS_RESTART_COMMAND=
EOF
}

install_etc() {
    if [[ -d $etc ]]; then
        say "kept" "$etc"
    else
        mkdir -p -- "$(dirname -- "$etc")"
        mkdir -m 0700 -- "$etc"
        say "created" "$etc" "mode 0700"
    fi
    ensure_mode 700 "$etc"

    if [[ -e $env_file ]]; then
        say "kept" "$env_file" "never overwritten"
    else
        (
            set -o noclobber
            umask 077
            write_env_template >"$env_file"
        )
        say "created" "$env_file" "mode 0600, template: set ESXI_HOST"
    fi
    ensure_mode 600 "$env_file"

    if [[ -e $key ]]; then
        say "kept" "$key"
        if [[ ! -e $key.pub ]]; then
            ssh-keygen -y -P '' -f "$key" >"$key.pub" </dev/null \
                || die "could not derive $key.pub from $key (passphrase?): make it yourself"
            say "created" "$key.pub" "from $key"
        else
            say "kept" "$key.pub"
        fi
    else
        [[ ! -e $key.pub ]] || die "$key.pub exists without $key: move it away, then rerun"
        command -v ssh-keygen >/dev/null 2>&1 \
            || die "ssh-keygen not found: on Debian/Ubuntu run 'apt-get install openssh-client', then rerun"
        local host
        host=$(hostname 2>/dev/null || uname -n)
        ssh-keygen -q -t ed25519 -N '' -C "esxi-suspend@$host" -f "$key" </dev/null
        say "created" "$key" "ed25519, no passphrase"
        say "created" "$key.pub"
    fi
    ensure_mode 600 "$key"
}

next_steps() {
    cat <<EOF

Next steps (by hand; HOST is your ESXi host, SSH enabled on it):
 1. Pin the host key, then COMPARE its fingerprints with those the host shows on its own
    console (ESXi Shell: ssh-keygen -lf /etc/ssh/ssh_host_<type>_key.pub; on 5.x ssh-keygen
    is in /usr/lib/vmware/openssh/bin). Never trust a scanned key blindly:
      ssh-keyscan -p 22 HOST > $known_hosts
      ssh-keygen -lf $known_hosts
 2. Add the public key $key.pub to root's authorized keys on the host:
      ESXi 5.x and later: append it to /etc/ssh/keys-root/authorized_keys, e.g.
        ssh -o UserKnownHostsFile=$known_hosts -o StrictHostKeyChecking=yes root@HOST \\
          'cat >> /etc/ssh/keys-root/authorized_keys' < $key.pub
      ESXi 4.x: append it to /.ssh/authorized_keys and save /.ssh in oem.tgz, or it is
        lost at the next reboot.
    A host that refuses ed25519 keys needs an RSA key instead:
      ssh-keygen -t rsa -b 3072 -N '' -f $etc/id_rsa  (then set ESXI_KEY_FILE)
 3. Edit $env_file: set ESXI_HOST, check the rest.
 4. Test without shutting anything down:
      $command_link check${root:+ --env-file $env_file}
 5. In upsmon.conf (Debian: /etc/nut/upsmon.conf; see upsmon.conf.sample), then restart
    upsmon (Debian: systemctl restart nut-monitor):
      SHUTDOWNCMD "$command_link shutdown"
EOF
}

if [[ $action == uninstall ]]; then
    uninstall
    exit 0
fi

echo "Installing esxi-suspend from $src${root:+ into $root}:"
install_venv
install_command_link
install_etc
if [[ $changed == no ]]; then
    echo "Nothing changed: everything was already in place."
fi
next_steps
