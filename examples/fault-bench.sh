#!/usr/bin/env bash
# Seeded fault injection (cluster scenario 50, tests/cluster/faults.rs) for
# both agents with the same seed, for as many faults as asked: the classic
# ocf:heartbeat:VirtualDomain first, then ocf:virtguard:VirtualDomain, each in
# a fresh lab cluster. Prints each fault, how the cluster settled, and the
# totals (faults, settled, double runs, lost, nodes fenced, operations killed
# at their timeout) per agent. A measurement, not a
# test: the classic agent's failures are reported, not fatal.
#
# usage: examples/fault-bench.sh [--faults N|all] [--seed S] [--virtguard-only]
#   --faults N|all    faults per agent, drawn at random (default 20); all:
#                     each kind once, in an order the seed draws
#   --seed S          the seed (default: from the clock; printed either way)
#   --virtguard-only  skip the classic agent
# Needs root and what the cluster tests need (bash ocf/install-deps.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
faults=20
seed=$(($(date +%s%N) % 1000000))
providers=(heartbeat virtguard)
while (($#)); do
    case $1 in
        --faults) faults=$2; shift ;;
        --seed) seed=$2; shift ;;
        --virtguard-only) providers=(virtguard) ;;
        *) sed -n '10,15p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
    shift
done
[[ $(id -u) == 0 ]] || { echo "must run as root" >&2; exit 1; }

echo "seed $seed, $faults faults per agent"
summary=()
for provider in "${providers[@]}"; do
    log=$(mktemp)
    status=0
    (cd "$ROOT" && VG_CLUSTER_PROVIDER=$provider VG_CLUSTER_SCENARIOS=50 VG_FAULTS=$faults VG_FAULT_SEED=$seed \
        cargo test --release --test cluster cluster_scenarios -- --nocapture) >"$log" 2>&1 || status=$?
    echo
    echo "== ocf:$provider:VirtualDomain (test exit $status; full log $log)"
    grep -E '^\[cluster [0-9:]+\]   (fault [0-9]+|when the fault guests|seeded faults)' "$log" | sed 's/^\[cluster [0-9:]*\]   /  /' || true
    summary+=("ocf:$provider:VirtualDomain: $(grep -Eo 'seeded faults .*' "$log" | tail -1 || echo 'no total (see the log)')")
done
echo
printf '%s\n' "${summary[@]}"
