#!/usr/bin/env bash
# Builds virtguard and installs it as the OCF agent ocf:virtguard:VirtualDomain:
# the binary, the agent symlink (argv[0] selects the agent) and the man page.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
ocf_root=${OCF_ROOT:-/usr/lib/ocf}

cargo build --release --quiet
install -D -m 0755 target/release/virtguard "$prefix/sbin/virtguard"
install -d "$ocf_root/resource.d/virtguard"
ln -sfn "$prefix/sbin/virtguard" "$ocf_root/resource.d/virtguard/VirtualDomain"
install -d "$prefix/share/man/man7"
"$prefix/sbin/virtguard" manpage > "$prefix/share/man/man7/ocf_virtguard_VirtualDomain.7"
echo "installed $ocf_root/resource.d/virtguard/VirtualDomain -> $prefix/sbin/virtguard"
