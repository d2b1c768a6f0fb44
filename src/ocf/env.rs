//! What Pacemaker tells an agent through its environment, besides the
//! resource parameters (those are in `params.rs`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::deadline::{Clock, Deadline};

/// The environment of one agent call. Built from a lookup function so that
/// tests can supply a map instead of the process environment.
#[derive(Debug, Clone)]
pub struct OcfEnv {
    pub instance: String,
    pub timeout_ms: Option<u64>,
    pub interval_ms: Option<u64>,
    pub migrate_source: Option<String>,
    pub migrate_target: Option<String>,
    pub on_node: Option<String>,
    pub check_level: u32,
    /// Per-boot state directory (`HA_RSCTMP`).
    pub state_dir: PathBuf,
    /// Set by Pacemaker on every call; absent when run by hand or by ocf-tester.
    pub crm_feature_set: Option<String>,
    /// When the call began, on `clock`: every deadline of the operation
    /// counts from here.
    pub called_at: Instant,
    pub clock: Clock,
}

pub const DEFAULT_STATE_DIR: &str = "/run/resource-agents";

impl OcfEnv {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> OcfEnv {
        Self::from_lookup_on(Clock::System, lookup)
    }

    /// The call as it begins now on `clock` (a test's manual clock).
    pub fn from_lookup_on(clock: Clock, lookup: &dyn Fn(&str) -> Option<String>) -> OcfEnv {
        let non_empty = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let millis = |name: &str| non_empty(name).and_then(|v| parse_millis(&v));
        OcfEnv {
            instance: non_empty("OCF_RESOURCE_INSTANCE").unwrap_or_else(|| "VirtualDomain".into()),
            timeout_ms: millis("OCF_RESKEY_CRM_meta_timeout"),
            interval_ms: millis("OCF_RESKEY_CRM_meta_interval"),
            migrate_source: non_empty("OCF_RESKEY_CRM_meta_migrate_source"),
            migrate_target: non_empty("OCF_RESKEY_CRM_meta_migrate_target"),
            on_node: non_empty("OCF_RESKEY_CRM_meta_on_node"),
            check_level: non_empty("OCF_CHECK_LEVEL").and_then(|v| v.parse().ok()).unwrap_or(0),
            state_dir: non_empty("HA_RSCTMP").map(PathBuf::from).unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            crm_feature_set: non_empty("OCF_RESKEY_crm_feature_set"),
            called_at: clock.now(),
            clock,
        }
    }

    pub fn from_process() -> OcfEnv {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// A monitor without interval is a probe: Pacemaker asks whether the
    /// resource runs here, before it ever started it.
    pub fn is_probe(&self, action: Action) -> bool {
        matches!(action, Action::Monitor | Action::Status) && self.interval_ms.unwrap_or(0) == 0
    }

    pub fn deadline(&self, action: Action) -> Deadline {
        Deadline::for_operation(self.clock, self.called_at, self.timeout_ms, action.default_timeout())
    }
}

/// Pacemaker passes milliseconds; older tools passed seconds with a unit.
fn parse_millis(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let (number, factor) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        return None;
    };
    number.trim().parse::<u64>().ok().map(|n| n * factor)
}

/// The actions of the agent, with the timeouts and intervals it advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Start,
    Stop,
    Status,
    Monitor,
    MigrateFrom,
    MigrateTo,
    MetaData,
    ValidateAll,
    /// OCF 1.1: make changed reloadable parameters effective.
    ReloadAgent,
    Usage,
}

pub struct ActionSpec {
    pub action: Action,
    pub name: &'static str,
    pub timeout_secs: u64,
    pub interval_secs: Option<u64>,
    pub depth: Option<u32>,
    /// Listed in meta-data (usage and help are not OCF actions).
    pub advertised: bool,
}

pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec { action: Action::Start, name: "start", timeout_secs: 90, interval_secs: None, depth: None, advertised: true },
    ActionSpec { action: Action::Stop, name: "stop", timeout_secs: 90, interval_secs: None, depth: None, advertised: true },
    ActionSpec { action: Action::Status, name: "status", timeout_secs: 30, interval_secs: Some(10), depth: Some(0), advertised: true },
    ActionSpec { action: Action::Monitor, name: "monitor", timeout_secs: 30, interval_secs: Some(10), depth: Some(0), advertised: true },
    ActionSpec { action: Action::MigrateFrom, name: "migrate_from", timeout_secs: 60, interval_secs: None, depth: None, advertised: true },
    ActionSpec { action: Action::MigrateTo, name: "migrate_to", timeout_secs: 120, interval_secs: None, depth: None, advertised: true },
    ActionSpec { action: Action::MetaData, name: "meta-data", timeout_secs: 5, interval_secs: None, depth: None, advertised: true },
    ActionSpec { action: Action::ValidateAll, name: "validate-all", timeout_secs: 5, interval_secs: None, depth: None, advertised: true },
    // reload-agent reads DRBD's state as validate-all does: 10 s ran out on
    // a loaded emulated node, and Pacemaker takes a failed reload for a
    // failed start.
    ActionSpec { action: Action::ReloadAgent, name: "reload-agent", timeout_secs: 60, interval_secs: None, depth: None, advertised: true },
    ActionSpec { action: Action::Usage, name: "usage", timeout_secs: 5, interval_secs: None, depth: None, advertised: false },
];

impl Action {
    pub fn parse(name: &str) -> Option<Action> {
        if name == "help" {
            return Some(Action::Usage);
        }
        ACTIONS.iter().find(|a| a.name == name).map(|a| a.action)
    }

    pub fn spec(self) -> &'static ActionSpec {
        ACTIONS.iter().find(|a| a.action == self).expect("every action has a spec")
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn default_timeout(self) -> Duration {
        Duration::from_secs(self.spec().timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> OcfEnv {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OcfEnv::from_lookup(&|n| map.get(n).cloned())
    }

    #[test]
    fn probe_is_a_monitor_without_interval() {
        assert!(env(&[]).is_probe(Action::Monitor));
        assert!(env(&[("OCF_RESKEY_CRM_meta_interval", "0")]).is_probe(Action::Monitor));
        assert!(!env(&[("OCF_RESKEY_CRM_meta_interval", "10000")]).is_probe(Action::Monitor));
        assert!(!env(&[]).is_probe(Action::Start));
    }

    /// Found by tests/agent_frozen_libvirtd.rs: stop spent 1.2 s looking for
    /// a tagged guest on a frozen libvirtd before it asked for its deadline,
    /// which then ran 1.2 s past Pacemaker's timeout (exit after 4.88 s of 4).
    #[test]
    fn every_deadline_of_a_call_ends_when_pacemakers_timeout_does() {
        let mut e = env(&[("OCF_RESKEY_CRM_meta_timeout", "4000")]);
        e.called_at -= Duration::from_millis(1_200);
        let remaining = e.deadline(Action::Stop).remaining();
        assert!(remaining <= Duration::from_millis(2_800), "{remaining:?} left, 1.2 s into a 4 s stop");
    }

    #[test]
    fn timeout_is_milliseconds() {
        let e = env(&[("OCF_RESKEY_CRM_meta_timeout", "20000"), ("HA_RSCTMP", "/tmp/x")]);
        assert_eq!(e.timeout_ms, Some(20_000));
        assert_eq!(e.deadline(Action::Stop).total(), Duration::from_secs(20));
        assert_eq!(env(&[]).deadline(Action::Stop).total(), Duration::from_secs(90));
        assert_eq!(parse_millis("30s"), Some(30_000));
        assert_eq!(e.state_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn action_names_round_trip() {
        for spec in ACTIONS {
            assert_eq!(Action::parse(spec.name), Some(spec.action));
        }
        assert_eq!(Action::parse("promote"), None);
        assert_eq!(Action::parse("help"), Some(Action::Usage));
    }
}
