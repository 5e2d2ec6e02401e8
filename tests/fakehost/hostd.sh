# Sourced by the fake `vim-cmd` and `esxcli` (both hostd clients on a real host): what they
# read of the fake host's state, and what every call pays to hostd. Not a program: no `#!`,
# no exec bit. Needs FAKE_ESXI_DIR and `here` (the fake's directory) set.

# show NAME: print $FAKE_ESXI_DIR/NAME if the test wrote one, else the default in data/.
show() {
    if [ -f "$FAKE_ESXI_DIR/$1" ]; then cat "$FAKE_ESXI_DIR/$1"; else cat "$here/data/$1"; fi
}

state_of() {
    if [ -f "$FAKE_ESXI_DIR/state/$1" ]; then cat "$FAKE_ESXI_DIR/state/$1"; else echo "Powered on"; fi
}

uuid_of() {
    if [ -f "$FAKE_ESXI_DIR/uuid/$1" ]; then
        cat "$FAKE_ESXI_DIR/uuid/$1"
    else
        echo "564d0000-0000-0000-0000-$(printf '%012d' "$1")"
    fi
}

# vm_field ID N: from VM ID's getallvms row, 1 name, 2 [datastore] path.vmx, 3 guest id,
# 4 hw version. The name ends at the last run of 2+ blanks before a `[datastore] ....vmx`.
vm_field() {
    show getallvms.txt | tr -d '\r' | grep -m 1 "^$1[[:space:]]" |
        sed -n -E "s/^[0-9]+[[:space:]]+(.*[^[:space:]])[[:space:]]{2,}(\[[^]]*\] .*\.vmx)[[:space:]]+([^[:space:]]+)[[:space:]]+([^[:space:]]+).*$/\\$2/p"
}

# hostd_slot PROGRAM ARGS...: with $FAKE_ESXI_DIR/hostd_slots, take one of hostd's slots (a
# directory per call being served, mkdir is atomic; given back at exit), or fail at once as
# a busy hostd does, the call logged to resets.log.
hostd_slot() {
    [ -f "$FAKE_ESXI_DIR/hostd_slots" ] || return 0
    mkdir -p "$FAKE_ESXI_DIR/hostd"
    slot=
    n=1
    while [ "$n" -le "$(cat "$FAKE_ESXI_DIR/hostd_slots")" ]; do
        if mkdir "$FAKE_ESXI_DIR/hostd/$n" 2>/dev/null; then slot=$FAKE_ESXI_DIR/hostd/$n; break; fi
        n=$((n + 1))
    done
    if [ -z "$slot" ]; then
        printf '%s\t%s\n' "$(date +%s.%N)" "reset: $*" >>"$FAKE_ESXI_DIR/resets.log"
        echo "Failed to login: Connection reset by peer"
        exit 1
    fi
    trap 'rmdir "$slot"' EXIT
}

# pay_latency PROGRAM: with $FAKE_ESXI_DIR/latency, sleep that many seconds.
pay_latency() {
    [ -f "$FAKE_ESXI_DIR/latency" ] || return 0
    latency=$(cat "$FAKE_ESXI_DIR/latency")
    if ! sleep "$latency"; then
        echo "$1: bad latency '$latency' in $FAKE_ESXI_DIR/latency" >&2
        exit 1
    fi
}
