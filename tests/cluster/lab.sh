# shellcheck shell=bash
# The lab cluster on one machine, whatever its nodes are made of: sourced by
# an entry script (harness.sh, systemd-harness.sh, scale-harness.sh) that
# names the lab and its nodes, and by exactly one node kind (node-namespace.sh
# or node-systemd.sh) that knows how such a node is powered on and entered.
#
# The entry script sets, before sourcing this file:
#   LAB_ENTRY       its own path: what the fence agent runs to boot a node again
#   LAB_LOG_TAG     how its log lines begin
#   CLUSTER_NAME    the Corosync cluster name
#   STATE, CACHE    the lab's state directory and the QEMU capabilities cache
#   FULL_NODES      the Corosync members
#   REMOTE_NODES    the Pacemaker Remote nodes (may be empty)
#   NODE_ADDR       node -> address on the lab's subnet, SUBNET_BITS its length
# and then calls lab_main "$@".
#
# Every node, whatever its kind, is a named network namespace (the "NIC": it
# survives a power-off) plugged into one bridge, the lab's switch, which lives
# in a network namespace of its own; `link NODE down` pulls the node's cable.
# Every fact about a run lives under $STATE, so `down` (and the next `up`) can
# remove a previous run, even a crashed one. One lab of each name per machine:
# it belongs to the process that ran `up`; another `up` waits for that owner
# to finish (see claim_cluster).
#
# What a node kind must define (checked by require_node_kind):
#   kind_prerequisites           fail, naming what is missing, before `up`
#   kind_prepare_node NODE       write the node's files under node_dir (after the shared ones)
#   kind_start_node NODE         power the node on; return once its Corosync (or
#                                pacemaker-remoted) can start answering
#   kind_wait_services NODE      wait until the node's libvirtd answers
#   kind_init_pid NODE           print the pid of the node's init, fail if it is off
#   kind_enter NODE CMD...       run CMD inside the node
#   kind_poweroff NODE           power cut: nothing of the node survives
#   kind_describe NODE           one line about a running node, for `status`
#   kind_command CMD ARGS...     the kind's own commands; exit status 127 when CMD is not one

NODE_KIND_FUNCTIONS=(
    kind_prerequisites kind_prepare_node kind_start_node kind_wait_services kind_init_pid
    kind_enter kind_poweroff kind_describe kind_command
)

# The fence agent and a node's own init re-run the entry script with the
# state directory they were given, whatever the entry's default.
STATE=${VG_LAB_STATE:-$STATE}
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FENCE_AGENT_SRC=$LAB_DIR/fence_virtguard_lab
FENCE_AGENT_DST=/usr/sbin/fence_virtguard_lab
# The node's end of its cable, inside every node's network namespace.
LINK_IF=vglab0

