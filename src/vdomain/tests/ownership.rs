//! Issue 14: the guest of this resource is never reported stopped while it
//! runs, whatever happened to the config file or the memory under HA_RSCTMP.

use super::*;
use crate::hypervisor::fake::{Call, Op};
use crate::hypervisor::owner_tag;
use crate::ocf::OcfError;
use crate::vdomain::missing_config;
use crate::vdomain::ownership;
use crate::vdomain::state_files::{StateFiles, StateKey};

const INSTANCE: &str = "cfgr";
const OTHER: &str = "vgunit-other";

fn owned_case(meta: &[(&str, &str)]) -> Case {
    let mut meta = meta.to_vec();
    meta.push(("OCF_RESOURCE_INSTANCE", INSTANCE));
    case(&[], &meta)
}

fn files(c: &Case) -> StateFiles {
    StateFiles::new(&c.env.state_dir, &c.env.instance)
}

fn remembered(c: &Case) -> Option<String> {
    files(c).read(StateKey::Domain)
}

fn recurring() -> (&'static str, &'static str) {
    ("OCF_RESKEY_CRM_meta_interval", "10000")
}

/// What dispatch hands over when the config cannot be read.
fn config_gone(c: &Case) -> OcfError {
    std::fs::remove_file(&c.config_path).unwrap();
    OcfError::installed(format!("config file {} is not readable: No such file or directory", c.config_path.display()))
}

/// The call as it runs when the config is gone: only the remembered name is known.
fn named_vm<'a>(c: &'a Case, action: Action, hv: &'a FakeHypervisor, name: &str) -> Vm<'a> {
    vm(c, action, hv).for_domain(name)
}

#[test]
fn start_tags_the_created_domain_and_remembers_it_first() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new();
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    assert_eq!(hv.domain(NAME).unwrap().owner.as_deref(), Some(INSTANCE), "the tag is in the XML the domain was created from");
    assert_eq!(owner_tag::owner_in_domain_xml(&hv.domain(NAME).unwrap().xml).as_deref(), Some(INSTANCE));
    assert_eq!(remembered(&c).as_deref(), Some(NAME));
    assert_eq!(std::fs::read_to_string(&c.config_path).unwrap(), c.xml, "the config file itself is not touched");
}

#[test]
fn start_that_fails_after_create_keeps_the_memory() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new().booting_into(paused(5));
    assert!(start::start(&vm(&c, Action::Start, &hv)).is_err());
    assert!(hv.domain(NAME).is_some(), "the domain was created");
    assert_eq!(remembered(&c).as_deref(), Some(NAME));
}

#[test]
fn start_refuses_to_run_a_guest_it_cannot_remember() {
    let mut c = owned_case(&[]);
    // HA_RSCTMP below a regular file: every write fails, as on a full /run.
    c.env.state_dir = c.config_path.join("rsc");
    let hv = FakeHypervisor::new();
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert_eq!(err.status, OcfStatus::ErrGeneric);
    assert!(err.reason.contains("cannot remember vgunit"), "{}", err.reason);
    assert!(!hv.calls().iter().any(|c| matches!(c, Call::Create(_) | Call::Define(_))), "{:?}", hv.calls());
}

#[test]
fn start_refuses_a_guest_running_under_another_resource() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    hv.set_owner(NAME, OTHER).unwrap();
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert_eq!(err.status, OcfStatus::ErrConfigured, "fatal: a soft error would start it on another node");
    assert_eq!(err.reason, format!("{NAME} already runs here under resource {OTHER}; resource {INSTANCE} cannot manage it too"));
    assert_eq!(hv.domain(NAME).unwrap().owner.as_deref(), Some(OTHER), "the other resource's tag is kept");
    assert_eq!(remembered(&c), None);
}

#[test]
fn start_of_an_untagged_running_guest_adopts_it() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    assert_eq!(hv.domain(NAME).unwrap().owner.as_deref(), Some(INSTANCE));
    assert_eq!(remembered(&c).as_deref(), Some(NAME));
}

