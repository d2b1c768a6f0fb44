//! In-process tests of the action logic against the fake hypervisor: every
//! rule that does not need a real guest is checked here in milliseconds, on
//! a manual clock, so that how long an action took is exact.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::deadline::{Clock, Deadline};
use crate::hypervisor::domain_xml::DomainConfig;
use crate::hypervisor::fake::{running, Call, FakeHypervisor, Op};
use crate::hypervisor::{DomainState, HvError, HvErrorKind, Hypervisor, ShutdownModes, StateKind};
use crate::ocf::{Action, OcfEnv, OcfResult, OcfStatus};
use crate::vdomain::Params;

use crate::host::Host;

use super::vm::{Identity, Vm};
use super::{migrate_from, monitor, start, stop};

pub(super) const NAME: &str = "vgunit";

pub(super) struct Case {
    /// The node around the call: an empty process table unless a test
    /// puts an emulator there.
    pub(super) host: Host,
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

pub(super) fn case(params: &[(&str, &str)], meta: &[(&str, &str)]) -> Case {
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
    let host = Host::with(|_| Err(HvError::other("the tests hand the hypervisor to the call")));
    Case { host, env, params, dir, config_path, xml }
}

pub(super) fn vm_with<'a>(case: &'a Case, action: Action, hv: Result<&'a dyn Hypervisor, HvError>) -> Vm<'a> {
    let deadline = Deadline::after_on(Clock::manual(), case.env.deadline(action).total());
    Vm {
        action,
        params: &case.params,
        env: &case.env,
        deadline,
        operation: deadline,
        config_path: case.config_path.clone(),
        identity: Identity::Config(case.xml.clone()),
        domain: DomainConfig::parse(&case.xml).unwrap(),
        hv,
        host: &case.host,
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
    assert!(hv.calls().contains(&Call::Create(NAME.into())));
    assert!(!hv.domain(NAME).unwrap().persistent);
    assert_eq!(std::fs::read_to_string(c.dir.join("rsc").join("virtguard-VirtualDomain.domain")).unwrap().trim(), NAME);
}

#[test]
fn start_of_a_running_domain_is_success_without_side_effects() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().with_domain(NAME, paused(1), false);
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    assert!(!hv.calls().iter().any(|c| matches!(c, Call::Create(..))));
}

#[test]
fn start_removes_a_stale_definition_and_keeps_the_config_file() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().with_domain(NAME, DomainState::new(StateKind::Shutoff, 1), true);
    // libvirt deletes its own XML on undefine; here that XML is our config.
    std::fs::remove_file(&c.config_path).unwrap();
    assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
    let calls = hv.calls();
    let undefine = calls.iter().position(|c| *c == Call::Undefine(NAME.into())).unwrap();
    let create = calls.iter().position(|c| *c == Call::Create(NAME.into())).unwrap();
    assert!(undefine < create);
    assert_eq!(std::fs::read_to_string(&c.config_path).unwrap(), c.xml);
}

#[test]
fn start_failure_carries_libvirts_message() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().failing(Op::Create, HvError::other("internal error: qemu unexpectedly closed the monitor"));
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
    let v = vm(&c, Action::Start, &hv);
    let err = start::start(&v).unwrap_err();
    assert!(!v.deadline.expired(), "{:?}", v.deadline.elapsed());
    assert!(err.reason.contains("did not become healthy"), "{}", err.reason);
}

#[test]
fn start_refuses_a_domain_that_is_active_but_failed() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new().with_domain(NAME, paused(5), false);
    let err = start::start(&vm(&c, Action::Start, &hv)).unwrap_err();
    assert!(err.reason.contains("I/O error"));
    assert!(!hv.calls().iter().any(|c| matches!(c, Call::Create(..)) || matches!(c, Call::Destroy(..))));
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
    assert!(hv.calls().contains(&Call::Restore(file.clone())));
    assert_eq!(hv.calls().iter().filter(|c| matches!(c, Call::Create(..))).count(), 1, "restored, not booted afresh");
}

#[test]
fn stop_of_an_absent_domain_is_success() {
    let c = case(&[], &[]);
    let hv = FakeHypervisor::new();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert!(!hv.calls().iter().any(|c| matches!(c, Call::Shutdown(..)) || matches!(c, Call::Destroy(..))));
}

#[test]
fn stop_honours_shutdown_mode() {
    let c = case(&[("shutdown_mode", "agent,acpi")], &[]);
    let hv = FakeHypervisor::new();
    hv.create_transient(&c.xml).unwrap();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert!(hv.calls().contains(&Call::Shutdown(NAME.into(), ShutdownModes(3))), "{:?}", hv.calls());
    assert!(!hv.calls().iter().any(|c| matches!(c, Call::Destroy(..))));
}

