//! Scenario 40 (issue 12): many guests per node, both agents side by side in
//! one run. Twelve firmware-only guests (VG_SCALE_GUESTS) per agent, each
//! agent's guests at home on their own node: ocf:virtguard on node 1,
//! ocf:heartbeat on node 2. Each home node is drained (`pcs node standby`,
//! with Pacemaker's migration-limit) and filled again; then every guest is
//! monitored every 10 s for a while (VG_SCALE_MONITOR_S), and the agents'
//! CPU per monitor and the transitions their own CIB writes aborted are
//! counted. The sampler watches every guest throughout.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::lab::{self, progress, NODES};
use super::{Run, GUEST, GUEST_OUTAGE};

const MONITOR_INTERVAL_S: u64 = 10;
/// Pacemaker's migration-limit during the drains: live migrations at once per node.
const MIGRATION_LIMIT: &str = "2";
/// A drained guest must never be down: a live migration has no outage, a
/// restart has one of a few seconds.
const DRAIN_OUTAGE: Duration = Duration::from_secs(3);

struct Group {
    provider: &'static str,
    prefix: &'static str,
    home: &'static str,
}

const GROUPS: [Group; 2] = [
    Group { provider: "virtguard", prefix: "vgs-v", home: NODES[0] },
    Group { provider: "heartbeat", prefix: "vgs-c", home: NODES[1] },
];

