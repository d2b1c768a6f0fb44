#!/bin/sh
# The DRBD-only lab tier: two emulated nodes, alpha and beta, that run the
# real DRBD 8.4 kernel module (in-tree in the Debian cloud kernel) with
# Debian's drbd-utils, replicating a 64 MiB disk over a QEMU socket network
# that exists only between the two emulators (127.0.0.1 on the host).
#
#   drbd-nodes.sh up DIR [VIRTGUARD_BINARY]   boot both nodes, wait for their command loops
#   drbd-nodes.sh exec DIR NODE COMMAND...    run COMMAND in NODE: its stdout, stderr, exit code
#   drbd-nodes.sh down DIR                    stop both emulators (by the pids in DIR)
#
# Everything lives in DIR: disks, sockets, console logs, pid files. The base
# initramfs is built once into $VIRTGUARD_LAB_DIR (default
# /var/tmp/virtguard-lab) as drbd-initrd.cpio; `up` appends to it, per run, a
# second cpio archive with the given virtguard binary and every library ldd
# lists for it (the kernel unpacks concatenated archives in order), so the
# node runs `virtguard drbd check` against its own kernel.
#
# Per node, in DIR: NODE.disk (raw, 64 MiB), NODE.ctl (unix socket of the
# command port), NODE.monitor (HMP monitor; `set_link repl off|on` pulls and
# restores the replication cable), NODE.console (everything the serial
# console printed), NODE.pid.
#
# The command port protocol (a virtio-serial port named org.virtguard.drbd.0):
# the host writes one command a line; the node runs it with `sh -c` (stdin
# /dev/null, so drbdadm never waits for an answer) and replies with the line
# "VGLAB-RESULT <rc> <stdout bytes> <stderr bytes>" followed by exactly those
# bytes. Byte counts rather than an end marker, so captured output is exact.
#
# In the node: /etc/drbd.conf with resource r0 (minor 0 on /dev/vda, internal
# metadata, protocol C, short ping and connect intervals because emulated
# nodes are slow to notice, a fixed resync rate that starts low so that a
# resync can be observed; raise it with `set-rate`), and two helpers:
#   drbd-a2p yes|no     allow-two-primaries in the configuration, then adjust
#   drbd-rate RATE      resync-rate in the configuration, then adjust
#   lab-fence-peer      the fence-peer handler (fencing resource-only): it
#                       returns what the host wrote to /run/lab-fence-answer
set -eu

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "drbd-nodes.sh: $*" >&2; exit 1; }
NODES="alpha beta"
# The initramfs unpacks into a rootfs limited to half the RAM: with the
# virtguard binary and its ~60 libraries (78 MB) 256 MiB is too little.
MEMORY_MB=${VIRTGUARD_DRBD_NODE_MB:-384}
BOOT_TIMEOUT=${VIRTGUARD_DRBD_BOOT_TIMEOUT:-180}

node_index() {
    case $1 in alpha) echo 1 ;; beta) echo 2 ;; *) die "no node '$1' (alpha or beta)" ;; esac
}