#[test]
fn stop_destroys_a_guest_that_ignores_shutdown_before_the_timeout() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_timeout", "4000")]);
    let hv = FakeHypervisor::new().ignoring_shutdown();
    hv.create_transient(&c.xml).unwrap();
    let v = vm(&c, Action::Stop, &hv);
    assert_eq!(stop::stop(&v), Ok(OcfStatus::Success));
    let took = v.deadline.elapsed();
    assert!(!v.deadline.expired(), "{took:?}");
    // 4 s less the 3 s kept for destroy: a graceful budget of 1 s, used up.
    assert!(took >= Duration::from_secs(1), "graceful budget was skipped: {took:?}");
    assert!(hv.calls().contains(&Call::Destroy(NAME.into())));
    assert!(hv.domain(NAME).is_none());
}

#[test]
fn force_stop_destroys_at_once() {
    let c = case(&[("force_stop", "true")], &[]);
    let hv = FakeHypervisor::new();
    hv.create_transient(&c.xml).unwrap();
    assert_eq!(stop::stop(&vm(&c, Action::Stop, &hv)), Ok(OcfStatus::Success));
    assert!(!hv.calls().iter().any(|c| matches!(c, Call::Shutdown(..))));
    assert!(hv.calls().contains(&Call::Destroy(NAME.into())));
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
    let v = vm(&c, Action::MigrateFrom, &hv);
    let err = migrate_from::migrate_from(&v).unwrap_err();
    assert!(!v.deadline.expired(), "{:?}", v.deadline.elapsed());
    assert!(err.reason.contains("did not become healthy"), "{}", err.reason);
}

#[test]
fn stop_destroys_a_paused_guest_that_libvirt_will_not_shut_down() {
    let c = case(&[], &[("OCF_RESKEY_CRM_meta_timeout", "20000")]);
    let hv = FakeHypervisor::new()
        .with_domain(NAME, paused(5), false);
    let v = vm(&c, Action::Stop, &hv);
    assert_eq!(stop::stop(&v), Ok(OcfStatus::Success));
    assert!(v.deadline.elapsed() < Duration::from_secs(1), "no graceful budget for a paused guest: {:?}", v.deadline.elapsed());
    assert!(hv.calls().contains(&Call::Destroy(NAME.into())));
    assert!(hv.domain(NAME).is_none());
}

mod ownership;

mod double_run;

#[test]
fn missing_drbd_tools_are_not_installed_and_a_refusal_is_a_failure() {
    use crate::drbd::{DrbdError, ReadError};
    let missing = super::drbd_gate::refusal(DrbdError::Read(ReadError::NotInstalled("no drbdsetup".into())));
    assert_eq!(missing.status, OcfStatus::ErrInstalled);
    assert_eq!(missing.reason, "cannot read DRBD state: no drbdsetup");
    let refused = super::drbd_gate::refusal(DrbdError::Refused(vec!["r0: a".into(), "r1: b".into()]));
    assert_eq!((refused.status, refused.reason.as_str()), (OcfStatus::ErrGeneric, "r0: a; r1: b"));
    let unreadable = super::drbd_gate::refusal(DrbdError::Read(ReadError::Unreadable("garbage".into())));
    assert_eq!(unreadable.status, OcfStatus::ErrGeneric);
}

mod guest_agent {
    //! Guest health against the fake: the clock is the `now` passed in.
    use super::*;
    use crate::hypervisor::fake::FakeAgent;
    use crate::vdomain::guest_health::{self, check_config};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn level(n: &str) -> Vec<(&'static str, String)> {
        vec![
            ("OCF_CHECK_LEVEL", n.to_owned()),
            ("OCF_RESKEY_CRM_meta_interval", "10000".into()),
            ("OCF_RESKEY_CRM_meta_timeout", "30000".into()),
        ]
    }

    fn leveled_case(n: &str, params: &[(&str, &str)]) -> Case {
        let meta = level(n);
        let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
        case(params, &meta)
    }

    fn check(c: &Case, hv: &FakeHypervisor, now: SystemTime) -> OcfResult<()> {
        guest_health::monitor_check(&vm(c, Action::Monitor, hv), Some(running()), now)
    }

    fn agent_calls(hv: &FakeHypervisor) -> Vec<Call> {
        hv.calls().into_iter().filter(|c| matches!(c, Call::GuestAgent { .. })).collect()
    }

    #[test]
    fn level_zero_never_asks_the_agent() {
        let c = case(&[], &[]);
        let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
        hv.set_guest_agent(NAME, FakeAgent::Frozen);
        assert_eq!(monitor::monitor(&vm(&c, Action::Monitor, &hv)), Ok(OcfStatus::Success));
        assert!(agent_calls(&hv).is_empty());
    }

