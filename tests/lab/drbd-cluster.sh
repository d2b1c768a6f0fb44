#!/bin/sh
# The full-stack DRBD lab tier: two emulated cluster nodes, alpha and beta
# (TCG, the Debian cloud kernel with its in-tree DRBD 8.4), each running the
# host's own userland -- Corosync, Pacemaker, libvirtd, drbd-utils, this
# build of virtguard -- from a read-only virtiofs view of the host's root file
# system with a tmpfs overlay on top, so everything a node writes (its /etc,
# /var, /run, the agent installed as ocf:virtguard:VirtualDomain) stays in
# that node's memory and the host is never changed.
#
#   drbd-cluster.sh up DIR BINARY        boot both nodes, wait for their command ports
#   drbd-cluster.sh exec DIR NODE CMD... run CMD (sh) in NODE's userland
#   drbd-cluster.sh kill DIR NODE        pull NODE's power: its emulator is killed (a crash)
#   drbd-cluster.sh boot DIR NODE        power NODE on again (it rejoins by itself)
#   drbd-cluster.sh down DIR             stop everything started for DIR
#
# Per node, in DIR: NODE.disk (raw, 64 MiB: DRBD's backing disk), NODE.ctl
# (the command port, same protocol as drbd-nodes.sh, whose `exec` is reused),
# NODE.sight (the sight port, for a sampler beside the command port: each line
# "DOMAIN DEVICE" is answered in the same protocol with one line
# "ROLE|STATE|HOLDS", see drbd-cluster-node.sh), NODE.monitor (HMP; `set_link repl off|on` pulls the replication cable,
# `set_link ring off|on` the cluster's), NODE.console, NODE.pid,
# NODE.virtiofsd.pid. DIR/fence.sock is served by the lab's power switch
# (drbd-cluster-power.py): the fence agent inside a node (fence_vgdc) reaches
# it through a second virtio-serial port, so Pacemaker's fencing really
# powers the other emulator off and on.
#
# Networks: two QEMU UDP socket links on 127.0.0.1 that exist only between
# the two emulators: "ring" (Corosync, libvirt, migrations; 10.78.0.0/24)
# and "repl" (DRBD; 10.77.0.0/24). UDP, so a node that is killed and booted
# again finds its cables where they were.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "drbd-cluster.sh: $*" >&2; exit 1; }
NODES="alpha beta"
# Pacemaker, libvirtd, a nested 32 MiB guest and the overlay's tmpfs.
MEMORY_MB=${VIRTGUARD_DRBD_CLUSTER_NODE_MB:-1280}
BOOT_TIMEOUT=${VIRTGUARD_DRBD_CLUSTER_BOOT_TIMEOUT:-240}

node_index() {
    case $1 in alpha) echo 1 ;; beta) echo 2 ;; *) die "no node '$1' (alpha or beta)" ;; esac
}
peer_of() {
    case $1 in alpha) echo beta ;; beta) echo alpha ;; esac
}

