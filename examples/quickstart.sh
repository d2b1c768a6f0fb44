#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): install everything,
# build and install ocf:virtguard:VirtualDomain, bring up a two-node Pacemaker
# cluster in network namespaces on this machine, and let Pacemaker run a real
# guest with the agent: create it with pcs, live-migrate it to the other node
# and back, show crm_mon. The cluster stays up for you to play with;
# `bash tests/cluster/harness.sh down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=tests/cluster/harness.sh
step() { printf '\n== %s\n' "$*"; }
on() { local node=$1; shift; bash "$harness" exec "$node" "$@"; }

step "installing system packages"
bash ocf/install-deps.sh

step "building and installing the agent"
bash ocf/install.sh

step "starting a two-node cluster (vg-node1, vg-node2) in namespaces"
bash "$harness" up
config=$(bash "$harness" guest vm1)

step "pcs resource create vm1 ocf:virtguard:VirtualDomain config=$config ..."
on vg-node1 pcs resource create vm1 ocf:virtguard:VirtualDomain "config=$config" \
    hypervisor=qemu:///system migration_transport=tcp \
    op monitor interval=10s timeout=30s meta allow-migrate=true
on vg-node1 crm_resource --wait --timeout=120s
on vg-node1 crm_mon -1 --include=resources

where() { on vg-node1 crm_resource --resource vm1 --locate 2>/dev/null | sed -n 's/.* is running on: //p' | head -1; }
for round in 1 2; do
    from=$(where)
    to=$([[ $from == vg-node1 ]] && echo vg-node2 || echo vg-node1)
    step "live migration $round: crm_resource --move vm1 from $from to $to"
    began=$(date +%s.%N)
    on vg-node1 crm_resource --resource vm1 --move --node "$to"
    on vg-node1 crm_resource --wait --timeout=180s
    printf 'vm1 now runs on %s (%s s)\n' "$(where)" "$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
    on vg-node1 crm_resource --resource vm1 --clear
    on vg-node1 crm_resource --wait --timeout=60s
done

step "the operations Pacemaker recorded for vm1"
on vg-node1 crm_mon -1 --include=resources,operations --exclude=summary || true
step "done: the cluster keeps running; remove it with: bash $harness down"