    #[test]
    fn level_ten_pings_with_a_bound_and_passes_when_the_agent_answers() {
        let c = leveled_case("10", &[]);
        let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(monitor::monitor(&vm(&c, Action::Monitor, &hv)), Ok(OcfStatus::Success));
        assert_eq!(agent_calls(&hv), vec![Call::GuestAgent { name: NAME.to_owned(), question: "ping", bound: Duration::from_secs(5) }]);
    }

    #[test]
    fn a_killed_agent_warns_until_the_grace_runs_out_then_fails_with_the_last_answer() {
        let c = leveled_case("10", &[("guest_agent_grace", "30")]);
        let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(check(&c, &hv, at(0)), Ok(()));
        hv.set_guest_agent(NAME, FakeAgent::NotConnected);
        assert_eq!(check(&c, &hv, at(10)), Ok(()));
        assert_eq!(check(&c, &hv, at(40)), Ok(()));
        let reason = check(&c, &hv, at(52)).unwrap_err().reason;
        assert_eq!(reason, format!("{NAME}: guest agent silent for 42 s (last answer 22:13:20 UTC); the guest OS is not responding"));
        // The agent is back: healthy at once, and the silence is forgotten.
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(check(&c, &hv, at(60)), Ok(()));
        hv.set_guest_agent(NAME, FakeAgent::Frozen);
        assert_eq!(check(&c, &hv, at(70)), Ok(()), "a new silence gets a new grace");
    }

    #[test]
    fn a_frozen_agent_is_a_silence_too() {
        let c = leveled_case("10", &[("guest_agent_grace", "5")]);
        let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(check(&c, &hv, at(0)), Ok(()));
        hv.set_guest_agent(NAME, FakeAgent::Frozen);
        assert_eq!(check(&c, &hv, at(10)), Ok(()));
        assert!(check(&c, &hv, at(16)).unwrap_err().reason.contains("silent for 6 s"));
    }

    #[test]
    fn an_agent_that_never_answered_since_start_is_reported_as_not_installed() {
        let c = leveled_case("10", &[]);
        let hv = FakeHypervisor::new();
        assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
        hv.set_guest_agent(NAME, FakeAgent::NotConnected);
        assert_eq!(check(&c, &hv, at(0)), Ok(()));
        let reason = check(&c, &hv, at(31)).unwrap_err().reason;
        assert!(reason.contains("never answered since"), "{reason}");
    }

    #[test]
    fn start_forgets_what_the_previous_life_of_the_guest_said() {
        let c = leveled_case("10", &[]);
        let hv = FakeHypervisor::new();
        assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
        hv.set_guest_agent(NAME, FakeAgent::NotConnected);
        assert_eq!(check(&c, &hv, at(0)), Ok(()));
        hv.destroy(NAME).unwrap();
        assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
        hv.set_guest_agent(NAME, FakeAgent::NotConnected);
        assert_eq!(check(&c, &hv, at(40)), Ok(()), "the old silence must not count against the new guest");
    }

    #[test]
    fn a_deliberately_paused_guest_is_not_asked_and_restarts_the_grace() {
        let c = leveled_case("10", &[]);
        let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
        hv.set_guest_agent(NAME, FakeAgent::NotConnected);
        assert_eq!(check(&c, &hv, at(0)), Ok(()));
        let before = agent_calls(&hv).len();
        let v = vm(&c, Action::Monitor, &hv);
        assert_eq!(guest_health::monitor_check(&v, Some(paused(1)), at(100)), Ok(()));
        assert_eq!(agent_calls(&hv).len(), before);
        assert_eq!(check(&c, &hv, at(110)), Ok(()));
    }

    #[test]
    fn level_twenty_fails_hung_file_systems_after_the_grace() {
        let c = leveled_case("20", &[("guest_agent_grace", "10")]);
        let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(check(&c, &hv, at(0)), Ok(()));
        let asked: Vec<&str> = agent_calls(&hv).iter().filter_map(|c| match c { Call::GuestAgent { question, .. } => Some(*question), _ => None }).collect();
        assert_eq!(asked, ["ping", "filesystems"]);
        hv.set_guest_agent(NAME, FakeAgent::FilesystemsHung);
        assert_eq!(check(&c, &hv, at(5)), Ok(()));
        let reason = check(&c, &hv, at(20)).unwrap_err().reason;
        assert!(reason.contains("cannot list its file systems") && reason.contains("for 15 s"), "{reason}");
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(check(&c, &hv, at(21)), Ok(()));
        hv.set_guest_agent(NAME, FakeAgent::FilesystemsFrozen);
        assert_eq!(check(&c, &hv, at(22)), Ok(()));
        let reason = check(&c, &hv, at(40)).unwrap_err().reason;
        assert!(reason.contains("its file systems are frozen for 18 s"), "{reason}");
        // Level 10 does not look at the file systems.
        let c10 = leveled_case("10", &[]);
        assert_eq!(check(&c10, &hv, at(100)), Ok(()));
    }

