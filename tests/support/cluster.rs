//! Drives a lab cluster from Rust through its entry script (tests/cluster:
//! harness.sh, the two-node namespace lab; systemd-harness.sh, the two-node
//! systemd lab; scale-harness.sh, full plus Pacemaker Remote nodes): commands
//! inside its nodes, and what the scenarios read back from it (operation
//! history, placement, fencing history). The cluster is torn down when the
//! `Lab` is dropped.

// Shared by the cluster suites: each uses a part.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const NODES: [&str; 2] = ["vg-node1", "vg-node2"];
const IDLE_TIMEOUT_S: u32 = 240;

pub fn other(node: &str) -> &'static str {
    if node == NODES[0] { NODES[1] } else { NODES[0] }
}

/// What every cluster suite needs before a lab can come up: root, and each
/// of `tools` in PATH or in the system's program directories.
pub fn root_and_tools(tools: &[&str]) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("not running as root".into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<&str> = path.split(':').chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"]).collect();
    let missing: Vec<&str> =
        tools.iter().copied().filter(|tool| !dirs.iter().any(|dir| Path::new(dir).join(tool).is_file())).collect();
    if !missing.is_empty() {
        return Err(format!("missing tools: {}", missing.join(" ")));
    }
    Ok(())
}

pub fn progress(message: &str) {
    eprintln!("[cluster {}] {message}", clock());
}

fn clock() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seconds_of_day = now.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}", seconds_of_day / 3600, seconds_of_day / 60 % 60, seconds_of_day % 60)
}

pub struct Lab {
    harness: PathBuf,
    state: PathBuf,
    /// Every node, the full ones first, in the order the lab lists them.
    nodes: Vec<&'static str>,
    remote: Vec<&'static str>,
    /// The lab's shape as its entry script reads it (VG_SCALE_FULL, ...),
    /// given to every call of the script.
    shape: Vec<(String, String)>,
    /// Nodes that are powered off (fenced) right now.
    off: RefCell<Vec<&'static str>>,
}

impl Lab {
    /// Brings the cluster up; `agent` is bound into both nodes as ocf:virtguard:VirtualDomain.
    pub fn up(agent: Option<&Path>) -> Lab {
        let state = std::env::var("VG_CLUSTER_STATE").unwrap_or_else(|_| "/var/tmp/vg-cluster".into());
        Lab::up_with("harness.sh", &state, agent, &[])
    }

    /// The same cluster with nodes that boot systemd (tests/cluster/systemd-harness.sh).
    pub fn up_systemd(agent: Option<&Path>) -> Lab {
        let state = std::env::var("VG_SYSTEMD_CLUSTER_STATE").unwrap_or_else(|_| "/var/tmp/vgsd-cluster".into());
        Lab::up_with("systemd-harness.sh", &state, agent, &[])
    }

    /// `full` Corosync members and `remote` Pacemaker Remote nodes
    /// (tests/cluster/scale-harness.sh).
    pub fn up_scale(agent: Option<&Path>, full: usize, remote: usize) -> Lab {
        let state = std::env::var("VG_SCALE_CLUSTER_STATE").unwrap_or_else(|_| "/var/tmp/vgt-cluster".into());
        let (full, remote) = (full.to_string(), remote.to_string());
        Lab::up_with("scale-harness.sh", &state, agent, &[("VG_SCALE_FULL", &full), ("VG_SCALE_REMOTE", &remote)])
    }

    fn up_with(script: &str, state: &str, agent: Option<&Path>, shape: &[(&str, &str)]) -> Lab {
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster").join(script);
        let shape: Vec<(String, String)> = shape.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let listed = |what: &str| -> Vec<&'static str> {
            let out = Command::new("bash").arg(&harness).arg(what).envs(shape.iter().cloned()).output().expect("cannot run the cluster harness");
            assert!(out.status.success(), "{script} {what} failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(|n| &*Box::leak(n.to_owned().into_boxed_str())).collect()
        };
        let (nodes, remote) = (listed("nodes"), listed("remote-nodes"));
        let lab = Lab { nodes, remote, harness, shape, state: PathBuf::from(state), off: RefCell::new(Vec::new()) };
        let mut up = Command::new("bash");
        up.arg(&lab.harness).arg("up").envs(lab.shape.iter().cloned());
        if let Some(agent) = agent {
            up.env("VG_CLUSTER_AGENT", agent);
        }
        // From here on the Drop guard tears down whatever `up` managed to start.
        let status = up.status().expect("cannot run the cluster harness");
        assert!(status.success(), "cluster harness 'up' failed ({status}); see its output above");
        lab
    }

