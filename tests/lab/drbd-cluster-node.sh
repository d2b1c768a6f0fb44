#!/bin/sh
# Process 1 of a full-stack DRBD lab node (drbd-cluster.sh), inside the
# node's overlay of the host's tree: writes the node's own configuration
# (every file lands in the node's tmpfs upper layer, never on the host),
# starts libvirtd, Corosync and Pacemaker as an init system would at boot,
# then serves the sight port and the command port (the protocol of
# drbd-nodes.sh).
#   drbd-cluster-node.sh NODE RUN_DIR
# RUN_DIR is the host's run directory, read here (read-only) directly through
# virtiofs at /run/vgdc/host: the agent binary, and node-etc/, which the test
# fills (the DRBD resource, the domain's XML) and every boot copies over /etc.
node=$1 run=/run/vgdc/host$2
here=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root
say() { echo "$*" > /dev/ttyS0; }
case $node in alpha) index=1 ;; beta) index=2 ;; *) say "VGLAB-WARN bad node '$node'"; index=9 ;; esac
hostname "$node"
mkdir -p /run/lock /run/vgdc

ip link set lo up
for nic in /sys/class/net/*; do
    case $(cat "$nic/address") in
        52:54:00:78:*) address=10.78.0.$index ;;
        52:54:00:77:*) address=10.77.0.$index ;;
        *) continue ;;
    esac
    ip addr add "$address/24" dev "${nic##*/}"
    ip link set "${nic##*/}" up
done

# The host's state in these directories is not this node's.
for dir in /etc/libvirt /etc/drbd.d /etc/corosync /var/lib/pacemaker /var/log/pacemaker /var/lib/corosync \
    /var/log/corosync /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /var/lib/drbd; do
    rm -rf "$dir"
    mkdir -p "$dir"
done
for sub in cib pengine blackbox cores; do
    install -d -o hacluster -g haclient -m 0750 "/var/lib/pacemaker/$sub"
done
chown hacluster:haclient /var/log/pacemaker
chmod 0770 /var/log/pacemaker
install -d -m 0755 /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu /etc/libvirt/qemu

cat > /etc/hosts <<HOSTS
127.0.0.1 localhost
10.78.0.1 alpha
10.78.0.2 beta
HOSTS
cat > /etc/corosync/corosync.conf <<CONF
# The lab's two-node cluster on its ring link; no crypto (a private cable).
totem {
    version: 2
    cluster_name: vgdc
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    # Emulated nodes stall for seconds under load: a longer token.
    token: 5000
}
logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: no
    timestamp: on
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
nodelist {
    node {
        name: alpha
        nodeid: 1
        ring0_addr: 10.78.0.1
    }
    node {
        name: beta
        nodeid: 2
        ring0_addr: 10.78.0.2
    }
}
CONF
# libvirt: TCP without auth (reachable only over the lab's cable), a host
# UUID per node (libvirt refuses to migrate to "itself"), no cgroups, no
# namespaces, no security driver (the node has none of them set up).
cat > /etc/libvirt/libvirtd.conf <<CONF
host_uuid = "00000000-0000-4000-8000-00000000000$index"
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
cat > /etc/libvirt/qemu.conf <<CONF
user = "root"
group = "root"
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
CONF
# A capabilities cache probed by an earlier run (this QEMU under TCG): the
# first virsh call is 10 s faster. libvirtd probes again when it is stale.
caps=$(cat "$run/lab-dir" 2>/dev/null)/drbd-cluster-qemu-capabilities
[ -d "$caps" ] && cp -a "$caps" /var/cache/libvirt/qemu/capabilities

cat > /etc/drbd.d/global_common.conf <<CONF
global { usage-count no; }
common { }
CONF
# The node's own files the test keeps in the run directory for every boot
# (the DRBD resource, the domain's XML).
[ -d "$run/node-etc" ] && cp -a "$run/node-etc/." /etc/