    #[test]
    fn start_with_wait_returns_once_the_agent_answers() {
        let c = case(&[("wait_for_guest_agent", "true")], &[("OCF_RESKEY_CRM_meta_timeout", "20000")]);
        let hv = FakeHypervisor::new();
        // The fake creates the domain inside start; its agent answers from the first ping.
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(start::start(&vm(&c, Action::Start, &hv)), Ok(OcfStatus::Success));
        assert!(agent_calls(&hv).iter().any(|c| matches!(c, Call::GuestAgent { question: "ping", .. })));
    }

    #[test]
    fn start_with_wait_fails_within_its_deadline_without_an_agent() {
        let c = case(&[("wait_for_guest_agent", "true")], &[("OCF_RESKEY_CRM_meta_timeout", "8000")]);
        let hv = FakeHypervisor::new();
        hv.set_guest_agent(NAME, FakeAgent::NotConnected);
        let vm = vm(&c, Action::Start, &hv);
        let err = start::start(&vm).unwrap_err();
        let took = vm.deadline.elapsed();
        assert!(took < Duration::from_secs(8), "took {took:?} of the manual clock");
        assert!(agent_calls(&hv).len() > 1, "asked again while time was left");
        assert_eq!(err.status, OcfStatus::ErrGeneric);
        assert!(err.reason.contains("guest agent did not answer within"), "{}", err.reason);
    }

    #[test]
    fn migrate_from_with_wait_waits_for_the_agent_too() {
        let c = case(&[("wait_for_guest_agent", "true")], &[("OCF_RESKEY_CRM_meta_timeout", "8000")]);
        let hv = FakeHypervisor::new().with_domain(NAME, running(), false);
        hv.set_guest_agent(NAME, FakeAgent::Frozen);
        let err = migrate_from::migrate_from(&vm(&c, Action::MigrateFrom, &hv)).unwrap_err();
        assert!(err.reason.contains("guest agent did not answer"), "{}", err.reason);
        hv.set_guest_agent(NAME, FakeAgent::Answering);
        assert_eq!(migrate_from::migrate_from(&vm(&c, Action::MigrateFrom, &hv)), Ok(OcfStatus::Success));
    }

    #[test]
    fn a_missing_channel_is_a_configuration_error_only_when_the_agent_is_asked() {
        let no_channel = "<domain><name>vm1</name></domain>";
        let c0 = case(&[], &[]);
        assert!(check_config(&c0.params, &c0.env, Action::Monitor, "vm1", no_channel).is_ok());
        let c10 = leveled_case("10", &[]);
        let err = check_config(&c10.params, &c10.env, Action::ValidateAll, "vm1", no_channel).unwrap_err();
        assert_eq!(err.status, OcfStatus::ErrConfigured);
        assert!(err.reason.contains("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"), "{}", err.reason);
        assert!(check_config(&c10.params, &c10.env, Action::Start, "vm1", no_channel).is_ok());
        let wait = case(&[("wait_for_guest_agent", "yes")], &[]);
        assert!(check_config(&wait.params, &wait.env, Action::Start, "vm1", no_channel).unwrap_err().reason.contains("wait_for_guest_agent"));
    }
}

/// A libvirtd that fails just as stop's working deadline runs out: stop
/// turns to the emulator with no working time left, and must still wait
/// until the operation's deadline to see it gone after SIGKILL (a stop
/// reported failed is a fence). A real process, as the emulator: a copy of
/// sh named like QEMU, carrying the guest's `-name`, ignoring SIGTERM.
#[test]
fn stop_past_its_working_deadline_still_waits_for_the_killed_emulator() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    let mut c = case(&[], &[]);
    c.host = c.host.clone().with_processes(crate::host::processes::ProcFs::new());
    let name = format!("vgunit-late-stop-{}", std::process::id());
    let fake_qemu = c.dir.join("qemu-system-vgunit");
    std::fs::copy("/bin/sh", &fake_qemu).unwrap();
    std::fs::set_permissions(&fake_qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = "trap '' TERM; echo ready; while :; do sleep 1; done";
    let mut emulator = std::process::Command::new(&fake_qemu);
    emulator.args(["-c", script, "-name", &format!("guest={name}")]);
    let (_, reaper) = crate::host::emulator::testing::started_ignoring_sigterm(emulator, "ready");

    let mut vm = unreachable_vm(&c, Action::Stop).for_domain(&name);
    vm.operation = Deadline::after(Duration::from_secs(2));
    while vm.deadline.sleep(Duration::from_secs(1)) {}

    assert_eq!(stop::stop(&vm), Ok(OcfStatus::Success));
    let status = reaper.join().unwrap().unwrap();
    assert_eq!(status.signal(), Some(nix::sys::signal::Signal::SIGKILL as i32), "{status:?}");
}
