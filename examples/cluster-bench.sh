#!/usr/bin/env bash
# Side-by-side figures for ocf:heartbeat:VirtualDomain (the classic bash agent)
# and ocf:virtguard:VirtualDomain in the two-node lab cluster of tests/cluster:
# identical firmware-only guests, identical operations, one agent after the
# other in the same cluster. Prints a markdown table on stdout. These are
# measurements, not tests: on a shared 2-core machine read them as ratios.
#
# usage: examples/cluster-bench.sh [--agent PATH] [--classic-only] [--keep]
#   --agent PATH    virtguard binary bound into the nodes as ocf:virtguard:VirtualDomain
#                   (default: target/release/virtguard, built by this script)
#   --classic-only  measure the classic agent only
#   --keep          leave the cluster up at the end
# Needs root; brings the lab cluster up itself (tests/cluster/harness.sh up).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$ROOT/tests/cluster/harness.sh
NODES=(vg-node1 vg-node2)
MONITOR_INTERVAL_S=5
MONITOR_SAMPLES=5 # probes and first recurring monitors recorded by Pacemaker
CPU_RUNS=20       # monitor calls timed for CPU
MOVES=4           # live migrations (there and back, twice)

agent_binary=
providers=(heartbeat virtguard)
keep=no
while (($#)); do
    case $1 in
        --agent) agent_binary=$2; shift ;;
        --classic-only) providers=(heartbeat) ;;
        --keep) keep=yes ;;
        *) sed -n '8,13p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

