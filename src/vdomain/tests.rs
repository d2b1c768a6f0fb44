//! In-process tests of the action logic against the fake hypervisor: every
//! rule that does not need a real guest is checked here in milliseconds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::hypervisor::fake::{running, FakeHypervisor};
use crate::hypervisor::domain_xml::DomainConfig;
use crate::hypervisor::{DomainState, HvError, HvErrorKind, Hypervisor, StateKind};
use crate::ocf::{Action, OcfEnv, OcfStatus, Params};

use super::{migrate_from, monitor, start, stop, Vm};

const NAME: &str = "vgunit";

struct Case {
    env: OcfEnv,
    params: Params,
    dir: PathBuf,
    config_path: PathBuf,
    xml: String,
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn case(params: &[(&str, &str)], meta: &[(&str, &str)]) -> Case {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("vg-unit-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("vm.xml");
    let xml = format!("<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>64</memory><vcpu>2</vcpu></domain>");
    std::fs::write(&config_path, &xml).unwrap();
    let mut map: HashMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    map.insert("config".into(), config_path.to_string_lossy().into_owned());
    let params = Params::from_lookup(|n| map.get(n).cloned()).unwrap();
    let mut meta: HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    meta.insert("HA_RSCTMP".into(), dir.join("rsc").to_string_lossy().into_owned());
    meta.entry("OCF_RESKEY_CRM_meta_timeout".into()).or_insert_with(|| "5000".into());
    let env = OcfEnv::from_lookup(&|n| meta.get(n).cloned());
    Case { env, params, dir, config_path, xml }
}

fn vm_with<'a>(case: &'a Case, action: Action, hv: Result<&'a dyn Hypervisor, HvError>) -> Vm<'a> {
    Vm {
        action,
        params: &case.params,
        env: &case.env,
        deadline: case.env.deadline(action),
        config_path: case.config_path.clone(),
        config_xml: case.xml.clone(),
        domain: DomainConfig::parse(&case.xml).unwrap(),
        hv,
    }
}

fn vm<'a>(case: &'a Case, action: Action, hv: &'a FakeHypervisor) -> Vm<'a> {
    vm_with(case, action, Ok(hv))
}

fn unreachable_vm(case: &Case, action: Action) -> Vm<'_> {
    let error = HvError::new(HvErrorKind::Unreachable, "Failed to connect socket to '/run/libvirt/libvirt-sock'");
    vm_with(case, action, Err(error))
}

fn paused(reason: u32) -> DomainState {
    DomainState::new(StateKind::Paused, reason)
}

#[test]
fn start_creates_a_transient_domain_and_waits_for_it() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new();
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    assert!(hv.calls().contains(&format!("create {NAME}")));
    assert!(!hv.domain(NAME).unwrap().persistent);
    assert_eq!(std::fs::read_to_string(c.dir.join("rsc").join("virtguard-VirtualDomain.domain")).unwrap().trim(), NAME);
}

#[test]
fn start_of_a_running_domain_is_success_without_side_effects() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().with_domain(NAME, paused(1), false);
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    assert!(!hv.calls().iter().any(|c| c.starts_with("create")));
}

#[test]
fn start_removes_a_stale_definition_and_keeps_the_config_file() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().with_domain(NAME, DomainState::new(StateKind::Shutoff, 1), true);
    // libvirt deletes its own XML on undefine; here that XML is our config.
    std::fs::remove_file(&c.config_path).unwrap();
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    let calls = hv.calls();
    let undefine = calls.iter().position(|c| c == &format!("undefine {NAME}")).unwrap();
    let create = calls.iter().position(|c| c == &format!("create {NAME}")).unwrap();
    assert!(undefine < create);
    assert_eq!(std::fs::read_to_string(&c.config_path).unwrap(), c.xml);
}

#[test]
fn start_failure_carries_libvirts_message() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().failing("create", HvError::other("internal error: qemu unexpectedly closed the monitor"));
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert_eq!(err.status, OcfStatus::ErrGeneric);
    assert!(err.reason.contains("qemu unexpectedly closed the monitor"), "{}", err.reason);
}

