//! What `adopt` reads from the cluster, as pure parsers: the CIB
//! (`cibadmin --query`: configuration, version, operation history) and
//! `crm_mon --output-as=xml` (Pacemaker's own view: roles, failures, nodes).

use anyhow::Context;

use super::tree::{self, Element};

/// The CIB's version fields that change with every configuration change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CibVersion {
    pub admin_epoch: String,
    pub epoch: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primitive {
    pub id: String,
    pub class: String,
    pub provider: String,
    pub agent_type: String,
    /// The group it is a member of.
    pub group: Option<String>,
    /// The clone, promotable clone or bundle it is part of (adopt refuses those).
    pub replicated_by: Option<String>,
    /// Instance attributes (the agent's OCF_RESKEY_* parameters).
    pub params: Vec<(String, String)>,
    /// The primitive's own meta attributes.
    pub meta: Vec<(String, String)>,
}

impl Primitive {
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.meta.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One `lrm_rsc_op`: the last record of an operation of a resource on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub resource: String,
    /// The agent that ran it (`provider` of its `lrm_resource`).
    pub provider: String,
    pub node: String,
    /// `<rsc>_last_0`, `<rsc>_last_failure_0`, `<rsc>_monitor_10000`...
    pub id: String,
    pub operation: String,
    pub interval_ms: u64,
    pub rc: i32,
    /// -1 while the operation is still running (pending), 0 when complete.
    pub op_status: i32,
}

#[derive(Debug, Clone)]
pub struct Cib {
    pub version: CibVersion,
    pub primitives: Vec<Primitive>,
    pub history: Vec<OpRecord>,
}

impl Cib {
    pub fn primitive(&self, id: &str) -> Option<&Primitive> {
        self.primitives.iter().find(|p| p.id == id)
    }

    pub fn history_of<'a>(&'a self, resource: &'a str) -> impl Iterator<Item = &'a OpRecord> + 'a {
        self.history.iter().filter(move |op| op.resource == resource)
    }
}

pub fn parse_cib(xml: &str) -> anyhow::Result<Cib> {
    let root = tree::parse(xml)?;
    if root.name != "cib" {
        anyhow::bail!("not a CIB: the root element is <{}>", root.name);
    }
    let version = CibVersion {
        admin_epoch: root.attr("admin_epoch").context("the CIB has no admin_epoch")?.to_owned(),
        epoch: root.attr("epoch").context("the CIB has no epoch")?.to_owned(),
    };
    let mut primitives = Vec::new();
    if let Some(resources) = root.child("configuration").and_then(|c| c.child("resources")) {
        resources.walk(&mut Vec::new(), &mut |element, ancestors| {
            if element.name == "primitive" {
                primitives.push(primitive(element, ancestors));
            }
        });
    }
    let mut history = Vec::new();
    if let Some(status) = root.child("status") {
        for node_state in status.children_named("node_state") {
            let node = node_state.attr_or_empty("uname");
            let resources = node_state.child("lrm").and_then(|l| l.child("lrm_resources"));
            for resource in resources.into_iter().flat_map(|r| r.children_named("lrm_resource")) {
                for op in resource.children_named("lrm_rsc_op") {
                    history.push(OpRecord {
                        resource: resource.attr_or_empty("id").to_owned(),
                        provider: resource.attr_or_empty("provider").to_owned(),
                        node: node.to_owned(),
                        id: op.attr_or_empty("id").to_owned(),
                        operation: op.attr_or_empty("operation").to_owned(),
                        interval_ms: op.attr_or_empty("interval").parse().unwrap_or(0),
                        rc: op.attr_or_empty("rc-code").parse().unwrap_or(-1),
                        op_status: op.attr_or_empty("op-status").parse().unwrap_or(0),
                    });
                }
            }
        }
    }
    Ok(Cib { version, primitives, history })
}

fn primitive(element: &Element, ancestors: &[&Element]) -> Primitive {
    let enclosing = |kinds: &[&str]| {
        ancestors.iter().rev().find(|a| kinds.contains(&a.name.as_str())).map(|a| format!("{} {}", a.name, a.attr_or_empty("id")))
    };
    let nvpairs = |set: &str| -> Vec<(String, String)> {
        element
            .children_named(set)
            .flat_map(|s| s.children_named("nvpair"))
            .map(|n| (n.attr_or_empty("name").to_owned(), n.attr_or_empty("value").to_owned()))
            .collect()
    };
    Primitive {
        id: element.attr_or_empty("id").to_owned(),
        class: element.attr_or_empty("class").to_owned(),
        provider: element.attr_or_empty("provider").to_owned(),
        agent_type: element.attr_or_empty("type").to_owned(),
        group: ancestors.iter().rev().find(|a| a.name == "group").map(|g| g.attr_or_empty("id").to_owned()),
        replicated_by: enclosing(&["clone", "master", "bundle"]),
        params: nvpairs("instance_attributes"),
        meta: nvpairs("meta_attributes"),
    }
}

