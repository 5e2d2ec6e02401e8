#!/usr/bin/env bash
# install.sh: install esxi-suspend from this source tree (see --help).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: install.sh [--root DIR] [--python PATH] [--pip-args ARGS] [--reinstall]
                  [--configure-upsmon]
       install.sh --uninstall [--purge] [--root DIR]
       install.sh --help

Installs esxi-suspend, the SHUTDOWNCMD for NUT's upsmon, from the directory
holding this script. Run it as root. Rerunning it is safe: what is already
right is kept and reported.

What it changes:
  /opt/esxi-suspend/
      a Python venv with esxi-suspend and its dependencies (created once; the
      package is upgraded in place when this source tree has changed since the
      last install)
  /usr/local/sbin/esxi-suspend
      symlink to /opt/esxi-suspend/bin/esxi-suspend
  /usr/local/share/man/man8/esxi-suspend.8
      the man page (man esxi-suspend), replaced when this source tree's page
      differs; then mandb, if there is one, refreshes man's index
  /usr/local/lib/esxi-suspend/upssched-cmd
      the timer script upssched runs for the early shutdown (mode 0755)
  /etc/esxi-suspend/
      mode 0700
  /etc/esxi-suspend/esxi-suspend.env
      settings template, mode 0600; never overwritten
  /etc/esxi-suspend/id_ed25519{,.pub}
      SSH key for the ESXi host, made with ssh-keygen if there is none; never
      overwritten
  upsmon.conf, upssched.conf (/etc/nut or /etc/ups)
      only with --configure-upsmon: see below
It then prints the next steps: esxi-suspend trust HOST, esxi-suspend enroll
HOST, esxi-suspend check.

NUT: when an upsmon.conf is found in /etc/nut or /etc/ups, the exact
SHUTDOWNCMD line to use is printed. With --configure-upsmon it is written
there: a copy of the file is kept first
(upsmon.conf.esxi-suspend-YYYYmmdd-HHMMSS), an existing SHUTDOWNCMD is
commented out (marked "#esxi-suspend-was: ") so there is never a second one,
and FINALDELAY is left alone.

Early shutdown: OB LB often comes with 1-3 minutes of battery left. With
UPS_EARLY_SHUTDOWN (in the settings file; default 300) seconds, the shutdown
starts after that long on battery: --configure-upsmon then sets, in
upsmon.conf, NOTIFYCMD upssched and NOTIFYFLAG ONBATT and ONLINE with +EXEC
(an existing NOTIFYFLAG keeps its flags), and writes upssched.conf beside it
(owner and mode as upsmon.conf's): a timer early-shutdown started on ONBATT,
cancelled on ONLINE, that runs upssched-cmd, which runs "upsmon -c fsd". A
NOTIFYCMD of the admin's own, or an upssched.conf of the admin's own (one
with AT lines), is left alone: the lines to add are printed instead. An
upssched.conf without AT lines (NUT's sample) is replaced, kept as a copy and
put back by --uninstall. UPS_EARLY_SHUTDOWN=0: no timer (only OB LB starts
the shutdown); the lines an earlier run set are taken out. Without
--configure-upsmon the lines are printed.

Options:
  --root DIR        prefix every path above with DIR (default: $DESTDIR, else
                    none), e.g. to install into a temporary tree for a test.
                    The venv, the symlink and the paths written into the env
                    file all point inside DIR, so the tree works where it was
                    made and cannot be moved. Root is not required with --root;
                    mandb is not run.
  --python PATH     interpreter that builds the venv (default: python3; needs
                    3.9 or later)
  --pip-args ARGS   extra arguments for pip install, split on spaces
                    (e.g. --pip-args "--no-index --find-links /srv/wheels");
                    pip's own PIP_* environment variables work as well
  --reinstall       run pip install even if the source tree has not changed
  --configure-upsmon
                    set SHUTDOWNCMD and the early shutdown in the upsmon.conf
                    found, and write upssched.conf (see NUT above); restart
                    upsmon yourself afterwards (Debian: systemctl restart
                    nut-monitor)
  --uninstall       remove the venv, the symlink, the man page, the timer
                    script, and what --configure-upsmon wrote: its
                    upssched.conf, and its SHUTDOWNCMD, NOTIFYCMD and
                    NOTIFYFLAG lines (restoring the lines they replaced; a copy
                    of the file is kept); keeps /etc/esxi-suspend (key,
                    settings, known_hosts)
  --purge           with --uninstall: remove /etc/esxi-suspend too
  -h, --help        show this help and exit

Needs: python3 with venv and ensurepip (Debian/Ubuntu: apt-get install
python3-venv), ssh-keygen (apt-get install openssh-client), and pip access to
PyPI or a wheel directory.
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
configure_upsmon=no
purge=no

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
        --purge)
            purge=yes
            shift
            ;;
        --configure-upsmon)
            configure_upsmon=yes
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