harness() { bash "$HARNESS" "$@"; }
on() { harness exec "$@"; }
declare -A node_is_off=()
live_node() {
    local n
    for n in "${NODES[@]}"; do [[ -z ${node_is_off[$n]:-} ]] && { echo "$n"; return; }; done
}
crm() { on "$(live_node)" "$@"; }
wait_idle() { crm crm_resource --wait --timeout=240s; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
other() { [[ $1 == "${NODES[0]}" ]] && echo "${NODES[1]}" || echo "${NODES[0]}"; }
# (Output captured first: a reader that stops early would fail the writer under pipefail.)
runs_on() {
    local names
    names=$(on "$1" virsh -c qemu:///system list --name 2>/dev/null) || return 1
    grep -qx "$2" <<<"$names"
}
located() {
    local nodes
    nodes=$(crm crm_resource --locate -r "$1" -Q 2>/dev/null) || true
    echo "${nodes%%$'\n'*}"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# An attribute of the operation record Pacemaker keeps in the CIB status.
op_attr() {
    local node=$1 key=$2 attr=$3
    crm cibadmin -Q -o status |
        xmllint --xpath "string(//lrm_rsc_op[@operation_key='$key' and @on_node='$node']/@$attr)" - 2>/dev/null
}

# Polls a command until it succeeds; fails after $1 seconds.
poll() {
    local timeout=$1 start=$SECONDS
    shift
    until "$@"; do
        ((SECONDS - start < timeout)) || die "timed out after ${timeout}s: $*"
        sleep 0.1
    done
}

on_target_only() { runs_on "$2" "$1" && ! runs_on "$3" "$1"; }

declare -A result=()
record() { result[$1,$2]=$3; say "  $2: $3"; }

setup_cluster() {
    local agent_env=()
    [[ -n $agent_binary ]] && agent_env=(VG_CLUSTER_AGENT="$agent_binary")
    env "${agent_env[@]}" bash "$HARNESS" up
    crm pcs stonith create vgb-fence fence_virtguard_lab "pcmk_host_list=${NODES[*]}" pcmk_reboot_action=off >/dev/null
    crm pcs property set stonith-enabled=true
    crm pcs resource defaults update resource-stickiness=100 >/dev/null 2>&1
    wait_idle
}

# Pacemaker's own records: the exec-time of N probes (crm_resource --refresh)
# and of the first run of the recurring monitor that follows each of them.
measure_monitor_exec_time() {
    local provider=$1 rsc=$2 node=$3 i probes=() monitors=()
    for ((i = 0; i < MONITOR_SAMPLES; i++)); do
        crm crm_resource --refresh -r "$rsc" -N "$node" >/dev/null
        wait_idle
        probes+=("$(op_attr "$node" "${rsc}_monitor_0" exec-time)")
        monitors+=("$(op_attr "$node" "${rsc}_monitor_$((MONITOR_INTERVAL_S * 1000))" exec-time)")
    done
    record "$provider" "probe exec-time (ms, median of $MONITOR_SAMPLES)" "$(printf '%s\n' "${probes[@]}" | median)"
    record "$provider" "monitor exec-time (ms, median of $MONITOR_SAMPLES)" "$(printf '%s\n' "${monitors[@]}" | median)"
}

# The agent's monitor called as pacemaker-execd calls it (same variables), inside
# the node: CPU of the agent and everything it spawns, and the programs it executes.
measure_monitor_cpu() {
    local provider=$1 rsc=$2 node=$3 config=$4 ticks hz programs
    local env_vars=(
        OCF_ROOT=/usr/lib/ocf OCF_RA_VERSION_MAJOR=1 OCF_RA_VERSION_MINOR=1 OCF_RESOURCE_INSTANCE="$rsc"
        OCF_RESOURCE_TYPE=VirtualDomain OCF_RESOURCE_PROVIDER="$provider" OCF_RESKEY_config="$config"
        OCF_RESKEY_hypervisor=qemu:///system OCF_RESKEY_migration_transport=tcp OCF_RESKEY_force_stop=true
        OCF_RESKEY_CRM_meta_interval=$((MONITOR_INTERVAL_S * 1000)) OCF_RESKEY_CRM_meta_timeout=30000
        OCF_RESKEY_CRM_meta_name=monitor OCF_CHECK_LEVEL=0 HA_RSCTMP=/run/resource-agents
    )
    local agent=/usr/lib/ocf/resource.d/$provider/VirtualDomain
    # cutime + cstime of the loop's shell: every monitor it waited for, with all descendants.
    ticks=$(on "$node" env "${env_vars[@]}" bash -c '
        for ((i = 0; i < '"$CPU_RUNS"'; i++)); do "$0" monitor >/dev/null 2>&1 || exit 1; done
        read -r -a stat < /proc/$$/stat; echo $((stat[15] + stat[16]))' "$agent") ||
        die "$provider monitor failed while measuring CPU"
    hz=$(getconf CLK_TCK)
    record "$provider" "CPU per monitor (ms user+sys, $CPU_RUNS calls)" "$(awk -v t="$ticks" -v hz="$hz" -v n="$CPU_RUNS" 'BEGIN { printf "%.1f", t * 1000 / hz / n }')"
    programs=$(on "$node" env "${env_vars[@]}" bash -c '
        strace -f -qq -e trace=execve,clone,clone3,fork,vfork -o /run/vg-lab/monitor.strace "$0" monitor >/dev/null 2>&1
        # New processes (not threads) and programs started.
        echo "$(grep -E "(clone3?|v?fork)\(" /run/vg-lab/monitor.strace | grep -v CLONE_THREAD | grep -cE "= [1-9][0-9]*$") $(grep -c "execve(.*= 0$" /run/vg-lab/monitor.strace)"' "$agent" || true)
    record "$provider" "processes spawned / programs executed per monitor" "${programs% *} / ${programs#* }"
}

measure_moves() {
    local provider=$1 rsc=$2 i src dst t0 times=() to_ms=() from_ms=() restarts=0
    for ((i = 0; i < MOVES; i++)); do
        src=$(located "$rsc")
        dst=$(other "$src")
        wait_idle
        t0=$(now)
        crm crm_resource --move -r "$rsc" -N "$dst" >/dev/null
        poll 180 on_target_only "$rsc" "$dst" "$src"
        times+=("$(since "$t0")")
        wait_idle
        if [[ $(op_attr "$dst" "${rsc}_migrate_from_0" rc-code) == 0 ]]; then
            to_ms+=("$(op_attr "$src" "${rsc}_migrate_to_0" exec-time)")
            from_ms+=("$(op_attr "$dst" "${rsc}_migrate_from_0" exec-time)")
        else
            restarts=$((restarts + 1))
        fi
        crm crm_resource --clear -r "$rsc" >/dev/null
        wait_idle
    done
    record "$provider" "crm_resource --move until on target only (s, median of $MOVES)" "$(printf '%s\n' "${times[@]}" | median)"
    record "$provider" "migrate_to / migrate_from exec-time (ms, median)" \
        "$(printf '%s\n' "${to_ms[@]}" | median) / $(printf '%s\n' "${from_ms[@]}" | median)$( ((restarts)) && echo " ($restarts moves were stop/start!)")"
}

measure_guest_crash() {
    local provider=$1 rsc=$2 node old_pid t0
    node=$(located "$rsc")
    wait_idle
    old_pid=$(on "$node" cat "/run/libvirt/qemu/$rsc.pid")
    [[ $(cat "/proc/$old_pid/comm") == qemu* ]] || die "pid $old_pid is not the guest's QEMU"
    t0=$(now)
    kill -KILL "$old_pid"
    poll 120 guest_restarted "$rsc" "$old_pid"
    record "$provider" "guest QEMU killed until running again (s, monitor every ${MONITOR_INTERVAL_S}s)" "$(since "$t0")"
    wait_idle
    node=$(located "$rsc")
    record "$provider" "  of which the agent's stop + start (ms)" \
        "$(execd_time "$node" "$rsc" stop "$(op_attr "$node" "${rsc}_start_0" call-id)") + $(op_attr "$node" "${rsc}_start_0" exec-time)"
    crm crm_resource --refresh -r "$rsc" >/dev/null
    wait_idle
}

# The execution time pacemaker-execd logged for RSC's OPERATION on NODE that
# ran just before the executor call BEFORE_CALL (the CIB keeps only the latest
# one-shot operation of a resource). Waits a little: the log is written late.
execd_time() {
    local node=$1 rsc=$2 operation=$3 before_call=$4 state log_file i found
    state=${VG_CLUSTER_STATE:-/var/tmp/vg-cluster}
    log_file=$state/nodes/$node/var-log-pacemaker/pacemaker.log
    for ((i = 0; i < 50; i++)); do
        found=$(grep -F "$rsc $operation (call" "$log_file" |
            sed -n 's/.*(call \([0-9]*\),.*(execution time \([0-9.]*\)\(ms\|s\)\b.*/\1 \2 \3/p' |
            awk -v before="$before_call" '$1 < before && $1 >= before - 5 {
                ms = ($3 == "s") ? $2 * 1000 : $2; best = $1; value = ms }
                END { if (best) printf "%.0f", value }')
        [[ -n $found ]] && { echo "$found"; return; }
        sleep 0.2
    done
    echo "?"
}

guest_restarted() {
    local rsc=$1 old_pid=$2 n pid
    for n in "${NODES[@]}"; do
        runs_on "$n" "$rsc" || continue
        pid=$(on "$n" cat "/run/libvirt/qemu/$rsc.pid" 2>/dev/null) || continue
        [[ $pid != "$old_pid" ]] && return 0
    done
    return 1
}

measure_node_failure() {
    local provider=$1 rsc=$2 failed survivor t0
    failed=$(located "$rsc")
    survivor=$(other "$failed")
    wait_idle
    t0=$(now)
    harness crash "$failed"
    node_is_off[$failed]=1
    poll 180 runs_on "$survivor" "$rsc"
    record "$provider" "node failure (corosync killed) until guest runs on survivor (s)" "$(since "$t0")"
    wait_idle
    record "$provider" "  of which the agent's start (ms)" "$(op_attr "$survivor" "${rsc}_start_0" exec-time)"
    harness boot "$failed"
    unset "node_is_off[$failed]"
    harness wait 120
    wait_idle
}

bench_agent() {
    local provider=$1 rsc=vgb-$1 config node=${NODES[0]}
    say "agent ocf:$provider:VirtualDomain"
    config=$(harness guest "$rsc")
    crm pcs resource create "$rsc" "ocf:$provider:VirtualDomain" "config=$config" hypervisor=qemu:///system \
        migration_transport=tcp force_stop=true op monitor "interval=${MONITOR_INTERVAL_S}s" timeout=30s \
        meta allow-migrate=true --disabled
    crm pcs constraint location "$rsc" prefers "$node=50" >/dev/null
    crm pcs resource enable "$rsc"
    wait_idle
    [[ $(located "$rsc") == "$node" ]] || die "$rsc did not start on $node"
    measure_monitor_exec_time "$provider" "$rsc" "$node"
    measure_monitor_cpu "$provider" "$rsc" "$node" "$config"
    measure_moves "$provider" "$rsc"
    measure_guest_crash "$provider" "$rsc"
    measure_node_failure "$provider" "$rsc"
    crm pcs resource delete "$rsc" >/dev/null 2>&1
    wait_idle
    crm crm_resource --cleanup >/dev/null
    wait_idle
}

print_table() {
    local metrics=() metric provider row
    metrics=(
        "probe exec-time (ms, median of $MONITOR_SAMPLES)"
        "monitor exec-time (ms, median of $MONITOR_SAMPLES)"
        "CPU per monitor (ms user+sys, $CPU_RUNS calls)"
        "processes spawned / programs executed per monitor"
        "crm_resource --move until on target only (s, median of $MOVES)"
        "migrate_to / migrate_from exec-time (ms, median)"
        "guest QEMU killed until running again (s, monitor every ${MONITOR_INTERVAL_S}s)"
        "  of which the agent's stop + start (ms)"
        "node failure (corosync killed) until guest runs on survivor (s)"
        "  of which the agent's start (ms)"
    )
    echo
    echo "| measurement | classic (ocf:heartbeat) | virtguard (ocf:virtguard) |"
    echo "|---|---|---|"
    for metric in "${metrics[@]}"; do
        row="| ${metric/#  /↳ } "
        for provider in heartbeat virtguard; do row+="| ${result[$provider,$metric]:-n/a} "; done
        echo "$row|"
    done
    echo
    echo "Two-node lab cluster on one machine ($(nproc) cores, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)), firmware-only 64 MiB guests ($guest_type), $(date -u +%F)."
}

cleanup() {
    [[ $keep == yes ]] || harness down >/dev/null 2>&1 || true
}

main() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    if [[ " ${providers[*]} " == *" virtguard "* && -z $agent_binary ]]; then
        say "building virtguard (release)"
        (cd "$ROOT" && cargo build --release --quiet)
        agent_binary=$ROOT/target/release/virtguard
    fi
    if [[ -n $agent_binary ]]; then
        local probe_dir
        probe_dir=$(mktemp -d)
        ln -s "$(realpath "$agent_binary")" "$probe_dir/VirtualDomain"
        if ! "$probe_dir/VirtualDomain" meta-data >/dev/null 2>&1; then
            say "virtguard at $agent_binary does not answer meta-data: measuring the classic agent only"
            providers=(heartbeat)
        fi
        rm -rf "$probe_dir"
    fi
    trap cleanup EXIT
    setup_cluster
    guest_type=$(xmllint --xpath 'string(/domain/@type)' "$(harness guest vgb-type-probe)")
    local provider
    for provider in "${providers[@]}"; do bench_agent "$provider"; done
    print_table
}

main
