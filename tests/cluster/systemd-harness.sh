#!/usr/bin/env bash
# The two-node lab cluster of harness.sh, with nodes that boot systemd as their
# init, as production nodes do: corosync, pacemaker and libvirt run as systemd
# units, and `systemctl poweroff|reboot|stop|restart` inside a node behave as on
# a real machine.
#
# A node is `systemd-nspawn -D / --volatile=yes --boot`: the host's /usr
# read-only under a tmpfs root, a private copy of /etc (written by the harness;
# the host's /etc is never touched), per-node bind mounts for the state that a
# real machine keeps on disk across reboots (/var/lib/pacemaker, /var/lib/libvirt,
# ...), /dev/kvm, and the node's named network namespace wired to the other node
# by a veth pair on a subnet that exists only there (the same wiring as
# harness.sh, under other names, so both labs can run at once).
# Each container gets its own cgroup subtree (systemd-nspawn without a host
# systemd puts its payload into "payload/" of whatever cgroup it starts in: two
# containers started from the same cgroup would share one cgroup tree).
# `systemctl reboot` inside a node makes systemd-nspawn exit with 133: the node's
# runner starts it again, as systemd-nspawn@.service does on a systemd host.
#
# usage: systemd-harness.sh up | down [--purge] [--force] | status | wait [SECONDS]
#        systemd-harness.sh exec NODE CMD...   run CMD inside NODE
#        systemd-harness.sh boot NODE          power a node on (after a poweroff)
#        systemd-harness.sh poweroff NODE      power cut: kill the container at once
#        systemd-harness.sh guest NAME         write a firmware-only guest config, print its path
set -euo pipefail

SYSTEMD_HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/systemd-harness.sh
# shellcheck source=harness.sh
source "$(dirname "$SYSTEMD_HARNESS")/harness.sh"

STATE=${VG_SYSTEMD_CLUSTER_STATE:-/var/tmp/vgsd-cluster}
CACHE=${VG_SYSTEMD_CLUSTER_CACHE:-/var/tmp/vgsd-cluster-cache}
NODES=(vgsd-node1 vgsd-node2)
unset NODE_ADDR
declare -A NODE_ADDR=([vgsd-node1]=172.30.217.1 [vgsd-node2]=172.30.217.2)
CLUSTER_NAME=vgsdlab
CGROUP_PARENT=vgsd-lab

log() { printf '[systemd-harness %(%T)T] %s\n' -1 "$*" >&2; }

# Units of the host's /etc that have no business on a lab node (or that would
# shut guests down behind Pacemaker's back: libvirt-guests), and the libvirt
# TLS socket, which needs certificates the lab does not have.
MASKED_UNITS=(
    postgresql.service postgresql@.service pg_receivewal@.service drbd.service
    logd.service pcsd.service pcsd-ruby.service libvirt-guests.service
    systemd-firstboot.service console-getty.service libvirtd-tls.socket
    systemd-networkd-wait-online.service e2scrub_reap.service
)

# The state a real node keeps on disk across reboots: bound into the container.
PERSISTENT_DIRS=(
    var-lib-pacemaker:/var/lib/pacemaker var-log-pacemaker:/var/log/pacemaker
    var-log-crmsh:/var/log/crmsh var-lib-corosync:/var/lib/corosync
    var-log-corosync:/var/log/corosync var-lib-libvirt:/var/lib/libvirt
    var-cache-libvirt:/var/cache/libvirt var-log-libvirt:/var/log/libvirt
    var-log-journal:/var/log/journal
)

# ------------------------------------------------------------------ node ----

cgroup_dirs() {
    local node=$1
    printf '%s\n' "/sys/fs/cgroup/systemd/$CGROUP_PARENT/$node" "/sys/fs/cgroup/unified/$CGROUP_PARENT/$node"
}

nspawn_pid() {
    local pid_file pid
    pid_file=$(node_dir "$1")/nspawn.pid
    [[ -s $pid_file ]] || return 1
    pid=$(<"$pid_file")
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == systemd-nspawn ]] || return 1
    printf '%s' "$pid"
}

