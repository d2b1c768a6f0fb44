#!/usr/bin/env bash
# The two-node Pacemaker/Corosync lab cluster on one machine, for virtguard's
# cluster tests and benchmarks (tests/cluster.rs runs the scenarios;
# tests/README.md). Its nodes are of the "namespace" kind
# (tests/cluster/node-namespace.sh); what every lab shares is in
# tests/cluster/lab.sh. VG_CLUSTER_AGENT=PATH binds that virtguard binary into
# both nodes as ocf:virtguard:VirtualDomain (else the installed agent is used).
#
# usage: harness.sh up | down [--purge] [--force] | status | wait [SECONDS]
#        harness.sh exec NODE CMD...      run CMD inside NODE's namespaces
#        harness.sh boot NODE             power a node on (after a fence)
#        harness.sh poweroff NODE         kill every process of NODE
#        harness.sh crash NODE            kill NODE's corosync: the node drops out of
#                                         the cluster with its guests still running
#        harness.sh guest NAME            write a firmware-only guest config, print its path
#        harness.sh pids NODE             the processes of NODE
#        harness.sh nodes                 the lab's nodes, one a line
#        harness.sh start-libvirtd NODE   start NODE's libvirtd again (after it was
#                                         killed), as systemd's Restart= would
#        harness.sh link NODE up|down     plug or pull NODE's cable to the lab's switch
set -euo pipefail

LAB_ENTRY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/harness.sh
LAB_LOG_TAG=harness
CLUSTER_NAME=vglab
STATE=${VG_CLUSTER_STATE:-/var/tmp/vg-cluster}
# Survives `down --purge`: QEMU capabilities probed by libvirtd (it re-probes
# by itself when they no longer match the binaries), saving seconds per start.
CACHE=${VG_CLUSTER_CACHE:-/var/tmp/vg-cluster-cache}
FULL_NODES=(vg-node1 vg-node2)
REMOTE_NODES=()
declare -A NODE_ADDR=([vg-node1]=172.30.213.1 [vg-node2]=172.30.213.2)
SUBNET_BITS=29

source "$(dirname "$LAB_ENTRY")/lab.sh"
source "$(dirname "$LAB_ENTRY")/node-namespace.sh"
lab_main "$@"
