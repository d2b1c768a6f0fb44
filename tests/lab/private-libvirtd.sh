#!/bin/sh
# A private libvirtd (plus its virtlogd) in a mount namespace of its own, so
# that one machine has several independent hypervisors to migrate between.
#
#   private-libvirtd.sh start DIR     create DIR, start the namespace and daemons,
#                                     print the URI once it answers
#   private-libvirtd.sh stop DIR      destroy its guests, end every process of the
#                                     namespace (by pid), remove DIR
#   private-libvirtd.sh kill-daemon DIR     SIGKILL libvirtd only (guests live on)
#   private-libvirtd.sh restart-daemon DIR  start libvirtd again in the namespace
#
# Inside the namespace: a tmpfs on /run; private directories of DIR bound on
# /run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt, and a
# copy of /etc/libvirt whose libvirtd.conf has its own host_uuid (libvirt
# refuses to migrate to a host with its own UUID) and puts the sockets in DIR:
#   qemu+unix:///system?socket=DIR/libvirt-sock
# The namespace's mounts stay private to it; the host sees only DIR.
#
# Files in DIR: holder.pid (the process that keeps the namespace), mntns (its
# mount namespace, to find all its processes even after the holder is gone),
# libvirtd.pid, virtlogd.pid, uri, ns.log, log/libvirtd.log.
set -eu

MARKER=.virtguard-private-libvirtd
SELF=$(readlink -f "$0")
START_TIMEOUT=${VIRTGUARD_PRIVATE_START_TIMEOUT:-60}

die() { echo "private-libvirtd.sh: $*" >&2; exit 1; }

usage() { die "usage: $0 start|stop|kill-daemon|restart-daemon DIR"; }

[ $# -eq 2 ] || usage
action=$1
case "$2" in
    /*) dir=$2 ;;
    *) dir=$(pwd)/$2 ;;
esac

uri_of() { echo "qemu+unix:///system?socket=$1/libvirt-sock"; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

read_pid() { cat "$dir/$1" 2>/dev/null || true; }

answers() { timeout 15 virsh -q -c "$(uri_of "$dir")" version >/dev/null 2>&1; }

wait_until() {
    # wait_until SECONDS COMMAND...: poll every 0.2 s
    limit=$(( $1 * 5 )); shift
    i=0
    while [ "$i" -lt "$limit" ]; do
        "$@" && return 0
        sleep 0.2
        i=$((i + 1))
    done
    "$@"
}

# Copies the top of the directory tree (owners and modes, no files) of $1 to
# $2: the directories the packages made. Deeper ones belong to running guests
# of the host's libvirtd and come and go while we look.
copy_skeleton() {
    mkdir -p "$2"
    (cd "$1" && find . -maxdepth 2 -type d 2>/dev/null) | while read -r sub; do
        mkdir -p "$2/$sub"
        chown --reference="$1/$sub" "$2/$sub" 2>/dev/null || true
        chmod --reference="$1/$sub" "$2/$sub" 2>/dev/null || true
    done
}

# Runs inside the new namespace: $1 = DIR. Ends as the namespace's holder.
inner() {
    d=$1
    mount -t tmpfs -o mode=0755 vglab-run /run
    mkdir -p /run/libvirt
    mount --bind "$d/run-libvirt" /run/libvirt
    mount --bind "$d/lib" /var/lib/libvirt
    mount --bind "$d/cache" /var/cache/libvirt
    mount --bind "$d/log" /var/log/libvirt
    mount --bind "$d/etc/libvirt" /etc/libvirt
    echo $$ > "$d/holder.pid"
    readlink /proc/self/ns/mnt > "$d/mntns"
    virtlogd -d -p "$d/virtlogd.pid"
    libvirtd -d -p "$d/libvirtd.pid"
    exec sleep infinity
}

start() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    for tool in unshare nsenter virtlogd libvirtd virsh; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
    if [ -e "$dir" ] && [ ! -e "$dir/$MARKER" ] && [ -n "$(ls -A "$dir")" ]; then
        die "$dir exists and is not ours"
    fi
    alive "$(read_pid holder.pid)" && die "$dir is already running"
    mkdir -p "$dir"
    chmod 0755 "$dir"
    touch "$dir/$MARKER"
    rm -f "$dir/holder.pid" "$dir/mntns" "$dir/libvirtd.pid" "$dir/virtlogd.pid"

    mkdir -p "$dir/run-libvirt" "$dir/etc"
    copy_skeleton /var/lib/libvirt "$dir/lib"
    copy_skeleton /var/cache/libvirt "$dir/cache"
    copy_skeleton /var/log/libvirt "$dir/log"
    # QEMU's probed capabilities: a cache libvirt revalidates; saves a probe.
    cp -a /var/cache/libvirt/qemu/capabilities/. "$dir/cache/qemu/capabilities/" 2>/dev/null || true

    rm -rf "$dir/etc/libvirt"
    cp -a /etc/libvirt "$dir/etc/libvirt"
    # Nothing of the host's: no persistent domains, nothing autostarted.
    rm -f "$dir/etc/libvirt/qemu/"*.xml
    find "$dir/etc/libvirt" -path '*/autostart/*' -delete
    uuid=$(cat /proc/sys/kernel/random/uuid)
    cat > "$dir/etc/libvirt/libvirtd.conf" <<EOF
# Private libvirtd of the virtguard test lab ($dir).
host_uuid = "$uuid"
unix_sock_dir = "$dir"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF

    # setsid + no inherited stdio: the namespace outlives this script and
    # must not hold its caller's pipes open.
    setsid unshare --mount --propagation private --fork \
        sh "$SELF" inner "$dir" </dev/null >"$dir/ns.log" 2>&1 &
    launcher=$!
    if ! wait_until "$START_TIMEOUT" started_or_failed "$launcher" || ! answers; then
        cat "$dir/ns.log" >&2 || true
        tail -n 20 "$dir/log/libvirtd.log" >&2 2>/dev/null || true
        stop >/dev/null 2>&1 || true
        die "the private libvirtd in $dir did not come up"
    fi
    uri_of "$dir"
}

started_or_failed() {
    answers && return 0
    # The launcher gone means the namespace setup failed: stop waiting.
    ! kill -0 "$1" 2>/dev/null
}

stop() {
    [ -e "$dir/$MARKER" ] || { [ -e "$dir" ] && die "$dir is not ours"; exit 0; }
    # Guests left running with libvirtd dead: let libvirt destroy them, so
    # that it also removes their cgroups.
    if [ -n "$(qemu_pids)" ] && alive "$(read_pid holder.pid)" && ! answers; then
        restart_daemon >/dev/null 2>&1 || true
    fi
    if answers; then
        for name in $(timeout 30 virsh -q -c "$(uri_of "$dir")" list --name 2>/dev/null); do
            timeout 30 virsh -q -c "$(uri_of "$dir")" destroy "$name" >/dev/null 2>&1 || true
        done
    fi
    for daemon in libvirtd virtlogd; do
        pid=$(read_pid "$daemon.pid")
        alive "$pid" && in_namespace "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done
    wait_until 5 no_daemons || true
    # QEMU runs in a mount namespace of its own (libvirt's /dev namespace):
    # find what the destroys above missed by libvirt's pid files.
    for pid in $(qemu_pids); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait_until 20 no_qemu || true
    # Whatever is left in the namespace (QEMU processes, the holder) was started here.
    for signal in TERM KILL; do
        for pid in $(namespace_pids); do
            kill -"$signal" "$pid" 2>/dev/null || true
        done
        # A dying QEMU may take a while to tear its guest down.
        wait_until 20 namespace_empty && break
    done
    if ! namespace_empty; then
        ps -o pid,ppid,stat,wchan:20,etime,args -p "$(namespace_pids | paste -sd,)" >&2 || true
        die "processes left in the namespace of $dir: $(namespace_pids)"
    fi
    rm -rf "$dir"
}

# Pids of the processes in DIR's mount namespace (zombies have no namespace).
namespace_pids() {
    ns=$(cat "$dir/mntns" 2>/dev/null) || return 0
    [ -n "$ns" ] || return 0
    ls -l /proc/[0-9]*/ns/mnt 2>/dev/null \
        | grep -F -- "-> $ns" \
        | sed -n 's|.* /proc/\([0-9]*\)/ns/mnt -> .*|\1|p' || true
}

