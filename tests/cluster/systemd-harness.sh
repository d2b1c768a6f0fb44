#!/usr/bin/env bash
# The two-node lab cluster with nodes that boot systemd as their init, as
# production nodes do (node kind "systemd", tests/cluster/node-systemd.sh; what
# every lab shares is in tests/cluster/lab.sh): corosync, pacemaker and libvirt
# run as systemd units, and `systemctl poweroff|reboot|stop|restart` inside a
# node behave as on a real machine. Its names, state directory and subnet are
# its own, so that it and the namespace lab (harness.sh) can run at once.
#
# usage: systemd-harness.sh up | down [--purge] [--force] | status | wait [SECONDS]
#        systemd-harness.sh exec NODE CMD...   run CMD inside NODE
#        systemd-harness.sh boot NODE          power a node on (after a poweroff)
#        systemd-harness.sh poweroff NODE      power cut: kill the container at once
#        systemd-harness.sh guest NAME         write a firmware-only guest config, print its path
#        systemd-harness.sh pids NODE          the processes of NODE
#        systemd-harness.sh link NODE up|down  plug or pull NODE's cable to the lab's switch
set -euo pipefail

LAB_ENTRY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/systemd-harness.sh
LAB_LOG_TAG=systemd-harness
CLUSTER_NAME=vgsdlab
STATE=${VG_SYSTEMD_CLUSTER_STATE:-/var/tmp/vgsd-cluster}
CACHE=${VG_SYSTEMD_CLUSTER_CACHE:-/var/tmp/vgsd-cluster-cache}
FULL_NODES=(vgsd-node1 vgsd-node2)
REMOTE_NODES=()
declare -A NODE_ADDR=([vgsd-node1]=172.30.217.1 [vgsd-node2]=172.30.217.2)
SUBNET_BITS=29
# The cgroup subtree under which each container gets its own.
CGROUP_PARENT=vgsd-lab

source "$(dirname "$LAB_ENTRY")/lab.sh"
source "$(dirname "$LAB_ENTRY")/node-systemd.sh"
lab_main "$@"