# The initramfs: busybox, the modules, an /init that mounts the host's tree
# and chroots into the overlay. Built once per kernel and script version.
build_initrd() {
    lab_dir=$(sh "$here/guest-assets.sh")
    kver=$(sed -n 's/^kernel=\([^ ]*\) .*/\1/p' "$lab_dir/.assets.stamp")
    [ -n "$kver" ] || die "cannot read the kernel version from $lab_dir/.assets.stamp"
    modprobe -S "$kver" --show-depends drbd >/dev/null 2>&1 || die "kernel $kver has no drbd module"
    stamp="base=$(cat "$lab_dir/.assets.stamp") script=$(cat "$0" "$here/modules.sh" | sha256sum | cut -d' ' -f1)"
    exec 8>"$lab_dir/.drbd-cluster-assets.lock"
    flock 8
    if [ -f "$lab_dir/drbd-cluster-initrd.cpio" ] && [ "$(cat "$lab_dir/.drbd-cluster-assets.stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "$lab_dir"
        return
    fi
    work=$(mktemp -d "$lab_dir/.drbd-cluster-build.XXXXXX")
    root="$work/root"
    mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/host" "$root/ovl" "$root/node" "$root/lib/modules"
    cp "${VIRTGUARD_LAB_BUSYBOX:-/bin/busybox}" "$root/bin/busybox"
    : > "$work/order"
    copy_modules "$kver" "$root" "$work/order" virtio_pci virtio_blk virtio_net virtio_console virtiofs overlay drbd
    cp "$work/order" "$root/lib/modules/load-order"
    write_init "$root"
    (cd "$root" && find . | sort | cpio -o -H newc --quiet) > "$work/initrd.cpio"
    chmod 0644 "$work/initrd.cpio"
    mv -f "$work/initrd.cpio" "$lab_dir/drbd-cluster-initrd.cpio"
    echo "$stamp" > "$lab_dir/.drbd-cluster-assets.stamp"
    rm -rf "$work"
    echo "$lab_dir"
}

write_init() {
    cat > "$1/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "$*" > /dev/ttyS0; }
node= boot= run=
for word in $(cat /proc/cmdline); do
    case "$word" in
        vgnode=*) node=${word#vgnode=} ;;
        vgboot=*) boot=${word#vgboot=} ;;
        vgrun=*) run=${word#vgrun=} ;;
    esac
done
while read -r mod; do
    insmod "/lib/modules/$mod" 2>/dev/null || say "VGLAB-WARN insmod $mod failed"
done < /lib/modules/load-order
# DRBD's helper (fence-peer, before-resync-target, ...) runs in the root of
# the kernel's worker that starts it: this initramfs for workers started
# before the chroot below, the node's root for later ones (process 1 shares
# its root with the kernel's threads). Both roots get a /bin/drbd-helper;
# this one enters the node first (drbd-cluster-node.sh writes the other).
# Written without a newline: with one, the kernel cannot run it (-2).
echo -n /bin/drbd-helper > /sys/module/drbd/parameters/usermode_helper
cat > /bin/drbd-helper <<'HELP'
#!/bin/busybox sh
exec /bin/chroot /node /usr/bin/env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /usr/sbin/drbdadm "$@"
HELP
chmod 0755 /bin/drbd-helper
mount -t virtiofs -o ro hostroot /host || say "VGLAB-WARN no virtiofs"
mount -t tmpfs -o mode=0755,size=75% overlay-upper /ovl
mkdir -p /ovl/upper /ovl/work
mount -t overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work node-root /node || say "VGLAB-WARN no overlay"
mount -t proc proc /node/proc
mount -t sysfs sysfs /node/sys
mount -t devtmpfs devtmpfs /node/dev
mkdir -p /node/dev/pts /node/dev/shm
mount -t devpts devpts /node/dev/pts
for dir in /node/dev/shm /node/run /node/tmp; do
    mount -t tmpfs -o mode=1777 tmpfs "$dir"
done
chmod 0755 /node/run
# The host's tree once more, not through the overlay: files the host adds
# after boot (the run directory's) are seen there; an overlay does not
# promise to show changes made to its lower layer.
mkdir -p /node/run/vgdc/host
mount --bind /host /node/run/vgdc/host
say "VGLAB-ROOT node=$node"
exec chroot /node /bin/sh "$boot" "$node" "$run"
EOF
    chmod 0755 "$1/init"
}

# start_node DIR NODE: the node's virtiofsd (in a private mount namespace, so
# the read-only bind of / it serves exists nowhere else) and its emulator.
start_node() {
    dir=$1 node=$2
    index=$(node_index "$node")
    peer_index=$(node_index "$(peer_of "$node")")
    stop_node "$dir" "$node"
    rm -f "$dir/$node.ctl" "$dir/$node.sight" "$dir/$node.monitor" "$dir/$node.serial" "$dir/$node.fs"
    mkdir -p "$dir/hostroot"
    setsid unshare --mount --propagation private sh -c \
        'mount --bind / "$1" && mount -o remount,bind,ro "$1" && exec /usr/lib/qemu/virtiofsd --socket-path="$2" -o source="$1" -o sandbox=chroot -o cache=auto' \
        sh "$dir/hostroot" "$dir/$node.fs" </dev/null >>"$dir/$node.virtiofsd.log" 2>&1 &
    echo $! > "$dir/$node.virtiofsd.pid"
    for _ in $(seq 1 100); do [ -S "$dir/$node.fs" ] && break; sleep 0.1; done
    [ -S "$dir/$node.fs" ] || die "virtiofsd for $node did not start (see $dir/$node.virtiofsd.log)"
    read -r ring1 ring2 repl1 repl2 < "$dir/ports"
    eval "my_ring=\$ring$index peer_ring=\$ring$peer_index my_repl=\$repl$index peer_repl=\$repl$peer_index"
    # tb-size: TCG reserves 1 GiB of translation cache by default.
    nice -n 10 qemu-system-x86_64 -name "vgdc-$node" -accel tcg,tb-size=256 -cpu max -m "$MEMORY_MB" -smp 1 \
        -object "memory-backend-memfd,id=mem,size=${MEMORY_MB}M,share=on" -numa node,memdev=mem \
        -nodefaults -no-user-config -display none -no-reboot \
        -kernel "$lab_dir/vmlinuz" -initrd "$lab_dir/drbd-cluster-initrd.cpio" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 vgnode=$node vgboot=$here/drbd-cluster-node.sh vgrun=$dir" \
        -chardev "socket,id=serial,path=$dir/$node.serial,server=on,wait=off,logfile=$dir/$node.console,logappend=on" \
        -serial chardev:serial \
        -monitor "unix:$dir/$node.monitor,server=on,wait=off" \
        -drive "file=$dir/$node.disk,format=raw,if=virtio,cache=writeback" \
        -netdev "socket,id=ring,udp=127.0.0.1:$peer_ring,localaddr=127.0.0.1:$my_ring" \
        -device "virtio-net-pci,netdev=ring,mac=52:54:00:78:00:0$index" \
        -netdev "socket,id=repl,udp=127.0.0.1:$peer_repl,localaddr=127.0.0.1:$my_repl" \
        -device "virtio-net-pci,netdev=repl,mac=52:54:00:77:00:0$index" \
        -chardev "socket,id=fs,path=$dir/$node.fs" -device vhost-user-fs-pci,chardev=fs,tag=hostroot \
        -device virtio-serial-pci \
        -chardev "socket,id=ctl,path=$dir/$node.ctl,server=on,wait=off" \
        -device virtserialport,chardev=ctl,name=org.virtguard.drbd.0 \
        -chardev "socket,id=sight,path=$dir/$node.sight,server=on,wait=off" \
        -device virtserialport,chardev=sight,name=org.virtguard.sight.0 \
        -chardev "socket,id=fence,path=$dir/fence.sock,reconnect=1" \
        -device virtserialport,chardev=fence,name=org.virtguard.fence.0 \
        -daemonize -pidfile "$dir/$node.pid" \
        || die "QEMU for $node did not start (see above)"
}

# A pid from FILE, if that process is alive and its command line names MARK.
our_pid() {
    pid=$(cat "$1" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$2" && echo "$pid"
}

# stop_node DIR NODE: SIGKILL, as a power cut.
stop_node() {
    dir=$1 node=$2
    for what in "$node.pid:$dir/$node.ctl" "$node.virtiofsd.pid:$dir/$node.fs"; do
        file=$dir/${what%%:*}
        if pid=$(our_pid "$file" "${what#*:}"); then
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$file"
    done
}

wait_ready() {
    dir=$1 node=$2
    deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -S "$dir/$node.ctl" ] && sh "$here/drbd-nodes.sh" exec "$dir" "$node" "echo ready" 2>/dev/null | grep -qx ready; then
            return 0
        fi
        our_pid "$dir/$node.pid" "$dir/$node.ctl" >/dev/null || die "QEMU of $node is gone (see $dir/$node.console)"
        sleep 1
    done
    die "$node did not answer within ${BOOT_TIMEOUT}s (see $dir/$node.console)"
}

free_udp_ports() {
    python3 -c '
import socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
}

start_power_switch() {
    dir=$1
    # It writes its own pid file: python3 may be a wrapper (pyenv) that
    # runs the interpreter as a child, so $! is not the switch's pid.
    setsid python3 "$here/drbd-cluster-power.py" "$dir" "$0" </dev/null >>"$dir/power.log" 2>&1 &
    for _ in $(seq 1 50); do [ -S "$dir/fence.sock" ] && return 0; sleep 0.1; done
    die "the power switch did not start (see $dir/power.log)"
}

# libvirtd probes QEMU's capabilities anew in every fresh node (10 s under
# TCG; the host's cache was made with KVM). The first run keeps alpha's
# probe in the lab directory; later nodes start with it.
save_capabilities() {
    dir=$1 caps=$lab_dir/drbd-cluster-qemu-capabilities
    [ -d "$caps" ] && return 0
    sh "$here/drbd-nodes.sh" exec "$dir" alpha "virsh -c qemu:///system version >/dev/null && tar -C /var/cache/libvirt/qemu -cf - capabilities | base64 -w0" \
        > "$dir/capabilities.b64" || return 0
    rm -rf "$caps.new" && mkdir -p "$caps.new"
    base64 -d < "$dir/capabilities.b64" | tar -C "$caps.new" -xf - && mv "$caps.new/capabilities" "$caps"
    rm -rf "$caps.new" "$dir/capabilities.b64"
}

command=${1:-}
[ $# -ge 2 ] || die "usage: drbd-cluster.sh up DIR BINARY | exec DIR NODE CMD... | kill|boot DIR NODE | down DIR"
dir=$2
case $command in
up)
    [ $# -ge 3 ] || die "usage: drbd-cluster.sh up DIR BINARY"
    binary=$3
    [ -x "$binary" ] || die "no executable $binary"
    for program in qemu-system-x86_64 python3 cpio unshare /usr/lib/qemu/virtiofsd corosync libvirtd drbdadm pcs; do
        command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] || die "no $program"
    done
    [ -x /usr/lib/ocf/resource.d/linbit/drbd ] || die "no ocf:linbit:drbd (drbd-utils)"
    [ -x /usr/sbin/pacemakerd ] || die "no pacemakerd"
    . "$here/modules.sh"
    lab_dir=$(build_initrd)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for node in $NODES; do stop_node "$dir" "$node"; done
    # The nodes see DIR read-only: the agent copied there, so a rebuild
    # during a run does not change it under Pacemaker.
    install -m 0755 "$binary" "$dir/virtguard"
    echo "$lab_dir" > "$dir/lab-dir"
    free_udp_ports > "$dir/ports"
    if ! our_pid "$dir/power.pid" "$dir" >/dev/null; then start_power_switch "$dir"; fi
    for node in $NODES; do
        rm -f "$dir/$node.disk"
        truncate -s 64M "$dir/$node.disk"
        start_node "$dir" "$node"
    done
    for node in $NODES; do wait_ready "$dir" "$node"; done
    save_capabilities "$dir"
    echo "$dir"
    ;;
exec)
    shift 2
    exec sh "$here/drbd-nodes.sh" exec "$dir" "$@"
    ;;
kill)
    node_index "$3" >/dev/null
    stop_node "$dir" "$3"
    ;;
boot)
    node_index "$3" >/dev/null
    lab_dir=$(cat "$dir/lab-dir")
    start_node "$dir" "$3"
    ;;
status)
    node_index "$3" >/dev/null
    if our_pid "$dir/$3.pid" "$dir/$3.ctl" >/dev/null; then echo on; else echo off; fi
    ;;
down)
    for node in $NODES; do stop_node "$dir" "$node"; done
    if pid=$(our_pid "$dir/power.pid" "$dir"); then kill -TERM "$pid" 2>/dev/null || true; fi
    rm -f "$dir/power.pid" "$dir/fence.sock"
    ;;
*)
    die "unknown subcommand '$command'"
    ;;
esac