log() { printf '[%s %(%T)T] %s\n' "$LAB_LOG_TAG" -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_node_kind() {
    local f missing=()
    for f in "${NODE_KIND_FUNCTIONS[@]}"; do
        declare -F "$f" >/dev/null || missing+=("$f")
    done
    ((${#missing[@]} == 0)) || die "the node kind does not define: ${missing[*]}"
}

all_nodes() { printf '%s\n' "${FULL_NODES[@]}" ${REMOTE_NODES[@]+"${REMOTE_NODES[@]}"}; }
is_remote() {
    local n
    for n in ${REMOTE_NODES[@]+"${REMOTE_NODES[@]}"}; do [[ $n == "$1" ]] && return 0; done
    return 1
}
node_dir() { printf '%s/nodes/%s' "$STATE" "$1"; }
is_node() { [[ -n ${NODE_ADDR[$1]+set} ]] || die "unknown node '$1' (nodes: $(all_nodes | tr '\n' ' '))"; }
switch_netns() { printf '%s-switch' "$CLUSTER_NAME"; }

init_pid() { kind_init_pid "$@"; }
in_node() {
    init_pid "$1" >/dev/null || die "node $1 is not running"
    kind_enter "$@"
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

proc_start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# ---------------------------------------------------------------- state ----

write_corosync_conf() {
    local file=$1 node id=0 two_node=0
    # Two members cannot outvote each other: Corosync's two_node mode. From
    # three on, a majority is a real quorum.
    ((${#FULL_NODES[@]} == 2)) && two_node=1
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
    two_node: $two_node
}
nodelist {
EOF
        for node in "${FULL_NODES[@]}"; do
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
        for node in $(all_nodes); do echo "${NODE_ADDR[$node]} $node"; done
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

# The key Pacemaker Remote connections are authenticated with: the lab's own,
# the same on every node (the host's /etc/pacemaker is never read or written).
write_pacemaker_etc() {
    local dir=$STATE/etc-pacemaker
    [[ -s $dir/authkey ]] && return 0
    install -d -m 0750 -g haclient "$dir"
    dd if=/dev/urandom of="$dir/authkey" bs=4096 count=1 status=none
    chown root:haclient "$dir/authkey"
    chmod 0640 "$dir/authkey"
}

# The files every node has, whatever its kind (the kind adds its own).
prepare_node_state() {
    local node=$1 d sub
    d=$(node_dir "$node")
    mkdir -p "$d"
    echo "$LAB_ENTRY" >"$d/entry"
    install -d -o hacluster -g haclient -m 0755 "$d/var-lib-pacemaker"
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

save_capabilities_cache() {
    local probed
    probed=$(node_dir "${FULL_NODES[0]}")/var-cache-libvirt/qemu/capabilities
    [[ -d $probed ]] || return 0
    rm -rf "$CACHE/qemu-capabilities.new"
    mkdir -p "$CACHE"
    cp -a "$probed" "$CACHE/qemu-capabilities.new"
    rm -rf "$CACHE/qemu-capabilities"
    mv "$CACHE/qemu-capabilities.new" "$CACHE/qemu-capabilities"
}

# -------------------------------------------------------------- network ----

# One bridge in the switch's namespace; each node's cable is a veth pair, the
# node's end named $LINK_IF, the switch's end named after the node.
create_network() {
    local node switch
    switch=$(switch_netns)
    ip netns add "$switch"
    ip -n "$switch" link set lo up
    ip -n "$switch" link add lab type bridge
    ip -n "$switch" link set lab up
    for node in $(all_nodes); do
        ip netns add "$node"
        stat -L -c %i "/run/netns/$node" >"$(node_dir "$node")/netns.inode"
        ip -n "$node" link set lo up
        ip link add "$LINK_IF" netns "$node" type veth peer name "$node" netns "$switch"
        ip -n "$switch" link set "$node" master lab up
        ip -n "$node" addr add "${NODE_ADDR[$node]}/$SUBNET_BITS" dev "$LINK_IF"
        ip -n "$node" link set "$LINK_IF" up
    done
}

remove_network() {
    local node switch
    switch=$(switch_netns)
    for node in $(all_nodes); do
        if [[ -e /run/netns/$node ]]; then ip netns del "$node"; fi
    done
    if [[ -e /run/netns/$switch ]]; then ip netns del "$switch"; fi
}

# ------------------------------------------------------------ power ----

start_node() {
    local node=$1
    is_node "$node"
    if init_pid "$node" >/dev/null; then
        log "$node is already running"
        return 0
    fi
    [[ -e /run/netns/$node ]] || die "network namespace $node is missing (run 'up' first)"
    kind_start_node "$node"
}

boot_node() {
    start_node "$1"
    kind_wait_services "$1"
}

poweroff_node() {
    is_node "$1"
    kind_poweroff "$1"
}

# -------------------------------------------------------------- cluster ----

# True when every full node that runs sees a DC and every running node
# (full or remote) online.
cluster_ready() {
    local node xml running=() full=() n
    for node in $(all_nodes); do
        init_pid "$node" >/dev/null || continue
        running+=("$node")
        is_remote "$node" || full+=("$node")
    done
    ((${#full[@]} > 0)) || return 1
    for node in "${full[@]}"; do
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

wait_members() {
    local seconds=$1 start=$SECONDS
    log "waiting for a DC and the full nodes online (up to ${seconds}s)"
    wait_for "the cluster members" "$seconds" members_ready
    log "members ready after $((SECONDS - start))s"
}

members_ready() {
    local xml n
    xml=$(in_node "${FULL_NODES[0]}" crm_mon -1 --output-as=xml 2>/dev/null) || return 1
    grep -q '<current_dc present="true"' <<<"$xml" || return 1
    for n in "${FULL_NODES[@]}"; do
        grep -Eq "<node name=\"$n\"[^>]* online=\"true\"" <<<"$xml" || return 1
    done
}

# Each remote node is joined by an ocf:pacemaker:remote resource named after
# it, which Pacemaker runs on one of the full nodes.
add_remote_connections() {
    local node xml
    for node in ${REMOTE_NODES[@]+"${REMOTE_NODES[@]}"}; do
        xml="<primitive class=\"ocf\" provider=\"pacemaker\" type=\"remote\" id=\"$node\">"
        xml+="<instance_attributes id=\"$node-params\"><nvpair id=\"$node-server\" name=\"server\" value=\"${NODE_ADDR[$node]}\"/>"
        xml+="<nvpair id=\"$node-reconnect\" name=\"reconnect_interval\" value=\"15s\"/></instance_attributes>"
        xml+="<operations><op id=\"$node-monitor\" name=\"monitor\" interval=\"10s\" timeout=\"15s\"/></operations></primitive>"
        in_node "${FULL_NODES[0]}" cibadmin -C -o resources -X "$xml"
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

# The fence agent where every node finds it (the nodes see the host's /usr),
# and the agent under test, when the caller names a binary, as a copy (so that
# rebuilding during a run does not swap the agent under Pacemaker) that the
# node kind binds over the provider directory inside the nodes only.
install_agents() {
    install -m 0755 "$FENCE_AGENT_SRC" "$FENCE_AGENT_DST"
    rm -rf "$STATE/ocf-virtguard" "$STATE/agent"
    if [[ -n ${VG_CLUSTER_AGENT:-} ]]; then
        [[ -x $VG_CLUSTER_AGENT ]] || die "VG_CLUSTER_AGENT=$VG_CLUSTER_AGENT is not an executable"
        install -D -m 0755 "$VG_CLUSTER_AGENT" "$STATE/agent/virtguard"
        install -d "$STATE/ocf-virtguard"
        ln -s "$STATE/agent/virtguard" "$STATE/ocf-virtguard/VirtualDomain"
        # The mount point of the bind mount inside the nodes.
        install -d /usr/lib/ocf/resource.d/virtguard
    fi
}

# ---------------------------------------------------------------- owner ----
# There is one lab of each name per machine (its namespace names are fixed).
# It belongs to the process that brought it up: the test or script that ran
# `up` (our parent, or VG_CLUSTER_OWNER). Another `up` waits while that owner
# lives, and takes over the leftovers of an owner that died (an interrupted run).

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

# ------------------------------------------------------------- commands ----

cmd_up() {
    local node start=$SECONDS
    [[ $(id -u) == 0 ]] || die "must run as root"
    kind_prerequisites
    claim_cluster
    cmd_down --purge
    log "state in $STATE"
    mkdir -p "$STATE/guests"
    record_owner
    # From here the owner record keeps others away; the daemons about to start
    # must not inherit (and hold) the lock.
    unlock_state
    ((${#REMOTE_NODES[@]} == 0)) || write_pacemaker_etc
    for node in $(all_nodes); do
        prepare_node_state "$node"
        kind_prepare_node "$node"
    done
    start_anchor
    install_agents
    create_network
    for node in $(all_nodes); do start_node "$node"; done
    for node in $(all_nodes); do kind_wait_services "$node"; done
    save_capabilities_cache
    # A baseline the scenarios change as they need: no fencing until a
    # scenario configures the lab fence device (remote nodes that are not yet
    # connected count as unclean: with fencing on, they would wait for it).
    if ((${#REMOTE_NODES[@]} > 0)); then
        wait_members 120
        in_node "${FULL_NODES[0]}" crm_attribute -t crm_config -n stonith-enabled -v false
        add_remote_connections
    fi
    wait_cluster 180
    in_node "${FULL_NODES[0]}" crm_attribute -t crm_config -n stonith-enabled -v false
    log "cluster up in $((SECONDS - start))s"
}

cmd_down() {
    local node purge=no force=no arg
    for arg in "$@"; do
        case $arg in
            --purge) purge=yes ;;
            --force) force=yes ;;
            *) die "usage: $(basename "$LAB_ENTRY") down [--purge] [--force]" ;;
        esac
    done
    lock_state
    if [[ $force == no ]] && owned_by_someone_else; then
        die "the lab cluster belongs to $(describe_owner), which is still running (down --force to take it down anyway)"
    fi
    for node in $(all_nodes); do
        if [[ -e /run/netns/$node ]]; then
            # Refresh the record: the state dir of a crashed run may be gone.
            mkdir -p "$(node_dir "$node")"
            stat -L -c %i "/run/netns/$node" >"$(node_dir "$node")/netns.inode"
        fi
        kind_poweroff "$node"
    done
    remove_network
    stop_anchor
    if [[ $purge == yes ]]; then
        rm -rf "$STATE"
    else
        # Keep the logs for a post-mortem; everything else goes.
        for node in $(all_nodes); do
            [[ -d $(node_dir "$node") ]] || continue
            find "$(node_dir "$node")" -mindepth 1 -maxdepth 1 ! -name logs ! -name 'var-log-*' -exec rm -rf {} +
        done
        rm -rf "$STATE/guests" "$STATE/agent" "$STATE/ocf-virtguard" "$STATE/owner" "$STATE/etc-pacemaker"
    fi
}

cmd_status() {
    local node
    if [[ -s $STATE/owner ]]; then
        echo "owner: $(describe_owner)$(owner_alive || echo ' -- gone: the next up takes over')"
    fi
    for node in $(all_nodes); do
        if init_pid "$node" >/dev/null; then
            echo "$node: up ($(kind_describe "$node"))"
        else
            echo "$node: down"
        fi
    done
    for node in "${FULL_NODES[@]}"; do
        if init_pid "$node" >/dev/null; then
            in_node "$node" crm_mon -1 -r -f || true
            return 0
        fi
    done
}

# `lab_guest_xml NAME TYPE`: the domain XML of the lab's guest, a firmware-only
# one (no disk, no kernel: it sits in the BIOS) of domain type TYPE (kvm or
# qemu). The only place the shell writes a domain; tests/support/guest_xml.rs
# builds the same bytes and tests/lab_smoke.rs fails when the two drift.
lab_guest_xml() {
    local name=$1 type=$2
    cat <<EOF
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
}

# The lab's guest (see lab_guest_xml), under KVM when the first running node's
# libvirt offers it (the node's view, not the host's /dev/kvm), else TCG.
cmd_guest() {
    local name=$1 type=qemu file node capabilities
    [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || die "bad guest name '$name'"
    for node in $(all_nodes); do
        if init_pid "$node" >/dev/null; then
            # Whole output first: grep -q closing the pipe early would fail virsh (pipefail).
            capabilities=$(in_node "$node" virsh -c qemu:///system capabilities 2>/dev/null) || true
            [[ $capabilities == *"<domain type='kvm'"* ]] && type=kvm
            break
        fi
    done
    file=$STATE/guests/$name.xml
    mkdir -p "$STATE/guests"
    lab_guest_xml "$name" "$type" >"$file"
    echo "$file"
}

# `exec NODE [--] CMD...`: CMD inside the node.
cmd_exec() {
    [[ $# -ge 2 ]] || die "usage: $(basename "$LAB_ENTRY") exec NODE CMD..."
    local node=$1
    shift
    [[ ${1:-} == -- ]] && shift
    is_node "$node"
    in_node "$node" "$@"
}

cmd_link() {
    is_node "${1:?node}"
    [[ ${2:-} == up || ${2:-} == down ]] || die "usage: $(basename "$LAB_ENTRY") link NODE up|down"
    ip -n "$1" link set "$LINK_IF" "$2"
}

# The lines of the entry script's header that describe its usage.
usage() {
    sed -n '/^# usage:/,/^[^#]/p' "$LAB_ENTRY" | sed '$d' >&2
    exit 2
}

lab_main() {
    require_node_kind
    local cmd=${1:-} rc
    shift || true
    case $cmd in
        up) cmd_up ;;
        down) cmd_down "$@" ;;
        status) cmd_status ;;
        wait) wait_cluster "${1:-120}" ;;
        exec) cmd_exec "$@" ;;
        boot) boot_node "${1:?node}" ;;
        poweroff) poweroff_node "${1:?node}" ;;
        pids) is_node "${1:?node}" && VG_CLUSTER_STATE=$STATE bash "$FENCE_AGENT_SRC" --pids "$1" ;;
        link) cmd_link "$@" ;;
        nodes) all_nodes ;;
        remote-nodes) printf '%s\n' ${REMOTE_NODES[@]+"${REMOTE_NODES[@]}"} ;;
        guest) cmd_guest "${1:?guest name}" ;;
        *)
            rc=0
            kind_command "$cmd" "$@" || rc=$?
            ((rc != 127)) || usage
            return "$rc"
            ;;
    esac
}