# Builds the base initramfs once: busybox, the modules, drbd-utils, libc.
build_base() {
    lab_dir=$(sh "$here/guest-assets.sh")
    kver=$(sed -n 's/^kernel=\([^ ]*\) .*/\1/p' "$lab_dir/.assets.stamp")
    [ -n "$kver" ] || die "cannot read the kernel version from $lab_dir/.assets.stamp"
    for tool in drbdadm drbdsetup drbdmeta; do
        [ -x "/usr/sbin/$tool" ] || die "no /usr/sbin/$tool (install drbd-utils)"
    done
    [ -x /usr/lib/drbd/drbdsetup-84 ] || die "no /usr/lib/drbd/drbdsetup-84 (drbd-utils without 8.4 support)"
    modprobe -S "$kver" --show-depends drbd >/dev/null 2>&1 || die "kernel $kver has no drbd module"

    script_sum=$(cat "$0" "$here/modules.sh" | sha256sum | cut -d' ' -f1)
    utils_sum=$(cat /usr/sbin/drbdadm /usr/sbin/drbdsetup /usr/lib/drbd/drbdsetup-84 | sha256sum | cut -d' ' -f1)
    stamp="base=$(cat "$lab_dir/.assets.stamp") utils=$utils_sum script=$script_sum"
    exec 8>"$lab_dir/.drbd-assets.lock"
    flock 8
    if [ -f "$lab_dir/drbd-initrd.cpio" ] && [ "$(cat "$lab_dir/.drbd-assets.stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "$lab_dir"
        return
    fi
    work=$(mktemp -d "$lab_dir/.drbd-build.XXXXXX")
    root="$work/root"
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/sbin" "$root/usr/lib" "$root/proc" "$root/sys" "$root/dev" \
        "$root/tmp" "$root/run" "$root/var/lib/drbd" "$root/etc/drbd.d" "$root/lib/modules"
    ln -s ../run "$root/var/run"
    ln -s ../run/lock "$root/var/lock"
    # drbdadm 9.22 runs the 8.4 variant from /lib/drbd; without this link the
    # kernel's before-resync-source helper fails (exit 20) and the first sync drops.
    ln -s ../usr/lib/drbd "$root/lib/drbd"
    cp "${VIRTGUARD_LAB_BUSYBOX:-/bin/busybox}" "$root/bin/busybox"
    : > "$work/order"
    # virtio_console: the command port; drbd pulls in lru_cache and libcrc32c
    # (and crc32c-intel, which fails to load under TCG, harmlessly).
    copy_modules "$kver" "$root" "$work/order" virtio_pci virtio_blk virtio_net virtio_console drbd
    cp "$work/order" "$root/lib/modules/load-order"
    cp /usr/sbin/drbdadm /usr/sbin/drbdsetup /usr/sbin/drbdmeta "$root/usr/sbin/"
    mkdir -p "$root/usr/lib/drbd"
    for variant in drbdadm-84 drbdsetup-84; do
        cp "/usr/lib/drbd/$variant" "$root/usr/lib/drbd/"
    done
    for tool in drbdadm drbdsetup drbdmeta; do
        # The kernel calls its usermode helper at /sbin/drbdadm.
        ln -s "../usr/sbin/$tool" "$root/sbin/$tool"
    done
    copy_libraries "$root" /usr/sbin/drbdadm /usr/sbin/drbdsetup /usr/sbin/drbdmeta /usr/lib/drbd/drbdsetup-84
    write_init "$root"
    (cd "$root" && find . | sort | cpio -o -H newc --quiet) > "$work/drbd-initrd.cpio"
    chmod 0644 "$work/drbd-initrd.cpio"
    mv -f "$work/drbd-initrd.cpio" "$lab_dir/drbd-initrd.cpio"
    echo "$stamp" > "$lab_dir/.drbd-assets.stamp"
    rm -rf "$work"
    echo "$lab_dir"
}

# copy_libraries ROOT BINARY...: every library ldd resolves, and the loader.
copy_libraries() {
    cl_root=$1
    shift
    ldd "$@" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | sort -u | while read -r lib; do
        [ -e "$cl_root$lib" ] && continue
        mkdir -p "$cl_root$(dirname "$lib")"
        cp -L "$lib" "$cl_root$lib"
    done
}

write_init() {
    cat > "$1/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/sbin:/bin:/opt/virtguard
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run/lock
say() { echo "$*" > /dev/ttyS0; }

node=
for word in $(cat /proc/cmdline); do
    case "$word" in vgnode=*) node=${word#vgnode=} ;; esac
done
case "$node" in
    alpha) address=10.77.0.1 ;;
    beta) address=10.77.0.2 ;;
    *) say "VGLAB-WARN no vgnode= on the command line"; address=10.77.0.9 ;;
esac
hostname "$node"

while read -r mod; do
    insmod "/lib/modules/$mod" 2>/dev/null || say "VGLAB-WARN insmod $mod failed"
done < /lib/modules/load-order
# Without a newline: with one, the kernel cannot run the helper (-2).
echo -n /sbin/drbdadm > /sys/module/drbd/parameters/usermode_helper

ifconfig lo 127.0.0.1 up
for _ in $(seq 1 50); do
    [ -e /sys/class/net/eth0 ] && [ -b /dev/vda ] && break
    usleep 100000
done
ifconfig eth0 "$address" netmask 255.255.255.0 up

