# shellcheck shell=bash
# Node kind "systemd" (the interface is declared in lab.sh): a node is
# `systemd-nspawn -D / --volatile=yes --boot`: the host's /usr read-only under a
# tmpfs root, a private copy of /etc (written here; the host's /etc is never
# touched), per-node bind mounts for the state that a real machine keeps on
# disk across reboots (/var/lib/pacemaker, /var/lib/libvirt, ...), /dev/kvm,
# and the node's named network namespace.
# Each container gets its own cgroup subtree (systemd-nspawn without a host
# systemd puts its payload into "payload/" of whatever cgroup it starts in: two
# containers started from the same cgroup would share one cgroup tree).
# `systemctl reboot` inside a node makes systemd-nspawn exit with 133: the node's
# runner starts it again, as systemd-nspawn@.service does on a systemd host.
# Full nodes only: Pacemaker Remote nodes are the namespace kind's.
#
# The kind's own command:
#   __run-container NODE     (internal) the node's runner

# Units of the host's /etc that have no business on a lab node (or that would
# shut guests down behind Pacemaker's back: libvirt-guests; or turn a full node
# into a remote one: pacemaker_remote), and the libvirt TLS socket, which needs
# certificates the lab does not have.
MASKED_UNITS=(
    postgresql.service postgresql@.service pg_receivewal@.service drbd.service
    logd.service pcsd.service pcsd-ruby.service libvirt-guests.service
    systemd-firstboot.service console-getty.service libvirtd-tls.socket
    systemd-networkd-wait-online.service e2scrub_reap.service
    pacemaker_remote.service
)

# The state a real node keeps on disk across reboots: bound into the container.
PERSISTENT_DIRS=(
    var-lib-pacemaker:/var/lib/pacemaker var-log-pacemaker:/var/log/pacemaker
    var-log-crmsh:/var/log/crmsh var-lib-corosync:/var/lib/corosync
    var-log-corosync:/var/log/corosync var-lib-libvirt:/var/lib/libvirt
    var-cache-libvirt:/var/cache/libvirt var-log-libvirt:/var/log/libvirt
    var-log-journal:/var/log/journal
)

kind_prerequisites() {
    command -v systemd-nspawn >/dev/null || die "systemd-nspawn is missing (package systemd-container)"
    ((${#REMOTE_NODES[@]} == 0)) || die "the systemd node kind has no Pacemaker Remote nodes"
}

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
kind_init_pid() {
    local node=$1 nspawn pid
    nspawn=$(nspawn_pid "$node") || return 1
    pid=$(ps -o pid= --ppid "$nspawn" | head -n1 | tr -d ' ')
    [[ -n $pid && -d /proc/$pid ]] || return 1
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "net:[$(<"$(node_dir "$node")/netns.inode")]" ]] || return 1
    printf '%s' "$pid"
}

kind_enter() {
    local node=$1 pid
    shift
    pid=$(kind_init_pid "$node") || die "node $node is not running"
    nsenter -t "$pid" -a -r -w -- "$@"
}

mask_unit() { ln -sfn /dev/null "$1/systemd/system/$2"; }
enable_unit() {
    local etc=$1 target=$2 unit=$3
    mkdir -p "$etc/systemd/system/$target.wants"
    ln -sfn "/lib/systemd/system/$unit" "$etc/systemd/system/$target.wants/$unit"
}

# The node's /etc: a copy of the host's with the lab's corosync, libvirt and
# hosts files (written by lab.sh's prepare_node_state) in place.
kind_prepare_node() {
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
# the runner boots it again by itself); then waits for its Corosync.
kind_start_node() {
    local node=$1 d
    d=$(node_dir "$node")
    if runner_alive "$node"; then
        log "$node is running or rebooting"
    else
        rm -f "$d/powered-off" "$d/nspawn.pid"
        setsid bash "$LAB_ENTRY" __run-container "$node" </dev/null >>"$d/logs/console.log" 2>&1 &
        echo $! >"$d/runner.pid"
    fi
    wait_for "$node's systemd" 60 kind_init_pid "$node"
    wait_for "corosync on $node" 60 kind_enter "$node" corosync-cfgtool -s
}

kind_wait_services() {
    wait_for "libvirtd on $1" 90 kind_enter "$1" virsh -c qemu:///system version
}

# A power cut: the container's init is killed, and with it every process of
# the node's PID namespace; the runner does not boot it again.
kind_poweroff() {
    local node=$1 d pid cg
    d=$(node_dir "$node")
    [[ -d $d ]] || return 0
    touch "$d/powered-off"
    if pid=$(kind_init_pid "$node"); then
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

kind_describe() {
    echo "systemd pid $(kind_init_pid "$1"), $(kind_enter "$1" systemctl is-system-running 2>/dev/null || true)"
}

kind_command() {
    case $1 in
        __run-container) run_container "$2" ;;
        *) return 127 ;;
    esac
}
