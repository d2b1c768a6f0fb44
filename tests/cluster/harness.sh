#!/usr/bin/env bash
# A two-node Pacemaker/Corosync cluster on one machine, for virtguard's cluster
# tests and benchmarks (tests/cluster.rs runs the scenarios; tests/README.md).
#
# A node is a named network namespace (the "NIC", it survives a power-off) plus
# a mount and UTS namespace held by a node-init process (the "machine": it and
# everything started inside it die together when the node is powered off).
# The two network namespaces are wired by one veth pair on a private subnet that
# exists nowhere else. Every fact about a run lives under $VG_CLUSTER_STATE, so
# `down` (and the next `up`) can remove a previous run, even a crashed one.
# One lab cluster per machine: it belongs to the process that ran `up`; another
# `up` waits for that owner to finish (see claim_cluster).
# The daemons (virtlogd, libvirtd --listen, corosync -f, pacemakerd) run in the
# foreground of their own sessions, so the pids recorded are the daemons'.
# VG_CLUSTER_AGENT=PATH binds that virtguard binary into both nodes as
# ocf:virtguard:VirtualDomain (else the installed agent is used).
#
# usage: harness.sh up | down [--purge] [--force] | status | wait [SECONDS]
#        harness.sh exec NODE CMD...      run CMD inside NODE's namespaces
#        harness.sh boot NODE             power a node on (after a fence)
#        harness.sh poweroff NODE         kill every process of NODE
#        harness.sh crash NODE            kill NODE's corosync: the node drops out of
#                                         the cluster with its guests still running
#        harness.sh guest NAME            write a firmware-only guest config, print its path
#        harness.sh pids NODE             the processes of NODE
#        harness.sh start-libvirtd NODE   start NODE's libvirtd again (after it was
#                                         killed), as systemd's Restart= would
#        harness.sh link NODE up|down     plug or pull NODE's cable to the other node
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${VG_CLUSTER_STATE:-/var/tmp/vg-cluster}
NODES=(vg-node1 vg-node2)
declare -A NODE_ADDR=([vg-node1]=172.30.213.1 [vg-node2]=172.30.213.2)
SUBNET_BITS=29
# Survives `down --purge`: QEMU capabilities probed by libvirtd (it re-probes
# by itself when they no longer match the binaries), saving seconds per start.
CACHE=${VG_CLUSTER_CACHE:-/var/tmp/vg-cluster-cache}
FENCE_AGENT_SRC=$HERE/fence_virtguard_lab
FENCE_AGENT_DST=/usr/sbin/fence_virtguard_lab
CLUSTER_NAME=vglab

log() { printf '[harness %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_dir() { printf '%s/nodes/%s' "$STATE" "$1"; }
is_node() { [[ -n ${NODE_ADDR[$1]+set} ]] || die "unknown node '$1' (nodes: ${NODES[*]})"; }

# The node-init process, if it is alive and still inside the node's network namespace.
init_pid() {
    local node=$1 pid_file pid
    pid_file=$(node_dir "$node")/init.pid
    [[ -s $pid_file ]] || return 1
    pid=$(<"$pid_file")
    [[ -d /proc/$pid ]] || return 1
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "net:[$(<"$(node_dir "$node")/netns.inode")]" ]] || return 1
    printf '%s' "$pid"
}

in_node() {
    local node=$1 pid
    shift
    pid=$(init_pid "$node") || die "node $node is not running"
    nsenter -t "$pid" -m -u -n -- "$@"
}

# ---------------------------------------------------------------- state ----

