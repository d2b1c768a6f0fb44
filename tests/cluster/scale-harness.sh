#!/usr/bin/env bash
# The lab cluster beyond two nodes (issue 21): VG_SCALE_FULL full nodes
# (default 3: a real quorum, no two_node) and VG_SCALE_REMOTE Pacemaker Remote
# nodes (default 3: pacemaker-remoted and its own libvirtd, joined by
# ocf:pacemaker:remote resources named after them), all of the "namespace" kind
# (tests/cluster/node-namespace.sh) on one switch; tests/cluster_scale.rs runs
# its scenarios. Names, state directory and subnet are its own, so that it
# runs beside the two-node labs.
#
# usage: scale-harness.sh up | down [--purge] [--force] | status | wait [SECONDS]
#        scale-harness.sh exec NODE CMD...      run CMD inside NODE's namespaces
#        scale-harness.sh boot NODE             power a node on (after a fence)
#        scale-harness.sh poweroff NODE         kill every process of NODE
#        scale-harness.sh crash NODE            kill NODE's corosync or pacemaker-remoted
#        scale-harness.sh guest NAME            write a firmware-only guest config, print its path
#        scale-harness.sh pids NODE             the processes of NODE
#        scale-harness.sh nodes | remote-nodes  the lab's nodes, one a line
#        scale-harness.sh link NODE up|down     plug or pull NODE's cable to the lab's switch
set -euo pipefail

LAB_ENTRY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scale-harness.sh
LAB_LOG_TAG=scale-harness
CLUSTER_NAME=vgtlab
STATE=${VG_LAB_STATE:-${VG_SCALE_CLUSTER_STATE:-/var/tmp/vgt-cluster}}
CACHE=${VG_SCALE_CLUSTER_CACHE:-/var/tmp/vgt-cluster-cache}
# The shape `up` was given holds for every later call (the fence agent boots
# a node without the caller's environment), until the next `up`.
if [[ ${1:-} != up && -z ${VG_SCALE_FULL:-}${VG_SCALE_REMOTE:-} && -s $STATE.shape ]]; then
    read -r VG_SCALE_FULL VG_SCALE_REMOTE <"$STATE.shape"
fi
full=${VG_SCALE_FULL:-3}
remote=${VG_SCALE_REMOTE:-3}
((full >= 1 && full + remote <= 60)) || { echo "VG_SCALE_FULL=$full VG_SCALE_REMOTE=$remote: 1 to 60 nodes" >&2; exit 2; }
FULL_NODES=()
REMOTE_NODES=()
declare -A NODE_ADDR=()
for ((i = 1; i <= full; i++)); do
    FULL_NODES+=("vgt-full$i")
    NODE_ADDR[vgt-full$i]=172.30.221.$i
done
for ((i = 1; i <= remote; i++)); do
    REMOTE_NODES+=("vgt-remote$i")
    NODE_ADDR[vgt-remote$i]=172.30.221.$((100 + i))
done
SUBNET_BITS=24
if [[ ${1:-} == up ]]; then echo "$full $remote" >"$STATE.shape"; fi

source "$(dirname "$LAB_ENTRY")/lab.sh"
source "$(dirname "$LAB_ENTRY")/node-namespace.sh"
lab_main "$@"
