# shellcheck shell=bash
# Node kind "namespace" (the interface is declared in lab.sh): a node is its
# named network namespace plus a mount and UTS namespace held by a node-init
# process (the "machine": it and everything started inside it die together
# when the node is powered off). The daemons run in the foreground of their
# own sessions, so the pids recorded are the daemons'. A full node runs
# virtlogd, libvirtd --listen, corosync -f and pacemakerd; a remote node runs
# virtlogd, libvirtd --listen and pacemaker-remoted.
#
# The kind's own commands:
#   __node-init NODE         (internal) become NODE's init
#   crash NODE               kill the node's membership daemon (corosync, or
#                            pacemaker-remoted on a remote node): the node drops
#                            out of the cluster with its guests still running
#   start-libvirtd NODE      start NODE's libvirtd again (after it was killed),
#                            as systemd's Restart= would

# Debian's pacemaker-remote conflicts with pacemaker: ocf/install-deps.sh
# unpacks its daemon beside the system; an installed one serves as well.
pacemaker_remoted() {
    local unpacked=${VG_LAB_PACEMAKER_REMOTED:-/opt/virtguard-lab/pacemaker-remote/usr/sbin/pacemaker-remoted}
    if [[ -x $unpacked ]]; then
        echo "$unpacked"
    else
        command -v pacemaker-remoted
    fi
}

kind_prerequisites() {
    local tool
    for tool in nsenter unshare ip setsid; do
        command -v "$tool" >/dev/null || die "$tool is missing"
    done
    if ((${#REMOTE_NODES[@]} > 0)); then
        pacemaker_remoted >/dev/null || die "pacemaker-remoted is missing (ocf/install-deps.sh unpacks it)"
    fi
}

kind_prepare_node() { :; }

# The node-init process, if it is alive and still inside the node's network namespace.
kind_init_pid() {
    local node=$1 pid_file pid
    pid_file=$(node_dir "$node")/init.pid
    [[ -s $pid_file ]] || return 1
    pid=$(<"$pid_file")
    [[ -d /proc/$pid ]] || return 1
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "net:[$(<"$(node_dir "$node")/netns.inode")]" ]] || return 1
    printf '%s' "$pid"
}

kind_enter() {
    local node=$1 pid
    shift
    pid=$(kind_init_pid "$node") || die "node $node is not running"
    nsenter -t "$pid" -m -u -n -- "$@"
}

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
    # The lab's Pacemaker Remote key, when the lab has remote nodes.
    if [[ -d $STATE/etc-pacemaker ]]; then
        mkdir -p /etc/pacemaker
        mount --bind "$STATE/etc-pacemaker" /etc/pacemaker
    fi
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
    pid=$(kind_init_pid "$node") || die "node $node is not running"
    mapfile -t env_cmd < <(daemon_env)
    setsid nsenter -t "$pid" -m -u -n -- "${env_cmd[@]}" "$@" </dev/null >>"$log_file" 2>&1 &
    echo "$name $!" >>"$(node_dir "$node")/started"
}

kind_start_node() {
    local node=$1 d
    d=$(node_dir "$node")
    rm -f "$d/init.pid" "$d/started"
    log "booting $node"
    setsid nsenter --net="/run/netns/$node" -- unshare --mount --uts --propagation private -- \
        env VG_LAB_STATE="$STATE" bash "$LAB_ENTRY" __node-init "$node" \
        </dev/null >>"$d/logs/init.log" 2>&1 &
    wait_for "$node init" 10 test -s "$d/init.pid"
    start_in_node "$node" virtlogd virtlogd
    start_in_node "$node" libvirtd libvirtd --listen
    if is_remote "$node"; then
        start_in_node "$node" pacemaker-remoted "$(pacemaker_remoted)"
    else
        start_in_node "$node" corosync corosync -f
        wait_for "corosync on $node" 20 kind_enter "$node" corosync-cfgtool -s
        start_in_node "$node" pacemakerd pacemakerd
    fi
}

kind_wait_services() {
    # The first start of a libvirtd probes QEMU's capabilities: several seconds.
    wait_for "libvirtd on $1" 60 kind_enter "$1" virsh -c qemu:///system version
}

kind_poweroff() {
    local node=$1
    [[ -s $(node_dir "$node")/netns.inode ]] || return 0
    VG_CLUSTER_STATE=$STATE bash "$FENCE_AGENT_SRC" -o off -n "$node" >/dev/null
}

kind_describe() {
    echo "init pid $(kind_init_pid "$1"), $(VG_CLUSTER_STATE=$STATE bash "$FENCE_AGENT_SRC" --pids "$1" | wc -l) processes"
}

# A node failure short of a power cut: membership is lost at once, but the
# node's guests keep running until the cluster fences the node.
crash_node() {
    local node=$1 daemon=corosync name pid
    is_node "$node"
    is_remote "$node" && daemon=pacemaker-remoted
    kind_init_pid "$node" >/dev/null || die "node $node is not running"
    while read -r name pid; do
        [[ $name == "$daemon" ]] || continue
        # /proc/PID/comm holds at most 15 characters.
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${daemon:0:15}" &&
            $(readlink "/proc/$pid/ns/net") == "net:[$(<"$(node_dir "$node")/netns.inode")]" ]]; then
            kill -KILL "$pid"
            log "killed $daemon ($pid) of $node"
            return 0
        fi
    done <"$(node_dir "$node")/started"
    die "no $daemon of ours found on $node"
}

kind_command() {
    local cmd=$1
    shift
    case $cmd in
        __node-init) node_init "$1" ;;
        crash) crash_node "${1:?node}" ;;
        start-libvirtd)
            is_node "${1:?node}"
            start_in_node "$1" libvirtd libvirtd --listen
            kind_wait_services "$1"
            ;;
        *) return 127 ;;
    esac
}
