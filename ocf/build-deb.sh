#!/usr/bin/env bash
# Builds the Debian package target/debian/virtguard_<version>_amd64.deb: the
# release binary, the man page it prints and a changelog entry (both generated
# here, so the package documents the binary it ships), then `cargo deb` packs
# the assets listed in Cargo.toml. Needs cargo-deb (ocf/install-deps.sh).
#   ocf/build-deb.sh                     version <crate version>-1
#   ocf/build-deb.sh --deb-version V     another package version (e.g. an upgrade)
#   ocf/build-deb.sh ... --output DIR    somewhere else than target/debian
set -euo pipefail
cd "$(dirname "$0")/.."

crate_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb_version=$crate_version-1
cargo_deb_args=()
while (($#)); do
    case $1 in
        --deb-version) deb_version=${2:?--deb-version needs a value}; shift 2 ;;
        *) cargo_deb_args+=("$1"); shift ;;
    esac
done

cargo build --release --quiet
generated=target/debian-generated
mkdir -p "$generated"
target/release/virtguard manpage | gzip -9n > "$generated/ocf_virtguard_VirtualDomain.7.gz"
# Dated by the last commit, so that two builds of one commit are the same package.
when=$(git log -1 --format=%aD 2>/dev/null || date -R)
maintainer=$(sed -n 's/^maintainer = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > "$generated/changelog" <<CHANGELOG
virtguard ($deb_version) unstable; urgency=medium

  * Built from the virtguard repository at $(git rev-parse --short HEAD 2>/dev/null || echo "an unknown commit").

 -- $maintainer  $when
CHANGELOG
cargo deb --no-build --deb-version "$deb_version" "${cargo_deb_args[@]}"