#[test]
fn the_first_monitor_tags_and_remembers_a_guest_started_by_the_classic_agent_then_stays_cheap() {
    let c = owned_case(&[recurring()]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    assert_eq!(monitor::monitor(&vm(&c, Action::Monitor, &hv)), Ok(OcfStatus::Success));
    assert_eq!(hv.domain(NAME).unwrap().owner.as_deref(), Some(INSTANCE));
    assert_eq!(remembered(&c).as_deref(), Some(NAME));
    let calls_before = hv.calls().len();
    assert_eq!(monitor::monitor(&vm(&c, Action::Monitor, &hv)), Ok(OcfStatus::Success));
    let steady: Vec<Call> = hv.calls()[calls_before..].to_vec();
    assert_eq!(steady, vec![Call::State(NAME.to_owned())], "the steady-state monitor asks libvirt one thing");
}

#[test]
fn monitor_keeps_another_resources_tag_and_still_says_running() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    hv.set_owner(NAME, OTHER).unwrap();
    // A probe that said "not running" here would let Pacemaker start it elsewhere.
    assert_eq!(monitor::monitor(&vm(&c, Action::Monitor, &hv)), Ok(OcfStatus::Success));
    assert_eq!(hv.domain(NAME).unwrap().owner.as_deref(), Some(OTHER));
    // A renamed resource: the old name's tag stays, but this node remembers
    // the guest under the new name, so a missing config cannot hide it.
    assert_eq!(remembered(&c).as_deref(), Some(NAME));
}

#[test]
fn migrate_to_puts_this_resources_tag_on_the_guest() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    hv.set_owner(NAME, OTHER).unwrap();
    ownership::ensure_tagged(&vm(&c, Action::MigrateTo, &hv), &hv, true).unwrap();
    assert_eq!(hv.domain(NAME).unwrap().owner.as_deref(), Some(INSTANCE));
}

#[test]
fn probe_and_monitor_of_a_running_guest_whose_config_is_gone_fail_naming_both_facts() {
    for meta in [vec![], vec![recurring()]] {
        let c = owned_case(&meta);
        let hv = FakeHypervisor::new();
        assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
        let unreadable = config_gone(&c);
        let probe = c.env.is_probe(Action::Monitor);
        let err = missing_config::monitor(&named_vm(&c, Action::Monitor, &hv, NAME), probe, unreadable).unwrap_err();
        assert_eq!(err.status, OcfStatus::ErrGeneric, "probe={probe}");
        assert_eq!(err.reason, format!("{NAME} runs here but its config {} is missing", c.config_path.display()));
    }
}

#[test]
fn a_paused_or_failed_guest_without_config_is_not_stopped_either() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new().with_domain(NAME, paused(5), false);
    let unreadable = config_gone(&c);
    let err = missing_config::monitor(&named_vm(&c, Action::Monitor, &hv, NAME), true, unreadable).unwrap_err();
    assert_eq!(err.status, OcfStatus::ErrGeneric);
}

#[test]
fn without_config_a_guest_that_no_longer_runs_follows_the_invalid_environment_rules() {
    let probe = owned_case(&[]);
    let hv = FakeHypervisor::new();
    let unreadable = config_gone(&probe);
    let err = missing_config::monitor(&named_vm(&probe, Action::Monitor, &hv, NAME), true, unreadable).unwrap_err();
    assert_eq!(err.status, OcfStatus::NotRunning, "{}", err.reason);
    let c = owned_case(&[recurring()]);
    let unreadable = config_gone(&c);
    let err = missing_config::monitor(&named_vm(&c, Action::Monitor, &hv, NAME), false, unreadable).unwrap_err();
    assert_eq!(err.status, OcfStatus::ErrGeneric);
    assert!(err.reason.contains("is not readable"), "{}", err.reason);
}