# The agent under test and the lab's fence agent, in this node's overlay only.
install -m 0755 "$run/virtguard" /usr/sbin/virtguard
mkdir -p /usr/lib/ocf/resource.d/virtguard
ln -sfn /usr/sbin/virtguard /usr/lib/ocf/resource.d/virtguard/VirtualDomain
install -m 0755 "$here/fence_vgdc" /usr/sbin/fence_vgdc

# DRBD's helper as the kernel finds it from this root (see drbd-cluster.sh).
printf '#!/bin/sh\nexec /usr/bin/env PATH=%s /usr/sbin/drbdadm "$@"\n' "$PATH" > /bin/drbd-helper
chmod 0755 /bin/drbd-helper

ctl= sight= fence=
for port in /sys/class/virtio-ports/*; do
    case $(cat "$port/name" 2>/dev/null) in
        org.virtguard.drbd.0) ctl=/dev/${port##*/} ;;
        org.virtguard.sight.0) sight=/dev/${port##*/} ;;
        org.virtguard.fence.0) fence=/dev/${port##*/} ;;
    esac
done
echo "$fence" > /run/vgdc/fence-port

export PCMK_logfacility=none PCMK_logfile=/var/log/pacemaker/pacemaker.log
virtlogd -d
libvirtd -d -l
corosync
setsid pacemakerd </dev/null >/var/log/pacemaker/pacemakerd.out 2>&1 &
say "VGLAB-READY node=$node"

# The sight port: a sampler's view of one guest on one DRBD device, taken
# with shell built-ins only (no process is started), so that a sight costs
# the node next to nothing and the host, which times each request and its
# answer, knows within a few milliseconds when it was taken. A request line
# "DOMAIN DEVICE" is answered, in the command port's protocol, with one line
# "ROLE|STATE|HOLDS": the DRBD role of the first resource in /proc/drbd
# (empty when none is up), DOMAIN's QEMU as libvirt's status file records it
# (running, paused, ...; empty when it has none) and how many of that QEMU's
# file descriptors are DEVICE.
sight_of() {
    role= state= holds=0 pid=
    while read -r line; do
        case $line in *" ro:"*) role=${line#* ro:}; role=${role%%/*} ;; esac
    done 2>/dev/null < /proc/drbd
    while read -r line; do
        case $line in *"<domstatus state='"*) state=${line#*<domstatus state=\'}; state=${state%%\'*}; break ;; esac
    done 2>/dev/null < "/run/libvirt/qemu/$1.xml"
    read -r pid 2>/dev/null < "/run/libvirt/qemu/$1.pid"
    if [ -n "$pid" ]; then
        for fd in /proc/"$pid"/fd/*; do
            [ "$fd" -ef "$2" ] && holds=$((holds + 1))
        done
    fi
    seen="$role|$state|$holds"
}
# Until the sampler connects, a read of the port ends at once (end-of-file):
# every retry starts a `sleep`, and under emulation each costs the node
# noticeable CPU, so the port is retried only every few seconds (what the
# host writes meanwhile waits in the port).
(
    while :; do
        exec 4<>"$sight"
        while read -r domain device <&4; do
            sight_of "$domain" "$device"
            printf 'VGLAB-RESULT 0 %d 0\n%s\n' $((${#seen} + 1)) "$seen" >&4
        done
        exec 4<&-
        sleep 5
    done
) &

# The command loop (drbd-nodes.sh's protocol). A failed read means the host
# end is not connected (end-of-file): reopen after a pause.
while :; do
    exec 3<>"$ctl"
    while read -r command <&3; do
        sh -c "$command" </dev/null >/tmp/vgdc-out 2>/tmp/vgdc-err
        rc=$?
        echo "VGLAB-RESULT $rc $(wc -c < /tmp/vgdc-out) $(wc -c < /tmp/vgdc-err)" >&3
        cat /tmp/vgdc-out /tmp/vgdc-err >&3
    done
    exec 3<&-
    sleep 0.2
done