# The container's PID 1 (systemd), as the host sees it.
init_pid() {
    local node=$1 nspawn pid
    nspawn=$(nspawn_pid "$node") || return 1
    pid=$(ps -o pid= --ppid "$nspawn" | head -n1 | tr -d ' ')
    [[ -n $pid && -d /proc/$pid ]] || return 1
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "net:[$(<"$(node_dir "$node")/netns.inode")]" ]] || return 1
    printf '%s' "$pid"
}

in_node() {
    local node=$1 pid
    shift
    pid=$(init_pid "$node") || die "node $node is not running"
    nsenter -t "$pid" -a -r -w -- "$@"
}

mask_unit() { ln -sfn /dev/null "$1/systemd/system/$2"; }
enable_unit() {
    local etc=$1 target=$2 unit=$3
    mkdir -p "$etc/systemd/system/$target.wants"
    ln -sfn "/lib/systemd/system/$unit" "$etc/systemd/system/$target.wants/$unit"
}

# The node's /etc: a copy of the host's with the lab's corosync, libvirt and
# hosts files (written by harness.sh's prepare_node_state) in place.
prepare_node_etc() {
    local node=$1 d etc unit
    d=$(node_dir "$node")
    etc=$d/etc
    rm -rf "$etc"
    cp -a /etc "$etc"
    # A journal that outlives poweroff and reboot: the shutdown order is evidence.
    install -d -m 2755 "$d/var-log-journal"
    echo "$node" >"$etc/hostname"
    tr -d '-' </proc/sys/kernel/random/uuid >"$etc/machine-id"
    cp "$d/hosts" "$etc/hosts"
    rm -rf "$etc/corosync" "$etc/libvirt"
    mv "$d/etc-corosync" "$etc/corosync"
    mv "$d/etc-libvirt" "$etc/libvirt"
    for unit in "${MASKED_UNITS[@]}"; do mask_unit "$etc" "$unit"; done
    # Migration connects to the peer's libvirtd over TCP (auth_tcp = "none" in
    # the lab's libvirtd.conf); under socket activation that is a socket unit.
    enable_unit "$etc" sockets.target libvirtd-tcp.socket
    enable_unit "$etc" multi-user.target corosync.service
    enable_unit "$etc" multi-user.target pacemaker.service
    enable_unit "$etc" multi-user.target libvirtd.service
}

# Runs as the node's runner (in its own session, its own cgroups); boots the
# container again when systemd inside asks for a reboot (exit status 133).
run_container() {
    local node=$1 d cg rc pair binds=()
    d=$(node_dir "$node")
    while read -r cg; do
        mkdir -p "$cg"
        echo $$ >"$cg/cgroup.procs"
    done < <(cgroup_dirs "$node")
    for pair in "${PERSISTENT_DIRS[@]}"; do
        binds+=("--bind=$d/${pair%%:*}:${pair#*:}")
    done
    binds+=("--bind=$d/etc:/etc" "--bind=$STATE/guests")
    [[ -c /dev/kvm ]] && binds+=(--bind=/dev/kvm)
    if [[ -d $STATE/ocf-virtguard ]]; then
        binds+=("--bind-ro=$STATE/agent" "--bind-ro=$STATE/ocf-virtguard:/usr/lib/ocf/resource.d/virtguard")
    fi
    while :; do
        [[ -e $d/powered-off ]] && break
        log "booting $node"
        systemd-nspawn -D / --volatile=yes --boot --register=no --keep-unit \
            --machine="$node" --network-namespace-path="/run/netns/$node" \
            --console=pipe "${binds[@]}" </dev/null &
        echo $! >"$d/nspawn.pid"
        rc=0
        wait $! || rc=$?
        log "$node: systemd-nspawn exited with $rc"
        # One line per shutdown of the node: 0 poweroff, 133 reboot, else a crash.
        echo "$rc" >>"$d/exits"
        ((rc == 133)) || break
    done
    rm -f "$d/nspawn.pid" "$d/runner.pid"
}