#[test]
fn start_fails_at_once_when_the_guest_pauses_on_an_io_error() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().booting_into(paused(5));
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert!(err.reason.contains("I/O error"), "{}", err.reason);
}

#[test]
fn start_never_waits_past_its_deadline() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_timeout", "2000")]);
    let hv = FakeHypervisor::new().booting_into(DomainState::new(StateKind::NoState, 0));
    let began = Instant::now();
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert!(began.elapsed() < Duration::from_secs(2), "{:?}", began.elapsed());
    assert!(err.reason.contains("did not become healthy"), "{}", err.reason);
}

#[test]
fn start_refuses_a_domain_that_is_active_but_failed() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().with_domain(NAME, paused(5), false);
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert!(err.reason.contains("I/O error"));
    assert!(!hv.calls().iter().any(|c| c.starts_with("create") || c.starts_with("destroy")));
}

#[test]
fn start_restores_a_snapshot_and_removes_it() {
    let mut c = case(&[], &[]);
    let snapdir = c.dir.join("snap");
    std::fs::create_dir_all(&snapdir).unwrap();
    c.params.snapshot = Some(snapdir.to_string_lossy().into());
    let hv = FakeHypervisor::new();
    hv.create_transient(&c.xml).unwrap();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    let file = snapdir.join(format!("{NAME}.state"));
    assert!(file.exists());
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    assert!(!file.exists());
    assert!(hv.calls().contains(&format!("restore {}", file.display())));
    assert_eq!(hv.calls().iter().filter(|c| c.starts_with("create")).count(), 1, "restored, not booted afresh");
}

#[test]
fn stop_of_an_absent_domain_is_success() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert!(!hv.calls().iter().any(|c| c.starts_with("shutdown") || c.starts_with("destroy")));
}

#[test]
fn stop_honours_shutdown_mode() {
    let c = case(&[("shutdown_mode", "agent,acpi")], &[]);
    let hv = FakeHypervisor::new();
    hv.create_transient(&c.xml).unwrap();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert!(hv.calls().contains(&format!("shutdown {NAME} modes=3")), "{:?}", hv.calls());
    assert!(!hv.calls().iter().any(|c| c.starts_with("destroy")));
}

#[test]
fn stop_destroys_a_guest_that_ignores_shutdown_before_the_timeout() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_timeout", "4000")]);
    let hv = FakeHypervisor::new().ignoring_shutdown();
    hv.create_transient(&c.xml).unwrap();
    let began = Instant::now();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    let took = began.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(took >= Duration::from_millis(900), "graceful budget was skipped: {took:?}");
    assert!(hv.calls().contains(&format!("destroy {NAME}")));
    assert!(hv.domain(NAME).is_none());
}

#[test]
fn force_stop_destroys_at_once() {
    let c = case(&[("force_stop", "true")], &[]);
    let hv = FakeHypervisor::new();
    hv.create_transient(&c.xml).unwrap();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert!(!hv.calls().iter().any(|c| c.starts_with("shutdown")));
    assert!(hv.calls().contains(&format!("destroy {NAME}")));
}

#[test]
fn stop_saves_a_changed_definition_when_asked() {
    let c = case(&[("save_config_on_stop", "true")], &[]);
    let hv = FakeHypervisor::new();
    hv.create_transient(&c.xml).unwrap();
    let changed = format!("<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>128</memory></domain>");
    hv.set_inactive_xml(NAME, &changed);
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert_eq!(std::fs::read_to_string(&c.config_path).unwrap(), changed);
}

#[test]
fn stop_without_libvirt_and_without_process_is_success() {
    let c = case(&[], &[]);
    assert_eq!(stop::stop(&unreachable_vm(&c, Action::Stop)), Ok(OcfStatus::Success));
}