/// Pacemaker's view of one resource (`crm_mon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceView {
    pub id: String,
    pub role: String,
    pub failed: bool,
    pub blocked: bool,
    pub managed: bool,
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Monitor {
    pub online_nodes: Vec<String>,
    pub resources: Vec<ResourceView>,
    /// `op_key` of every failed action (`<rsc>_<op>_<interval>`) with its node.
    pub failures: Vec<(String, String)>,
}

impl Monitor {
    pub fn resource(&self, id: &str) -> Option<&ResourceView> {
        self.resources.iter().find(|r| r.id == id)
    }

    pub fn failures_of(&self, id: &str) -> Vec<String> {
        let prefix = format!("{id}_");
        self.failures.iter().filter(|(key, _)| key.starts_with(&prefix)).map(|(key, node)| format!("{key} on {node}")).collect()
    }
}

pub fn parse_crm_mon(xml: &str) -> anyhow::Result<Monitor> {
    let root = tree::parse(xml)?;
    let online_nodes = root
        .child("nodes")
        .into_iter()
        .flat_map(|n| n.children_named("node"))
        .filter(|n| n.attr("online") == Some("true"))
        .map(|n| n.attr_or_empty("name").to_owned())
        .collect();
    let mut resources = Vec::new();
    if let Some(section) = root.child("resources") {
        section.walk(&mut Vec::new(), &mut |element, _| {
            if element.name == "resource" {
                let flag = |name: &str| element.attr(name) == Some("true");
                resources.push(ResourceView {
                    id: element.attr_or_empty("id").to_owned(),
                    role: element.attr_or_empty("role").to_owned(),
                    failed: flag("failed"),
                    blocked: flag("blocked"),
                    managed: flag("managed"),
                    nodes: element.children_named("node").map(|n| n.attr_or_empty("name").to_owned()).collect(),
                });
            }
        });
    }
    let failures = root
        .child("failures")
        .into_iter()
        .flat_map(|f| f.children_named("failure"))
        .map(|f| (f.attr_or_empty("op_key").to_owned(), f.attr_or_empty("node").to_owned()))
        .collect();
    Ok(Monitor { online_nodes, resources, failures })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adopt::fixture;

    #[test]
    fn reads_primitives_groups_and_parameters_of_a_real_cib() {
        let cib = parse_cib(&fixture("cib-classic-running.xml")).unwrap();
        assert_eq!(cib.version, CibVersion { admin_epoch: "0".into(), epoch: "18".into() });
        let ids: Vec<&str> = cib.primitives.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["vga-1", "vga-2", "vga-3"]);
        let in_group = cib.primitive("vga-2").unwrap();
        assert_eq!(in_group.group.as_deref(), Some("vga-grp"));
        assert_eq!((in_group.class.as_str(), in_group.provider.as_str(), in_group.agent_type.as_str()), ("ocf", "heartbeat", "VirtualDomain"));
        assert_eq!(in_group.replicated_by, None);
        // crmsh writes name before id: the order of attributes does not matter.
        let crm = cib.primitive("vga-3").unwrap();
        assert_eq!(crm.params[0], ("config".to_owned(), "/var/tmp/vg-cluster/guests/vga-3.xml".to_owned()));
        assert_eq!(crm.meta("allow-migrate"), Some("true"));
        assert_eq!(crm.meta("is-managed"), None);
        let started: Vec<(&str, &str, i32)> =
            cib.history_of("vga-1").filter(|op| op.id == "vga-1_last_0").map(|op| (op.node.as_str(), op.operation.as_str(), op.rc)).collect();
        assert_eq!(started, [("vg-node1", "start", 0), ("vg-node2", "monitor", 7)]);
        assert!(cib.history.iter().all(|op| op.provider == "heartbeat" && op.op_status == 0));
    }

    #[test]
    fn reads_roles_nodes_and_failures_from_crm_mon() {
        let mon = parse_crm_mon(&fixture("crm_mon-classic-running.xml")).unwrap();
        assert_eq!(mon.online_nodes, ["vg-node1", "vg-node2"]);
        let grouped = mon.resource("vga-2").unwrap();
        assert_eq!((grouped.role.as_str(), grouped.nodes.as_slice()), ("Started", ["vg-node2".to_owned()].as_slice()));
        assert!(grouped.managed && !grouped.failed && !grouped.blocked);
        assert!(mon.failures.is_empty());
        let failed = parse_crm_mon(&fixture("crm_mon-failed.xml")).unwrap();
        assert_eq!(failed.failures_of("vga-3"), ["vga-3_monitor_10000 on vg-node1"]);
        assert!(failed.failures_of("vga-1").is_empty());
    }

    #[test]
    fn rejects_what_is_not_a_cib() {
        assert!(parse_cib("<pacemaker-result/>").is_err());
        assert!(parse_cib("<cib><configuration>").is_err());
    }
}
