#!/usr/bin/env bash
# Runs inside `unshare --mount --propagation private`: every directory that
# apt and dpkg write to gets an overlayfs whose upper layer is a tmpfs, so the
# host's files and dpkg database are never touched, then installs, upgrades
# and removes the package as an administrator would.
#   in-overlay.sh OLD.deb NEW.deb GUEST_CONFIG WORKDIR
# Writes its findings to WORKDIR (read by tests/package.rs):
#   describe.txt      pcs resource describe ocf:virtguard:VirtualDomain
#   monitors.txt      "rc start_ns end_ns" of every monitor of the loop
#   upgrade.txt       "start_ns end_ns old_inode new_inode" of the upgrade
#   leftovers.txt     paths that exist after the remove but not before the install
#   removed.txt       paths that existed before the install but not after the remove
set -euo pipefail
old_deb=$1 new_deb=$2 config=$3 work=$4
export DEBIAN_FRONTEND=noninteractive

layers=$(mktemp -d /tmp/vg-package-layers.XXXXXX)
mount -t tmpfs vg-package-layers "$layers"
for dir in /usr /etc /var/lib /var/cache /var/log; do
    layer=$layers/$(echo "$dir" | tr / _)
    mkdir -p "$layer/upper" "$layer/work"
    mount -t overlay vg-package -o "lowerdir=$dir,upperdir=$layer/upper,workdir=$layer/work" "$dir"
done

# A machine with the classic agent only: no development install of virtguard.
rm -rf /usr/lib/ocf/resource.d/virtguard /usr/local/sbin/virtguard

snapshot() { find /usr /etc /var/lib/dpkg/info -xdev 2>/dev/null | grep -v '^/var/lib/dpkg/info/\(format\|triggers\)' | sort; }
snapshot > "$work/before.txt"

apt-get install -y -qq --no-install-recommends "$old_deb" > "$work/install.log" 2>&1
pcs resource describe ocf:virtguard:VirtualDomain > "$work/describe.txt" 2>&1

# Monitors of a real guest back to back, as a recurring monitor would run
# them, while the package is upgraded underneath.
agent=/usr/lib/ocf/resource.d/virtguard/VirtualDomain
rsctmp=$work/rsctmp
mkdir -p "$rsctmp"
: > "$work/monitors.txt"
(
    while [[ ! -e $work/stop-monitors ]]; do
        start=$(date +%s%N)
        rc=0
        OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=vg-package-guest HA_RSCTMP=$rsctmp \
            OCF_RESKEY_config=$config OCF_RESKEY_hypervisor=qemu:///system \
            "$agent" monitor > /dev/null 2>> "$work/monitor-stderr.txt" || rc=$?
        echo "$rc $start $(date +%s%N)" >> "$work/monitors.txt"
    done
) &
monitors=$!
# Some monitors before the upgrade, so the loop demonstrably runs the old binary.
while (($(wc -l < "$work/monitors.txt") < 5)); do sleep 0.05; done
old_inode=$(stat -c %i /usr/sbin/virtguard)
upgrade_start=$(date +%s%N)
apt-get install -y -qq --no-install-recommends "$new_deb" > "$work/upgrade.log" 2>&1
upgrade_end=$(date +%s%N)
new_inode=$(stat -c %i /usr/sbin/virtguard)
# And some after it, with the new binary.
after=$(wc -l < "$work/monitors.txt")
while (($(wc -l < "$work/monitors.txt") < after + 5)); do sleep 0.05; done
touch "$work/stop-monitors"
wait "$monitors"
echo "$upgrade_start $upgrade_end $old_inode $new_inode" > "$work/upgrade.txt"
dpkg-query -W -f='${Version}\n' virtguard > "$work/version-after-upgrade.txt"

apt-get remove -y -qq virtguard > "$work/remove.log" 2>&1
snapshot > "$work/after.txt"
comm -13 "$work/before.txt" "$work/after.txt" > "$work/leftovers.txt"
comm -23 "$work/before.txt" "$work/after.txt" > "$work/removed.txt"