runner_alive() {
    local runner_file
    runner_file=$(node_dir "$1")/runner.pid
    [[ -s $runner_file ]] && grep -qs __run-container "/proc/$(<"$runner_file")/cmdline"
}

# Powers a node on, unless its runner still runs (a node that is rebooting:
# the runner boots it again by itself); then waits for it.
start_node() {
    local node=$1 d
    is_node "$node"
    d=$(node_dir "$node")
    if runner_alive "$node"; then
        log "$node is running or rebooting"
    else
        [[ -e /run/netns/$node ]] || die "network namespace $node is missing (run 'up' first)"
        rm -f "$d/powered-off" "$d/nspawn.pid"
        setsid bash "$SYSTEMD_HARNESS" __run-container "$node" </dev/null >>"$d/logs/console.log" 2>&1 &
        echo $! >"$d/runner.pid"
    fi
    wait_for "$node's systemd" 60 init_pid "$node"
    wait_for "corosync on $node" 60 in_node "$node" corosync-cfgtool -s
}

wait_node_services() {
    wait_for "libvirtd on $1" 90 in_node "$1" virsh -c qemu:///system version
}

# A power cut: the container's init is killed, and with it every process of
# the node's PID namespace; the runner does not boot it again.
poweroff_node() {
    local node=$1 d pid cg
    is_node "$node"
    d=$(node_dir "$node")
    [[ -d $d ]] || return 0
    touch "$d/powered-off"
    if pid=$(init_pid "$node"); then
        kill -KILL "$pid"
    fi
    wait_for "$node's runner to end" 30 eval '! runner_alive "$node"'
    # systemd-nspawn leaves its (empty) propagation directory behind on a volatile boot.
    rmdir "/run/systemd/nspawn/propagate/$node" 2>/dev/null || true
    while read -r cg; do
        [[ -d $cg ]] || continue
        # Leaf first; a cgroup with processes left refuses, and says so.
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || log "cannot remove $cg yet"
    done < <(cgroup_dirs "$node")
    rmdir "/sys/fs/cgroup/systemd/$CGROUP_PARENT" "/sys/fs/cgroup/unified/$CGROUP_PARENT" 2>/dev/null || true
}

install_agents() {
    rm -rf "$STATE/ocf-virtguard" "$STATE/agent"
    if [[ -n ${VG_CLUSTER_AGENT:-} ]]; then
        [[ -x $VG_CLUSTER_AGENT ]] || die "VG_CLUSTER_AGENT=$VG_CLUSTER_AGENT is not an executable"
        install -D -m 0755 "$VG_CLUSTER_AGENT" "$STATE/agent/virtguard"
        install -d "$STATE/ocf-virtguard"
        ln -s "$STATE/agent/virtguard" "$STATE/ocf-virtguard/VirtualDomain"
    fi
}

prepare_node() {
    prepare_node_state "$1"
    prepare_node_etc "$1"
}

cmd_status_systemd() {
    local node pid
    [[ -s $STATE/owner ]] && echo "owner: $(describe_owner)$(owner_alive || echo ' -- gone: the next up takes over')"
    for node in "${NODES[@]}"; do
        if pid=$(init_pid "$node"); then
            echo "$node: up (systemd pid $pid, $(in_node "$node" systemctl is-system-running 2>/dev/null || true))"
        else
            echo "$node: down"
        fi
    done
}

main_systemd() {
    local cmd=${1:-}
    shift || true
    case $cmd in
        up)
            command -v systemd-nspawn >/dev/null || die "systemd-nspawn is missing (package systemd-container)"
            cmd_up
            ;;
        down) cmd_down "$@" ;;
        status) cmd_status_systemd ;;
        wait) wait_cluster "${1:-120}" ;;
        exec) cmd_exec "$@" ;;
        boot) start_node "${1:?node}" && wait_node_services "$1" ;;
        poweroff) poweroff_node "${1:?node}" ;;
        guest) cmd_guest "${1:?guest name}" ;;
        __run-container) run_container "$1" ;;
        *) sed -n '20,25p' "$SYSTEMD_HARNESS" >&2; exit 2 ;;
    esac
}

main_systemd "$@"
