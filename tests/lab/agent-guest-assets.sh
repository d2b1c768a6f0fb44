#!/bin/sh
# Builds the guest with a real QEMU guest agent, once, next to the plain test
# guest of guest-assets.sh (which it runs first and leaves untouched):
#   $VIRTGUARD_LAB_DIR/initrd-agent.img
# It is the plain initramfs with one more cpio archive appended (the kernel
# unpacks them in order, later files win): Debian's qemu-ga with its
# libraries and loader, the virtio-serial and pvpanic modules, a /sbin/shutdown
# for the agent's shutdown path, and /init.agent (boot with rdinit=/init.agent).
#
# /init.agent starts, in the background, qemu-ga on the virtio-serial port
# org.qemu.guest_agent.0 (prints "VGLAB-AGENT-UP pid=N" on ttyS0), and a
# control loop on the port org.virtguard.lab.0 that takes one word a line
# from the host: agent-kill, agent-stop, agent-cont (SIGKILL/SIGSTOP/SIGCONT
# to qemu-ga), panic (a kernel panic through sysrq), watchdog-arm (starts an
# i6300esb watchdog that nobody feeds: it fires about 2 s later); then it runs
# the plain /init (acpid, ready marker, idle).
# Prints the cache directory on stdout.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
LAB_DIR=$(sh "$here/guest-assets.sh")
# The agent's own modules, after the plain guest's (resolved the same way).
AGENT_MODULES="evdev button virtio_pci virtio_blk virtio_console pvpanic_mmio"

die() { echo "agent-guest-assets.sh: $*" >&2; exit 1; }
. "$here/modules.sh"
command -v apt-get >/dev/null || die "no apt-get (the agent comes from Debian's qemu-guest-agent package)"

kver=$(sed -n 's/^kernel=\([^ ]*\) .*/\1/p' "$LAB_DIR/.assets.stamp")
[ -n "$kver" ] || die "cannot read the kernel version from $LAB_DIR/.assets.stamp"

exec 8>"$LAB_DIR/.agent-assets.lock"
flock 8