src=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
[[ -f $src/pyproject.toml && -d $src/esxi_suspend ]] \
    || die "$src is not the esxi-suspend source tree (no pyproject.toml or esxi_suspend/)"
venv=$root/opt/esxi-suspend
command_link=$root/usr/local/sbin/esxi-suspend
command_target=$venv/bin/esxi-suspend
man_dir=$root/usr/local/share/man
man_page=$man_dir/man8/esxi-suspend.8
man_source=$src/esxi-suspend.8
etc=$root/etc/esxi-suspend
env_file=$etc/esxi-suspend.env
key=$etc/id_ed25519
known_hosts=$etc/known_hosts
stamp=$venv/.esxi-suspend-source.sha256

shutdowncmd="SHUTDOWNCMD \"$command_link shutdown\""
marker_tail=" set by esxi-suspend install.sh (install.sh --uninstall takes it out)"
upsmon_marker="# SHUTDOWNCMD$marker_tail"
notifycmd_marker="# NOTIFYCMD$marker_tail"
notifyflag_marker="# NOTIFYFLAG$marker_tail"
upsmon_was="#esxi-suspend-was: "

# The early shutdown: upsmon -> upssched (NOTIFYCMD) -> timer -> upssched-cmd -> upsmon -c fsd
sched_script=$root/usr/local/lib/esxi-suspend/upssched-cmd
sched_script_source=$src/upssched-cmd
sched_sample=$src/upssched.conf.sample
sched_marker="# upssched.conf written by esxi-suspend install.sh: it rewrites it, --uninstall removes it"
sched_replaced="# esxi-suspend-replaced: "
early_setting=UPS_EARLY_SHUTDOWN
early_default=300
early_max=86400
early_events=(ONBATT ONLINE)
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

find_upsmon_conf() {
    local dir
    for dir in "$root/etc/nut" "$root/etc/ups"; do
        if [[ -f $dir/upsmon.conf ]]; then
            printf '%s\n' "$dir/upsmon.conf"
            return 0
        fi
    done
    return 1
}

active_shutdowncmds() {
    grep -E '^[[:space:]]*SHUTDOWNCMD([[:space:]]|$)' -- "$1" || true
}

new_backup_name() {
    # new_backup_name FILE: FILE.esxi-suspend-YYYYmmdd-HHMMSS, never an earlier backup's name.
    local stem backup n=1
    stem=$1.esxi-suspend-$(date +%Y%m%d-%H%M%S)
    backup=$stem
    while [[ -e $backup ]]; do
        backup=$stem.$n
        n=$((n + 1))
    done
    printf '%s\n' "$backup"
}

rewrite_keeping_owner() {
    # rewrite_keeping_owner FILE TEXT-FILE: backs FILE up, then overwrites its content in
    # place so that its owner, group and mode (upsmon.conf is often 0640 root:nut) stay.
    local file=$1 new=$2 backup
    backup=$(new_backup_name "$file")
    cp -p -- "$file" "$backup"
    cat -- "$new" >"$file"
    say "backup" "$backup" "copy of $file before the change"
}

set_directive() {
    # set_directive FILE REGEX LINE MARKER: in FILE (edited in place), the first active line
    # matching REGEX (an ERE) becomes "#esxi-suspend-was: " + it, then MARKER, then LINE; a
    # line that follows one of our markers is ours, and only replaced. No match: MARKER and
    # LINE are appended, after an empty line unless the file ends with one of ours.
    local file=$1 regex=$2 line=$3 marker=$4
    awk -v re="$regex" -v ours="$line" -v marker="$marker" -v was="$upsmon_was" \
        -v tail="$marker_tail" '
        function is_marker(l) {
            return l ~ /^# [A-Z]+ / && substr(l, length(l) - length(tail) + 1) == tail
        }
        $0 ~ re && !done {
            if (after_marker) print ours; else { print was $0; print marker; print ours }
            done = 1; after_marker = 0; last_ours = 1; next
        }
        { print; last_ours = after_marker; after_marker = is_marker($0) }
        END { if (!done) { if (!last_ours) print ""; print marker; print ours } }
    ' "$file" >"$work/set" && cat -- "$work/set" >"$file"
}

