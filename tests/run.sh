#!/usr/bin/env bash
# The test command (README "Testing"): on a fresh Debian 12 machine, as root, installs what the
# tests need (SSH servers and busybox, whose ash the fake ESXi hosts run command lines with, from
# Debian; a venv with the package and its test tools), then runs ruff, mypy --strict and the
# whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(openssh-server openssh-client dropbear-bin busybox nut-server nut-client openipmi ipmitool)
python=${PYTHON:-python3}
if ! "$python" -m venv --help >/dev/null 2>&1; then
    packages+=(python3-venv)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "tests/run.sh: missing Debian packages: ${missing[*]}; run as root" >&2
        exit 1
    fi
    echo "tests/run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=.venv
if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'

echo "tests/run.sh: ruff"
"$venv/bin/ruff" check esxi_suspend tests benchmarks tools
"$venv/bin/ruff" format --check esxi_suspend tests benchmarks tools
echo "tests/run.sh: mypy --strict"
"$venv/bin/mypy" --strict esxi_suspend tests benchmarks tools
echo "tests/run.sh: pytest"
# A temporary directory of the session's own: what the tests leave in it is theirs alone
# (tests/leftovers.py), whatever else on this machine writes to /tmp meanwhile.
session_tmp=$(mktemp -d /tmp/esxi-XXXXXX)  # short: NUT's sockets live below it (108 bytes)
set +e
TMPDIR=$session_tmp "$venv/bin/python" -m pytest "$@"
status=$?
set -e
rm -rf "$session_tmp"
if [[ $status -eq 5 ]]; then
    echo "tests/run.sh: pytest ran no test: failing" >&2
    exit 1
fi
exit "$status"