#[test]
fn monitor_follows_the_state_table() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_interval", "10000")]);
    let probe = case(&[], &[]);
    let check = |c: &Case, state: Option<DomainState>| {
        let hv = match state {
            Some(s) => FakeHypervisor::new().with_domain(NAME, s, true),
            None => FakeHypervisor::new(),
        };
        monitor::monitor(&vm(c, Action::Monitor, &hv)).map_err(|e| (e.status, e.reason))
    };
    assert_eq!(check(&c, Some(running())), Ok(OcfStatus::Success));
    assert_eq!(check(&c, Some(paused(1))), Ok(OcfStatus::Success), "operator pause is running");
    assert_eq!(check(&c, Some(paused(2))), Ok(OcfStatus::Success), "migration pause is running");
    assert_eq!(check(&c, None).unwrap_err().0, OcfStatus::NotRunning);
    let io = check(&c, Some(paused(5))).unwrap_err();
    assert_eq!(io, (OcfStatus::ErrGeneric, format!("{NAME}: domain paused (I/O error)")));
    assert_eq!(check(&probe, Some(paused(5))).unwrap_err().0, OcfStatus::ErrGeneric, "an active failed domain must be stopped");
    let crashed_off = Some(DomainState::new(StateKind::Shutoff, 3));
    assert_eq!(check(&c, crashed_off).unwrap_err().0, OcfStatus::ErrGeneric);
    assert_eq!(check(&probe, crashed_off).unwrap_err().0, OcfStatus::NotRunning);
    assert_eq!(check(&c, Some(DomainState::new(StateKind::Crashed, 1))).unwrap_err().0, OcfStatus::ErrGeneric);
}

#[test]
fn monitor_retries_no_state_and_then_reports_it() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_interval", "10000"), ("OCF_RESKEY_CRM_meta_timeout", "1000")]);
    let hv = FakeHypervisor::new().with_domain(NAME, DomainState::new(StateKind::NoState, 0), false);
    let err = monitor::monitor(&vm(&c, Action::Monitor, &hv)).unwrap_err();
    assert!(err.reason.contains("no state"), "{}", err.reason);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    hv.script_states([Ok(Some(DomainState::new(StateKind::NoState, 0)))]);
    assert_eq!(monitor::monitor(&vm(&c, Action::Monitor, &hv)), Ok(OcfStatus::Success));
}

#[test]
fn monitor_without_libvirt_looks_for_the_process() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_interval", "10000")]);
    let err = monitor::monitor(&unreachable_vm(&c, Action::Monitor)).unwrap_err();
    assert_eq!(err.status, OcfStatus::NotRunning);
    assert!(err.reason.contains("did not answer"), "{}", err.reason);
}

#[test]
fn monitor_scripts_decide_after_the_state() {
    let c = case(&[("monitor_scripts", "/bin/true /bin/false")], &[("OCF_RESKEY_CRM_meta_interval", "10000")]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    let err = monitor::monitor(&vm(&c, Action::Monitor, &hv)).unwrap_err();
    assert_eq!(err.status, OcfStatus::ErrGeneric);
    assert!(err.reason.contains("/bin/false"), "{}", err.reason);
}

#[test]
fn migrate_from_waits_for_the_domain_to_arrive_within_its_deadline() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_migrate_source", "node1")]);
    let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
    hv.script_states([Ok(None), Ok(None), Ok(Some(paused(2)))]);
    assert_eq!(migrate_from::migrate_from(&vm(&c, Action::MigrateFrom, &hv)), Ok(OcfStatus::Success));

    let c = case(&[], &[("OCF_RESKEY_CRM_meta_timeout", "1500")]);
    let hv = FakeHypervisor::new();
    let began = Instant::now();
    let err = migrate_from::migrate_from(&vm(&c, Action::MigrateFrom, &hv)).unwrap_err();
    assert!(began.elapsed() < Duration::from_millis(1500));
    assert!(err.reason.contains("did not become healthy"), "{}", err.reason);
}

#[test]
fn stop_destroys_a_paused_guest_that_libvirt_will_not_shut_down() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_timeout", "20000")]);
    let hv = FakeHypervisor::new()
        .with_domain(NAME, paused(5), false);
    let began = Instant::now();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert!(began.elapsed() < Duration::from_secs(2), "no graceful budget for a paused guest: {:?}", began.elapsed());
    assert!(hv.calls().contains(&format!("destroy {NAME}")));
    assert!(hv.domain(NAME).is_none());
}

mod ownership;