take_out() {
    # take_out FILE KEYWORDS: prints FILE without the lines our markers for KEYWORDS (an ERE
    # alternation, e.g. NOTIFYCMD|NOTIFYFLAG) mark, nor the empty line set_directive put
    # before them; the lines they replaced ("#esxi-suspend-was: ") are restored.
    awk -v kw="^(${2})\$" -v was="$upsmon_was" -v tail="$marker_tail" '
        function marker_keyword(l, f) {
            if (l !~ /^# [A-Z]+ / || substr(l, length(l) - length(tail) + 1) != tail) return ""
            split(l, f, " ")
            return f[2]
        }
        skip { skip = 0; next }
        marker_keyword($0) ~ kw && marker_keyword($0) != "" { held = 0; skip = 1; next }
        {
            line = $0
            if (index(line, was) == 1) {
                rest = substr(line, length(was) + 1)
                split(rest, f, " ")
                if (f[1] ~ kw) line = rest
            }
            if (line == "") { if (held) print ""; held = 1; next }
            if (held) { print ""; held = 0 }
            print line
        }
        END { if (held) print "" }
    ' "$1"
}

active_lines() {
    # active_lines FILE REGEX: FILE's lines matching REGEX (an ERE), if any.
    grep -E -- "$2" "$1" || true
}

read_early_shutdown() {
    # Sets early_shutdown from UPS_EARLY_SHUTDOWN in the env file (its last line; KEY=value,
    # optional quotes and comment; missing or empty: the default); dies on a bad value.
    local line value
    early_shutdown=$early_default
    [[ -f $env_file ]] || return 0
    line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?$early_setting[[:space:]]*=" -- "$env_file" \
        | tail -n 1) || true
    [[ -n $line ]] || return 0
    value=${line#*=}
    value=${value#"${value%%[![:space:]]*}"}
    if [[ $value =~ ^\'([^\']*)\'[[:space:]]*(#.*)?$ || $value =~ ^\"([^\"]*)\"[[:space:]]*(#.*)?$ ]]; then
        value=${BASH_REMATCH[1]}
    else
        value=${value%%[[:space:]]#*}
        value=${value%"${value##*[![:space:]]}"}
    fi
    [[ -n $value ]] || return 0
    if [[ ! $value =~ ^[0-9]{1,6}$ ]] || ((10#$value > early_max)); then
        die "$early_setting=$value in $env_file: not a number of seconds from 0 to $early_max (0: the shutdown starts only at low battery, OB LB); fix it, then rerun"
    fi
    early_shutdown=$((10#$value))
}

find_upssched() {
    local path
    for path in "$root/usr/sbin/upssched" "$root/sbin/upssched"; do
        if [[ -x $path ]]; then
            printf '%s\n' "$path"
            return 0
        fi
    done
    return 1
}

render_upssched_conf() {
    # render_upssched_conf [REPLACED-NOTE]: our upssched.conf, from the sample.
    printf '%s\n' "$sched_marker"
    if [[ -n ${1:-} ]]; then printf '%s\n' "$1"; fi
    sed -e "s|^CMDSCRIPT .*|CMDSCRIPT $sched_script|" \
        -e "s|^AT ONBATT \\* START-TIMER early-shutdown [0-9]*\$|AT ONBATT * START-TIMER early-shutdown $early_shutdown|" \
        -- "$sched_sample"
}

sched_conf_delay() {
    sed -n 's/^[[:space:]]*AT[[:space:]]\{1,\}ONBATT[[:space:]]\{1,\}[^[:space:]]\{1,\}[[:space:]]\{1,\}START-TIMER[[:space:]]\{1,\}early-shutdown[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p' \
        -- "$1" | head -n 1
}

is_notifycmd_upssched() {
    # is_notifycmd_upssched LINE: the NOTIFYCMD line runs upssched
    local command
    command=$(sed -E 's/^[[:space:]]*NOTIFYCMD[[:space:]]+"?([^"[:space:]]*).*/\1/' <<<"$1")
    [[ ${command##*/} == upssched ]]
}

print_early_lines() {
    # print_early_lines UPSSCHED SCHED-CONF: what to add by hand.
    local event
    echo "    in upsmon.conf (one NOTIFYCMD only; on existing NOTIFYFLAG lines add +EXEC):"
    echo "      NOTIFYCMD $1"
    for event in "${early_events[@]}"; do
        echo "      NOTIFYFLAG $event SYSLOG+EXEC"
    done
    echo "    in $2 (its CMDSCRIPT, one only, must run $sched_script early-shutdown):"
    render_upssched_conf | grep -Ev '^[[:space:]]*(#|$)' | sed 's/^/      /'
}

install_sched_script() {
    if [[ -f $sched_script ]] && cmp -s -- "$sched_script_source" "$sched_script" \
        && [[ $(mode_of "$sched_script") == 755 ]]; then
        say "kept" "$sched_script"
        return
    fi
    local verb=installed
    if [[ -e $sched_script ]]; then verb=replaced; fi
    mkdir -p -- "$(dirname -- "$sched_script")"
    install -m 0755 -- "$sched_script_source" "$sched_script"
    say "$verb" "$sched_script" "upssched's CMDSCRIPT for the early shutdown"
}

remove_sched_script() {
    if [[ -e $sched_script ]]; then
        rm -f -- "$sched_script"
        rmdir -- "$(dirname -- "$sched_script")" 2>/dev/null || true
        say "removed" "$sched_script"
    else
        say "absent" "$sched_script"
    fi
}

remove_our_upssched_conf() {
    # remove_our_upssched_conf FILE: FILE goes, or the one it replaced comes back.
    local file=$1 replaced
    [[ -f $file ]] && grep -qxF -- "$sched_marker" "$file" || return 0
    replaced=$(sed -n "s|^$sched_replaced||p" -- "$file" | head -n 1)
    if [[ -n $replaced && -f $replaced ]]; then
        cat -- "$replaced" >"$file"
        say "restored" "$file" "from $replaced, the one install.sh replaced"
    else
        rm -f -- "$file"
        say "removed" "$file" "written by install.sh"
    fi
}

write_upssched_conf() {
    # write_upssched_conf FILE UPSMON-CONF: ours, created, rewritten, kept; 1 if FILE is an
    # admin's own (it has AT lines and is not ours): left alone.
    local file=$1 upsmon=$2 note="" backup have
    if [[ -f $file ]] && grep -qxF -- "$sched_marker" "$file"; then
        note=$(grep -F -- "$sched_replaced" "$file" | head -n 1) || true
        render_upssched_conf "$note" >"$work/sched"
        if cmp -s -- "$work/sched" "$file"; then
            say "kept" "$file" "early shutdown after $early_shutdown s on battery"
        else
            have=$(sched_conf_delay "$file")
            cat -- "$work/sched" >"$file"
            say "changed" "$file" "early shutdown after $early_shutdown s on battery${have:+, was $have s}"
        fi
        return 0
    fi
    if [[ -e $file ]]; then
        if grep -Eq '^[[:space:]]*AT[[:space:]]' -- "$file"; then
            return 1
        fi
        # no AT line: it schedules nothing (NUT's packaged sample); replaced, and restored by
        # --uninstall
        backup=$(new_backup_name "$file")
        cp -p -- "$file" "$backup"
        say "backup" "$backup" "copy of $file before the change"
        render_upssched_conf "$sched_replaced$backup" >"$work/sched"
        cat -- "$work/sched" >"$file"
        say "replaced" "$file" "it had no AT line; early shutdown after $early_shutdown s on battery"
        return 0
    fi
    render_upssched_conf >"$work/sched"
    (
        umask 077
        cat -- "$work/sched" >"$file"
    )
    if ((EUID == 0)); then chown --reference="$upsmon" -- "$file"; fi
    chmod --reference="$upsmon" -- "$file"
    say "created" "$file" "early shutdown after $early_shutdown s on battery; owner and mode as $upsmon"
}

configure_notify() {
    # configure_notify FILE UPSSCHED: NOTIFYCMD and NOTIFYFLAG ONBATT/ONLINE (+EXEC) in FILE
    # (a working copy of upsmon.conf); says what changed.
    local file=$1 upssched=$2 event lines count flags new_flags
    local notifycmd="NOTIFYCMD $upssched" notified=no
    lines=$(active_lines "$file" '^[[:space:]]*NOTIFYCMD([[:space:]]|$)')
    if [[ -z $lines ]] || { grep -qxF -- "$notifycmd_marker" "$file" && [[ $lines != "$notifycmd" ]]; }; then
        set_directive "$file" '^[[:space:]]*NOTIFYCMD([[:space:]]|$)' "$notifycmd" "$notifycmd_marker"
        say "changed" "$conf" "$notifycmd${lines:+, was: $lines}"
        notified=yes
    fi
    for event in "${early_events[@]}"; do
        lines=$(active_lines "$file" "^[[:space:]]*NOTIFYFLAG[[:space:]]+$event([[:space:]]|\$)")
        count=$(grep -c . <<<"$lines" || true)
        if ((count > 1)); then
            say "left" "$conf" "$count NOTIFYFLAG $event lines: keep one, with +EXEC in its flags"
            continue
        fi
        if ((count == 0)); then
            new_flags=SYSLOG+EXEC
        else
            flags=$(awk '{ print $3 }' <<<"$lines")
            if [[ +$flags+ == *+EXEC+* ]]; then continue; fi
            new_flags=$(tr '+' '\n' <<<"$flags" | grep -Ev '^(IGNORE|)$' | paste -sd +)
            new_flags=${new_flags:+$new_flags+}EXEC
        fi
        set_directive "$file" "^[[:space:]]*NOTIFYFLAG[[:space:]]+$event([[:space:]]|\$)" \
            "NOTIFYFLAG $event $new_flags" "$notifyflag_marker"
        say "changed" "$conf" "NOTIFYFLAG $event $new_flags${lines:+, was: $lines}"
        notified=yes
    done
    if [[ $notified == no ]]; then
        say "kept" "$conf" "NOTIFYCMD runs upssched on ONBATT and ONLINE"
    fi
}

configure_early_shutdown() {
    # configure_early_shutdown UPSMON-CONF: the early shutdown, on the working copy
    # $work/upsmon.conf (upsmon.conf itself is rewritten once, by configure_upsmon).
    local conf=$1 file=$work/upsmon.conf sched_conf upssched lines why=""
    sched_conf=$(dirname -- "$conf")/upssched.conf
    if ((early_shutdown == 0)); then
        echo "    early shutdown off ($early_setting=0): only OB LB starts the shutdown"
        [[ $configure_upsmon == yes ]] || return 0
        remove_our_upssched_conf "$sched_conf"
        if grep -qxF -e "$notifycmd_marker" -e "$notifyflag_marker" -- "$file"; then
            take_out "$file" 'NOTIFYCMD|NOTIFYFLAG' >"$work/taken" && cat -- "$work/taken" >"$file"
            say "changed" "$conf" "took out the NOTIFYCMD and NOTIFYFLAG lines install.sh set; restored the ones they replaced, if any"
        fi
        return 0
    fi
    upssched=$(find_upssched) || upssched=""
    lines=$(active_lines "$file" '^[[:space:]]*NOTIFYCMD([[:space:]]|$)')
    if [[ $configure_upsmon == no ]]; then
        if grep -qxF -- "$sched_marker" "$sched_conf" 2>/dev/null \
            && [[ $(sched_conf_delay "$sched_conf") == "$early_shutdown" ]] \
            && grep -qxF -- "$notifycmd_marker" "$file"; then
            say "kept" "$sched_conf" "early shutdown after $early_shutdown s on battery"
            return 0
        fi
        say "left" "$conf" "early shutdown after $early_shutdown s on battery: rerun with --configure-upsmon, or set it yourself"
        print_early_lines "${upssched:-/usr/sbin/upssched}" "$sched_conf"
        return 0
    fi
    if [[ -z $upssched ]]; then
        why="no upssched in $root/usr/sbin or $root/sbin (Debian: apt-get install nut-client)"
    elif [[ -n $lines ]] && ! grep -qxF -- "$notifycmd_marker" "$file" \
        && ! { [[ $(grep -c . <<<"$lines") == 1 ]] && is_notifycmd_upssched "$lines"; }; then
        why="it has a NOTIFYCMD of its own ($(head -n 1 <<<"$lines")): upsmon runs one only; make it run upssched too"
    fi
    if [[ -n $why ]]; then
        say "left" "$conf" "early shutdown not set: $why"
        print_early_lines "${upssched:-/usr/sbin/upssched}" "$sched_conf"
        return 0
    fi
    if ! write_upssched_conf "$sched_conf" "$conf"; then
        say "left" "$sched_conf" "not install.sh's, it has AT lines: early shutdown not set; add it yourself"
        print_early_lines "$upssched" "$sched_conf"
        return 0
    fi
    configure_notify "$file" "$upssched"
}

configure_upsmon() {
    local conf lines count finaldelay
    read_early_shutdown
    if ! conf=$(find_upsmon_conf); then
        echo "  no upsmon.conf in $root/etc/nut or $root/etc/ups: when NUT is installed, add"
        echo "    $shutdowncmd"
        if ((early_shutdown == 0)); then
            echo "    early shutdown off ($early_setting=0): only OB LB starts the shutdown"
        else
            echo "  and, for the early shutdown after $early_shutdown s on battery ($early_setting):"
            print_early_lines "$(find_upssched || echo /usr/sbin/upssched)" "/etc/nut/upssched.conf"
        fi
        return
    fi
    cp -- "$conf" "$work/upsmon.conf"
    lines=$(active_shutdowncmds "$conf")
    count=$(grep -c . <<<"$lines" || true)
    finaldelay=$(sed -n 's/^[[:space:]]*FINALDELAY[[:space:]]\{1,\}\([0-9]*\).*/\1/p' "$conf" | tail -n 1)
    if [[ $lines == "$shutdowncmd" ]]; then
        say "kept" "$conf" "SHUTDOWNCMD is already esxi-suspend's"
    elif ((count > 1)); then
        say "left" "$conf" "$count SHUTDOWNCMD lines: keep one, $shutdowncmd"
    elif [[ $configure_upsmon == no ]]; then
        say "left" "$conf" "rerun with --configure-upsmon, or set it yourself"
        if ((count == 1)); then
            echo "    replace: $lines"
        fi
        echo "    with:    $shutdowncmd"
    else
        set_directive "$work/upsmon.conf" '^[[:space:]]*SHUTDOWNCMD([[:space:]]|$)' \
            "$shutdowncmd" "$upsmon_marker"
        say "changed" "$conf" "$shutdowncmd${lines:+, was: $lines}"
    fi
    configure_early_shutdown "$conf"
    if ! cmp -s -- "$work/upsmon.conf" "$conf"; then
        rewrite_keeping_owner "$conf" "$work/upsmon.conf"
        echo "    restart upsmon to use it (Debian: systemctl restart nut-monitor)"
    fi
    if [[ -n $finaldelay ]]; then
        echo "    FINALDELAY $finaldelay in $conf: left alone (keep it small)"
    else
        echo "    FINALDELAY not set (NUT's default, 5 s): left alone"
    fi
}

unconfigure_upsmon() {
    local conf
    conf=$(find_upsmon_conf) || return 0
    remove_our_upssched_conf "$(dirname -- "$conf")/upssched.conf"
    if ! grep -qxF -e "$upsmon_marker" -e "$notifycmd_marker" -e "$notifyflag_marker" -- "$conf"; then
        if grep -qF -- "$command_link shutdown" "$conf"; then
            say "left" "$conf" "its SHUTDOWNCMD runs esxi-suspend and was not set by install.sh: change it now"
        fi
        return 0
    fi
    if ! grep -qxF -- "$upsmon_marker" "$conf" && grep -qF -- "$command_link shutdown" "$conf"; then
        say "left" "$conf" "its SHUTDOWNCMD runs esxi-suspend and was not set by install.sh: change it now"
    fi
    take_out "$conf" 'SHUTDOWNCMD|NOTIFYCMD|NOTIFYFLAG' >"$work/taken"
    rewrite_keeping_owner "$conf" "$work/taken"
    say "changed" "$conf" "took out the lines install.sh set (SHUTDOWNCMD, NOTIFYCMD, NOTIFYFLAG); restored the ones they replaced, if any"
}

is_our_man_page() {
    [[ -f $1 && ! -L $1 ]] && head -n 1 -- "$1" | grep -q '^\.TH ESXI-SUSPEND 8 '
}

update_man_index() {
    # Optional: man finds the page without it. Never in a --root tree, never fatal.
    if [[ -z $root ]] && command -v mandb >/dev/null 2>&1; then
        mandb -q -- "$man_dir" >/dev/null 2>&1 || true
    fi
}

install_man_page() {
    if [[ ! -f $man_source ]]; then
        say "left" "$man_page" "not installed: no esxi-suspend.8 in $src"
        return
    fi
    if is_our_man_page "$man_page" && cmp -s -- "$man_source" "$man_page"; then
        say "kept" "$man_page"
        return
    fi
    if [[ -e $man_page || -L $man_page ]] && ! is_our_man_page "$man_page"; then
        say "left" "$man_page" "not esxi-suspend's man page: move it away, then rerun"
        return
    fi
    local verb=created
    if [[ -e $man_page ]]; then verb=replaced; fi
    mkdir -p -- "$(dirname -- "$man_page")"
    install -m 0644 -- "$man_source" "$man_page"
    say "$verb" "$man_page" "man esxi-suspend"
    update_man_index
}

uninstall() {
    echo "Uninstalling esxi-suspend:"
    unconfigure_upsmon
    if [[ -L $command_link && $(readlink -- "$command_link") == "$command_target" ]]; then
        rm -f -- "$command_link"
        say "removed" "$command_link"
    elif [[ -e $command_link || -L $command_link ]]; then
        say "left" "$command_link" "not our symlink: remove it yourself"
    else
        say "absent" "$command_link"
    fi
    if is_our_man_page "$man_page"; then
        rm -f -- "$man_page"
        say "removed" "$man_page"
        update_man_index
    elif [[ -e $man_page || -L $man_page ]]; then
        say "left" "$man_page" "not esxi-suspend's man page: remove it yourself"
    else
        say "absent" "$man_page"
    fi
    remove_sched_script
    if [[ -f $venv/pyvenv.cfg ]]; then
        rm -rf -- "$venv"
        say "removed" "$venv"
    elif [[ -e $venv ]]; then
        say "left" "$venv" "not a venv, not ours: remove it yourself"
    else
        say "absent" "$venv"
    fi
    if [[ -e $etc && $purge == yes ]]; then
        rm -rf -- "$etc"
        say "removed" "$etc" "--purge: key, settings, known_hosts"
    elif [[ -e $etc ]]; then
        say "kept" "$etc" "key, settings, known_hosts: --purge removes it"
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
    local known_hosts_comment="#" # the default, unless --root moved it
    if [[ -n $root ]]; then known_hosts_comment=""; fi
    cat <<EOF
# Settings for esxi-suspend, read by every run ("esxi-suspend check", "esxi-suspend shutdown").
# KEY=value, one per line; a line starting with # is a comment. Quote a value with single
# quotes if it holds spaces, '#' or quotes. A required setting that is missing or empty is an
# error; an optional one left commented out takes the default shown.

# Required: the ESXi host to shut down (name or IP address). Set this, or let
# "esxi-suspend trust HOST" add it when you confirm the host key. Several hosts, shut down in
# parallel: [user@]host[:port] separated by commas, e.g. esxi1,root@esxi2:2222.
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
# changed host key is refused, never learnt. Made by "esxi-suspend trust HOST", after you
# compare the fingerprint it shows with the host's console.${root:+
# (install.sh --root: set, since the default is outside $root)}
${known_hosts_comment}ESXI_KNOWN_HOSTS=$known_hosts

# Seconds to wait for the SSH connection (default 10).
#ESXI_CONNECT_TIMEOUT=10

# Seconds each remote command may run before it is abandoned (default 300).
#ESXI_COMMAND_TIMEOUT=300

# How the VMs are stopped: autostop (ESXi's own order, after a clean stop of every VM it
# would hard power off) or parallel (every VM at once) (default autostop).
#ESXI_STRATEGY=autostop

# Seconds from upsmon's call to the host poweroff, reading the host included: what still
# runs near the end is suspended, then the host is powered off (default 240). Fit it to your
# battery, or auto: the UPS's battery.runtime when we are called, minus UPS_RUNTIME_MARGIN.
#ESXI_DEADLINE=240

# parallel only: groups stopped one after another, VM names or ids (default: one group).
#ESXI_VM_ORDER=web1,web2; db1; nas

# A VM's own stop, in order of preference (default shutdown,suspend,poweroff).
#ESXI_STOP_ACTIONS=shutdown,suspend,poweroff

# What VMs still running at the deadline get: suspend or poweroff (default suspend).
#ESXI_STRAGGLER_ACTION=suspend

# This machine's own VM on the host (name or id), stopped last by suspend (default: found by
# its SMBIOS UUID when this machine is a VMware VM).
#ESXI_SELF_VM=nut-client

# Seconds before the host's log is read again when its reader ended on its own (the log
# streams while the session lasts; default 2).
#ESXI_POLL_INTERVAL=2

# Wake-on-LAN when power returns (or by "esxi-suspend wake"): host=MAC for each host to wake,
# the host as in ESXI_HOST (default: none woken).
#ESXI_WOL_MAC=esxi1=aa:bb:cc:dd:ee:ff

# Where the magic packets go: the broadcast address of the hosts' network; host=address
# entries set one host's (default 255.255.255.255).
#ESXI_WOL_BROADCAST=255.255.255.255

# UDP port of the magic packets (default 9).
#ESXI_WOL_PORT=9

# Local NUT monitor service esxi-suspend restarts when it is done, so that upsmon (which runs
# SHUTDOWNCMD only once) watches the UPS again: auto (the first of nut-monitor, nut-client,
# ups that exists), a service name, or none (default auto).
#UPS_SERVICE=auto

# Full command line to run instead of restarting UPS_SERVICE (default: none).
#UPS_RESTART_COMMAND=

# The UPS(es) whose status says when to restart the NUT monitor after a shutdown: auto (the
# MONITOR lines of upsmon.conf), ups@host[:port] (several: comma-separated), or none (restart
# at once) (default auto).
#UPS_NAME=auto

# Seconds between two looks at the UPS while a shutdown run waits for power (default 5).
#UPS_POLL_INTERVAL=5

# Seconds a shutdown run waits at most for power before it restarts the monitor anyway
# (default 86400).
#UPS_WAIT_LIMIT=86400

# ESXI_DEADLINE=auto only: seconds kept back from the UPS's runtime estimate (default 30).
#UPS_RUNTIME_MARGIN=30

# seconds on battery before the shutdown starts (install.sh --configure-upsmon writes it into upssched.conf); 0: only at low battery
#UPS_EARLY_SHUTDOWN=300

# Power back, but this machine's upsd keeps the FSD flag a primary upsmon set: auto (restart
# nut-server), none (wait for you to), or a command line that restarts upsd (default auto).
#UPS_CLEAR_FSD=auto
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
    local opt=${root:+ --env-file $env_file}
    cat <<EOF

Next steps (HOST is your ESXi host, with SSH enabled on it); each is safe to rerun:
 1. Pin the host's SSH key: it shows the fingerprint; compare it with the host's console,
    then answer yes (it also sets ESXI_HOST in $env_file if unset):
      $command_link trust HOST$opt
 2. Authorize our key on the host (asks the password of ESXI_USER, root by default, once;
    stores nothing):
      $command_link enroll HOST$opt
 3. Prove the shutdown path without shutting anything down:
      $command_link check$opt
 4. NUT: upsmon.conf needs (see above; --configure-upsmon writes it), then restart upsmon:
      $shutdowncmd
    and, for the early shutdown after UPS_EARLY_SHUTDOWN seconds on battery, NOTIFYCMD
    upssched and upssched.conf (see above; --configure-upsmon writes them).
EOF
}

if [[ $action == uninstall ]]; then
    uninstall
    exit 0
fi

echo "Installing esxi-suspend from $src${root:+ into $root}:"
install_venv
install_command_link
install_man_page
install_sched_script
install_etc
echo "NUT upsmon.conf:"
configure_upsmon
if [[ $changed == no ]]; then
    echo "Nothing changed: everything was already in place."
fi
next_steps