cat > /etc/drbd.conf <<'CONF'
global { usage-count no; }
resource r0 {
    device /dev/drbd0;
    disk /dev/vda;
    meta-disk internal;
    net {
        protocol C;
        # Emulated nodes: notice a lost peer in seconds, not after 10 s.
        ping-int 2;
        ping-timeout 10;
        connect-int 2;
        allow-two-primaries no;
    }
    disk {
        # A fixed rate (no dynamic controller), low at first so a resync can be watched.
        c-plan-ahead 0;
        resync-rate 2M;
        # A Primary that loses its peer asks the fence-peer handler, which is
        # how a peer's disk becomes Outdated in DRBD 8.4 (a cut alone leaves it DUnknown).
        fencing resource-only;
    }
    handlers {
        fence-peer "/bin/lab-fence-peer";
    }
    on alpha { address 10.77.0.1:7789; }
    on beta { address 10.77.0.2:7789; }
}
CONF
cat > /bin/drbd-a2p <<'HELP'
#!/bin/sh
sed -i "s/allow-two-primaries [a-z]*;/allow-two-primaries $1;/" /etc/drbd.conf && drbdadm adjust r0
HELP
cat > /bin/drbd-rate <<'HELP'
#!/bin/sh
sed -i "s/resync-rate [0-9A-Za-z]*;/resync-rate $1;/" /etc/drbd.conf && drbdadm adjust r0
HELP
# The lab's stand-in for crm-fence-peer.sh: it cannot reach the peer over the
# cut link, so it waits (up to 60 s) for the host to put the outcome into
# /run/lab-fence-answer after the host made it true through the peer's own
# command port (4: the peer is Outdated now; 5: unreachable, assumed dead).
# Seen with 8.4.11: the kernel calls it when a node is promoted while
# disconnected (answer 5 -> the peer is marked Outdated); a Secondary that
# disconnects cleanly from a Primary outdates itself without any call.
cat > /bin/lab-fence-peer <<'HELP'
#!/bin/sh
echo "fence-peer called: $*" >> /run/lab-fence-peer.log
for _ in $(seq 1 600); do
    if [ -s /run/lab-fence-answer ]; then
        answer=$(cat /run/lab-fence-answer)
        rm -f /run/lab-fence-answer
        echo "fence-peer answers $answer" >> /run/lab-fence-peer.log
        exit "$answer"
    fi
    usleep 100000
done
exit 1
HELP
chmod 0755 /bin/drbd-a2p /bin/drbd-rate /bin/lab-fence-peer

port=
for _ in $(seq 1 50); do
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat "$p/name" 2>/dev/null)" = org.virtguard.drbd.0 ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] && [ -c "$port" ] && break
    usleep 100000
done
[ -n "$port" ] || say "VGLAB-WARN no command port"
say "VGLAB-READY node=$node"

# The command loop. A read that fails means the host side is not connected
# (the port reads end-of-file then): reopen after a pause.
while :; do
    exec 3<>"$port"
    while read -r command <&3; do
        sh -c "$command" </dev/null >/tmp/out 2>/tmp/err
        rc=$?
        echo "VGLAB-RESULT $rc $(wc -c < /tmp/out) $(wc -c < /tmp/err)" >&3
        cat /tmp/out /tmp/err >&3
    done
    exec 3<&-
    usleep 200000
done
EOF
    chmod 0755 "$1/init"
}