fn guests_per_agent() -> usize {
    std::env::var("VG_SCALE_GUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

fn monitor_window() -> Duration {
    Duration::from_secs(std::env::var("VG_SCALE_MONITOR_S").ok().and_then(|v| v.parse().ok()).unwrap_or(60))
}

impl Group {
    fn names(&self) -> Vec<String> {
        (1..=guests_per_agent()).map(|i| format!("{}{i:02}", self.prefix)).collect()
    }
}

/// How a drain or a fail-back moved one group's guests.
struct Moves {
    migrated: usize,
    restarted: usize,
    emptied_s: f64,
    idle_s: f64,
}

impl Run<'_> {
    pub(super) fn s40_many_guests(&mut self) {
        let lab = self.lab;
        if self.provider != "virtguard" {
            progress("  scenario 40 runs both agents side by side already: not run again for the classic agent");
            return;
        }
        let fences = self.fence_count();
        // The lab guest would be one more monitor on one node's account.
        self.sampler().release(GUEST);
        lab.crm(&["pcs", "resource", "disable", GUEST]);
        lab.wait_idle();
        self.create_scale_guests();
        let all: Vec<String> = GROUPS.iter().flat_map(Group::names).collect();
        for guest in &all {
            self.sampler().expect_running(guest, DRAIN_OUTAGE);
        }
        let per_agent = guests_per_agent();

        lab.crm(&["pcs", "property", "set", &format!("migration-limit={MIGRATION_LIMIT}")]);
        for group in &GROUPS {
            let away = lab::other(group.home);
            let drain = self.move_group(group, &["pcs", "node", "standby", group.home], group.home, away);
            let back = self.move_group(group, &["pcs", "node", "unstandby", group.home], away, group.home);
            for (what, moves) in [("drain", &drain), ("fail-back", &back)] {
                self.figure(
                    &format!("{per_agent} guests, ocf:{}, {what} ({} -> {}, migration-limit {MIGRATION_LIMIT})", group.provider, if what == "drain" { group.home } else { away }, if what == "drain" { away } else { group.home }),
                    format!(
                        "{} live-migrated, {} restarted; node emptied in {:.1}s, cluster idle after {:.1}s",
                        moves.migrated, moves.restarted, moves.emptied_s, moves.idle_s
                    ),
                );
            }
            if group.provider == "virtguard" {
                for (what, moves) in [("drain", &drain), ("fail-back", &back)] {
                    self.check(moves.migrated == per_agent && moves.restarted == 0, || {
                        format!("{what} of {}: {} of {per_agent} live-migrated, {} restarted", group.home, moves.migrated, moves.restarted)
                    });
                }
            }
        }
        lab.crm(&["pcs", "property", "unset", "migration-limit"]);
        self.assert_groups_home();
        self.measure_monitors();

        for guest in &all {
            self.sampler().release(guest);
        }
        self.delete_scale_guests();
        lab.crm(&["pcs", "resource", "enable", GUEST]);
        lab.wait_idle();
        self.sampler().expect_running(GUEST, GUEST_OUTAGE);
        self.assert_no_fencing_since(fences, "scenario 40");
    }

    /// The guests, created stopped in one CIB update each (pcs would take
    /// seconds per resource), with their home preferences, then started
    /// together.
    fn create_scale_guests(&mut self) {
        let lab = self.lab;
        let mut script = String::from("set -e\n");
        for group in &GROUPS {
            for guest in group.names() {
                let config = lab.guest(&guest);
                let nvpair = |name: &str, value: &str| format!(r#"<nvpair id="{guest}-{name}" name="{name}" value="{value}"/>"#);
                let op = |name: &str, interval: &str, timeout: &str| format!(r#"<op id="{guest}-{name}-{interval}" name="{name}" interval="{interval}" timeout="{timeout}"/>"#);
                let primitive = format!(
                    r#"<primitive id="{guest}" class="ocf" provider="{provider}" type="VirtualDomain"><instance_attributes id="{guest}-params">{}{}{}{}</instance_attributes><meta_attributes id="{guest}-meta"><nvpair id="{guest}-allow-migrate" name="allow-migrate" value="true"/><nvpair id="{guest}-target-role" name="target-role" value="Stopped"/></meta_attributes><operations>{}{}{}{}{}</operations></primitive>"#,
                    nvpair("config", &config),
                    nvpair("hypervisor", "qemu:///system"),
                    nvpair("migration_transport", "tcp"),
                    nvpair("force_stop", "true"),
                    op("monitor", &format!("{MONITOR_INTERVAL_S}s"), "30s"),
                    op("start", "0s", "60s"),
                    op("stop", "0s", "60s"),
                    op("migrate_to", "0s", "60s"),
                    op("migrate_from", "0s", "60s"),
                    provider = group.provider,
                );
                let home = format!(r#"<rsc_location id="{guest}-home" rsc="{guest}" node="{}" score="200"/>"#, group.home);
                script += &format!("cibadmin --create -o resources --xml-text '{primitive}'\ncibadmin --create -o constraints --xml-text '{home}'\n");
            }
        }
        lab.must(lab.any_node(), &["sh", "-c", &script]);
        let names: Vec<String> = GROUPS.iter().flat_map(Group::names).collect();
        let t = Instant::now();
        let mut enable = vec!["pcs", "resource", "enable"];
        enable.extend(names.iter().map(String::as_str));
        lab.crm(&enable);
        lab.wait_idle();
        self.figure(&format!("{} guests started (both agents) until idle", names.len()), format!("{:.1}s", t.elapsed().as_secs_f64()));
        self.assert_groups_home();
    }

    /// Every guest of both groups runs on its home node only, where Pacemaker says.
    fn assert_groups_home(&self) {
        let located = self.lab.locations();
        let running = self.running_everywhere();
        for group in &GROUPS {
            for guest in group.names() {
                let at: Vec<&str> = located.get(&guest).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default();
                let on: Vec<&str> = NODES.iter().copied().filter(|n| running.get(*n).is_some_and(|r| r.contains(&guest))).collect();
                self.check(at == [group.home] && on == [group.home], || {
                    format!("{guest}: expected on {} only; Pacemaker locates it on {at:?}, libvirt runs it on {on:?}", group.home)
                });
            }
        }
    }

    /// The domains libvirt runs on each node that is up.
    fn running_everywhere(&self) -> HashMap<String, Vec<String>> {
        NODES
            .iter()
            .filter(|n| !self.lab.is_off(n))
            .map(|n| (n.to_string(), self.lab.domains_on(n).unwrap_or_else(|| self.fail(&format!("libvirt on {n} does not answer")))))
            .collect()
    }

    /// Runs `command` (a standby or unstandby), then measures how the group's
    /// guests left `from` for `to`: the time until `from` runs none of them,
    /// and from Pacemaker's history whether each arrived by migrate_from or
    /// by a start.
    fn move_group(&self, group: &Group, command: &[&str], from: &str, to: &str) -> Moves {
        let lab = self.lab;
        let names = group.names();
        let since = lab.call_ids();
        let t = Instant::now();
        lab.crm(command);
        lab.poll(&format!("{from} to run none of the {} guests", group.provider), Duration::from_secs(300), || {
            // A node that does not answer is not empty yet.
            self.lab.domains_on(from).filter(|running| !running.iter().any(|d| names.contains(d))).map(|_| ())
        });
        let emptied_s = t.elapsed().as_secs_f64();
        lab.wait_idle();
        let idle_s = t.elapsed().as_secs_f64();
        let after = since.get(to).copied().unwrap_or(0);
        let arrivals: BTreeMap<String, String> = lab
            .history()
            .into_iter()
            .filter(|o| o.node() == to && o.call_id() > after && names.iter().any(|n| n == o.resource()))
            .filter(|o| (o.operation() == "migrate_from" && o.rc() == 0) || o.operation() == "start")
            .map(|o| (o.resource().to_owned(), o.operation().to_owned()))
            .collect();
        Moves {
            migrated: arrivals.values().filter(|op| *op == "migrate_from").count(),
            restarted: arrivals.values().filter(|op| *op == "start").count(),
            emptied_s,
            idle_s,
        }
    }

    /// Both groups at home, monitored every 10 s: the CPU each node's agent
    /// processes used (pacemaker-execd's reaped children: the agent and
    /// everything it ran), per guest per monitor, and the transitions that
    /// the agents' own CIB writes aborted (the DC's log).
    fn measure_monitors(&mut self) {
        let lab = self.lab;
        let window = monitor_window();
        let cpu_before: Vec<lab::DaemonCpu> = GROUPS.iter().map(|g| lab.daemon_cpu(g.home)).collect();
        let logs_before: Vec<usize> = NODES.iter().map(|n| lab.pacemaker_log(n).len()).collect();
        progress(&format!("  all guests monitored every {MONITOR_INTERVAL_S}s for {}s", window.as_secs()));
        std::thread::sleep(window);
        let cpu_after: Vec<lab::DaemonCpu> = GROUPS.iter().map(|g| lab.daemon_cpu(g.home)).collect();
        let new_log: String = NODES.iter().zip(&logs_before).map(|(n, before)| lab.pacemaker_log(n).get(*before..).unwrap_or_default().to_owned()).collect();
        let aborts = transition_aborts(&new_log);
        let per_agent = guests_per_agent();
        let monitors = per_agent as f64 * window.as_secs_f64() / MONITOR_INTERVAL_S as f64;
        for (i, group) in GROUPS.iter().enumerate() {
            let (agents_ms, libvirtd_ms) = cpu_after[i].ms_since(&cpu_before[i]);
            self.figure(
                &format!("{per_agent} guests, ocf:{}, monitor every {MONITOR_INTERVAL_S}s for {}s", group.provider, window.as_secs()),
                format!(
                    "agent CPU {:.1} ms per guest per monitor; libvirtd CPU on the node {:.1} ms per monitor (incl. the sampler's reads); transitions aborted by its own CIB writes: {}",
                    agents_ms / monitors,
                    libvirtd_ms / monitors,
                    aborts.get(group.prefix).copied().unwrap_or(0)
                ),
            );
        }
        self.figure("transitions aborted during the monitor window, all causes", format!("{}", aborts.values().sum::<usize>()));
        if let Some(ours) = aborts.get(GROUPS[0].prefix) {
            self.check(*ours == 0, || format!("virtguard's own CIB writes aborted {ours} transitions"));
        }
    }

    fn delete_scale_guests(&mut self) {
        let lab = self.lab;
        let names: Vec<String> = GROUPS.iter().flat_map(Group::names).collect();
        let mut disable = vec!["pcs", "resource", "disable"];
        disable.extend(names.iter().map(String::as_str));
        lab.crm(&disable);
        lab.wait_idle();
        let script: String = names
            .iter()
            .map(|g| {
                format!(
                    "cibadmin --delete -o constraints --xml-text '<rsc_location id=\"{g}-home\"/>'; cibadmin --delete -o resources --xml-text '<primitive id=\"{g}\"/>'\n"
                )
            })
            .collect();
        lab.must(lab.any_node(), &["sh", "-c", &script]);
        lab.wait_idle();
        let running = self.running_everywhere();
        let left: Vec<&String> = running.values().flatten().filter(|d| names.contains(d)).collect();
        self.check(left.is_empty(), || format!("guests left running after the delete: {left:?}"));
    }
}

/// "Transition N aborted by X ..." lines of a controller log, counted by the
/// guest-name prefix of the agent write that caused them (its resource's
/// utilization or attributes); other causes, the controller's own fail-count
/// and last-failure records among them, under "".
fn transition_aborts(log: &str) -> HashMap<&'static str, usize> {
    let mut counts = HashMap::new();
    for line in log.lines().filter(|l| l.contains("(abort_transition_graph)") && l.contains(" aborted")) {
        let cause = line.split(" | ").next().unwrap_or(line);
        let controllers = cause.contains("fail-count") || cause.contains("last-failure");
        let key = GROUPS.iter().map(|g| g.prefix).find(|p| cause.contains(p) && !controllers).unwrap_or("");
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[test]
fn counts_transition_aborts_by_cause() {
    let log = "Dec 01 00:01:02.000 vg-node1 pacemaker-controld  [1] (abort_transition_graph) \tinfo: Transition 7 aborted by vgs-c03-utilization-cpu doing modify cpu=1: Configuration change | cib=0.40.1 path=/cib/configuration/resources/primitive[@id='vgs-c03']/utilization\n\
Dec 01 00:01:03.000 vg-node1 pacemaker-controld  [1] (abort_transition_graph) \tinfo: Transition 8 aborted by status-1-last-failure-vgs-v01.monitor_10000 doing create: Transient attribute change | path=/cib/status\n\
Dec 01 00:01:04.000 vg-node1 pacemaker-controld  [1] (abort_transition_graph) \tinfo: Transition 9 aborted: Peer Cancelled | source=do_te_invoke:129\n\
Dec 01 00:01:05.000 vg-node1 pacemaker-controld  [1] (te_rsc_command) \tnotice: Initiating monitor operation vgs-c03_monitor_10000\n";
    let counts = transition_aborts(log);
    assert_eq!((counts["vgs-c"], counts.get("vgs-v"), counts[""]), (1, None, 2));
}
