//! The double-run guards, branch by branch, through the whole pipeline
//! (`run_action`: parameters, validation, look-up, action) on a fake node:
//! the fake hypervisor, a fake process table and a manual clock, so that
//! each case takes milliseconds and a wait of the stop's whole timeout
//! takes none. Each test is named after the rule it proves. A guest must
//! never run on two nodes: an answer of 7 (not running) for a guest that
//! runs here lets Pacemaker start it elsewhere, and a stop that fails gets
//! the node fenced.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::deadline::Clock;
use crate::host::fake_processes::FakeProcesses;
use crate::host::fake_services::{FakeServices, ServiceCall};
use crate::host::processes::Signal;
use crate::hypervisor::fake::{running, Call, FakeHypervisor};
use crate::hypervisor::{DomainState, HvError, HvErrorKind, StateKind};
use crate::ocf::{Action, OcfEnv, OcfStatus};
use crate::vdomain::state_files::{StateFiles, StateKey};
use crate::host::{Connection, Host};
use crate::vdomain::dispatch::run_action;

const INSTANCE: &str = "guard";
const OTHER: &str = "guard-other";
/// The guest the config names.
const NAME: &str = "guard-vm";
/// The guest a replaced config names instead.
const NEW_NAME: &str = "guard-vm-new";
/// The pid of the guest's emulator in the fake process table.
const PID: i32 = 4242;
/// Pacemaker's timeout for every call (on the manual clock).
const TIMEOUT: Duration = Duration::from_secs(30);

const PROBE: Option<&str> = None;
const RECURRING: Option<&str> = Some("10000");

/// One node as an agent call finds it.
struct Node {
    dir: PathBuf,
    config: PathBuf,
    rsctmp: PathBuf,
    hv: FakeHypervisor,
    processes: FakeProcesses,
    services: FakeServices,
    libvirtd_up: bool,
    clock: Clock,
}

/// What a call answered, and how long it took on the manual clock.
#[derive(Debug)]
struct Answer {
    status: OcfStatus,
    reason: String,
    took: Duration,
}

fn domain_xml(name: &str) -> String {
    format!("<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu></domain>")
}

impl Node {
    /// The config in place, libvirtd up, nothing running, nothing remembered.
    fn new() -> Node {
        static CASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vg-guard-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("vm.xml");
        std::fs::write(&config, domain_xml(NAME)).unwrap();
        let clock = Clock::manual();
        Node {
            rsctmp: dir.join("rsc"),
            config,
            dir,
            hv: FakeHypervisor::new().with_clock(clock),
            processes: FakeProcesses::new(),
            services: FakeServices::new(),
            libvirtd_up: true,
            clock,
        }
    }

    /// `name` runs here, tagged with `owner` (None: untagged), and its
    /// emulator with it.
    fn running(mut self, name: &str, owner: Option<&str>) -> Node {
        self.hv = self.hv.clone().with_domain(name, running(), false);
        if let Some(owner) = owner {
            self.hv.tag_definition(name, owner);
        }
        self.processes = self.processes.clone().with_emulator(PID, name);
        self
    }

    /// `name` is defined here, shut off: it runs on another node.
    fn defined_only(mut self, name: &str) -> Node {
        self.hv = self.hv.clone().with_domain(name, DomainState::new(StateKind::Shutoff, 1), true);
        self.hv.tag_definition(name, INSTANCE);
        self
    }

    /// libvirtd is down; what runs keeps running.
    fn libvirtd_down(mut self) -> Node {
        self.libvirtd_up = false;
        self
    }

    fn remembering(self, name: &str) -> Node {
        self.files().write(StateKey::Domain, name).unwrap();
        self
    }

    fn without_config(self) -> Node {
        std::fs::remove_file(&self.config).unwrap();
        self
    }

    fn with_config_naming(self, name: &str) -> Node {
        std::fs::write(&self.config, domain_xml(name)).unwrap();
        self
    }

    fn files(&self) -> StateFiles {
        StateFiles::new(&self.rsctmp, INSTANCE)
    }

    fn remembered(&self) -> Option<String> {
        self.files().read(StateKey::Domain)
    }

    fn host(&self) -> Host {
        let hv = self.hv.clone();
        let up = self.libvirtd_up;
        Host::with(move |_| {
            if up {
                Ok(Box::new(hv.clone()) as Connection)
            } else {
                Err(HvError::new(HvErrorKind::Unreachable, "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file"))
            }
        })
        .with_processes(self.processes.clone())
        .with_services(self.services.clone())
        .with_clock(self.clock)
    }

    /// Runs `action` with the config parameter pointing at the config file.
    fn call(&self, action: Action, interval: Option<&str>) -> Answer {
        let config = self.config.to_string_lossy().into_owned();
        self.call_with(action, interval, &[("config", &config)])
    }

