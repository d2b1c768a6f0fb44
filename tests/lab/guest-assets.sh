#!/bin/sh
# Builds the test guest into the lab cache directory, once:
#   $VIRTGUARD_LAB_DIR/vmlinuz    the installed cloud kernel
#   $VIRTGUARD_LAB_DIR/initrd.img a busybox-static initramfs (see the /init below)
# Prints the cache directory on stdout. Safe to run from several processes at
# once (flock) and cheap when the assets are current (a stamp records what they
# were built from).
#
# The guest's behaviour is chosen on the kernel command line:
#   vglab=idle       sleep forever (the default)
#   vglab=dirty      rewrite most of RAM in a loop (migrations that never converge)
#   vglab=diskwrite  write to /dev/vda forever (a full host filesystem -> paused/ioerror)
# It prints the ready marker "VGLAB-READY mode=<mode>" on ttyS0 once acpid listens,
# and powers off at once on an ACPI power button event.
set -eu

LAB_DIR=${VIRTGUARD_LAB_DIR:-/var/tmp/virtguard-lab}
BUSYBOX=${VIRTGUARD_LAB_BUSYBOX:-/bin/busybox}
# Modules the guest needs: the power button path, and the virtio disk for diskwrite.
GUEST_MODULES="evdev button virtio_pci virtio_blk"

die() { echo "guest-assets.sh: $*" >&2; exit 1; }
. "$(dirname "$0")/modules.sh"

pick_kernel() {
    # The newest installed cloud kernel, by version order.
    ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1
}

kernel=$(pick_kernel)
[ -n "$kernel" ] || die "no /boot/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)"
kver=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$kver" ] || die "no /lib/modules/$kver for $kernel"
[ -x "$BUSYBOX" ] || die "no $BUSYBOX (install busybox-static)"
command -v cpio >/dev/null || die "no cpio"

mkdir -p "$LAB_DIR"
chmod 0755 "$LAB_DIR"

# The stamp names every input; if any changes, the assets are rebuilt.
script_sum=$(cat "$0" "$(dirname "$0")/modules.sh" | sha256sum | cut -d' ' -f1)
busybox_sum=$(sha256sum "$BUSYBOX" | cut -d' ' -f1)
kernel_sum=$(stat -c '%s %Y' "$kernel")
stamp="kernel=$kver $kernel_sum busybox=$busybox_sum script=$script_sum"

exec 9>"$LAB_DIR/.assets.lock"
flock 9

if [ -f "$LAB_DIR/vmlinuz" ] && [ -f "$LAB_DIR/initrd.img" ] \
    && [ "$(cat "$LAB_DIR/.assets.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$LAB_DIR"
    exit 0
fi

work=$(mktemp -d "$LAB_DIR/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

root="$work/root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" \
    "$root/mnt" "$root/var/log" "$root/etc/acpi/PWRF" "$root/lib/modules"
cp "$BUSYBOX" "$root/bin/busybox"

# The guest's modules with their dependencies, in load order (modules.sh).
: > "$work/order"
copy_modules "$kver" "$root" "$work/order" $GUEST_MODULES
cp "$work/order" "$root/lib/modules/load-order"

cat > "$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "VGLAB-POWEROFF" > /dev/ttyS0
poweroff -f
EOF
chmod 0755 "$root/etc/acpi/PWRF/00000080"

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "$*" > /dev/ttyS0; }

while read -r mod; do
    insmod "/lib/modules/$mod" || say "VGLAB-WARN insmod $mod failed"
done < /lib/modules/load-order

# acpid opens the event devices when it starts: wait until evdev made them.
for _ in $(seq 1 50); do
    ls /dev/input/event* >/dev/null 2>&1 && break
    usleep 100000
done
# In the background but not daemonised: as a daemon it missed the event.
acpid -f -c /etc/acpi &

mode=idle
for word in $(cat /proc/cmdline); do
    case "$word" in vglab=*) mode=${word#vglab=} ;; esac
done

ready() { say "VGLAB-READY mode=$mode"; }

case "$mode" in
dirty)
    # Pages must be rewritten with non-zero data: QEMU sends zero pages cheaply.
    avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    chunk_mb=4
    chunks=$(( (avail_kb / 1024 - 24) / chunk_mb ))
    [ "$chunks" -ge 1 ] || chunks=1
    mount -t tmpfs -o size=$(( (chunks + 1) * chunk_mb ))m tmpfs /mnt
    dd if=/dev/urandom of=/tmp/seed bs=1M count=$chunk_mb 2>/dev/null
    i=0
    while [ "$i" -lt "$chunks" ]; do
        cat /tmp/seed > "/mnt/fill.$i"
        i=$((i + 1))
    done
    ready
    pass=0
    while :; do
        i=0
        while [ "$i" -lt "$chunks" ]; do
            dd if=/tmp/seed of="/mnt/fill.$i" bs=1M conv=notrunc 2>/dev/null
            i=$((i + 1))
        done
        pass=$((pass + 1))
        say "VGLAB-DIRTY pass=$pass mib=$((chunks * chunk_mb)) uptime=$(cut -d' ' -f1 /proc/uptime)"
    done
    ;;
diskwrite)
    for _ in $(seq 1 50); do
        [ -b /dev/vda ] && break
        usleep 100000
    done
    [ -b /dev/vda ] || say "VGLAB-WARN no /dev/vda"
    dd if=/dev/urandom of=/tmp/seed bs=1M count=1 2>/dev/null
    ready
    # Non-zero data, flushed: every block must reach the host file.
    while :; do
        n=0
        while dd if=/tmp/seed of=/dev/vda bs=1M seek=$n conv=notrunc,fsync 2>/dev/null; do
            n=$((n + 1))
        done
        say "VGLAB-DISKWRITE wrapped at $n MiB"
    done
    ;;
*)
    ready
    while :; do sleep 3600; done
    ;;
esac
EOF
chmod 0755 "$root/init"

(cd "$root" && find . | sort | cpio -o -H newc --quiet) | gzip -9 > "$work/initrd.img"
cp "$kernel" "$work/vmlinuz"
# QEMU runs as an unprivileged user: the images must be world-readable.
chmod 0644 "$work/initrd.img" "$work/vmlinuz"
mv -f "$work/vmlinuz" "$LAB_DIR/vmlinuz"
mv -f "$work/initrd.img" "$LAB_DIR/initrd.img"
echo "$stamp" > "$LAB_DIR/.assets.stamp"
echo "$LAB_DIR"