# The per-run archive: the virtguard binary at /opt/virtguard with its libraries.
build_extra() {
    dir=$1 binary=$2
    extra="$dir/extra-root"
    rm -rf "$extra"
    mkdir -p "$extra/opt/virtguard"
    if [ -n "$binary" ]; then
        [ -x "$binary" ] || die "no executable $binary"
        cp "$binary" "$extra/opt/virtguard/virtguard"
        copy_libraries "$extra" "$binary"
    fi
    (cd "$extra" && find . | sort | cpio -o -H newc --quiet) > "$dir/extra.cpio"
    rm -rf "$extra"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_node() {
    dir=$1 node=$2 netdev=$3
    index=$(node_index "$node")
    rm -f "$dir/$node.ctl" "$dir/$node.monitor" "$dir/$node.serial" "$dir/$node.pid"
    # The host's own network is never used: the socket netdev is a private
    # cable between the two emulators on 127.0.0.1.
    # tb-size: TCG reserves a 1 GiB translation cache by default (RSS near
    # 900 MB a node here); 64 MiB is plenty for one busybox node.
    nice -n 10 qemu-system-x86_64 -accel tcg,tb-size=64 -cpu max -m "$MEMORY_MB" -smp 1 \
        -nodefaults -no-user-config -display none -no-reboot \
        -kernel "$lab_dir/vmlinuz" -initrd "$dir/initrd.cpio" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 vgnode=$node" \
        -chardev "socket,id=serial,path=$dir/$node.serial,server=on,wait=off,logfile=$dir/$node.console" \
        -serial chardev:serial \
        -monitor "unix:$dir/$node.monitor,server=on,wait=off" \
        -drive "file=$dir/$node.disk,format=raw,if=virtio,cache=writeback" \
        -netdev "socket,id=repl,$netdev" -device "virtio-net-pci,netdev=repl,mac=52:54:00:77:00:0$index" \
        -device virtio-serial-pci \
        -chardev "socket,id=ctl,path=$dir/$node.ctl,server=on,wait=off" \
        -device virtserialport,chardev=ctl,name=org.virtguard.drbd.0 \
        -daemonize -pidfile "$dir/$node.pid" \
        || die "QEMU for $node did not start (see above)"
}

# exec_in DIR NODE COMMAND: the host end of the command port.
exec_in() {
    python3 - "$1/$2.ctl" "$3" <<'PY'
import socket, sys
path, command = sys.argv[1], sys.argv[2]
if "\n" in command:
    sys.exit("drbd-nodes.sh: a command must be one line")
s = socket.socket(socket.AF_UNIX)
s.settimeout(120)
s.connect(path)
s.sendall(command.encode() + b"\n")
data = b""
while b"\n" not in data:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("drbd-nodes.sh: the node closed the command port")
    data += chunk
header, rest = data.split(b"\n", 1)
_, rc, out_len, err_len = header.split()
need = int(out_len) + int(err_len)
while len(rest) < need:
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("drbd-nodes.sh: output cut short")
    rest += chunk
sys.stdout.buffer.write(rest[:int(out_len)])
sys.stderr.buffer.write(rest[int(out_len):need])
sys.exit(int(rc))
PY
}

wait_ready() {
    dir=$1 node=$2
    deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -S "$dir/$node.ctl" ] && exec_in "$dir" "$node" "echo ready" 2>/dev/null | grep -qx ready; then
            return 0
        fi
        pid=$(cat "$dir/$node.pid" 2>/dev/null || true)
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || die "QEMU of $node is gone (see $dir/$node.console)"
        # Too little RAM for the archive: the node comes up without its tools.
        if grep -q "Initramfs unpacking failed" "$dir/$node.console" 2>/dev/null; then
            die "$node: initramfs unpacking failed (raise VIRTGUARD_DRBD_NODE_MB; see $dir/$node.console)"
        fi
        sleep 1
    done
    die "$node did not answer within ${BOOT_TIMEOUT}s (see $dir/$node.console)"
}

stop_nodes() {
    dir=$1
    for node in $NODES; do
        pid=$(cat "$dir/$node.pid" 2>/dev/null || true)
        [ -n "$pid" ] || continue
        # Only a QEMU we started: the pid file's process must hold our socket path.
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$dir/$node.ctl"; then
            kill -TERM "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
        rm -f "$dir/$node.pid"
    done
}

command=${1:-}
[ $# -ge 2 ] || die "usage: drbd-nodes.sh up DIR [BINARY] | exec DIR NODE COMMAND... | down DIR"
dir=$2
case $command in
up)
    binary=${3:-}
    command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (install qemu-system-x86)"
    command -v python3 >/dev/null || die "no python3 (the host end of the command port)"
    . "$here/modules.sh"
    lab_dir=$(build_base)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop_nodes "$dir"
    build_extra "$dir" "$binary"
    cat "$lab_dir/drbd-initrd.cpio" "$dir/extra.cpio" > "$dir/initrd.cpio"
    rm -f "$dir/extra.cpio"
    for node in $NODES; do
        rm -f "$dir/$node.disk"
        truncate -s 64M "$dir/$node.disk"
    done
    port=$(free_port)
    start_node "$dir" alpha "listen=127.0.0.1:$port"
    start_node "$dir" beta "connect=127.0.0.1:$port"
    wait_ready "$dir" alpha
    wait_ready "$dir" beta
    echo "$dir"
    ;;
exec)
    [ $# -ge 4 ] || die "usage: drbd-nodes.sh exec DIR NODE COMMAND..."
    node=$3
    node_index "$node" >/dev/null
    shift 3
    exec_in "$dir" "$node" "$*"
    ;;
down)
    stop_nodes "$dir"
    ;;
*)
    die "unknown subcommand '$command'"
    ;;
esac