    /// Runs `action` with exactly these parameters.
    fn call_with(&self, action: Action, interval: Option<&str>, params: &[(&str, &str)]) -> Answer {
        let raw: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut meta: BTreeMap<&str, String> = BTreeMap::new();
        meta.insert("OCF_RESOURCE_INSTANCE", INSTANCE.into());
        meta.insert("HA_RSCTMP", self.rsctmp.to_string_lossy().into_owned());
        meta.insert("OCF_RESKEY_CRM_meta_timeout", TIMEOUT.as_millis().to_string());
        if let Some(ms) = interval {
            meta.insert("OCF_RESKEY_CRM_meta_interval", ms.into());
        }
        if action == Action::MigrateFrom {
            meta.insert("OCF_RESKEY_CRM_meta_migrate_source", "node1".into());
        }
        let env = OcfEnv::from_lookup_on(self.clock, &|name| meta.get(name).cloned());
        let started = self.clock.now();
        let result = run_action(action, &env, &|name| raw.get(name).cloned(), &self.host());
        let took = self.clock.since(started);
        match result {
            Ok(status) => Answer { status, reason: String::new(), took },
            Err(e) => Answer { status: e.status, reason: e.reason, took },
        }
    }

    fn runs(&self, name: &str) -> bool {
        self.hv.domain(name).is_some_and(|d| d.state.is_active())
    }

    fn created(&self) -> bool {
        self.hv.calls().iter().any(|c| matches!(c, Call::Create(_) | Call::Define(_) | Call::Start(_) | Call::Restore(_)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Probe and recurring monitor, both.
fn monitors(node: &Node) -> [(Option<&'static str>, Answer); 2] {
    [(PROBE, node.call(Action::Monitor, PROBE)), (RECURRING, node.call(Action::Monitor, RECURRING))]
}

// Config gone: the guest here, elsewhere, nowhere.

#[test]
fn config_gone_and_the_remembered_guest_runs_here_monitor_answers_failed_never_not_running() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).without_config();
    for (interval, answer) in monitors(&node) {
        assert_eq!(answer.status, OcfStatus::ErrGeneric, "{interval:?}: {}", answer.reason);
        assert!(answer.reason.contains(&format!("{NAME} runs here but its config")), "{}", answer.reason);
        assert!(answer.reason.contains("is missing"), "{}", answer.reason);
    }
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(!node.runs(NAME));
    assert_eq!(node.remembered(), None, "forgotten once stopped");
}

#[test]
fn config_gone_and_memory_gone_the_guest_is_found_here_by_its_owner_tag_and_remembered() {
    let node = Node::new().running(NAME, Some(INSTANCE)).without_config();
    let probe = node.call(Action::Monitor, PROBE);
    assert_eq!(probe.status, OcfStatus::ErrGeneric, "{}", probe.reason);
    assert!(probe.reason.contains(&format!("{NAME} runs here")), "{}", probe.reason);
    assert_eq!(node.remembered().as_deref(), Some(NAME), "the stop that follows needs no tag look-up");
    let stop = node.call(Action::Stop, None);
    assert_eq!((stop.status, node.runs(NAME)), (OcfStatus::Success, false), "{}", stop.reason);
}

#[test]
fn config_gone_and_memory_gone_stop_still_stops_the_guest_carrying_our_tag() {
    let node = Node::new().running(NAME, Some(INSTANCE)).without_config();
    let stop = node.call(Action::Stop, None);
    assert_eq!((stop.status, node.runs(NAME)), (OcfStatus::Success, false), "{}", stop.reason);
}

#[test]
fn config_gone_and_the_guest_runs_elsewhere_probe_answers_not_running_and_stop_touches_nothing() {
    // Defined here (it ran here once), remembered, active on the other node.
    let node = Node::new().defined_only(NAME).remembering(NAME).without_config();
    let [(_, probe), (_, recurring)] = monitors(&node);
    assert_eq!(probe.status, OcfStatus::NotRunning, "{}", probe.reason);
    assert_eq!(recurring.status, OcfStatus::ErrGeneric, "a recurring monitor without a config is a soft error: {}", recurring.reason);
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(!node.hv.calls().iter().any(|c| matches!(c, Call::Destroy(_) | Call::Shutdown(..))), "{:?}", node.hv.calls());
    assert!(node.processes.signals().is_empty());
}

#[test]
fn config_gone_and_no_guest_known_anywhere_probe_answers_not_running_and_stop_succeeds() {
    let node = Node::new().without_config();
    assert_eq!(node.call(Action::Monitor, PROBE).status, OcfStatus::NotRunning);
    let start = node.call(Action::Start, None);
    assert_eq!(start.status, OcfStatus::ErrInstalled, "{}", start.reason);
    assert!(!node.created());
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
}

#[test]
fn a_guest_arriving_without_its_config_fails_the_migration_and_the_next_stop_stops_it() {
    let node = Node::new().running(NAME, Some(INSTANCE)).without_config();
    let arrived = node.call(Action::MigrateFrom, None);
    assert_eq!(arrived.status, OcfStatus::ErrGeneric, "{}", arrived.reason);
    assert!(arrived.reason.contains("arrived from node1") && arrived.reason.contains("must be stopped here"), "{}", arrived.reason);
    assert_eq!(node.remembered().as_deref(), Some(NAME));
    let stop = node.call(Action::Stop, None);
    assert_eq!((stop.status, node.runs(NAME)), (OcfStatus::Success, false), "{}", stop.reason);
}

// libvirtd gone, the emulator alive.

#[test]
fn libvirtd_gone_and_the_emulator_alive_monitor_never_answers_not_running() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).libvirtd_down();
    for (interval, answer) in monitors(&node) {
        assert_eq!(answer.status, OcfStatus::Success, "{interval:?}: {}", answer.reason);
    }
    assert!(node.processes.signals().is_empty(), "a monitor signals nothing");
}

#[test]
fn libvirtd_gone_and_config_gone_the_remembered_emulator_still_counts_as_running_here() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).libvirtd_down().without_config();
    for (interval, answer) in monitors(&node) {
        assert_eq!(answer.status, OcfStatus::ErrGeneric, "{interval:?}: {}", answer.reason);
        assert!(answer.reason.contains(&format!("{NAME} runs here")), "{}", answer.reason);
    }
}

