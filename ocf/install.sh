#!/usr/bin/env bash
# Installs virtguard as the OCF agent ocf:virtguard:VirtualDomain: the binary,
# the agent symlink (argv[0] selects the agent) and the man page.
#   ocf/install.sh                  cargo build --release, then install it
#   ocf/install.sh --binary PATH    install an already built binary (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
ocf_root=${OCF_ROOT:-/usr/lib/ocf}

if [[ ${1:-} == --binary ]]; then
    binary=${2:?--binary needs a path}
else
    cargo build --release --quiet
    binary=target/release/virtguard
fi

# Replace the binary by rename, so that a running agent keeps its old image.
install -d "$prefix/sbin"
install -m 0755 "$binary" "$prefix/sbin/.virtguard.new"
mv -f "$prefix/sbin/.virtguard.new" "$prefix/sbin/virtguard"
install -d "$ocf_root/resource.d/virtguard"
ln -sfn "$prefix/sbin/virtguard" "$ocf_root/resource.d/virtguard/VirtualDomain"
install -d "$prefix/share/man/man7"
"$prefix/sbin/virtguard" manpage > "$prefix/share/man/man7/ocf_virtguard_VirtualDomain.7"
echo "installed $ocf_root/resource.d/virtguard/VirtualDomain -> $prefix/sbin/virtguard"
