#!/bin/sh
# Live migration benchmark, not a test: the classic ocf:heartbeat:VirtualDomain
# agent against virtguard, called as Pacemaker calls them (migrate_to on the
# source, then migrate_from on the target), on the same guest and the same two
# hypervisors, in one run, interleaved. Prints medians and ratios.
#
#   examples/migration-bench.sh [ROUNDS]        (root; default 5 rounds)
#
# Each round moves the guest there and back with each agent, so every agent
# does 2*ROUNDS migrations. Source: the host's qemu:///system; target: a
# private libvirtd (tests/lab/private-libvirtd.sh). The guest is the lab's
# 64 MiB firmware guest; migration data goes over tcp://127.0.0.1.
# VIRTGUARD_BIN overrides the binary (default target/release/virtguard,
# built when missing).
set -eu

ROUNDS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLASSIC=${CLASSIC_AGENT:-/usr/lib/ocf/resource.d/heartbeat/VirtualDomain}
BIN=${VIRTGUARD_BIN:-$ROOT/target/release/virtguard}
HOST_URI=qemu:///system
LAB=$ROOT/tests/lab/private-libvirtd.sh
NODE_HOST=bench-host
NODE_PRIV=bench-priv

die() { echo "migration-bench: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
[ -x "$CLASSIC" ] || die "classic agent $CLASSIC not found (resource-agents)"
virsh -q -c "$HOST_URI" version >/dev/null 2>&1 || die "$HOST_URI does not answer (start virtlogd -d; libvirtd -d)"
if [ ! -x "$BIN" ]; then
    (cd "$ROOT" && cargo build --release --quiet) || die "cannot build virtguard"
fi

work=$(mktemp -d /tmp/virtguard-bench.XXXXXX)
chmod 0755 "$work"
name=vgbench-$$
priv_dir=$work/privhv
priv_uri=

cleanup() {
    virsh -q -c "$HOST_URI" destroy "$name" >/dev/null 2>&1 || true
    [ -n "$priv_uri" ] && sh "$LAB" stop "$priv_dir" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/virtguard" "$work/rsctmp-classic" "$work/rsctmp-virtguard"
ln -s "$BIN" "$work/virtguard/VirtualDomain"
priv_uri=$(sh "$LAB" start "$priv_dir") || die "cannot start the private libvirtd"

if [ -w /dev/kvm ]; then virt=kvm; else virt=qemu; fi
xml=$work/$name.xml
cat > "$xml" <<EOF
<domain type='$virt'>
  <name>$name</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices><memballoon model='none'/></devices>
</domain>
EOF
virsh -q -c "$HOST_URI" create "$xml" >/dev/null

now() { date +%s.%N; }

# agent AGENT ACTION LOCAL_URI REMOTE_URI SOURCE_NODE TARGET_NODE PORT
# Runs one agent call with Pacemaker's environment; prints its duration.
agent() {
    case $1 in
        classic) program=$CLASSIC provider=heartbeat ;;
        virtguard) program=$work/virtguard/VirtualDomain provider=virtguard ;;
    esac
    start=$(now)
    if ! env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        OCF_ROOT=/usr/lib/ocf OCF_RA_VERSION_MAJOR=1 OCF_RA_VERSION_MINOR=1 \
        OCF_RESOURCE_INSTANCE=vgbench OCF_RESOURCE_TYPE=VirtualDomain OCF_RESOURCE_PROVIDER=$provider \
        HA_RSCTMP=$work/rsctmp-$1 \
        OCF_RESKEY_config=$xml OCF_RESKEY_hypervisor=$3 OCF_RESKEY_remoteuri=$4 \
        OCF_RESKEY_migrateuri=tcp://127.0.0.1:$7 \
        OCF_RESKEY_autoset_utilization_cpu=false OCF_RESKEY_autoset_utilization_hv_memory=false \
        OCF_RESKEY_autoset_utilization_host_memory=false \
        OCF_RESKEY_CRM_meta_timeout=120000 \
        OCF_RESKEY_CRM_meta_migrate_source=$5 OCF_RESKEY_CRM_meta_migrate_target=$6 \
        "$program" "$2" >"$work/last.out" 2>"$work/last.err"; then
        echo "--- $1 $2 failed:" >&2
        cat "$work/last.err" >&2
        exit 1
    fi
    echo "$(now) $start" | awk '{ printf "%.3f\n", $1 - $2 }'
}

# migrate AGENT FROM_URI TO_URI FROM_NODE TO_NODE: one migration, "to from" seconds.
migrate() {
    port=$(shuf -i 20000-40000 -n 1)
    t_to=$(agent "$1" migrate_to "$2" "$3" "$4" "$5" "$port")
    t_from=$(agent "$1" migrate_from "$3" "$2" "$4" "$5" "$port")
    state=$(virsh -q -c "$3" domstate "$name" 2>/dev/null || true)
    [ "$state" = running ] || die "$1: after migrating to $5 the guest is '$state' there"
    echo "$1 $t_to $t_from" >> "$work/results"
    echo "  $1 $4 -> $5: migrate_to $t_to s, migrate_from $t_from s" >&2
}

echo "migration-bench: $ROUNDS rounds, guest $name (64 MiB, $virt), $HOST_URI <-> $priv_uri" >&2
round=1
while [ "$round" -le "$ROUNDS" ]; do
    # Alternate who goes first, so neither agent always meets a warm cache.
    if [ $((round % 2)) = 1 ]; then order="classic virtguard"; else order="virtguard classic"; fi
    for a in $order; do
        migrate "$a" "$HOST_URI" "$priv_uri" "$NODE_HOST" "$NODE_PRIV"
        migrate "$a" "$priv_uri" "$HOST_URI" "$NODE_PRIV" "$NODE_HOST"
    done
    round=$((round + 1))
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_of() { awk -v a="$1" -v c="$2" '$1 == a { if (c == 4) print $2 + $3; else print $c }' "$work/results" | median; }

echo
printf '%-10s %12s %14s %10s   (median of %d migrations, seconds)\n' agent migrate_to migrate_from total $((2 * ROUNDS))
for a in classic virtguard; do
    printf '%-10s %12s %14s %10s\n' "$a" "$(column_of $a 2)" "$(column_of $a 3)" "$(column_of $a 4)"
done
awk -v c="$(column_of classic 4)" -v v="$(column_of virtguard 4)" -v cf="$(column_of classic 3)" -v vf="$(column_of virtguard 3)" \
    'BEGIN { printf "ratio classic/virtguard: total %.2f, migrate_from %.2f\n", c / v, cf / vf }'