#[test]
fn libvirtd_gone_stop_terminates_the_emulator_itself() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).libvirtd_down();
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert_eq!(node.processes.signals(), [(PID, Signal::Term)]);
    assert!(!node.processes.runs(PID));
    assert_eq!(node.remembered(), None);
}

#[test]
fn libvirtd_gone_an_emulator_ignoring_sigterm_is_killed_within_the_timeout() {
    let mut node = Node::new().remembering(NAME).libvirtd_down();
    node.processes = FakeProcesses::new().with_stubborn_emulator(PID, NAME);
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert_eq!(node.processes.signals(), [(PID, Signal::Term), (PID, Signal::Kill)]);
    assert!(stop.took < TIMEOUT, "took {:?}", stop.took);
}

#[test]
fn libvirtd_gone_and_no_emulator_monitor_answers_not_running_and_stop_succeeds() {
    let node = Node::new().remembering(NAME).libvirtd_down();
    assert_eq!(node.call(Action::Monitor, PROBE).status, OcfStatus::NotRunning);
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(node.processes.signals().is_empty());
}

#[test]
fn libvirtd_gone_start_creates_nothing_and_never_answers_not_running() {
    let node = Node::new().running(NAME, Some(INSTANCE)).libvirtd_down();
    let start = node.call(Action::Start, None);
    assert_eq!(start.status, OcfStatus::ErrGeneric, "{}", start.reason);
    assert!(!node.created());
    assert!(node.processes.runs(PID));
}

// A replaced config: it names another domain than the one this resource runs.

#[test]
fn a_replaced_config_while_the_remembered_guest_runs_is_reported_with_both_names_and_starts_nothing() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).with_config_naming(NEW_NAME);
    for (interval, answer) in monitors(&node) {
        assert_eq!(answer.status, OcfStatus::ErrGeneric, "{interval:?}: {}", answer.reason);
        assert!(answer.reason.contains(&format!("now names {NEW_NAME}, but this resource runs {NAME} here")), "{}", answer.reason);
    }
    let start = node.call(Action::Start, None);
    assert_eq!(start.status, OcfStatus::ErrGeneric, "{}", start.reason);
    assert!(!node.created(), "{:?}", node.hv.calls());
}

#[test]
fn a_replaced_config_with_the_memory_gone_finds_the_old_guest_by_its_tag() {
    let node = Node::new().running(NAME, Some(INSTANCE)).with_config_naming(NEW_NAME);
    let probe = node.call(Action::Monitor, PROBE);
    assert_eq!(probe.status, OcfStatus::ErrGeneric, "{}", probe.reason);
    assert!(probe.reason.contains(&format!("{NAME}, which carries the owner tag of {INSTANCE}")), "{}", probe.reason);
    assert_eq!(node.remembered().as_deref(), Some(NAME), "remembered for the stop");
    let start = node.call(Action::Start, None);
    assert_eq!(start.status, OcfStatus::ErrGeneric);
    assert!(!node.created());
}

#[test]
fn a_replaced_config_stop_stops_the_old_guest_and_the_new_one() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).with_config_naming(NEW_NAME);
    node.hv.clone().with_domain(NEW_NAME, running(), false);
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(!node.runs(NAME) && !node.runs(NEW_NAME));
}

