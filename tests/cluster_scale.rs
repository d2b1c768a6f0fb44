//! The agent beyond two nodes (issue 21): one topology of full Corosync nodes
//! (VG_SCALE_FULL, default 3: a real quorum) and Pacemaker Remote nodes
//! (VG_SCALE_REMOTE, default 3), brought up by tests/cluster/scale-harness.sh;
//! the guests (VG_SCALE_GUESTS, default 40 firmware-only guests, KVM when the
//! machine has it) run on the remote nodes only, by a location rule, placed by
//! utilization (`placement-strategy=balanced`, the agent's
//! `autoset_utilization_*`). Every node is fenceable by the lab fence agent
//! and watched by the invariant sampler.
//!
//! Needs root, Pacemaker, Corosync, pcs, libvirt, QEMU and pacemaker-remoted
//! (ocf/install-deps.sh unpacks it): a missing prerequisite fails the test,
//! naming it. VG_CLUSTER_SCENARIOS=1,3 runs only those scenarios;
//! VG_CLUSTER_AGENT_BINARY=PATH tests another virtguard binary.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::cluster::{progress, Lab};
use support::sampler::Sampler;

/// What each remote node offers the guests (each guest needs 1 CPU and 64
/// MiB): room for 21 guests, so that the guests of one node that is drained
/// or lost fit on two others (40 / 2 = 20), and not for many more.
const NODE_CPU: u32 = 24;
const NODE_HV_MEMORY_MIB: u32 = 21 * GUEST_MEMORY_MIB;
const GUEST_MEMORY_MIB: u32 = 64;
const MONITOR_INTERVAL_S: u64 = 10;
/// Live migrations at once per node while a node is drained.
const MIGRATION_LIMIT: &str = "2";
/// A guest that is migrated live is never down; a restart takes seconds.
const NO_OUTAGE: Duration = Duration::from_secs(3);
/// A guest on a node that crashed: fenced, then started elsewhere.
const FAILOVER_OUTAGE: Duration = Duration::from_secs(120);
/// How long the placement is watched for changes nobody asked for.
const STABILITY_WINDOW: Duration = Duration::from_secs(35);
const GUEST_PREFIX: &str = "vgt-g";
/// The namespace of virtguard's owner tag in a domain's metadata.
const OWNER_TAG_NAMESPACE: &str = virtguard::hypervisor::owner_tag::NAMESPACE;
/// Every guest probed on every node, then started, on a shared two-core machine.
const MANY_STARTS: Duration = Duration::from_secs(600);

struct Run<'a> {
    lab: &'a Lab,
    guests: Vec<String>,
    figures: Vec<(String, String)>,
    sampler: Option<Sampler>,
}

