#!/usr/bin/env bash
# Installs the Debian 12 packages that building, running and testing virtguard need.
# Idempotent: a machine that already has them only pays for `apt-get update`.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  libvirt-dev pkg-config                                  # build
  libvirt-daemon-system libvirt-clients                   # hypervisor
  pacemaker pacemaker-cli-utils corosync pcs crmsh        # cluster
  resource-agents                                         # ocf-tester, ocft, classic agent, DTD
  drbd-utils                                              # userland formats (no kernel module here)
  busybox-static cpio linux-image-cloud-amd64             # test guests
  libguestfs-tools csync2                                 # copyindirs (virt-copy-in), sync_config_on_stop
  libxml2-utils iproute2 procps psmisc util-linux         # xmllint, namespaces, /proc tools
  systemd-container                                       # systemd-nspawn: the systemd lab's nodes
  lintian                                                 # checks the Debian package
)

apt-get update -qq
# The image may carry qemu-utils from backports while qemu-system-x86 is only in
# bookworm: install the three together at qemu-system-x86's candidate version.
qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
apt-get install -y -qq --allow-downgrades --no-install-recommends \
  "qemu-system-x86=$qemu_version" "qemu-utils=$qemu_version" "qemu-block-extra=$qemu_version" \
  "${packages[@]}" >/dev/null

# The Debian package is built with cargo-deb (crates.io); compiled once, then kept.
if ! command -v cargo-deb >/dev/null && [[ ! -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deb ]]; then
    cargo install --locked --quiet cargo-deb
fi

# pacemaker-remoted for the lab's Pacemaker Remote nodes (tests/cluster/scale-harness.sh).
# Debian's pacemaker-remote package conflicts with pacemaker (a machine is one
# or the other), and the lab machine must stay a full node: the daemon is
# unpacked beside the system, not installed; it uses pacemaker's own libraries.
remote_dir=/opt/virtguard-lab/pacemaker-remote
remote_version=$(dpkg-query -W -f '${Version}' pacemaker)
if [[ $(cat "$remote_dir/version" 2>/dev/null) != "$remote_version" ]]; then
    download=$(mktemp -d)
    (cd "$download" && apt-get download -qq "pacemaker-remote=$remote_version" 2>/dev/null)
    rm -rf "$remote_dir"
    mkdir -p "$remote_dir"
    dpkg-deb -x "$download"/pacemaker-remote_*.deb "$remote_dir"
    echo "$remote_version" >"$remote_dir/version"
    rm -rf "$download"
fi