#[test]
fn the_guest_of_a_resource_is_found_by_its_tag_alone() {
    let hv = FakeHypervisor::new()
        .with_domain("untagged", running(), false)
        .with_domain("theirs", running(), false)
        .with_domain("ours", running(), false)
        .with_domain("ours-stopped", DomainState::new(StateKind::Shutoff, 1), true);
    hv.set_owner("theirs", OTHER).unwrap();
    hv.set_owner("ours", INSTANCE).unwrap();
    assert_eq!(ownership::tagged_here(&hv, INSTANCE).as_deref(), Some("ours"));
    assert_eq!(ownership::tagged_here(&hv, "nobody"), None);
    let broken = FakeHypervisor::new().failing(Op::ActiveDomains, HvError::other("cannot list"));
    assert_eq!(ownership::tagged_here(&broken, INSTANCE), None);
}

#[test]
fn migrate_from_without_config_remembers_the_arrived_guest_and_fails() {
    let c = owned_case(&[("OCF_RESKEY_CRM_meta_migrate_source", "node1")]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    let _ = config_gone(&c);
    let err = missing_config::arrived(&named_vm(&c, Action::MigrateFrom, &hv, NAME));
    assert_eq!(err.status, OcfStatus::ErrGeneric);
    assert!(err.reason.starts_with(&format!("{NAME} arrived from node1 but its config")), "{}", err.reason);
    assert_eq!(remembered(&c).as_deref(), Some(NAME), "the stop that follows finds it by this name");
}

#[test]
fn migrate_from_remembers_before_it_waits() {
    let c = owned_case(&[("OCF_RESKEY_CRM_meta_timeout", "1500")]);
    let hv = FakeHypervisor::new();
    assert!(migrate_from::migrate_from(&vm(&c, Action::MigrateFrom, &hv)).is_err());
    assert_eq!(remembered(&c).as_deref(), Some(NAME), "a guest arriving after the timeout must still be found by stop");
}

#[test]
fn a_replaced_config_is_reported_while_the_old_guest_runs() {
    let c = owned_case(&[recurring()]);
    let hv = FakeHypervisor::new().with_domain("vgold", running(), false);
    files(&c).write(StateKey::Domain, "vgold").unwrap();
    let err = monitor::monitor(&vm(&c, Action::Monitor, &hv)).unwrap_err();
    assert_eq!(err.status, OcfStatus::ErrGeneric);
    assert_eq!(
        err.reason,
        format!("config {} now names {NAME}, but this resource runs vgold here; stop vgold first", c.config_path.display())
    );
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert!(err.reason.contains("runs vgold here"), "{}", err.reason);
    assert!(!hv.calls().iter().any(|c| matches!(c, Call::Create(_))));
    assert_eq!(remembered(&c).as_deref(), Some("vgold"), "never silently forgotten");

    // Once the old guest is gone, the memory follows the new config.
    hv.destroy("vgold").unwrap();
    assert_eq!(monitor::monitor(&vm(&c, Action::Monitor, &hv)).unwrap_err().status, OcfStatus::NotRunning);
    assert_eq!(remembered(&c), None);
}

#[test]
fn stop_forgets_only_what_it_stopped() {
    let c = owned_case(&[]);
    let hv = FakeHypervisor::new();
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    assert!(files(&c).read(StateKey::OwnerTagged).is_some());
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert_eq!(remembered(&c), None);
    assert_eq!(files(&c).read(StateKey::OwnerTagged), None, "a guest started again must be checked again");
}

#[test]
fn stopping_a_remembered_old_domain_never_writes_it_over_the_new_config() {
    let c = case(&[("save_config_on_stop", "true")], &[("OCF_RESOURCE_INSTANCE", INSTANCE)]);
    let hv = FakeHypervisor::new().with_domain("vgold", running(), false);
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv).for_domain("vgold")), Ok(OcfStatus::Success));
    assert!(hv.domain("vgold").is_none());
    assert_eq!(std::fs::read_to_string(&c.config_path).unwrap(), c.xml);
}