write_corosync_conf() {
    local file=$1 node id=0
    {
        cat <<EOF
# Written by virtguard's cluster harness; knet on a test-only subnet, no crypto.
totem {
    version: 2
    cluster_name: $CLUSTER_NAME
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 3000
}
logging {
    to_stderr: yes
    to_logfile: no
    to_syslog: no
    timestamp: on
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
nodelist {
EOF
        for node in "${NODES[@]}"; do
            id=$((id + 1))
            printf '    node {\n        name: %s\n        nodeid: %d\n        ring0_addr: %s\n    }\n' \
                "$node" "$id" "${NODE_ADDR[$node]}"
        done
        echo "}"
    } >"$file"
}

write_hosts() {
    local file=$1 node
    {
        echo "127.0.0.1 localhost"
        for node in "${NODES[@]}"; do echo "${NODE_ADDR[$node]} $node"; done
    } >"$file"
}

# A private /etc/libvirt: the host's files minus its domains and autostarted
# networks, a distinct host_uuid (libvirt refuses to migrate to "itself"), TCP
# without auth (only reachable inside the test namespaces), no cgroups (two
# daemons would fight over the same machine cgroup names) and no security driver.
write_libvirt_etc() {
    local dir=$1 uuid
    cp -a /etc/libvirt "$dir"
    find "$dir/qemu" -maxdepth 1 -name '*.xml' -delete
    rm -rf "$dir/qemu/autostart" "$dir/qemu/networks/autostart"
    mkdir -p "$dir/qemu/networks/autostart"
    uuid=$(cat /proc/sys/kernel/random/uuid)
    cat >"$dir/libvirtd.conf" <<EOF
# Written by virtguard's cluster harness.
host_uuid = "$uuid"
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
tcp_port = "16509"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >"$dir/qemu.conf" <<EOF
# Written by virtguard's cluster harness.
cgroup_controllers = [ ]
security_driver = "none"
EOF
    chmod 0600 "$dir/qemu.conf"
}

prepare_node_state() {
    local node=$1 d
    d=$(node_dir "$node")
    mkdir -p "$d"
    install -d -o hacluster -g haclient -m 0755 "$d/var-lib-pacemaker"
    local sub
    for sub in cib pengine blackbox cores; do
        install -d -o hacluster -g haclient -m 0750 "$d/var-lib-pacemaker/$sub"
    done
    install -d -o hacluster -g haclient -m 0770 "$d/var-log-pacemaker"
    install -d -o hacluster -g haclient -m 0775 "$d/var-log-crmsh"
    install -d -m 0755 "$d/etc-corosync" "$d/var-lib-corosync" "$d/var-log-corosync"
    cp -a /etc/corosync/uidgid.d "$d/etc-corosync/" 2>/dev/null || true
    write_corosync_conf "$d/etc-corosync/corosync.conf"
    write_libvirt_etc "$d/etc-libvirt"
    install -d -m 0755 "$d/var-lib-libvirt" "$d/var-cache-libvirt" "$d/var-log-libvirt"
    if [[ -d $CACHE/qemu-capabilities ]]; then
        install -d -m 0755 "$d/var-cache-libvirt/qemu"
        cp -a "$CACHE/qemu-capabilities" "$d/var-cache-libvirt/qemu/capabilities"
    fi
    install -d -m 0711 "$d/var-lib-libvirt/images" "$d/var-lib-libvirt/boot"
    install -d -o libvirt-qemu -g libvirt-qemu -m 0750 "$d/var-lib-libvirt/qemu"
    write_hosts "$d/hosts"
    install -d -m 0755 "$d/logs"
}

# What `up` prepares per node (systemd-harness.sh adds the node's /etc).
prepare_node() { prepare_node_state "$1"; }

# ------------------------------------------------------------ node init ----

# Runs as the node-init process, already inside the node's network namespace
# and a fresh private mount + UTS namespace; never returns.
node_init() {
    local node=$1 d mnt
    d=$(node_dir "$node")
    hostname "$node"
    # Drop the copies of the host's /run mounts (other people's netns handles)
    # so this namespace does not keep them alive, then give the node its own /run.
    awk '$5 ~ "^/run/" {print $5}' /proc/self/mountinfo | sort -r | while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done
    mount -t tmpfs -o mode=0755,size=256m vg-run /run
    mount -t tmpfs -o mode=1777,size=256m vg-shm /dev/shm
    install -d -m 1777 /run/lock
    install -d -m 0755 /run/libvirt /run/vg-lab /run/vg-lab/bin
    local pair src dst
    for pair in \
        var-lib-pacemaker:/var/lib/pacemaker var-log-pacemaker:/var/log/pacemaker \
        var-log-crmsh:/var/log/crmsh etc-corosync:/etc/corosync \
        var-lib-corosync:/var/lib/corosync var-log-corosync:/var/log/corosync \
        etc-libvirt:/etc/libvirt var-lib-libvirt:/var/lib/libvirt \
        var-cache-libvirt:/var/cache/libvirt var-log-libvirt:/var/log/libvirt \
        hosts:/etc/hosts; do
        src=$d/${pair%%:*}
        dst=${pair#*:}
        [[ -e $dst ]] || mkdir -p "$dst"
        mount --bind "$src" "$dst"
    done
    # The agent under test, when the caller names a binary: bound over the
    # provider directory inside the nodes only, so other users of the machine
    # (and their installs) neither see nor disturb it.
    if [[ -d $STATE/ocf-virtguard ]]; then
        mount --bind "$STATE/ocf-virtguard" /usr/lib/ocf/resource.d/virtguard
    fi
    echo $$ >"$d/init.pid.tmp"
    mv "$d/init.pid.tmp" "$d/init.pid"
    exec sleep infinity
}

# -------------------------------------------------------------- daemons ----

# The daemons' environment: clean, as an init system gives it (nothing of the
# caller's, e.g. cargo's or CI's, leaks into the agents Pacemaker runs); the
# per-node /run/vg-lab/bin first on PATH, where scenarios put fake tools (a
# drbdsetup) that only this node's agents see; Pacemaker logging to its own
# file, nothing to the host's syslog.
daemon_env() {
    printf '%s\n' env -i PATH=/run/vg-lab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 HOME=/root PCMK_logfacility=none PCMK_logfile=/var/log/pacemaker/pacemaker.log
}

start_in_node() {
    local node=$1 name=$2 log_file pid
    shift 2
    log_file=$(node_dir "$node")/logs/$name.log
    pid=$(init_pid "$node") || die "node $node is not running"
    mapfile -t env_cmd < <(daemon_env)
    setsid nsenter -t "$pid" -m -u -n -- "${env_cmd[@]}" "$@" </dev/null >>"$log_file" 2>&1 &
    echo "$name $!" >>"$(node_dir "$node")/started"
}

wait_for() {
    local what=$1 seconds=$2
    shift 2
    local end=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "timed out after ${seconds}s waiting for $what"
        sleep 0.5
    done
}

# Starts the node's init and daemons; boot_node also waits for them.
start_node() {
    local node=$1 d netns_file
    is_node "$node"
    d=$(node_dir "$node")
    if init_pid "$node" >/dev/null; then
        log "$node is already running"
        return 0
    fi
    netns_file=/run/netns/$node
    [[ -e $netns_file ]] || die "network namespace $node is missing (run 'up' first)"
    rm -f "$d/init.pid" "$d/started"
    log "booting $node"
    setsid nsenter --net="$netns_file" -- unshare --mount --uts --propagation private -- \
        env VG_CLUSTER_STATE="$STATE" bash "$HERE/harness.sh" __node-init "$node" \
        </dev/null >>"$d/logs/init.log" 2>&1 &
    wait_for "$node init" 10 test -s "$d/init.pid"
    start_in_node "$node" virtlogd virtlogd
    start_in_node "$node" libvirtd libvirtd --listen
    start_in_node "$node" corosync corosync -f
    wait_for "corosync on $node" 20 in_node "$node" corosync-cfgtool -s
    start_in_node "$node" pacemakerd pacemakerd
}

wait_node_services() {
    # The first start of a libvirtd probes QEMU's capabilities: several seconds.
    wait_for "libvirtd on $1" 60 in_node "$1" virsh -c qemu:///system version
}

boot_node() {
    start_node "$1"
    wait_node_services "$1"
}

# A node failure short of a power cut: membership is lost at once, but the
# node's guests keep running until the cluster fences the node.
crash_node() {
    local node=$1 name pid
    is_node "$node"
    init_pid "$node" >/dev/null || die "node $node is not running"
    while read -r name pid; do
        [[ $name == corosync ]] || continue
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == corosync &&
            $(readlink "/proc/$pid/ns/net") == "net:[$(<"$(node_dir "$node")/netns.inode")]" ]]; then
            kill -KILL "$pid"
            log "killed corosync ($pid) of $node"
            return 0
        fi
    done <"$(node_dir "$node")/started"
    die "no corosync of ours found on $node"
}

poweroff_node() {
    local node=$1
    is_node "$node"
    [[ -s $(node_dir "$node")/netns.inode ]] || return 0
    VG_CLUSTER_STATE=$STATE bash "$FENCE_AGENT_SRC" -o off -n "$node" >/dev/null
}

# -------------------------------------------------------------- cluster ----

# True when every running node sees itself online, all running nodes online and a DC.
cluster_ready() {
    local node xml running=() n
    for node in "${NODES[@]}"; do
        init_pid "$node" >/dev/null && running+=("$node")
    done
    ((${#running[@]} > 0)) || return 1
    for node in "${running[@]}"; do
        xml=$(in_node "$node" crm_mon -1 --output-as=xml 2>/dev/null) || return 1
        grep -q '<current_dc present="true"' <<<"$xml" || return 1
        for n in "${running[@]}"; do
            grep -Eq "<node name=\"$n\"[^>]* online=\"true\"" <<<"$xml" || return 1
        done
    done
}

wait_cluster() {
    local seconds=${1:-120} start=$SECONDS
    log "waiting for a DC and all running nodes online (up to ${seconds}s)"
    wait_for "the cluster" "$seconds" cluster_ready
    log "cluster ready after $((SECONDS - start))s"
}

create_network() {
    local node
    for node in "${NODES[@]}"; do
        ip netns add "$node"
        stat -L -c %i "/run/netns/$node" >"$(node_dir "$node")/netns.inode"
        ip -n "$node" link set lo up
    done
    ip link add vglab0 netns "${NODES[0]}" type veth peer name vglab0 netns "${NODES[1]}"
    for node in "${NODES[@]}"; do
        ip -n "$node" addr add "${NODE_ADDR[$node]}/$SUBNET_BITS" dev vglab0
        ip -n "$node" link set vglab0 up
    done
}

# A process that only holds on to the host's mount namespace, so that the fence
# agent (which runs inside a node) can boot a node from the host's view of the
# file system: /proc/1/ns is not accessible on every machine.
start_anchor() {
    setsid sleep infinity </dev/null >/dev/null 2>&1 &
    local pid=$!
    echo "$pid $(proc_start_time "$pid")" >"$STATE/anchor"
}

proc_start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

stop_anchor() {
    local pid start
    [[ -s $STATE/anchor ]] || return 0
    read -r pid start <"$STATE/anchor"
    # Only the very process we started (same pid and start time).
    if [[ -n $pid && $(proc_start_time "$pid") == "$start" ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/anchor"
}

install_agents() {
    install -m 0755 "$FENCE_AGENT_SRC" "$FENCE_AGENT_DST"
    rm -rf "$STATE/ocf-virtguard" "$STATE/agent"
    if [[ -n ${VG_CLUSTER_AGENT:-} ]]; then
        [[ -x $VG_CLUSTER_AGENT ]] || die "VG_CLUSTER_AGENT=$VG_CLUSTER_AGENT is not an executable"
        # A copy, so that rebuilding during a run does not swap the agent under Pacemaker.
        install -D -m 0755 "$VG_CLUSTER_AGENT" "$STATE/agent/virtguard"
        install -d "$STATE/ocf-virtguard"
        ln -s "$STATE/agent/virtguard" "$STATE/ocf-virtguard/VirtualDomain"
        # The mount point of the bind mount inside the nodes.
        install -d /usr/lib/ocf/resource.d/virtguard
    fi
}

save_capabilities_cache() {
    local probed
    probed=$(node_dir "${NODES[0]}")/var-cache-libvirt/qemu/capabilities
    [[ -d $probed ]] || return 0
    rm -rf "$CACHE/qemu-capabilities.new"
    mkdir -p "$CACHE"
    cp -a "$probed" "$CACHE/qemu-capabilities.new"
    rm -rf "$CACHE/qemu-capabilities"
    mv "$CACHE/qemu-capabilities.new" "$CACHE/qemu-capabilities"
}

# ---------------------------------------------------------------- owner ----
# There is one lab cluster per machine (its namespace names are fixed). It
# belongs to the process that brought it up: the test or script that ran `up`
# (our parent, or VG_CLUSTER_OWNER). Another `up` waits while that owner lives,
# and takes over the leftovers of an owner that died (an interrupted run).

owner_pid() { echo "${VG_CLUSTER_OWNER:-$PPID}"; }

owner_alive() {
    local pid start
    [[ -s $STATE/owner ]] || return 1
    read -r pid start _ <"$STATE/owner"
    [[ -n $pid && $(proc_start_time "$pid") == "$start" ]]
}

owned_by_someone_else() {
    local pid
    owner_alive || return 1
    read -r pid _ <"$STATE/owner"
    # (The owner itself may have become this script through exec.)
    [[ $pid != "$(owner_pid)" && $pid != "$$" ]]
}

describe_owner() { read -r pid _ cmd <"$STATE/owner" && echo "pid $pid ($cmd)"; }

# Serialises `up` and `down` of concurrent callers (fd 9; released at exit or
# explicitly before daemons start, which must not inherit it).
lock_state() {
    [[ -n ${STATE_LOCKED:-} ]] && return 0
    mkdir -p "$(dirname "$STATE")"
    exec 9>"$STATE.lock"
    flock -w "${VG_CLUSTER_WAIT:-1800}" 9 || die "another harness call holds $STATE.lock for too long"
    STATE_LOCKED=yes
}

unlock_state() {
    exec 9>&-
    STATE_LOCKED=
}

claim_cluster() {
    local waited=0 limit=${VG_CLUSTER_WAIT:-1800}
    # Wait without the lock, so that the owner can still take its cluster down.
    while lock_state && owned_by_someone_else; do
        unlock_state
        ((waited % 60 == 0)) && log "the lab cluster is in use by $(describe_owner); waiting (up to ${limit}s)"
        ((waited < limit)) || die "the lab cluster is still in use by $(describe_owner)"
        sleep 5
        waited=$((waited + 5))
    done
}

record_owner() {
    local pid
    pid=$(owner_pid)
    echo "$pid $(proc_start_time "$pid") $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-160)" >"$STATE/owner"
}

cmd_up() {
    local node start=$SECONDS
    [[ $(id -u) == 0 ]] || die "must run as root"
    claim_cluster
    cmd_down --purge
    log "state in $STATE"
    mkdir -p "$STATE/guests"
    record_owner
    # From here the owner record keeps others away; the daemons about to start
    # must not inherit (and hold) the lock.
    unlock_state
    for node in "${NODES[@]}"; do prepare_node "$node"; done
    echo "$HERE/harness.sh" >"$STATE/harness"
    start_anchor
    install_agents
    create_network
    for node in "${NODES[@]}"; do start_node "$node"; done
    for node in "${NODES[@]}"; do wait_node_services "$node"; done
    save_capabilities_cache
    wait_cluster 120
    # A baseline the scenarios change as they need: no fencing until a
    # scenario configures the lab fence device.
    in_node "${NODES[0]}" crm_attribute -t crm_config -n stonith-enabled -v false
    log "cluster up in $((SECONDS - start))s"
}

cmd_down() {
    local node purge=no force=no arg
    for arg in "$@"; do
        case $arg in
            --purge) purge=yes ;;
            --force) force=yes ;;
            *) die "usage: harness.sh down [--purge] [--force]" ;;
        esac
    done
    lock_state
    if [[ $force == no ]] && owned_by_someone_else; then
        die "the lab cluster belongs to $(describe_owner), which is still running (down --force to take it down anyway)"
    fi
    for node in "${NODES[@]}"; do
        if [[ -e /run/netns/$node ]]; then
            # Refresh the record: the state dir of a crashed run may be gone.
            mkdir -p "$(node_dir "$node")"
            stat -L -c %i "/run/netns/$node" >"$(node_dir "$node")/netns.inode"
        fi
        poweroff_node "$node"
        if [[ -e /run/netns/$node ]]; then ip netns del "$node"; fi
    done
    stop_anchor
    if [[ $purge == yes ]]; then
        rm -rf "$STATE"
    else
        # Keep the logs for a post-mortem; everything else goes.
        for node in "${NODES[@]}"; do
            [[ -d $(node_dir "$node") ]] || continue
            find "$(node_dir "$node")" -mindepth 1 -maxdepth 1 ! -name logs ! -name 'var-log-*' -exec rm -rf {} +
        done
        rm -rf "$STATE/guests" "$STATE/agent" "$STATE/ocf-virtguard" "$STATE/owner"
    fi
}

cmd_status() {
    local node pid
    if [[ -s $STATE/owner ]]; then
        echo "owner: $(describe_owner)$(owner_alive || echo ' -- gone: the next up takes over')"
    fi
    for node in "${NODES[@]}"; do
        if pid=$(init_pid "$node"); then
            echo "$node: up (init pid $pid, $(VG_CLUSTER_STATE=$STATE bash "$FENCE_AGENT_SRC" --pids "$node" | wc -l) processes)"
        else
            echo "$node: down"
        fi
    done
    for node in "${NODES[@]}"; do
        if init_pid "$node" >/dev/null; then
            in_node "$node" crm_mon -1 -r -f || true
            return 0
        fi
    done
}

# A firmware-only guest: no disk, no kernel, it sits in the BIOS. Under KVM when
# this machine's KVM works, else TCG.
cmd_guest() {
    local name=$1 type=qemu file node capabilities
    [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || die "bad guest name '$name'"
    for node in "${NODES[@]}"; do
        if init_pid "$node" >/dev/null; then
            # Whole output first: grep -q closing the pipe early would fail virsh (pipefail).
            capabilities=$(in_node "$node" virsh -c qemu:///system capabilities 2>/dev/null) || true
            [[ $capabilities == *"<domain type='kvm'"* ]] && type=kvm
            break
        fi
    done
    file=$STATE/guests/$name.xml
    mkdir -p "$STATE/guests"
    cat >"$file" <<EOF
<domain type='$type'>
  <name>$name</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    echo "$file"
}

# `exec NODE [--] CMD...`: CMD inside the node (both labs' in_node).
cmd_exec() {
    [[ $# -ge 2 ]] || die "usage: $(basename "$0") exec NODE CMD..."
    local node=$1
    shift
    [[ ${1:-} == -- ]] && shift
    is_node "$node"
    in_node "$node" "$@"
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
        up) cmd_up ;;
        down) cmd_down "$@" ;;
        status) cmd_status ;;
        wait) wait_cluster "${1:-120}" ;;
        exec) cmd_exec "$@" ;;
        boot) boot_node "${1:?node}" ;;
        poweroff) poweroff_node "${1:?node}" ;;
        crash) crash_node "${1:?node}" ;;
        pids) VG_CLUSTER_STATE=$STATE bash "$FENCE_AGENT_SRC" --pids "${1:?node}" ;;
        start-libvirtd)
            is_node "${1:?node}"
            start_in_node "$1" libvirtd libvirtd --listen
            wait_node_services "$1"
            ;;
        link)
            is_node "${1:?node}"
            [[ ${2:-} == up || ${2:-} == down ]] || die "usage: harness.sh link NODE up|down"
            ip -n "$1" link set vglab0 "$2"
            ;;
        guest) cmd_guest "${1:?guest name}" ;;
        __node-init) node_init "$1" ;;
        *) sed -n '18,28p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
}

# Sourced by systemd-harness.sh for its building blocks; run, it is the lab.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
