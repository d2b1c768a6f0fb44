//! Scenario 50 (issue 12): seeded fault injection. Faults come from a list,
//! at random moments (most of them at a random point of a live migration),
//! with a seed that replays the same run: VG_FAULT_SEED=N (printed; default
//! 7, so that CI runs the same faults every time; examples/fault-bench.sh
//! draws a new seed). VG_FAULTS=all (the default, so that CI meets every
//! kind) runs every kind once, in an order the seed draws; VG_FAULTS=K draws
//! K faults at random. After each
//! fault the cluster must settle within a bound, every guest running exactly
//! once, where Pacemaker says; the sampler checks both safety properties all
//! along.

use std::time::{Duration, Instant};

use super::lab::{progress, NODES};
use super::Run;
use crate::support::cluster::parse_elements;
use crate::support::XorShift;

const GUESTS: [&str; 4] = ["vgf-1", "vgf-2", "vgf-3", "vgf-4"];
/// From a fault until the cluster is idle with every guest running once.
const SETTLE_BOUND: Duration = Duration::from_secs(300);
/// How long a guest may run nowhere after a fault: fencing, a node's
/// operation timeouts and a restart elsewhere fit in it.
const FAULT_OUTAGE: Duration = Duration::from_secs(150);
/// The guests' operation timeouts; a frozen libvirtd stays frozen longer.
const OP_TIMEOUT_S: u64 = 30;
const FREEZE: Duration = Duration::from_secs(OP_TIMEOUT_S + 10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    QemuKilled,
    LibvirtdFrozen(Side),
    LibvirtdKilled(Side),
    NetworkCut,
    NodeCrashed,
}

const FAULTS: [Fault; 7] = [
    Fault::QemuKilled,
    Fault::LibvirtdFrozen(Side::Source),
    Fault::LibvirtdFrozen(Side::Target),
    Fault::LibvirtdKilled(Side::Source),
    Fault::LibvirtdKilled(Side::Target),
    Fault::NetworkCut,
    Fault::NodeCrashed,
];

impl Fault {
    fn during_migration(self) -> bool {
        matches!(self, Fault::LibvirtdFrozen(_) | Fault::LibvirtdKilled(_) | Fault::NetworkCut)
    }
}

/// What one fault did and how the cluster came out of it.
struct Outcome {
    settled_s: Option<f64>,
    double_runs: usize,
    lost: usize,
    /// Nodes the fence agent powered off, each with Pacemaker's reason.
    fenced: Vec<String>,
    /// Agent operations Pacemaker killed at their timeout (the agent did not
    /// end them itself).
    timed_out: Vec<String>,
}

/// Where the fence agent's record and the nodes' Pacemaker logs stood at one
/// moment, so that what came after can be read.
struct Marks {
    fence_actions: usize,
    logs: [usize; 2],
}

/// What the cluster did since some marks.
struct Aftermath {
    /// Nodes the fence agent powered off, each with Pacemaker's reason.
    fenced: Vec<String>,
    /// Agent operations pacemaker-execd killed at their timeout.
    timed_out: Vec<String>,
}

/// What went wrong when the fault guests were deleted.
struct Deletion {
    /// Nodes fenced (a stop that failed), with reasons.
    fenced: Vec<String>,
    /// Guests still running after their resource was gone.
    left_running: Vec<String>,
}

impl Deletion {
    fn clean(&self) -> bool {
        self.fenced.is_empty() && self.left_running.is_empty()
    }
}

