//! The decisions of `adopt`, as pure functions of what was read: whether a
//! resource may be switched (or why not), and whether the new agent's probes
//! found the guest where it ran.

use super::state::{Cib, Monitor, Primitive};

/// The meta attribute that marks a resource `adopt` is switching. It holds
/// what a rerun needs to finish or roll back after an interruption: the
/// provider being switched to, the node the guest ran on, and the resource's
/// own `is-managed` before adopt unmanaged it.
pub const MARKER: &str = "virtguard-adopt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub to: String,
    /// Where the guest ran when adopt started (None: it ran nowhere).
    pub node: Option<String>,
    /// The primitive's `is-managed` meta attribute before (None: not set).
    pub managed_before: Option<String>,
}

impl Marker {
    pub fn render(&self) -> String {
        format!(
            "to={} node={} managed={}",
            self.to,
            self.node.as_deref().unwrap_or("-"),
            self.managed_before.as_deref().unwrap_or("-")
        )
    }

    pub fn parse(text: &str) -> Option<Marker> {
        let field = |name: &str| {
            text.split_whitespace().find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_owned)
        };
        let optional = |v: String| (v != "-").then_some(v);
        Some(Marker { to: field("to")?, node: field("node").and_then(optional), managed_before: field("managed").and_then(optional) })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Already on the requested agent, and not in the middle of a switch.
    NothingToDo,
    /// Switch it; the marker to set first.
    Switch(Marker),
    /// An interrupted switch: take it to the requested agent from where it is.
    Resume(Marker),
    Refuse(String),
}

/// The resources `--all` means: every VirtualDomain primitive on the other
/// agent, and every one an interrupted run left marked.
pub fn all_candidates(cib: &Cib, to: &str) -> Vec<String> {
    cib.primitives
        .iter()
        .filter(|p| p.agent_type == "VirtualDomain" && p.class == "ocf")
        .filter(|p| p.provider != to || p.meta(MARKER).is_some())
        .map(|p| p.id.clone())
        .collect()
}

/// Whether `id` may be switched to `ocf:<to>:VirtualDomain` now. Everything
/// but the agent's own validate-all, which the caller runs.
pub fn decide(id: &str, to: &str, cib: &Cib, mon: &Monitor) -> Decision {
    let Some(primitive) = cib.primitive(id) else {
        return Decision::Refuse(format!("{id}: no such primitive in the CIB (groups and clones are not switched as a whole: name their members)"));
    };
    if let Some(refusal) = agent_refusal(primitive) {
        return Decision::Refuse(refusal);
    }
    if let Some(container) = &primitive.replicated_by {
        return Decision::Refuse(format!("{id}: a member of the {container}; adopt switches plain and grouped primitives only"));
    }
    let marker = primitive.meta(MARKER).map(|m| Marker::parse(m).ok_or_else(|| m.to_owned()));
    match marker {
        Some(Ok(marker)) => return Decision::Resume(marker),
        Some(Err(text)) => return Decision::Refuse(format!("{id}: its {MARKER} meta attribute is unreadable ({text:?}); remove it by hand")),
        None => {}
    }
    if primitive.provider == to {
        return Decision::NothingToDo;
    }
    let failures = mon.failures_of(id);
    if !failures.is_empty() {
        return Decision::Refuse(format!(
            "{id}: has failed actions ({}); find out why, then clear them (crm_resource --cleanup -r {id}) and run adopt again",
            failures.join(", ")
        ));
    }
    let Some(view) = mon.resource(id) else {
        return Decision::Refuse(format!("{id}: crm_mon does not show it"));
    };
    if view.failed {
        return Decision::Refuse(format!("{id}: Pacemaker considers it failed"));
    }
    if view.blocked {
        return Decision::Refuse(format!("{id}: blocked (a stop failed without fencing): resolve that first"));
    }
    if let Some(op) = cib.history_of(id).find(|op| op.op_status == -1) {
        return Decision::Refuse(format!("{id}: an action is in progress ({} on {}); run adopt when the cluster is idle", op.operation, op.node));
    }
    if let Some(op) = cib.history_of(id).find(|op| op.id == format!("{id}_last_0") && op.operation.starts_with("migrate_")) {
        return Decision::Refuse(format!("{id}: mid-migration ({} on {} is its last action); let the migration finish first", op.operation, op.node));
    }
    if !matches!(view.role.as_str(), "Started" | "Stopped") {
        return Decision::Refuse(format!("{id}: in transition (role {}); run adopt when the cluster is idle", view.role));
    }
    if view.nodes.len() > 1 {
        return Decision::Refuse(format!("{id}: active on several nodes ({})", view.nodes.join(", ")));
    }
    Decision::Switch(Marker { to: to.to_owned(), node: view.nodes.first().cloned(), managed_before: primitive.meta("is-managed").map(str::to_owned) })
}