#[test]
fn a_replaced_config_with_libvirtd_gone_finds_the_old_emulator_and_stop_terminates_it() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).with_config_naming(NEW_NAME).libvirtd_down();
    let probe = node.call(Action::Monitor, PROBE);
    assert_eq!(probe.status, OcfStatus::ErrGeneric, "{}", probe.reason);
    assert!(probe.reason.contains(&format!("this resource runs {NAME} here")), "{}", probe.reason);
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert_eq!(node.processes.signals(), [(PID, Signal::Term)]);
}

#[test]
fn a_replaced_config_whose_old_guest_no_longer_runs_forgets_it_and_follows_the_new_name() {
    let node = Node::new().remembering(NAME).with_config_naming(NEW_NAME);
    assert_eq!(node.call(Action::Monitor, PROBE).status, OcfStatus::NotRunning);
    assert_eq!(node.remembered(), None);
    let start = node.call(Action::Start, None);
    assert_eq!(start.status, OcfStatus::Success, "{}", start.reason);
    assert!(node.runs(NEW_NAME));
    assert!(node.services.calls().contains(&ServiceCall::OrderGuestsBeforeLibvirt), "a host shutdown must wait for Pacemaker");
}

// A second resource on the same domain: the guest carries another resource's tag.

#[test]
fn start_of_a_guest_running_under_another_resources_tag_is_a_configuration_error() {
    let node = Node::new().running(NAME, Some(OTHER));
    let start = node.call(Action::Start, None);
    assert_eq!(start.status, OcfStatus::ErrConfigured, "{}", start.reason);
    assert!(start.reason.contains(&format!("already runs here under resource {OTHER}")), "{}", start.reason);
    assert!(!node.created());
    assert_eq!(node.hv.domain(NAME).unwrap().owner.as_deref(), Some(OTHER), "the other resource's tag is kept");
}

#[test]
fn a_probe_of_a_guest_under_another_resources_tag_still_says_running() {
    let node = Node::new().running(NAME, Some(OTHER));
    for (interval, answer) in monitors(&node) {
        assert_eq!(answer.status, OcfStatus::Success, "{interval:?}: {}", answer.reason);
    }
    assert_eq!(node.hv.domain(NAME).unwrap().owner.as_deref(), Some(OTHER), "a monitor does not take it over");
}

#[test]
fn without_config_or_memory_stop_leaves_another_resources_guest_alone() {
    let node = Node::new().running(NAME, Some(OTHER)).without_config();
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(node.runs(NAME));
    assert!(node.processes.signals().is_empty());
}

// The stop that must always succeed.

#[test]
fn stop_with_parameters_that_do_not_parse_still_stops_the_guest() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME);
    let config = node.config.to_string_lossy().into_owned();
    let stop = node.call_with(Action::Stop, None, &[("config", &config), ("force_stop", "maybe"), ("shutdown_mode", "bogus")]);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(!node.runs(NAME));
}

#[test]
fn stop_with_the_config_parameter_unset_stops_the_remembered_guest() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME);
    let stop = node.call_with(Action::Stop, None, &[]);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(!node.runs(NAME));
}

#[test]
fn stop_with_the_config_parameter_unset_and_nothing_known_succeeds() {
    let node = Node::new();
    let stop = node.call_with(Action::Stop, None, &[]);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
}

#[test]
fn stop_with_everything_broken_at_once_still_terminates_the_remembered_emulator() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME).without_config().libvirtd_down();
    let config = node.config.to_string_lossy().into_owned();
    let stop = node.call_with(Action::Stop, None, &[("config", &config), ("migrateport", "port")]);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert_eq!(node.processes.signals(), [(PID, Signal::Term)]);
    assert!(stop.took < TIMEOUT);
}

#[test]
fn stop_of_a_guest_that_ignores_shutdown_destroys_it_within_the_timeout() {
    let mut node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME);
    node.hv = node.hv.clone().ignoring_shutdown();
    let stop = node.call(Action::Stop, None);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(node.hv.calls().contains(&Call::Destroy(NAME.into())));
    assert!(stop.took < TIMEOUT && stop.took >= Duration::from_secs(5), "graceful first, then destroy: {:?}", stop.took);
}

#[test]
fn stop_with_sync_config_on_stop_pushes_the_config_once_the_guest_is_stopped() {
    let node = Node::new().running(NAME, Some(INSTANCE)).remembering(NAME);
    let config = node.config.to_string_lossy().into_owned();
    let stop = node.call_with(Action::Stop, None, &[("config", &config), ("sync_config_on_stop", "true")]);
    assert_eq!(stop.status, OcfStatus::Success, "{}", stop.reason);
    assert!(!node.runs(NAME));
    assert_eq!(node.services.calls(), [ServiceCall::PushConfig(config)]);
}
