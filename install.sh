#!/usr/bin/env bash
# install.sh: install esxi-suspend from this source tree (see --help).
#
# A bootstrap: it finds Python, makes the venv and pip-installs the package, then hands over
# to the installed program (`esxi-suspend install`, esxi_suspend/setup/install.py) for
# everything else. --help and --uninstall run that module from this source tree, since the
# venv may be gone.
set -euo pipefail

src=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

usage() {
    cat <<'EOF'
Usage: install.sh [--root DIR] [--python PATH] [--pip-args ARGS] [--reinstall]
                  [--configure-upsmon]
       install.sh --uninstall [--purge] [--root DIR]
       install.sh --help
EOF
}

die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

from_source() {
    # from_source PYTHON ARGS...: install.py from this source tree, not from a venv.
    local py=$1
    shift
    PYTHONPATH=$src "$py" -s "$@"
}

full_help() {
    from_source "$python" -c 'from esxi_suspend.setup.install import INSTALL_SH_HELP as h
print(h, end="")' 2>/dev/null && return
    usage
    echo "(the whole help needs Python 3.9 or later, see --python; or read README.md)"
}

changed=no

say() {
    # say VERB PATH [DETAIL]: one aligned status line, as install.py prints them.
    case $1 in kept) ;; *) changed=yes ;; esac
    printf '  %-9s %s%s\n' "$1" "$2" "${3:+ ($3)}"
}

root=${DESTDIR:-}
python=python3
pip_args=()
reinstall=no
action=install
purge=no
configure_upsmon=no
declare -A needs=([--root]="a directory" [--python]="a path" [--pip-args]="a value")

while (($#)); do
    case $1 in
        --root | --python | --pip-args)
            (($# >= 2)) || die "$1 needs ${needs[$1]}"
            set -- "$1=$2" "${@:3}"
            ;;
    esac
    case $1 in
        --root=*) root=${1#*=} ;;
        --python=*) python=${1#*=} ;;
        --pip-args=*) read -r -a pip_args <<<"${1#*=}" ;;
        --reinstall) reinstall=yes ;;
        --uninstall) action=uninstall ;;
        --purge) purge=yes ;;
        --configure-upsmon) configure_upsmon=yes ;;
        -h | --help) full_help && exit 0 ;;
        *) usage >&2 && die "unknown argument: $1" ;;
    esac
    shift
done

[[ $purge == no || $action == uninstall ]] || die "--purge goes with --uninstall"
[[ $configure_upsmon == no || $action == install ]] \
    || die "--configure-upsmon goes with an install, not --uninstall"

if [[ -n $root ]]; then
    mkdir -p -- "$root"
    root=$(cd -- "$root" && pwd -P)
    [[ $root != / ]] || root=
elif ((EUID != 0)); then
    die "run as root (or use --root DIR to install into a test tree)"
fi

[[ -f $src/pyproject.toml && -d $src/esxi_suspend ]] \
    || die "$src is not the esxi-suspend source tree (no pyproject.toml or esxi_suspend/)"
venv=$root/opt/esxi-suspend
command_target=$venv/bin/esxi-suspend
stamp=$venv/.esxi-suspend-source.sha256
# install.py is told the rest
forward=(--source "$src" --root "$root")
if [[ $action == uninstall ]]; then forward+=(--uninstall); fi
if [[ $purge == yes ]]; then forward+=(--purge); fi
if [[ $configure_upsmon == yes ]]; then forward+=(--configure-upsmon); fi

if [[ $action == uninstall ]]; then
    # This tree's code knows what any install wrote; the venv's Python while it still runs.
    if "$venv/bin/python" -c '' 2>/dev/null; then python=$venv/bin/python; fi
    command -v "$python" >/dev/null 2>&1 || die "no Python interpreter '$python' (see --python)"
    from_source "$python" -m esxi_suspend.setup.install "${forward[@]}" || exit 1
    exit 0
fi

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

echo "Installing esxi-suspend from $src${root:+ into $root}:"
install_venv
if [[ $changed == yes ]]; then forward+=(--venv-changed); fi
"$command_target" install "${forward[@]}" || exit 1