# Pids of the QEMU processes of this hypervisor's guests.
qemu_pids() {
    for file in "$dir"/run-libvirt/qemu/*.pid; do
        [ -f "$file" ] || continue
        pid=$(cat "$file" 2>/dev/null) || continue
        case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
            *qemu-system*) echo "$pid" ;;
        esac
    done
}

no_qemu() { [ -z "$(qemu_pids)" ]; }

namespace_empty() { [ -z "$(namespace_pids)" ]; }

in_namespace() {
    [ "$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" = "$(cat "$dir/mntns" 2>/dev/null)" ]
}

no_daemons() {
    ! alive "$(read_pid libvirtd.pid)" && ! alive "$(read_pid virtlogd.pid)"
}

kill_daemon() {
    pid=$(read_pid libvirtd.pid)
    alive "$pid" && in_namespace "$pid" || die "no libvirtd running for $dir"
    kill -KILL "$pid"
    wait_until 10 sh -c "! kill -0 $pid 2>/dev/null" || die "libvirtd $pid did not die"
}

restart_daemon() {
    holder=$(read_pid holder.pid)
    alive "$holder" || die "the namespace of $dir is gone"
    pid=$(read_pid libvirtd.pid)
    if alive "$pid" && in_namespace "$pid"; then
        kill -TERM "$pid"
        wait_until 15 sh -c "! kill -0 $pid 2>/dev/null" || die "libvirtd $pid did not stop"
    fi
    nsenter -t "$holder" -m -- libvirtd -d -p "$dir/libvirtd.pid" </dev/null >/dev/null 2>&1
    wait_until "$START_TIMEOUT" answers || die "libvirtd of $dir does not answer after restart"
    uri_of "$dir"
}

case "$action" in
    start) start ;;
    stop) stop ;;
    kill-daemon) kill_daemon ;;
    restart-daemon) restart_daemon ;;
    inner) inner "$dir" ;;
    *) usage ;;
esac