fn guest_count() -> usize {
    std::env::var("VG_SCALE_GUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

/// How long each agent's monitors are measured in scenario 6.
fn monitor_window() -> Duration {
    Duration::from_secs(std::env::var("VG_SCALE_MONITOR_S").ok().and_then(|v| v.parse().ok()).unwrap_or(30))
}

fn shape() -> (usize, usize) {
    let read = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    (read("VG_SCALE_FULL"), read("VG_SCALE_REMOTE"))
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn scale_cluster_scenarios() {
    let agent_binary = std::env::var_os("VG_CLUSTER_AGENT_BINARY").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_virtguard")), PathBuf::from);
    if let Err(missing) = prerequisites() {
        support::missing_prerequisite(&format!("the scale cluster scenarios: {missing}"));
    }
    support::host_files::watch_host_files();
    let start = Instant::now();
    let (full, remote) = shape();
    progress(&format!("bringing {full} full + {remote} remote nodes up"));
    let lab = Lab::up_scale(Some(agent_binary.as_path()), full, remote);
    let mut run = Run { lab: &lab, guests: Vec::new(), figures: Vec::new(), sampler: None };
    run.figure(&format!("{full} full + {remote} remote nodes: up (DC, every node online)"), format!("{:.1}s", start.elapsed().as_secs_f64()));
    run.figure("memory of the idle topology (PSS of each node's processes)", run.memory_per_node());
    run.baseline();

    let scenarios: Vec<support::scenarios::Scenario<Run>> = vec![
        ("1 guests placed over the remote nodes by utilization, placement stable under monitors", Run::s1_placement),
        // Before any guest was live-migrated: after a migration onto a remote
        // node, Pacemaker 2.1.5 restarts that guest when the node's connection
        // moves (the target's history is probed anew, the source keeps its
        // migrate_to: "can no longer migrate"), which scenario 4 would report.
        ("4 the full node holding a remote node's connection dies: the guests there are untouched", Run::s4_connection_host_dies),
        ("2 a remote node in standby: its guests live-migrate to the others", Run::s2_standby),
        ("3 a remote node crashes: fenced, its guests start elsewhere once", Run::s3_remote_crash),
        ("5 a full node cut off from the others: quorum lost there, every guest still runs once", Run::s5_full_node_cut_off),
        // Last: it leaves some guests on the classic agent.
        ("6 cost at density: both agents' CPU per remote node and monitor exec-times, one after the other", Run::s6_cost_at_density),
    ];
    support::scenarios::run(&mut run, "scale cluster test", scenarios, start);
}

fn prerequisites() -> Result<(), String> {
    support::cluster::root_and_tools(&[
        "corosync", "pacemakerd", "pcs", "crm_resource", "crm_mon", "cibadmin", "crm_attribute", "libvirtd", "virsh",
        "qemu-system-x86_64", "nsenter", "ip",
    ])?;
    let remoted = std::env::var("VG_LAB_PACEMAKER_REMOTED").unwrap_or_else(|_| "/opt/virtguard-lab/pacemaker-remote/usr/sbin/pacemaker-remoted".into());
    if !Path::new(&remoted).is_file() && !Path::new("/usr/sbin/pacemaker-remoted").is_file() {
        return Err(format!("pacemaker-remoted is missing ({remoted}; ocf/install-deps.sh unpacks it)"));
    }
    Ok(())
}

impl support::scenarios::Suite for Run<'_> {
    /// Every guest that runs is expected to keep running, on every node of the topology.
    fn begin(&mut self) {
        let sampler = Sampler::start(self.lab.sampler_access());
        let located = self.lab.locations();
        for guest in &self.guests {
            if located.get(guest).is_some_and(|at| !at.is_empty()) {
                sampler.expect_running(guest, NO_OUTAGE);
            }
        }
        self.sampler = Some(sampler);
    }
    fn end(&mut self, number: &str) -> Result<(), String> {
        let Some(sampler) = self.sampler.take() else { return Ok(()) };
        let (findings, verdict) = sampler.verdict();
        self.figure(&format!("scenario {number}: invariants"), findings.describe());
        verdict
    }
    /// Every node on, no standby, every guest running once.
    fn repair(&mut self) {
        progress("  repairing the cluster for the next scenario");
        let lab = self.lab;
        for node in lab.nodes() {
            let _ = lab.harness(&["link", node, "up"]);
        }
        for node in lab.nodes() {
            if lab.is_off(node) || lab.node_pids(node).is_empty() {
                lab.power_on(node);
            }
        }
        let _ = lab.harness(&["wait", "180"]);
        for node in lab.remote_nodes() {
            let _ = lab.run(lab.any_node(), &["crm_resource", "--cleanup", "-r", node]);
        }
        let _ = lab.run(lab.any_node(), &["pcs", "node", "unstandby", "--all"]);
        let _ = lab.run(lab.any_node(), &["pcs", "property", "unset", "migration-limit"]);
        let _ = lab.run(lab.any_node(), &["crm_resource", "--refresh"]);
        let _ = lab.harness(&["wait", "180"]);
        lab.wait_idle();
    }
    fn figures(&self) -> &[(String, String)] {
        &self.figures
    }
}

impl Run<'_> {
    fn figure(&mut self, what: &str, value: String) {
        progress(&format!("  {what}: {value}"));
        self.figures.push((what.to_owned(), value));
    }

    fn sampler(&self) -> &Sampler {
        self.sampler.as_ref().expect("every scenario runs beside the sampler")
    }

    fn fail(&self, message: &str) -> ! {
        self.lab.fail(message)
    }

    fn check(&self, condition: bool, message: impl FnOnce() -> String) {
        if !condition {
            self.fail(&message());
        }
    }

    /// Fencing for every node (the lab fence agent), balanced placement by
    /// utilization, sticky guests, and each remote node's capacity.
    fn baseline(&mut self) {
        let lab = self.lab;
        let hosts = lab.nodes().join(" ");
        let state_dir = format!("state_dir={}", lab.state_dir().display());
        lab.crm(&["pcs", "stonith", "create", "vgt-fence", "fence_virtguard_lab", &format!("pcmk_host_list={hosts}"), &state_dir, "pcmk_reboot_action=off"]);
        lab.crm(&["pcs", "property", "set", "stonith-enabled=true", "placement-strategy=balanced"]);
        lab.crm(&["pcs", "resource", "defaults", "update", "resource-stickiness=100"]);
        // Every utilization attribute the agent sets needs a capacity on the
        // nodes: a node without one has none, and a guest would run nowhere
        // (autoset_utilization_host_memory is on by default, as in the classic agent).
        for node in lab.remote_nodes() {
            for (name, capacity) in [("cpu", NODE_CPU), ("hv_memory", NODE_HV_MEMORY_MIB), ("host_memory", NODE_HV_MEMORY_MIB)] {
                lab.crm(&["crm_attribute", "--type", "nodes", "--node", node, "--utilization", "--name", name, "--update", &capacity.to_string()]);
            }
        }
        // Guests on remote nodes only, as large sites keep the full nodes for the cluster itself.
        let rule = format!(
            r##"<rsc_location id="vgt-guests-on-remote-nodes" rsc-pattern="^{GUEST_PREFIX}"><rule id="vgt-guests-on-remote-nodes-rule" score="-INFINITY"><expression id="vgt-guests-on-remote-nodes-kind" attribute="#kind" operation="ne" value="remote"/></rule></rsc_location>"##
        );
        lab.crm(&["cibadmin", "--create", "-o", "constraints", "--xml-text", &rule]);
        lab.wait_idle();
    }

    /// PSS of every process of each node (what the node costs the machine).
    fn memory_per_node(&self) -> String {
        let lab = self.lab;
        let mut parts = Vec::new();
        let mut total_kib = 0;
        for node in lab.nodes() {
            let kib: u64 = lab
                .node_pids(node)
                .iter()
                .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
                .filter_map(|text| text.lines().find(|l| l.starts_with("Pss:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
                .sum();
            total_kib += kib;
            parts.push(format!("{node} {} MiB", kib / 1024));
        }
        format!("{} MiB in all: {}", total_kib / 1024, parts.join(", "))
    }

    /// The domains libvirt runs on each remote node that is up.
    fn running_on_remote_nodes(&self) -> HashMap<&'static str, Vec<String>> {
        self.lab
            .remote_nodes()
            .into_iter()
            .filter(|n| !self.lab.is_off(n))
            .map(|n| (n, self.lab.domains_on(n).unwrap_or_else(|| self.fail(&format!("libvirt on {n} does not answer")))))
            .collect()
    }

    /// Every guest runs on exactly one node, a remote one, where Pacemaker
    /// says; no node runs more than its capacity. Returns the guests per node.
    fn assert_placed(&self, label: &str) -> BTreeMap<String, Vec<String>> {
        let located = self.lab.locations();
        let running = self.running_on_remote_nodes();
        let full = self.lab.full_nodes();
        for node in &full {
            if self.lab.is_off(node) {
                continue;
            }
            let on_full = self.lab.domains_on(node).unwrap_or_default();
            self.check(on_full.is_empty(), || format!("{label}: full node {node} runs guests: {on_full:?}"));
        }
        let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for guest in &self.guests {
            let at: Vec<&str> = located.get(guest).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default();
            let on: Vec<&str> = running.iter().filter(|(_, d)| d.contains(guest)).map(|(n, _)| *n).collect();
            self.check(at.len() == 1 && on == at, || format!("{label}: {guest}: Pacemaker locates it on {at:?}, libvirt runs it on {on:?}"));
            per_node.entry(on[0].to_owned()).or_default().push(guest.clone());
        }
        let capacity = (NODE_HV_MEMORY_MIB / GUEST_MEMORY_MIB).min(NODE_CPU) as usize;
        for (node, guests) in &per_node {
            self.check(guests.len() <= capacity, || format!("{label}: {node} runs {} guests, over its capacity of {capacity}", guests.len()));
        }
        per_node
    }

    fn counts(per_node: &BTreeMap<String, Vec<String>>) -> String {
        per_node.iter().map(|(n, g)| format!("{n} {}", g.len())).collect::<Vec<_>>().join(", ")
    }

    /// The guests, added to the CIB in one update (one transition starts them
    /// all: one update per guest would abort each transition in turn).
    fn create_guests(&mut self) {
        let lab = self.lab;
        self.guests = (1..=guest_count()).map(|i| format!("{GUEST_PREFIX}{i:02}")).collect();
        let mut primitives = String::new();
        for guest in &self.guests {
            let config = lab.guest(guest);
            let nvpair = |name: &str, value: &str| format!(r#"<nvpair id="{guest}-{name}" name="{name}" value="{value}"/>"#);
            let op = |name: &str, interval: &str, timeout: &str| format!(r#"<op id="{guest}-{name}-{interval}" name="{name}" interval="{interval}" timeout="{timeout}"/>"#);
            primitives += &format!(
                r#"<primitive id="{guest}" class="ocf" provider="virtguard" type="VirtualDomain"><instance_attributes id="{guest}-params">{}{}{}{}{}{}</instance_attributes><meta_attributes id="{guest}-meta"><nvpair id="{guest}-allow-migrate" name="allow-migrate" value="true"/></meta_attributes><operations>{}{}{}{}{}</operations></primitive>"#,
                nvpair("config", &config),
                nvpair("hypervisor", "qemu:///system"),
                nvpair("migration_transport", "tcp"),
                nvpair("force_stop", "true"),
                nvpair("autoset_utilization_cpu", "true"),
                nvpair("autoset_utilization_hv_memory", "true"),
                op("monitor", &format!("{MONITOR_INTERVAL_S}s"), "30s"),
                op("start", "0s", "60s"),
                op("stop", "0s", "60s"),
                op("migrate_to", "0s", "60s"),
                op("migrate_from", "0s", "60s"),
            );
        }
        let resources = lab.crm(&["cibadmin", "--query", "-o", "resources"]);
        let Some(end) = resources.rfind("</resources>") else { self.fail(&format!("no resources section: {resources}")) };
        let file = lab.state_dir().join("guests/resources.xml");
        std::fs::write(&file, format!("{}{primitives}{}", &resources[..end], &resources[end..])).expect("writing the resources section");
        let t = Instant::now();
        lab.crm(&["cibadmin", "--replace", "-o", "resources", "--xml-file", &file.to_string_lossy()]);
        lab.wait_idle_for(MANY_STARTS);
        self.figure(&format!("{} guests started over the remote nodes until idle", self.guests.len()), format!("{:.1}s", t.elapsed().as_secs_f64()));
    }

    /// The operations on the guests that the DC initiated since the log
    /// offsets, as "guest operation node". (From the controller's log, not
    /// the CIB's history: on a remote node an operation's record names the
    /// full node that holds the connection, and keeps only the last one.)
    fn guest_ops_since(&self, offsets: &HashMap<&'static str, usize>, operations: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for node in self.lab.full_nodes() {
            let log = self.lab.pacemaker_log(node);
            let from = offsets.get(node).copied().unwrap_or(0).min(log.len());
            for line in log[from..].lines().filter(|l| l.contains("(execute_rsc_action)")) {
                // "Initiating start operation vgt-g07_start_0 on vgt-remote2 | action 80"
                let Some(rest) = line.split("Initiating ").nth(1) else { continue };
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (Some(operation), Some(key)) = (words.first(), words.get(2)) else { continue };
                let target = words.iter().position(|w| *w == "on").and_then(|i| words.get(i + 1)).unwrap_or(&"");
                let Some(guest) = self.guests.iter().find(|g| key.starts_with(&format!("{g}_"))) else { continue };
                if operations.contains(operation) {
                    found.push(format!("{guest} {operation} {target}"));
                }
            }
        }
        found
    }

    /// The DC's controller log lines that aborted a transition, from `offsets` on.
    fn transition_aborts_since(&self, offsets: &HashMap<&'static str, usize>) -> Vec<String> {
        self.lab
            .full_nodes()
            .into_iter()
            .flat_map(|n| {
                let log = self.lab.pacemaker_log(n);
                let from = offsets.get(n).copied().unwrap_or(0).min(log.len());
                log[from..].lines().filter(|l| l.contains("(abort_transition_graph)") && l.contains(" aborted")).map(str::to_owned).collect::<Vec<_>>()
            })
            .collect()
    }

    fn log_offsets(&self) -> HashMap<&'static str, usize> {
        self.lab.full_nodes().into_iter().map(|n| (n, self.lab.pacemaker_log(n).len())).collect()
    }

    fn s1_placement(&mut self) {
        let lab = self.lab;
        self.create_guests();
        for guest in &self.guests {
            self.sampler().expect_running(guest, NO_OUTAGE);
        }
        let per_node = self.assert_placed("after the start");
        self.figure("guests per remote node (balanced)", Self::counts(&per_node));
        // The agent set each guest's utilization from its domain, on remote nodes too.
        for guest in &self.guests {
            for (name, expected) in [("cpu", "1".to_owned()), ("hv_memory", GUEST_MEMORY_MIB.to_string())] {
                let value = lab.crm(&["crm_resource", "-r", guest, "--utilization", "--get-parameter", name]);
                self.check(value.trim() == expected, || format!("{guest}: utilization {name} is {:?}, expected {expected}", value.trim()));
            }
        }
        self.assert_remembered_and_tagged(&per_node, "after the start");
        // Stable: monitors that find nothing changed write nothing that moves anything.
        let offsets = self.log_offsets();
        progress(&format!("  every guest monitored every {MONITOR_INTERVAL_S}s; watching for {}s", STABILITY_WINDOW.as_secs()));
        std::thread::sleep(STABILITY_WINDOW);
        let moved = self.guest_ops_since(&offsets, &["start", "stop", "migrate_to", "migrate_from"]);
        let aborts = self.transition_aborts_since(&offsets);
        let by_utilization: Vec<&String> = aborts.iter().filter(|l| l.contains("utilization")).collect();
        self.figure(&format!("transitions aborted in {}s of monitors (utilization writes among them)", STABILITY_WINDOW.as_secs()), format!("{} ({})", aborts.len(), by_utilization.len()));
        self.check(moved.is_empty(), || format!("guests moved while nothing changed: {moved:?}"));
        self.check(by_utilization.is_empty(), || format!("utilization writes aborted transitions while nothing changed: {by_utilization:?}"));
        let monitors: Vec<u64> = {
            let mut ms: Vec<u64> = lab.history().into_iter().filter(|o| o.operation() == "monitor" && o.attr("interval") == "10000" && self.guests.iter().any(|g| g == o.resource())).map(|o| o.exec_ms()).collect();
            ms.sort_unstable();
            ms
        };
        if !monitors.is_empty() {
            let pct = |p: usize| monitors[(monitors.len() - 1) * p / 100];
            self.figure("recurring monitor exec-time (Pacemaker's last record per guest): p50 / p90 / max", format!("{} / {} / {} ms", pct(50), pct(90), pct(100)));
        }
    }

    fn s2_standby(&mut self) {
        let lab = self.lab;
        self.check(!self.guests.is_empty(), || "scenario 2 needs the guests of scenario 1".into());
        let per_node = self.assert_placed("before the standby");
        let (node, leaving) = per_node.iter().max_by_key(|(_, g)| g.len()).map(|(n, g)| (n.clone(), g.clone())).expect("guests are placed");
        lab.crm(&["pcs", "property", "set", &format!("migration-limit={MIGRATION_LIMIT}")]);
        let offsets = self.log_offsets();
        let t = Instant::now();
        lab.crm(&["pcs", "node", "standby", &node]);
        lab.poll(&format!("{node} to run none of its {} guests", leaving.len()), Duration::from_secs(300), || {
            lab.domains_on(&node).filter(|running| !running.iter().any(|d| leaving.contains(d))).map(|_| ())
        });
        let emptied_s = t.elapsed().as_secs_f64();
        lab.wait_idle();
        let ops = self.guest_ops_since(&offsets, &["start", "migrate_from"]);
        let migrated = ops.iter().filter(|o| o.contains(" migrate_from ")).count();
        let started: Vec<&String> = ops.iter().filter(|o| o.contains(" start ")).collect();
        self.figure(
            &format!("{} guests drained from {node} (migration-limit {MIGRATION_LIMIT})", leaving.len()),
            format!("{migrated} live-migrated, {} restarted; emptied in {emptied_s:.1}s, idle after {:.1}s", started.len(), t.elapsed().as_secs_f64()),
        );
        let after = self.assert_placed("after the standby");
        self.figure("guests per remote node after the standby", Self::counts(&after));
        let arrived: BTreeMap<String, Vec<String>> =
            after.iter().map(|(n, g)| (n.clone(), g.iter().filter(|g| leaving.contains(g)).cloned().collect())).collect();
        self.assert_remembered_and_tagged(&arrived, "after the live migration");
        let rsctmp = self.rsctmp_on(&node);
        let left: Vec<&String> = leaving.iter().filter(|g| lab.run(&node, &["test", "-e", &format!("{rsctmp}/virtguard-{g}.domain")]).status.success()).collect();
        self.check(left.is_empty(), || format!("{node} still remembers guests that left it: {left:?}"));
        self.check(started.is_empty() && migrated == leaving.len(), || format!("of {} guests, {migrated} live-migrated; started: {started:?}", leaving.len()));
        lab.crm(&["pcs", "node", "unstandby", &node]);
        lab.crm(&["pcs", "property", "unset", "migration-limit"]);
        lab.wait_idle();
    }

    fn s3_remote_crash(&mut self) {
        let lab = self.lab;
        self.check(!self.guests.is_empty(), || "scenario 3 needs the guests of scenario 1".into());
        let per_node = self.assert_placed("before the crash");
        let (node, lost) = per_node.iter().max_by_key(|(_, g)| g.len()).map(|(n, g)| (n.clone(), g.clone())).expect("guests are placed");
        let node: &'static str = lab.remote_nodes().into_iter().find(|n| *n == node).expect("a remote node");
        for guest in &lost {
            self.sampler().expect_running(guest, FAILOVER_OUTAGE);
        }
        let fences_before = lab.fence_actions().len();
        let offsets = self.log_offsets();
        let t = Instant::now();
        lab.crash(node);
        lab.poll(&format!("{node} to be fenced"), Duration::from_secs(180), || {
            lab.fence_actions()[fences_before.min(lab.fence_actions().len())..].iter().any(|a| a.ends_with(&format!(" off {node}"))).then_some(())
        });
        let fenced_s = t.elapsed().as_secs_f64();
        lab.mark_off(node);
        // Not an idle cluster: the connection to the node that is off is tried
        // again every reconnect_interval, for as long as it is off.
        lab.poll(&format!("the {} guests of {node} running elsewhere", lost.len()), MANY_STARTS, || {
            let located = lab.locations();
            lost.iter().all(|g| located.get(g).is_some_and(|at| at.len() == 1 && at[0] != node)).then_some(())
        });
        let recovered_s = t.elapsed().as_secs_f64();
        let starts = self.guest_ops_since(&offsets, &["start"]);
        let mut per_guest: BTreeMap<&str, usize> = BTreeMap::new();
        for op in &starts {
            *per_guest.entry(op.split(' ').next().unwrap_or_default()).or_default() += 1;
        }
        let after = self.assert_placed("after the failover");
        let findings = self.sampler().findings_since(0);
        let outages: Vec<u64> = findings.longest_outages.iter().filter(|o| lost.contains(&o.domain)).map(|o| o.lasted_ms).collect();
        self.figure(
            &format!("{node} crashed with {} guests", lost.len()),
            format!(
                "fenced after {fenced_s:.1}s, every one running elsewhere after {recovered_s:.1}s; outage per guest {:.1}-{:.1}s; guests now {}",
                outages.iter().min().copied().unwrap_or(0) as f64 / 1000.0,
                outages.iter().max().copied().unwrap_or(0) as f64 / 1000.0,
                Self::counts(&after)
            ),
        );
        let wrong: Vec<String> = lost.iter().filter(|g| per_guest.get(g.as_str()).copied().unwrap_or(0) != 1).map(|g| format!("{g} started {} times", per_guest.get(g.as_str()).copied().unwrap_or(0))).collect();
        self.check(wrong.is_empty(), || format!("each guest of {node} should start elsewhere once: {wrong:?}"));
        let others: Vec<&String> = starts.iter().filter(|o| !lost.iter().any(|g| o.starts_with(&format!("{g} ")))).collect();
        self.check(others.is_empty(), || format!("guests of other nodes were started: {others:?}"));
        // The node back, its connection cleaned: it takes guests again.
        lab.power_on(node);
        lab.crm(&["crm_resource", "--cleanup", "-r", node]);
        lab.harness_ok(&["wait", "180"]);
        lab.wait_idle();
    }

    fn s4_connection_host_dies(&mut self) {
        let lab = self.lab;
        self.check(!self.guests.is_empty(), || "scenario 4 needs the guests of scenario 1".into());
        let per_node = self.assert_placed("before the connection host dies");
        let (remote, guests) = per_node.iter().max_by_key(|(_, g)| g.len()).map(|(n, g)| (n.clone(), g.clone())).expect("guests are placed");
        let host = lab.located(&remote).first().cloned().unwrap_or_else(|| self.fail(&format!("the connection {remote} runs nowhere")));
        let host: &'static str = lab.full_nodes().into_iter().find(|n| *n == host).expect("a full node");
        let fences_before = lab.fence_actions().len();
        let offsets = self.log_offsets();
        let t = Instant::now();
        lab.crash(host);
        lab.poll(&format!("{host} to be fenced"), Duration::from_secs(180), || {
            lab.fence_actions()[fences_before.min(lab.fence_actions().len())..].iter().any(|a| a.ends_with(&format!(" off {host}"))).then_some(())
        });
        lab.mark_off(host);
        lab.wait_idle();
        let new_host = lab.located(&remote);
        self.figure(
            &format!("{host} (holding the connection of {remote}, {} guests) crashed", guests.len()),
            format!("connection now on {new_host:?}, cluster idle after {:.1}s", t.elapsed().as_secs_f64()),
        );
        self.check(new_host.len() == 1 && new_host[0] != host, || format!("the connection {remote} is on {new_host:?}"));
        let touched: Vec<String> = self.guest_ops_since(&offsets, &["start", "stop", "migrate_to", "migrate_from"]);
        self.check(touched.is_empty(), || format!("guests were stopped, started or moved: {touched:?}"));
        let fenced: Vec<String> = lab.fence_actions()[fences_before..].to_vec();
        self.check(fenced.iter().all(|a| a.ends_with(&format!(" off {host}"))), || format!("only {host} should be fenced: {fenced:?}"));
        self.assert_placed("after the connection moved");
        lab.boot(host);
        lab.wait_idle();
    }

    /// HA_RSCTMP as the agents of a remote node get it: pacemaker-remoted's
    /// own environment (the executor passes it on to every agent), else the
    /// agent's default.
    fn rsctmp_on(&self, node: &str) -> String {
        let remoted = self.lab.node_process(node, support::cluster::REMOTE_EXECUTOR_COMM).unwrap_or_else(|| self.fail(&format!("no pacemaker-remoted on {node}")));
        let environ = std::fs::read(format!("/proc/{remoted}/environ")).unwrap_or_default();
        environ
            .split(|b| *b == 0)
            .find_map(|v| v.strip_prefix(b"HA_RSCTMP=").map(|d| String::from_utf8_lossy(d).into_owned()))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| virtguard::ocf::DEFAULT_STATE_DIR.to_owned())
    }

    /// On a remote node, the agent remembers each guest it runs under that
    /// node's own HA_RSCTMP (not on the full node that holds the
    /// connection), and the guest's live definition carries the resource's
    /// owner tag. Checks the first guest of each node in `per_node`.
    fn assert_remembered_and_tagged(&mut self, per_node: &BTreeMap<String, Vec<String>>, label: &str) {
        let lab = self.lab;
        let mut seen = Vec::new();
        for (node, guests) in per_node {
            let Some(guest) = guests.first() else { continue };
            let rsctmp = self.rsctmp_on(node);
            let memory = format!("{rsctmp}/virtguard-{guest}.domain");
            let remembered = lab.run(node, &["cat", &memory]);
            self.check(String::from_utf8_lossy(&remembered.stdout).trim() == guest, || {
                format!("{label}: {node} does not remember {guest} in {memory}: {:?} {}", String::from_utf8_lossy(&remembered.stdout), String::from_utf8_lossy(&remembered.stderr))
            });
            let tagged = lab.run(node, &["cat", &format!("{rsctmp}/virtguard-{guest}.owner-tagged")]);
            self.check(String::from_utf8_lossy(&tagged.stdout).trim() == guest, || format!("{label}: {node} has not confirmed {guest}'s owner tag"));
            let metadata = lab.must(node, &["virsh", "-c", "qemu:///system", "metadata", guest, "--uri", OWNER_TAG_NAMESPACE]);
            let owner = virtguard::hypervisor::owner_tag::owner_of_element(&metadata);
            self.check(owner.as_deref() == Some(guest.as_str()), || format!("{label}: {guest} on {node} carries the owner tag {owner:?}"));
            let connection_host = lab.located(node).first().cloned().unwrap_or_default();
            if let Some(host) = lab.full_nodes().into_iter().find(|n| *n == connection_host) {
                let there = lab.run(host, &["test", "-e", &memory]);
                self.check(!there.status.success(), || format!("{label}: {memory} exists on {host}, which only holds {node}'s connection"));
            }
            seen.push(format!("{guest} on {node} ({memory})"));
        }
        let rsctmp_set = per_node.keys().next().map(|n| self.rsctmp_on(n)).unwrap_or_default();
        self.figure(
            &format!("remote nodes {label}: HA_RSCTMP, remembered name, owner tag"),
            format!("HA_RSCTMP {rsctmp_set} in each remote node's own /run; remembered and tagged: {}", seen.join(", ")),
        );
    }

    /// Where each remote node's connection runs (remote node -> full node).
    fn connection_hosts(&self) -> BTreeMap<&'static str, String> {
        self.lab.remote_nodes().into_iter().map(|r| (r, self.lab.located(r).join(","))).collect()
    }

    fn s5_full_node_cut_off(&mut self) {
        let lab = self.lab;
        self.check(!self.guests.is_empty(), || "scenario 5 needs the guests of scenario 1".into());
        let before = self.assert_placed("before the cut");
        let connections = self.connection_hosts();
        // The full node that holds the most connections: what it holds must move.
        let node: &'static str = lab
            .full_nodes()
            .into_iter()
            .max_by_key(|n| connections.values().filter(|h| h == n).count())
            .expect("full nodes");
        let held: Vec<&str> = connections.iter().filter(|(_, h)| *h == node).map(|(r, _)| *r).collect();
        let fences_before = lab.fence_actions().len();
        let offsets = self.log_offsets();
        let cut_log_from = lab.pacemaker_log(node).len();
        let t = Instant::now();
        lab.harness_ok(&["link", node, "down"]);
        // Cluster-wide commands now go to the quorate side.
        lab.mark_off(node);
        lab.poll(&format!("{node} to log its loss of quorum"), Duration::from_secs(60), || {
            lab.pacemaker_log(node).get(cut_log_from..).is_some_and(|l| l.contains("Quorum lost")).then_some(())
        });
        let quorum_lost_s = t.elapsed().as_secs_f64();
        lab.wait_idle();
        let idle_s = t.elapsed().as_secs_f64();
        let fenced: Vec<String> = lab.fence_actions()[fences_before..].to_vec();
        self.check(fenced.iter().all(|a| a.ends_with(&format!(" off {node}"))), || format!("only {node} may be fenced: {fenced:?}"));
        let was_fenced = !fenced.is_empty();
        let moved = self.connection_hosts();
        let after = self.assert_placed("with the node cut off");
        let quorate_side: Vec<&str> = lab.full_nodes().into_iter().filter(|n| *n != node).collect();
        let touched_by_quorate: Vec<String> = {
            let only_quorate: HashMap<&'static str, usize> = offsets.iter().map(|(n, o)| (*n, if *n == node { usize::MAX } else { *o })).collect();
            self.guest_ops_since(&only_quorate, &["start", "stop", "migrate_to", "migrate_from"])
        };
        let asked_by_cut: Vec<String> = {
            let only_cut: HashMap<&'static str, usize> = offsets.iter().map(|(n, o)| (*n, if *n == node { *o } else { usize::MAX })).collect();
            self.guest_ops_since(&only_cut, &["start", "stop", "migrate_to", "migrate_from"])
        };
        let connection_moves: Vec<String> = held.iter().map(|r| format!("{r} {node} -> {}", moved.get(r).cloned().unwrap_or_default())).collect();
        self.figure(
            &format!("{node} cut off (held the connections of {held:?}; {} guests on the remote nodes)", self.guests.len()),
            format!(
                "quorum loss in its log after {quorum_lost_s:.1}s; {}; quorate side ({}) idle after {idle_s:.1}s; connections moved: {}; guests stopped/started/moved by the quorate side: {}, asked of the remote nodes by the cut node: {}",
                if was_fenced { format!("fenced ({})", fenced.len()) } else { "not fenced".to_owned() },
                quorate_side.join(", "),
                if connection_moves.is_empty() { "none".to_owned() } else { connection_moves.join(", ") },
                touched_by_quorate.len(),
                asked_by_cut.len()
            ),
        );
        self.check(touched_by_quorate.is_empty(), || format!("the quorate side stopped, started or moved guests: {touched_by_quorate:?}"));
        self.check(before == after, || format!("guests changed nodes: before {}, after {}", Self::counts(&before), Self::counts(&after)));
        for r in &held {
            let at = moved.get(r).cloned().unwrap_or_default();
            self.check(!at.is_empty() && at != node && !at.contains(','), || format!("the connection {r} is on {at:?} with {node} cut off"));
        }
        // The cable back; a fenced node is powered on again. It rejoins.
        let t = Instant::now();
        lab.harness_ok(&["link", node, "up"]);
        lab.power_on(node);
        lab.harness_ok(&["wait", "180"]);
        lab.wait_idle();
        let rejoined_s = t.elapsed().as_secs_f64();
        let touched_on_rejoin = self.guest_ops_since(&offsets, &["start", "stop", "migrate_to", "migrate_from"]);
        let by_quorate_or_rejoin: Vec<&String> = touched_on_rejoin.iter().filter(|o| !asked_by_cut.contains(o)).collect();
        self.figure(&format!("{node} plugged in again{}", if was_fenced { " and powered on" } else { "" }), format!("rejoined, cluster idle after {rejoined_s:.1}s; connections now {:?}", self.connection_hosts()));
        self.check(by_quorate_or_rejoin.is_empty(), || format!("guests were stopped, started or moved when {node} rejoined: {by_quorate_or_rejoin:?}"));
        let end = self.assert_placed("after the rejoin");
        self.check(end == before, || format!("guests changed nodes: before {}, after the rejoin {}", Self::counts(&before), Self::counts(&end)));
    }

    /// The agents' CPU on each remote node, and Pacemaker's recorded monitor
    /// exec-times per agent, over one monitor window; the guests of
    /// `classic_on` run under the classic agent, all others under virtguard.
    /// Fails when a guest's monitor failed or a guest moved meanwhile.
    fn measure_density(&mut self, label: &str, classic_on: Option<&str>) {
        let lab = self.lab;
        let window = monitor_window();
        let per_node = self.assert_placed(&format!("before measuring {label}"));
        let agent_of = |node: &str| if Some(node) == classic_on { "heartbeat" } else { "virtguard" };
        let offsets = self.log_offsets();
        let nodes: Vec<&'static str> = lab.remote_nodes();
        let before: Vec<support::cluster::DaemonCpu> = nodes.iter().map(|n| lab.daemon_cpu(n)).collect();
        progress(&format!("  {label}: every guest monitored every {MONITOR_INTERVAL_S}s; measuring {}s", window.as_secs()));
        std::thread::sleep(window);
        let after: Vec<support::cluster::DaemonCpu> = nodes.iter().map(|n| lab.daemon_cpu(n)).collect();
        let mut parts = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let guests = per_node.get(*node).map_or(0, Vec::len);
            let (agents_ms, libvirtd_ms) = after[i].ms_since(&before[i]);
            let monitors = guests as f64 * window.as_secs_f64() / MONITOR_INTERVAL_S as f64;
            parts.push(format!(
                "{node} ({guests} guests, ocf:{}): agents {agents_ms:.0} ms ({:.2}% of a core), {:.1} ms per guest per monitor; libvirtd {libvirtd_ms:.0} ms",
                agent_of(node),
                agents_ms / window.as_secs_f64() / 10.0,
                if monitors > 0.0 { agents_ms / monitors } else { 0.0 }
            ));
        }
        self.figure(&format!("{label}: {} guests monitored every {MONITOR_INTERVAL_S}s, agents' CPU over {}s per remote node", self.guests.len(), window.as_secs()), parts.join("; "));
        let monitors: Vec<support::cluster::Op> =
            lab.history().into_iter().filter(|o| o.operation() == "monitor" && o.attr("interval") == "10000" && self.guests.iter().any(|g| g == o.resource())).collect();
        let failed: Vec<String> = monitors.iter().filter(|o| o.rc() != 0).map(support::cluster::Op::describe).collect();
        for agent in ["virtguard", "heartbeat"] {
            let records: Vec<u64> = monitors
                .iter()
                .filter(|o| per_node.iter().any(|(n, g)| agent_of(n) == agent && g.iter().any(|g| g == o.resource())))
                .map(support::cluster::Op::exec_ms)
                .collect();
            // A record rewritten when its remote node's connection moved carries exec-time 0.
            let mut ms: Vec<u64> = records.iter().copied().filter(|ms| *ms > 0).collect();
            ms.sort_unstable();
            if !records.is_empty() {
                let pct = |p: usize| ms.get(ms.len().saturating_sub(1) * p / 100).copied().unwrap_or(0);
                self.figure(
                    &format!("{label}: ocf:{agent} recurring monitor exec-time, p50 / p90 / max (Pacemaker's last record per guest; {} of {} carry one)", ms.len(), records.len()),
                    if ms.is_empty() { "none recorded since the connections moved".to_owned() } else { format!("{} / {} / {} ms", pct(50), pct(90), pct(100)) },
                );
            }
        }
        self.check(failed.is_empty(), || format!("{label}: monitors failed: {failed:?}"));
        self.check(monitors.len() == self.guests.len(), || format!("{label}: {} of {} guests have a recurring monitor", monitors.len(), self.guests.len()));
        let moved = self.guest_ops_since(&offsets, &["start", "stop", "migrate_to", "migrate_from"]);
        self.check(moved.is_empty(), || format!("{label}: guests moved while measuring: {moved:?}"));
    }

    /// The same guests measured under virtguard, then the guests of one
    /// remote node stopped, their resources switched to the classic agent
    /// (same ids, same configs, kept on that node) and started there again,
    /// and measured again: that node's figures are one agent after the other
    /// on the same guests, the other nodes' (still virtguard) the control in
    /// the same window. Not `virtguard adopt`, which switches without a
    /// restart: it reprobes each resource with `crm_resource --refresh`,
    /// which takes about 30 s per resource on this topology (see README).
    fn s6_cost_at_density(&mut self) {
        let lab = self.lab;
        self.check(!self.guests.is_empty(), || "scenario 6 needs the guests of scenario 1".into());
        let placed = self.assert_placed("before the measurements");
        self.measure_density("all on ocf:virtguard", None);
        let (node, switched) = placed.iter().max_by_key(|(_, g)| g.len()).map(|(n, g)| (n.clone(), g.clone())).expect("guests are placed");
        for guest in &switched {
            self.sampler().release(guest);
        }
        let offsets = self.log_offsets();
        let t = Instant::now();
        let mut disable = vec!["pcs", "resource", "disable"];
        disable.extend(switched.iter().map(String::as_str));
        lab.crm(&disable);
        lab.wait_idle();
        let mut script = String::from("set -e\n");
        for guest in &switched {
            script += &format!(
                "cibadmin --create -o constraints --xml-text '<rsc_location id=\"{guest}-classic-on\" rsc=\"{guest}\" node=\"{node}\" score=\"INFINITY\"/>'\n\
                 cibadmin --modify --xpath \"//primitive[@id='{guest}']\" --xml-text '<primitive id=\"{guest}\" provider=\"heartbeat\"/>'\n"
            );
        }
        lab.must(lab.any_node(), &["sh", "-c", &script]);
        let mut enable = vec!["pcs", "resource", "enable"];
        enable.extend(switched.iter().map(String::as_str));
        lab.crm(&enable);
        lab.wait_idle_for(MANY_STARTS);
        self.figure(
            &format!("the {} guests of {node} stopped, switched to ocf:heartbeat, started there again", switched.len()),
            format!("{:.1}s until idle", t.elapsed().as_secs_f64()),
        );
        for guest in &switched {
            self.sampler().expect_running(guest, NO_OUTAGE);
        }
        let others: Vec<String> = self.guest_ops_since(&offsets, &["start", "stop", "migrate_to", "migrate_from"]).into_iter().filter(|o| !switched.iter().any(|g| o.starts_with(&format!("{g} ")))).collect();
        self.check(others.is_empty(), || format!("guests of other nodes were stopped, started or moved: {others:?}"));
        let resources = lab.crm(&["cibadmin", "--query", "-o", "resources"]);
        let not_classic: Vec<String> = support::cluster::parse_elements(&resources, "primitive")
            .into_iter()
            .filter(|p| p.get("id").is_some_and(|id| switched.contains(id)) && p.get("provider").map(String::as_str) != Some("heartbeat"))
            .filter_map(|p| p.get("id").cloned())
            .collect();
        self.check(not_classic.is_empty(), || format!("not switched to ocf:heartbeat: {not_classic:?}"));
        self.check(self.assert_placed("after the switch") == placed, || "the switch moved guests".into());
        self.measure_density(&format!("{node} on ocf:heartbeat"), Some(&node));
    }
}