    pub fn nodes(&self) -> Vec<&'static str> {
        self.nodes.clone()
    }

    /// The Pacemaker Remote nodes (none in the two-node labs).
    pub fn remote_nodes(&self) -> Vec<&'static str> {
        self.remote.clone()
    }

    /// The Corosync members.
    pub fn full_nodes(&self) -> Vec<&'static str> {
        self.nodes.iter().copied().filter(|n| !self.remote.contains(n)).collect()
    }

    /// The other node of the two.
    pub fn other(&self, node: &str) -> &'static str {
        if node == self.nodes[0] { self.nodes[1] } else { self.nodes[0] }
    }

    /// Where a node keeps what survives its reboots (logs, journal, Pacemaker's state).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.state.join("nodes").join(node)
    }

    pub fn harness(&self, args: &[&str]) -> Output {
        Command::new("bash").arg(&self.harness).args(args).envs(self.shape.iter().cloned()).output().expect("cannot run the cluster harness")
    }

    pub fn harness_ok(&self, args: &[&str]) -> String {
        let out = self.harness(args);
        if !out.status.success() {
            self.fail(&format!("harness {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command inside a node's namespaces.
    pub fn run(&self, node: &str, args: &[&str]) -> Output {
        let mut full = vec!["exec", node, "--"];
        full.extend_from_slice(args);
        self.harness(&full)
    }

    /// Runs a command inside a node and returns its stdout; a failure fails the test.
    pub fn must(&self, node: &str, args: &[&str]) -> String {
        let out = self.run(node, args);
        if !out.status.success() {
            self.fail(&format!(
                "on {node}: {} failed ({})\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A full node that is up, for cluster-wide commands.
    pub fn any_node(&self) -> &'static str {
        let off = self.off.borrow();
        self.full_nodes().into_iter().find(|n| !off.contains(n)).expect("no full node is up")
    }

    /// Cluster-wide command, run on any node that is up.
    pub fn crm(&self, args: &[&str]) -> String {
        self.must(self.any_node(), args)
    }

    pub fn wait_idle(&self) {
        self.wait_idle_for(Duration::from_secs(IDLE_TIMEOUT_S.into()));
    }

    /// Waits for an idle cluster, up to `timeout` (many guests starting at once take longer).
    pub fn wait_idle_for(&self, timeout: Duration) {
        let timeout = format!("--timeout={}s", timeout.as_secs());
        self.crm(&["crm_resource", "--wait", &timeout]);
    }

    pub fn crash(&self, node: &'static str) {
        self.harness_ok(&["crash", node]);
    }

    pub fn is_off(&self, node: &str) -> bool {
        self.off.borrow().contains(&node)
    }

    pub fn mark_off(&self, node: &'static str) {
        self.off.borrow_mut().push(node);
    }

    pub fn boot(&self, node: &'static str) {
        self.power_on(node);
        self.harness_ok(&["wait", "120"]);
    }

    /// Powers a node on without waiting for it to join.
    pub fn power_on(&self, node: &'static str) {
        self.harness_ok(&["boot", node]);
        self.off.borrow_mut().retain(|n| *n != node);
    }

    pub fn node_pids(&self, node: &str) -> Vec<String> {
        self.harness_ok(&["pids", node]).split_whitespace().map(str::to_owned).collect()
    }

    /// The oldest process of `node` whose command is `comm` (the nodes share
    /// the host's pid namespace: pgrep inside a node sees every node's
    /// daemons, and the host's).
    pub fn node_process(&self, node: &str, comm: &str) -> Option<String> {
        let mut pids: Vec<u32> = self
            .node_pids(node)
            .iter()
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
            .filter_map(|pid| pid.parse().ok())
            .collect();
        pids.sort_unstable();
        pids.first().map(u32::to_string)
    }

    /// The CPU the node has spent on resource agents and on libvirtd so far
    /// (see [`DaemonCpu`]).
    pub fn daemon_cpu(&self, node: &str) -> DaemonCpu {
        let executor = if self.remote.contains(&node) { REMOTE_EXECUTOR_COMM } else { "pacemaker-execd" };
        let pid_of = |name: &str| self.node_process(node, name).unwrap_or_else(|| self.fail(&format!("no {name} on {node}")));
        let stat = |pid: String| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields = |text: &str| -> Vec<u64> {
            // After the command name in parentheses: field 3 onwards.
            text.rsplit_once(") ").map(|(_, rest)| rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect()).unwrap_or_default()
        };
        let executor = fields(&stat(pid_of(executor)));
        let libvirtd = fields(&stat(pid_of("libvirtd")));
        // utime, stime, cutime, cstime are fields 14-17: indexes 11-14 here.
        DaemonCpu {
            agents_ticks: executor.get(13).copied().unwrap_or(0) + executor.get(14).copied().unwrap_or(0),
            libvirtd_ticks: libvirtd.get(11).copied().unwrap_or(0) + libvirtd.get(12).copied().unwrap_or(0),
        }
    }

    /// The harness's state directory ($VG_CLUSTER_STATE), seen from the host.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub fn guest(&self, name: &str) -> String {
        self.harness_ok(&["guest", name]).trim().to_owned()
    }

    /// How the invariant sampler reaches each node's libvirtd: through the
    /// node's network namespace (it outlives a crashed or fenced node) at the
    /// address the harness gave the node in its hosts file.
    pub fn sampler_access(&self) -> Vec<super::sampler::NodeAccess> {
        self.nodes.iter().map(|&node| {
            let hosts = std::fs::read_to_string(self.node_dir(node).join("hosts")).unwrap_or_default();
            let address = hosts
                .lines()
                .find_map(|l| l.split_whitespace().collect::<Vec<_>>().split_first().filter(|(_, names)| names.contains(&node)).map(|(a, _)| a.to_string()))
                .unwrap_or_else(|| self.fail(&format!("no address of {node} in the harness's hosts file")));
            super::sampler::NodeAccess { netns: PathBuf::from("/run/netns").join(node), address }
        }).collect()
    }

    /// Nodes where Pacemaker says the resource is active.
    pub fn located(&self, rsc: &str) -> Vec<String> {
        let out = self.run(self.any_node(), &["crm_resource", "--locate", "-r", rsc, "-Q"]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
    }

    /// The domains the node's libvirt runs, or None when it does not answer
    /// (the node powered off, its libvirtd down or frozen past virsh's wait).
    pub fn domains_on(&self, node: &str) -> Option<Vec<String>> {
        let listed = self.run(node, &["virsh", "-c", "qemu:///system", "list", "--name"]);
        listed.status.success().then(|| {
            String::from_utf8_lossy(&listed.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
        })
    }

    /// Whether the node's libvirt runs the domain; fails the test when it
    /// does not answer.
    pub fn runs(&self, node: &str, domain: &str) -> bool {
        let domains = self.domains_on(node).unwrap_or_else(|| self.fail(&format!("libvirt on {node} does not answer")));
        domains.iter().any(|d| d == domain)
    }

    /// Nodes (that are up) where libvirt runs the domain.
    pub fn running_on(&self, domain: &str) -> Vec<&'static str> {
        let off = self.off.borrow().clone();
        self.nodes.iter().copied().filter(|n| !off.contains(n)).filter(|n| self.runs(n, domain)).collect()
    }

    /// Where Pacemaker has each resource active, from one crm_mon.
    pub fn locations(&self) -> HashMap<String, Vec<String>> {
        let xml = self.crm(&["crm_mon", "-1", "--output-as=xml"]);
        let mut located: HashMap<String, Vec<String>> = HashMap::new();
        // <resource id="..." ... active="true" ...> <node name="..." .../> </resource>
        for block in xml.split("<resource ").skip(1) {
            let Some(id) = parse_elements(&format!("<resource {block}"), "resource").first().and_then(|r| r.get("id").cloned()) else { continue };
            let open_tag = block.split('>').next().unwrap_or_default();
            let body = if open_tag.ends_with('/') { "" } else { block.split("</resource>").next().unwrap_or_default() };
            let nodes = parse_elements(body, "node").into_iter().filter_map(|n| n.get("name").cloned()).collect();
            located.insert(id, nodes);
        }
        located
    }

    pub fn history(&self) -> Vec<Op> {
        parse_elements(&self.crm(&["cibadmin", "-Q", "-o", "status"]), "lrm_rsc_op").into_iter().map(Op).collect()
    }

    /// The highest executor call id per node: operations newer than a snapshot have larger ones.
    pub fn call_ids(&self) -> HashMap<String, u64> {
        let mut ids = HashMap::new();
        for op in self.history() {
            let id = ids.entry(op.node().to_owned()).or_insert(0);
            *id = (*id).max(op.call_id());
        }
        ids
    }

    pub fn fence_events(&self) -> Vec<HashMap<String, String>> {
        parse_elements(&self.crm(&["stonith_admin", "--history", "*", "--output-as=xml"]), "fence_event")
    }

    /// Power actions the lab fence agent carried out ("EPOCH ACTION NODE" lines).
    pub fn fence_actions(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("fence-actions.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// The node's Pacemaker log (what the controller recorded of each result).
    pub fn pacemaker_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.state.join("nodes").join(node).join("var-log-pacemaker/pacemaker.log")).unwrap_or_default()
    }

    pub fn failcount(&self, rsc: &str, node: &str) -> String {
        let out = self.run(self.any_node(), &["crm_failcount", "-G", "-q", "-r", rsc, "-N", node]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls `probe` until it yields a value; fails the test after `timeout`.
    pub fn poll<T>(&self, what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let mut found = None;
        let condition = || {
            found = probe();
            found.is_some()
        };
        if !super::wait_for(timeout, Duration::from_millis(250), condition) {
            self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
        }
        found.expect("wait_for saw it")
    }

    /// Fails the test with the message and what the cluster looked like.
    pub fn fail(&self, message: &str) -> ! {
        panic!("{message}\n{}", self.diagnostics());
    }

    pub fn check(&self, condition: bool, message: impl FnOnce() -> String) {
        if !condition {
            self.fail(&message());
        }
    }

    pub fn diagnostics(&self) -> String {
        let mut text = String::from("---------------- cluster state ----------------\n");
        let off = self.off.borrow().clone();
        if let Some(node) = self.full_nodes().into_iter().find(|n| !off.contains(n)) {
            let out = self.run(node, &["crm_mon", "-1", "-r", "-f", "--include=failures,fencing"]);
            text += &String::from_utf8_lossy(&out.stdout);
        }
        for &node in &self.nodes {
            let log = self.state.join("nodes").join(node).join("var-log-pacemaker/pacemaker.log");
            let content = std::fs::read_to_string(&log).unwrap_or_default();
            let interesting: Vec<&str> = content
                .lines()
                .filter(|l| l.contains("VirtualDomain") || l.contains("error") || l.contains("ocf-exit-reason"))
                .collect();
            text += &format!("---------------- {node}: {} (last agent/error lines) ----------------\n", log.display());
            for line in &interesting[interesting.len().saturating_sub(25)..] {
                text += line;
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        progress("tearing the cluster down");
        let out = self.harness(&["down"]);
        if !out.status.success() {
            eprintln!("harness down failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The command name of pacemaker-remoted as /proc shows it (cut at 15 characters).
pub const REMOTE_EXECUTOR_COMM: &str = "pacemaker-remot";

/// CPU of one node, in clock ticks: `agents_ticks` is what the children
/// that the node's executor (pacemaker-execd on a full node,
/// pacemaker-remoted on a remote one) reaped have used, the agents and
/// everything they ran; `libvirtd_ticks` is libvirtd's own. Only differences
/// between two readings mean anything.
#[derive(Debug, Clone, Copy)]
pub struct DaemonCpu {
    pub agents_ticks: u64,
    pub libvirtd_ticks: u64,
}

impl DaemonCpu {
    /// (agents, libvirtd) milliseconds of CPU from `earlier` to `self`.
    pub fn ms_since(&self, earlier: &DaemonCpu) -> (f64, f64) {
        let tick_ms = 1000.0 / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        (
            self.agents_ticks.saturating_sub(earlier.agents_ticks) as f64 * tick_ms,
            self.libvirtd_ticks.saturating_sub(earlier.libvirtd_ticks) as f64 * tick_ms,
        )
    }
}

/// One `lrm_rsc_op` of the CIB status section.
#[derive(Debug, Clone)]
pub struct Op(pub HashMap<String, String>);

impl Op {
    pub fn attr(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }
    /// The resource is the op id up to the key's suffix: read it from operation_key.
    pub fn resource(&self) -> &str {
        let key = self.attr("operation_key");
        let op = self.attr("operation");
        let interval = self.attr("interval");
        key.strip_suffix(&format!("_{op}_{interval}")).unwrap_or(key)
    }
    pub fn operation(&self) -> &str {
        self.attr("operation")
    }
    pub fn node(&self) -> &str {
        self.attr("on_node")
    }
    pub fn rc(&self) -> i64 {
        self.attr("rc-code").parse().unwrap_or(-1)
    }
    pub fn call_id(&self) -> u64 {
        self.attr("call-id").parse().unwrap_or(0)
    }
    pub fn exec_ms(&self) -> u64 {
        self.attr("exec-time").parse().unwrap_or(0)
    }
    pub fn describe(&self) -> String {
        format!(
            "{} on {} rc={} call-id={} exec-time={}ms exit-reason={:?}",
            self.attr("operation_key"),
            self.node(),
            self.rc(),
            self.call_id(),
            self.exec_ms(),
            self.attr("exit-reason")
        )
    }
}

/// The attributes of every `<tag ...>` element in an XML text. Enough for the
/// flat, attribute-only elements Pacemaker prints (lrm_rsc_op, fence_event, failure).
pub fn parse_elements(xml: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let opening = format!("<{tag} ");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&opening) {
        let after = &rest[at + opening.len()..];
        let end = after.find('>').unwrap_or(after.len());
        found.push(parse_attributes(after[..end].trim_end_matches('/')));
        rest = &after[end..];
    }
    found
}

fn parse_attributes(text: &str) -> HashMap<String, String> {
    let mut attributes = HashMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_owned();
        let after = rest[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else { break };
        let Some(close) = after[1..].find(quote) else { break };
        attributes.insert(name, unescape(&after[1..1 + close]));
        rest = &after[close + 2..];
    }
    attributes
}

pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}