fn seed() -> u64 {
    std::env::var("VG_FAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7)
}

/// The faults of the run: each kind once in a drawn order (VG_FAULTS=all,
/// the default), or VG_FAULTS=K drawn at random.
fn draw_faults(rng: &mut XorShift) -> Vec<Fault> {
    let asked = std::env::var("VG_FAULTS").unwrap_or_else(|_| "all".into());
    match asked.parse::<usize>().ok() {
        Some(count) => (0..count).map(|_| *rng.pick(&FAULTS)).collect(),
        None => {
            let mut left = FAULTS.to_vec();
            let mut order = Vec::new();
            while !left.is_empty() {
                order.push(left.remove(rng.below(left.len())));
            }
            order
        }
    }
}

impl Run<'_> {
    pub(super) fn s50_seeded_faults(&mut self) {
        let lab = self.lab;
        let seed = seed();
        let mut rng = XorShift::new(seed);
        let faults = draw_faults(&mut rng);
        let count = faults.len();
        progress(&format!("  fault injection: VG_FAULT_SEED={seed}, {count} faults: {faults:?} (the same seed and VG_FAULTS replay this run)"));
        self.create_fault_guests();
        // Two nodes that lose each other both want to fence: the delay on
        // fencing node 1 decides the race, as an operator's setting would.
        lab.crm(&["pcs", "stonith", "update", "vgc-fence", &format!("pcmk_delay_base={}:5s;{}:0s", NODES[0], NODES[1])]);
        let mut outcomes = Vec::new();
        for (number, fault) in faults.into_iter().enumerate() {
            let outcome = self.inject(number + 1, fault, &mut rng);
            outcomes.push(outcome);
        }
        lab.crm(&["pcs", "stonith", "update", "vgc-fence", "pcmk_delay_base="]);
        let settled: Vec<f64> = outcomes.iter().filter_map(|o| o.settled_s).collect();
        let double_runs: usize = outcomes.iter().map(|o| o.double_runs).sum();
        let lost: usize = outcomes.iter().map(|o| o.lost).sum();
        for guest in GUESTS {
            self.sampler().release(guest);
        }
        // Deleting the guests stops them: a stop that fails there fences a
        // node too, and is counted with the faults' fencing.
        let deletion = self.delete_fault_guests();
        let fenced = outcomes.iter().map(|o| o.fenced.len()).sum::<usize>() + deletion.fenced.len();
        let timed_out: usize = outcomes.iter().map(|o| o.timed_out.len()).sum();
        self.figure(
            &format!("seeded faults (VG_FAULT_SEED={seed}), {}", self.agent),
            format!(
                "{count} faults, {} settled within {}s (slowest {:.0}s), {double_runs} double runs, {lost} lost, {fenced} nodes fenced, {timed_out} operations killed at their timeout",
                settled.len(),
                SETTLE_BOUND.as_secs(),
                settled.iter().copied().fold(0.0, f64::max)
            ),
        );
        self.check(settled.len() == count && double_runs == 0 && lost == 0 && deletion.clean(), || {
            format!(
                "seed {seed}: {} of {count} faults settled, {double_runs} double runs, {lost} lost guests; when the guests were deleted: fenced {:?}, left running {:?} (details above)",
                settled.len(),
                deletion.fenced,
                deletion.left_running
            )
        });
    }

    fn create_fault_guests(&mut self) {
        let lab = self.lab;
        let timeout = format!("timeout={OP_TIMEOUT_S}s");
        for (i, guest) in GUESTS.iter().enumerate() {
            let config = format!("config={}", lab.guest(guest));
            lab.crm(&[
                "pcs", "resource", "create", guest, &self.agent, &config, "hypervisor=qemu:///system", "migration_transport=tcp",
                "force_stop=true", "op", "monitor", "interval=10s", &timeout, "op", "start", &timeout, "op", "stop", &timeout, "op",
                "migrate_to", &timeout, "op", "migrate_from", &timeout, "meta", "allow-migrate=true", "--disabled",
            ]);
            lab.crm(&["pcs", "constraint", "location", guest, "prefers", &format!("{}=50", NODES[i % 2])]);
        }
        let mut enable = vec!["pcs", "resource", "enable"];
        enable.extend_from_slice(&GUESTS);
        lab.crm(&enable);
        lab.wait_idle();
        for guest in GUESTS {
            self.sampler().expect_running(guest, FAULT_OUTAGE);
        }
    }

    /// Deletes the fault guests, booting a node that was fenced meanwhile.
    /// Guests left running after their resource was gone are destroyed here,
    /// so that the next scenario starts clean.
    fn delete_fault_guests(&mut self) -> Deletion {
        let lab = self.lab;
        let marks = self.marks();
        for guest in GUESTS {
            let _ = lab.run(lab.any_node(), &["crm_resource", "--clear", "-r", guest]);
            let _ = lab.run(lab.any_node(), &["pcs", "resource", "delete", guest, "--force"]);
        }
        std::thread::sleep(Duration::from_secs(2));
        self.boot_fenced_nodes();
        lab.wait_idle();
        let mut deletion = Deletion { fenced: self.aftermath(&marks).fenced, left_running: Vec::new() };
        for guest in GUESTS {
            for node in lab.running_on(guest) {
                deletion.left_running.push(format!("{guest} on {node}"));
                let _ = lab.run(node, &["virsh", "-c", "qemu:///system", "destroy", guest]);
            }
        }
        if !deletion.clean() {
            let mut wrong: Vec<String> = deletion.fenced.iter().map(|f| format!("{f} fenced")).collect();
            if !deletion.left_running.is_empty() {
                wrong.push(format!("left running: {}", deletion.left_running.join(", ")));
            }
            self.figure("when the fault guests were deleted", wrong.join("; "));
        }
        deletion
    }

    /// Boots each node that fencing powered off, once Pacemaker has
    /// recorded the fencing as done. A node that comes back while the news
    /// of its own fencing is still on its way hears it and shuts its
    /// Pacemaker down for good ("We were allegedly just fenced"): such a
    /// node is powered off and booted again.
    fn boot_fenced_nodes(&self) {
        let lab = self.lab;
        for node in NODES {
            if !self.node_is_off(node) {
                continue;
            }
            lab.mark_off(node);
            progress(&format!("  {node} was fenced: booting it"));
            for attempt in 1..=3 {
                self.wait_for_fencing_done(node);
                let log_before = lab.pacemaker_log(node).len();
                lab.power_on(node);
                let joined = lab.poll(&format!("{node} to join the cluster or give up"), Duration::from_secs(120), || {
                    if lab.harness(&["wait", "5"]).status.success() {
                        return Some(true);
                    }
                    let log = lab.pacemaker_log(node);
                    log.get(log_before..).is_some_and(|new| new.contains("staying down after fatal error")).then_some(false)
                });
                if joined {
                    break;
                }
                self.check(attempt < 3, || format!("{node} did not rejoin after {attempt} boots"));
                progress(&format!("  {node} heard of its own fencing and stayed down: powering it off, booting it again"));
                lab.harness_ok(&["poweroff", node]);
                lab.mark_off(node);
            }
        }
    }

    /// Waits until the survivor's fencer has no fencing of `node` in
    /// progress, then a little more for the news to reach every daemon.
    fn wait_for_fencing_done(&self, node: &str) {
        let survivor = super::other(node);
        self.lab.poll(&format!("the fencing of {node} to be complete"), Duration::from_secs(60), || {
            let history = self.lab.run(survivor, &["stonith_admin", "--history", node, "--output-as=xml"]);
            let events = parse_elements(&String::from_utf8_lossy(&history.stdout), "fence_event");
            let pending = events.iter().any(|e| e.get("status").is_some_and(|s| s == "pending"));
            (history.status.success() && !pending).then_some(())
        });
        std::thread::sleep(Duration::from_secs(3));
    }

    fn marks(&self) -> Marks {
        Marks { fence_actions: self.lab.fence_actions().len(), logs: NODES.map(|n| self.lab.pacemaker_log(n).len()) }
    }

    /// What happened since `marks`, from what the nodes' Pacemaker logs
    /// gained (each read once) and the lab fence agent's record.
    fn aftermath(&self, marks: &Marks) -> Aftermath {
        let mut timed_out = Vec::new();
        let mut reasons: Vec<(String, String)> = Vec::new();
        for (node, from) in NODES.iter().zip(marks.logs) {
            let log = self.lab.pacemaker_log(node);
            // A log shorter than before was started anew.
            for line in log.get(from..).unwrap_or(&log).lines() {
                if let Some((rsc, op)) = timed_out_operation(line).filter(|_| line.contains("pacemaker-execd")) {
                    timed_out.push(format!("{rsc} {op} on {node}"));
                }
                if let Some((target, why)) = fencing_reason(line) {
                    reasons.push((target.to_owned(), why.to_owned()));
                }
            }
        }
        let fenced = self
            .lab
            .fence_actions()
            .iter()
            .skip(marks.fence_actions)
            .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [_, "off" | "reboot", node] => Some(node.to_owned()),
                _ => None,
            })
            .map(|node| {
                let mut why: Vec<&str> = reasons.iter().filter(|(target, _)| *target == node).map(|(_, why)| why.as_str()).collect();
                why.sort_unstable();
                why.dedup();
                format!("{node} ({})", if why.is_empty() { "no reason logged".to_owned() } else { why.join(", ") })
            })
            .collect();
        Aftermath { fenced, timed_out }
    }

    /// One fault, then the bounded wait for a settled cluster, then the
    /// safety properties over the fault's window.
    fn inject(&mut self, number: usize, fault: Fault, rng: &mut XorShift) -> Outcome {
        let lab = self.lab;
        let window_start = super::now_ms();
        let marks = self.marks();
        let placed: Vec<(String, String)> =
            GUESTS.iter().filter_map(|g| lab.located(g).first().map(|n| (g.to_string(), n.clone()))).collect();
        let (guest, source) = placed.get(rng.below(placed.len())).cloned().unwrap_or_else(|| self.fail("no fault guest is running"));
        let target = super::other(&source);
        let delay_ms = rng.below(3000) as u64;
        let mut what = format!("fault {number}: {fault:?}");
        if fault.during_migration() {
            lab.crm(&["crm_resource", "--move", "-r", &guest, "-N", target]);
            std::thread::sleep(Duration::from_millis(delay_ms));
            what += &format!(" {delay_ms} ms after the move of {guest} {source} -> {target} was asked");
        } else {
            std::thread::sleep(Duration::from_millis(delay_ms));
            what += &format!(" ({guest} on {source}, after {delay_ms} ms)");
        }
        progress(&format!("  {what}"));
        let t = Instant::now();
        match fault {
            Fault::QemuKilled => {
                let pid = lab.must(&source, &["cat", &format!("/run/libvirt/qemu/{guest}.pid")]).trim().to_owned();
                signal(&pid, nix::sys::signal::Signal::SIGKILL);
            }
            Fault::LibvirtdFrozen(side) => {
                let node = if side == Side::Source { source.as_str() } else { target };
                let pid = self.libvirtd_pid(node);
                signal(&pid, nix::sys::signal::Signal::SIGSTOP);
                std::thread::sleep(FREEZE);
                // The node may have been fenced meanwhile: then there is nothing to thaw.
                signal(&pid, nix::sys::signal::Signal::SIGCONT);
            }
            Fault::LibvirtdKilled(side) => {
                let node = if side == Side::Source { source.as_str() } else { target };
                let pid = self.libvirtd_pid(node);
                signal(&pid, nix::sys::signal::Signal::SIGKILL);
                // systemd's Restart=on-failure brings it back after a moment.
                std::thread::sleep(Duration::from_millis(1000 + rng.below(4000) as u64));
                if !self.node_is_off(node) {
                    let _ = lab.harness(&["start-libvirtd", node]);
                }
            }
            Fault::NetworkCut => {
                lab.harness_ok(&["link", NODES[0], "down"]);
                // Long enough for the token to expire and fencing to decide.
                std::thread::sleep(Duration::from_secs(20));
                lab.harness_ok(&["link", NODES[0], "up"]);
            }
            Fault::NodeCrashed => {
                lab.crash(if source == NODES[0] { NODES[0] } else { NODES[1] });
            }
        }
        let settled = self.settle(&guest, t);
        let mut outcome_what = match settled {
            Some(s) => format!("settled {s:.0}s after the fault began"),
            None => format!("NOT settled within {}s", SETTLE_BOUND.as_secs()),
        };
        let findings = self.sampler().findings_since(window_start);
        let Aftermath { fenced, timed_out } = self.aftermath(&marks);
        if !fenced.is_empty() {
            outcome_what += &format!("; fenced: {}", fenced.join("; "));
        }
        if !timed_out.is_empty() {
            outcome_what += &format!("; killed at their timeout: {}", timed_out.join(", "));
        }
        let outcome = Outcome {
            settled_s: settled,
            double_runs: findings.double_runs.len(),
            lost: findings.lost().len(),
            fenced,
            timed_out,
        };
        self.figure(&what, format!("{outcome_what}; {}", findings.describe()));
        outcome
    }

    fn libvirtd_pid(&self, node: &str) -> String {
        self.lab.node_process(node, "libvirtd").unwrap_or_else(|| self.fail(&format!("no libvirtd on {node}")))
    }

    /// Whether a node is powered off (fenced): none of its processes left.
    fn node_is_off(&self, node: &str) -> bool {
        self.lab.harness_ok(&["pids", node]).trim().is_empty()
    }

    /// Boots fenced nodes, lifts the move constraint, waits (bounded) until
    /// the cluster is idle with every fault guest running exactly once where
    /// Pacemaker says, then cleans up the failures the fault left. The
    /// seconds since `fault_began`, or None when the bound (counted from
    /// the end of the fault) ran out.
    fn settle(&mut self, moved: &str, fault_began: Instant) -> Option<f64> {
        let lab = self.lab;
        let deadline = Instant::now() + SETTLE_BOUND;
        // Fencing takes a few seconds to start: give it the chance before
        // deciding that a node is up.
        std::thread::sleep(Duration::from_secs(2));
        let mut settled = None;
        while Instant::now() < deadline {
            self.boot_fenced_nodes();
            let _ = lab.run(lab.any_node(), &["crm_resource", "--clear", "-r", moved]);
            let left = deadline.saturating_duration_since(Instant::now()).as_secs().max(1);
            let idle = lab.run(lab.any_node(), &["crm_resource", "--wait", &format!("--timeout={left}s")]).status.success();
            if idle && GUESTS.iter().all(|g| self.runs_once_where_located(g)) {
                settled = Some(fault_began.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        // Failures of the fault are history now: the next fault starts clean.
        let _ = lab.run(lab.any_node(), &["crm_resource", "--cleanup"]);
        let _ = lab.run(lab.any_node(), &["crm_resource", "--wait", "--timeout=120s"]);
        settled
    }

    /// Pacemaker locates the guest on one node, and that node's libvirt
    /// runs it and the other's does not (a node that does not answer, being
    /// fenced or booting, means: not settled yet).
    fn runs_once_where_located(&self, guest: &str) -> bool {
        let located = self.lab.located(guest);
        let [node] = located.as_slice() else { return false };
        NODES.iter().all(|n| self.lab.domains_on(n).is_some_and(|domains| domains.iter().any(|d| d == guest) == (n == node)))
    }
}

/// The resource and operation of a pacemaker-execd line saying it killed
/// an agent at its timeout ("Resource agent vgf-2_migrate_to_0[23022] timed
/// out after 30s"; resource names here have no underscore).
fn timed_out_operation(line: &str) -> Option<(&str, &str)> {
    let (head, _) = line.split_once("] timed out after ")?;
    let key = head.rsplit_once("Resource agent ")?.1.split('[').next()?;
    let (rsc_op, _interval) = key.rsplit_once('_')?;
    rsc_op.split_once('_')
}

/// The node and reason of a scheduler line deciding to fence ("Cluster node
/// vg-node2 will be fenced: peer is no longer part of the cluster").
fn fencing_reason(line: &str) -> Option<(&str, &str)> {
    let (head, why) = line.split_once("will be fenced: ")?;
    Some((head.trim_end().rsplit(' ').next()?, why))
}

#[test]
fn reads_timeouts_and_fencing_reasons_from_pacemaker_logs() {
    // Lines as the lab's pacemaker.log (Pacemaker 2.1.5) has them.
    let killed = "Dec 01 03:35:21.511 vg-node1 pacemaker-execd     [16237] (async_action_complete) \tinfo: Resource agent vgf-2_migrate_to_0[23022] timed out after 30s";
    assert_eq!(timed_out_operation(killed), Some(("vgf-2", "migrate_to")));
    let monitor = "Dec 01 03:32:51.083 vg-node1 pacemaker-execd     [2694] (async_action_complete) \tinfo: Resource agent vgf-3_monitor_10000[7569] timed out after 30s";
    assert_eq!(timed_out_operation(monitor), Some(("vgf-3", "monitor")));
    let recorded = "Dec 01 03:35:21.511 vg-node1 pacemaker-execd     [16237] (log_finished) \tinfo: vgf-2 migrate_to (call 54, PID 23022) could not be executed: Timed Out (Resource agent did not complete within 30s) (execution time 30.004s)";
    assert_eq!(timed_out_operation(recorded), None);
    let fence = "Dec 01 03:25:44.939 vg-node1 pacemaker-schedulerd[19247] (pe_fence_node) \twarning: Cluster node vg-node2 will be fenced: peer is no longer part of the cluster";
    assert_eq!(fencing_reason(fence), Some(("vg-node2", "peer is no longer part of the cluster")));
    let stop_failed = "Dec 01 03:35:45.339 vg-node1 pacemaker-schedulerd[16239] (pe_fence_node) \twarning: Cluster node vg-node1 will be fenced: vgf-1 failed there";
    assert_eq!(fencing_reason(stop_failed), Some(("vg-node1", "vgf-1 failed there")));
    assert_eq!(fencing_reason(killed), None);
}

fn signal(pid: &str, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = pid.parse::<i32>() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}