fn agent_refusal(primitive: &Primitive) -> Option<String> {
    let agent = format!("{}:{}:{}", primitive.class, primitive.provider, primitive.agent_type);
    let known = primitive.class == "ocf" && primitive.agent_type == "VirtualDomain" && matches!(primitive.provider.as_str(), "heartbeat" | "virtguard");
    (!known).then(|| format!("{}: runs {agent}; adopt switches ocf:heartbeat:VirtualDomain and ocf:virtguard:VirtualDomain only", primitive.id))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Not every online node has reported the new agent's probe yet.
    Waiting,
    /// Running exactly where expected (or, if it ran nowhere, nowhere).
    Confirmed,
    /// The probes finished and disagree with where it ran: stays unmanaged.
    Unexpected(String),
}

/// What the probes of `ocf:<to>:VirtualDomain` (after the refresh) say of `id`
/// against where it ran before.
pub fn probe_verdict(id: &str, to: &str, expected: Option<&str>, cib: &Cib, mon: &Monitor) -> ProbeVerdict {
    let mut running = Vec::new();
    for node in &mon.online_nodes {
        let probe = cib
            .history_of(id)
            .filter(|op| &op.node == node && op.provider == to && op.id == format!("{id}_last_0") && op.op_status == 0)
            .find(|op| op.operation == "monitor" && op.interval_ms == 0);
        match probe {
            None => return ProbeVerdict::Waiting,
            Some(op) if op.rc == 0 => running.push(node.as_str()),
            Some(op) if op.rc == 7 => {}
            Some(op) => return ProbeVerdict::Unexpected(format!("the probe on {node} returned {} (not 0 running or 7 stopped)", op.rc)),
        }
    }
    let expected_nodes: Vec<&str> = expected.into_iter().collect();
    if running == expected_nodes {
        ProbeVerdict::Confirmed
    } else {
        let ran = expected.map_or("nowhere".to_owned(), |n| format!("on {n}"));
        let now = if running.is_empty() { "nowhere".to_owned() } else { format!("on {}", running.join(", ")) };
        ProbeVerdict::Unexpected(format!("it ran {ran} before the switch; the new agent's probe finds it running {now}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adopt::state::{parse_cib, parse_crm_mon};
    use crate::adopt::fixture;

    fn running() -> (Cib, Monitor) {
        (parse_cib(&fixture("cib-classic-running.xml")).unwrap(), parse_crm_mon(&fixture("crm_mon-classic-running.xml")).unwrap())
    }

    #[test]
    fn marker_round_trips() {
        let marker = Marker { to: "virtguard".into(), node: Some("vg-node1".into()), managed_before: None };
        assert_eq!(marker.render(), "to=virtguard node=vg-node1 managed=-");
        assert_eq!(Marker::parse(&marker.render()), Some(marker));
        assert_eq!(Marker::parse("node=x"), None);
    }

    #[test]
    fn running_classic_resources_are_switched_where_they_run() {
        let (cib, mon) = running();
        assert_eq!(all_candidates(&cib, "virtguard"), ["vga-1", "vga-2", "vga-3"]);
        assert!(all_candidates(&cib, "heartbeat").is_empty());
        assert_eq!(
            decide("vga-2", "virtguard", &cib, &mon),
            Decision::Switch(Marker { to: "virtguard".into(), node: Some("vg-node2".into()), managed_before: None })
        );
        assert_eq!(decide("vga-1", "heartbeat", &cib, &mon), Decision::NothingToDo);
        assert!(matches!(decide("vga-grp", "virtguard", &cib, &mon), Decision::Refuse(r) if r.contains("no such primitive")));
    }

    #[test]
    fn refuses_failed_pending_migrating_and_replicated_resources() {
        let cib = parse_cib(&fixture("cib-failed.xml")).unwrap();
        let mon = parse_crm_mon(&fixture("crm_mon-failed.xml")).unwrap();
        assert!(matches!(decide("vga-3", "virtguard", &cib, &mon), Decision::Refuse(r) if r.contains("vga-3_monitor_10000 on vg-node1")));

        let (mut cib, mon) = running();
        let op = cib.history.iter_mut().find(|op| op.resource == "vga-1" && op.id == "vga-1_last_0" && op.node == "vg-node1").unwrap();
        op.op_status = -1;
        assert!(matches!(decide("vga-1", "virtguard", &cib, &mon), Decision::Refuse(r) if r.contains("in progress")));

        let (mut cib, mon) = running();
        let op = cib.history.iter_mut().find(|op| op.resource == "vga-1" && op.id == "vga-1_last_0" && op.node == "vg-node1").unwrap();
        op.operation = "migrate_to".into();
        assert!(matches!(decide("vga-1", "virtguard", &cib, &mon), Decision::Refuse(r) if r.contains("mid-migration")));

        let (mut cib, mon) = running();
        cib.primitives[0].replicated_by = Some("clone vga-1-clone".into());
        assert!(matches!(decide("vga-1", "virtguard", &cib, &mon), Decision::Refuse(r) if r.contains("clone vga-1-clone")));

        let (mut cib, mon) = running();
        cib.primitives[0].provider = "custom".into();
        assert!(matches!(decide("vga-1", "virtguard", &cib, &mon), Decision::Refuse(r) if r.contains("ocf:custom:VirtualDomain")));
    }

    #[test]
    fn an_interrupted_switch_is_resumed_from_its_marker() {
        let cib = parse_cib(&fixture("cib-interrupted.xml")).unwrap();
        let mon = parse_crm_mon(&fixture("crm_mon-interrupted.xml")).unwrap();
        assert_eq!(
            decide("vga-2", "heartbeat", &cib, &mon),
            Decision::Resume(Marker { to: "virtguard".into(), node: Some("vg-node2".into()), managed_before: None })
        );
        // Already on virtguard but marked: --all still picks it up.
        assert!(all_candidates(&cib, "virtguard").contains(&"vga-2".to_owned()));
    }

    #[test]
    fn the_new_probe_must_find_the_guest_where_it_ran() {
        let (cib, mon) = running();
        // The classic agent's records do not count as the new agent's probe.
        assert_eq!(probe_verdict("vga-1", "virtguard", Some("vg-node1"), &cib, &mon), ProbeVerdict::Waiting);
        // After the refresh of the fixture's vga-1: virtguard probed both nodes.
        let cib = parse_cib(&fixture("cib-interrupted.xml")).unwrap();
        let mon = parse_crm_mon(&fixture("crm_mon-interrupted.xml")).unwrap();
        assert_eq!(probe_verdict("vga-1", "virtguard", Some("vg-node1"), &cib, &mon), ProbeVerdict::Confirmed);
        assert!(matches!(probe_verdict("vga-1", "virtguard", Some("vg-node2"), &cib, &mon), ProbeVerdict::Unexpected(m) if m.contains("ran on vg-node2") && m.contains("running on vg-node1")));
        assert!(matches!(probe_verdict("vga-1", "virtguard", None, &cib, &mon), ProbeVerdict::Unexpected(_)));
    }
}