# The package is fetched once into the lab cache (no install on the host).
deb=$(ls "$LAB_DIR"/qemu-guest-agent_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$deb" ]; then
    (cd "$LAB_DIR" && apt-get download qemu-guest-agent >/dev/null 2>&1) \
        || die "apt-get download qemu-guest-agent failed"
    deb=$(ls "$LAB_DIR"/qemu-guest-agent_*.deb | sort -V | tail -n 1)
fi

script_sum=$(cat "$0" "$here/modules.sh" | sha256sum | cut -d' ' -f1)
stamp="base=$(cat "$LAB_DIR/.assets.stamp") deb=$(basename "$deb") script=$script_sum"
if [ -f "$LAB_DIR/initrd-agent.img" ] && [ "$(cat "$LAB_DIR/.agent-assets.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$LAB_DIR"
    exit 0
fi

work=$(mktemp -d "$LAB_DIR/.agent-build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
dpkg-deb -x "$deb" "$work/deb"
root="$work/root"
mkdir -p "$root/usr/sbin" "$root/sbin" "$root/lib/modules"
cp "$work/deb/usr/sbin/qemu-ga" "$root/usr/sbin/qemu-ga"
# Every library ldd resolves, and the loader, at the paths it names.
ldd "$work/deb/usr/sbin/qemu-ga" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

: > "$work/order"
copy_modules "$kver" "$root" "$work/order" $AGENT_MODULES
# The plain /init loads this list: it now includes the agent's modules.
cp "$work/order" "$root/lib/modules/load-order"

# qemu-ga's guest-shutdown runs /sbin/shutdown, which busybox lacks.
cat > "$root/sbin/shutdown" <<'EOF'
#!/bin/sh
echo "VGLAB-POWEROFF by the guest agent" > /dev/ttyS0
poweroff -f
EOF
chmod 0755 "$root/sbin/shutdown"

cat > "$root/agent-layer.sh" <<'EOF'
#!/bin/busybox sh
# Runs beside the plain /init: waits for the virtio ports it loads, then
# starts qemu-ga and obeys the host's control port.
bb=/bin/busybox
say() { $bb echo "$*" > /dev/ttyS0; }
for _ in $($bb seq 1 300); do
    names=$($bb cat /sys/class/virtio-ports/*/name 2>/dev/null)
    case "$names" in *org.qemu.guest_agent.0*org.virtguard.lab.0*|*org.virtguard.lab.0*org.qemu.guest_agent.0*) break ;; esac
    $bb usleep 100000
done
export PATH=/bin:/sbin:/usr/sbin
# No udev: the named links are made by hand.
$bb mkdir -p /dev/virtio-ports
for port in /sys/class/virtio-ports/*; do
    $bb ln -sf "/dev/$($bb basename "$port")" "/dev/virtio-ports/$($bb cat "$port/name")"
done
# The cloud kernel has no i6300esb driver: program the device directly, as
# its driver would, and never feed it. Registers: reload at BAR0+0xc (16 bit,
# unlocked by writing 0x80 then 0x86 before every other write), the two
# stage preloads at BAR0+0 and +4 (1000 ticks of the 1 kHz scale: about 1 s
# each), enable bit 0x02 in PCI config byte 0x68.
watchdog_arm() {
    for dev in /sys/bus/pci/devices/*; do
        [ "$($bb cat "$dev/vendor")" = 0x8086 ] && [ "$($bb cat "$dev/device")" = 0x25ab ] || continue
        base=$(( $($bb head -n 1 "$dev/resource" | $bb cut -d' ' -f1) ))
        for reg in 0 4; do
            $bb devmem $((base + 12)) 16 0x80
            $bb devmem $((base + 12)) 16 0x86
            $bb devmem $((base + reg)) 32 1000
        done
        $bb printf '\002' | $bb dd of="$dev/config" bs=1 seek=104 count=1 conv=notrunc 2>/dev/null
        return 0
    done
    say "VGLAB-WARN no i6300esb watchdog device"
}
agent=/dev/virtio-ports/org.qemu.guest_agent.0
control=/dev/virtio-ports/org.virtguard.lab.0
/usr/sbin/qemu-ga -m virtio-serial -p "$agent" -t /tmp -f /tmp/qemu-ga.pid &
agent_pid=$!
say "VGLAB-AGENT-UP pid=$agent_pid"
[ -e "$control" ] || exit 0
while :; do
    while read -r word; do
        # The marker follows the deed, so the host can act on it at once.
        case "$word" in
            agent-kill) $bb kill -KILL "$agent_pid" ;;
            agent-stop) $bb kill -STOP "$agent_pid" ;;
            agent-cont) $bb kill -CONT "$agent_pid" ;;
            panic) say "VGLAB-CONTROL $word"; echo c > /proc/sysrq-trigger ;;
            watchdog-arm) watchdog_arm ;;
        esac
        say "VGLAB-CONTROL $word"
    done < "$control"
    # Nobody connected on the host side: reads end at once; try again soon.
    $bb usleep 200000
done
EOF
chmod 0755 "$root/agent-layer.sh"

cat > "$root/init.agent" <<'EOF'
#!/bin/busybox sh
# A background job needs /dev/null; the plain /init mounts /dev again later.
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox sh /agent-layer.sh &
exec /init
EOF
chmod 0755 "$root/init.agent"

(cd "$root" && find . | sort | cpio -o -H newc --quiet) | gzip -9 > "$work/layer.gz"
cat "$LAB_DIR/initrd.img" "$work/layer.gz" > "$work/initrd-agent.img"
chmod 0644 "$work/initrd-agent.img"
mv -f "$work/initrd-agent.img" "$LAB_DIR/initrd-agent.img"
echo "$stamp" > "$LAB_DIR/.agent-assets.stamp"
echo "$LAB_DIR"
