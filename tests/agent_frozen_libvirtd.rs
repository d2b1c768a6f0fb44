//! The agent binary, run as Pacemaker runs it, against a private libvirtd
//! that freezes (SIGSTOP) before or during the call and is then continued or
//! killed: well before or just before the call would end with its daemon
//! frozen (the watchdog's moment, or migrate_to's own cutoff), as the agent
//! exits, or after. libvirt's client library crashed test processes left waiting on a
//! daemon that thawed or died (tests/migration.rs, the frozen source); the
//! agent must not die that way. Every call must end with an OCF exit code,
//! never a signal (a stop that dies is a fence), within its timeout, and
//! every stop must succeed.
//!
//! Each case runs once by default; `VG_FREEZE_ROUNDS=N` repeats each N
//! times, the fault moments shifted a little each time. Exit codes and
//! times are printed (`--nocapture`, lines `FIGURE`), never compared with
//! one another.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::{AgentRun, GuestGuard, PrivateHypervisor, XorShift};

/// Short, so a round with a daemon frozen to the end costs little.
const TIMEOUT: Duration = Duration::from_secs(4);
/// migrate_to needs time for its pre-flight and a job to freeze under.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(8);
/// Into stop: after its first shutdown request.
const FREEZE_DURING_STOP: Duration = Duration::from_millis(500);
/// Into migrate_to: a 64 MiB firmware guest at 1 MiB/s is still moving.
const FREEZE_DURING_MIGRATION: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGCONT: the daemon answers what it was asked, late.
    Thaw,
    /// SIGKILL: every connection to it ends.
    Kill,
}

/// When the fault hits, from the agent's start. `End` is when the same call
/// (action and freeze) ended with its daemon frozen throughout, measured by
/// its first case (the watchdog's moment for most actions, migrate_to's own
/// cutoff for migrate_to).
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After the agent has exited (the case that measures `End`).
    AfterExit,
    /// This much before `End`.
    BeforeEnd(Duration),
    /// This much after `End`: the agent is exiting.
    AfterEnd(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Case {
    action: &'static str,
    /// `None`: frozen before the agent starts.
    freeze_at: Option<Duration>,
    fault: Fault,
    at: Moment,
}

impl Case {
    fn timeout(&self) -> Duration {
        if self.action == "migrate_to" {
            MIGRATE_TIMEOUT
        } else {
            TIMEOUT
        }
    }

    /// When the fault hits, from the agent's start (`None`: after it
    /// exited); `jitter` moves it.
    fn fault_at(&self, end: Duration, jitter: Duration) -> Option<Duration> {
        let frozen = self.freeze_at.unwrap_or_default();
        match self.at {
            Moment::AfterExit => None,
            Moment::BeforeEnd(by) => Some(end.saturating_sub(by + jitter).max(frozen)),
            Moment::AfterEnd(by) => Some(end + by + jitter),
        }
    }
}

/// Per action and freeze: the call's end with the daemon frozen throughout,
/// then a kill well before that end (stop must still succeed), a thaw just
/// before it, and a kill as the agent exits.
fn cases() -> Vec<Case> {
    let moments = [
        (Moment::AfterExit, Fault::Thaw),
        (Moment::BeforeEnd(Duration::from_millis(300)), Fault::Kill),
        (Moment::BeforeEnd(Duration::from_millis(20)), Fault::Thaw),
        (Moment::AfterEnd(Duration::from_millis(5)), Fault::Kill),
    ];
    let frozen = [
        ("monitor", None),
        ("stop", None),
        // In its graceful shutdown: the firmware guest ignores ACPI.
        ("stop", Some(FREEZE_DURING_STOP)),
        ("start", None),
        ("migrate_to", Some(FREEZE_DURING_MIGRATION)),
    ];
    let mut cases = Vec::new();
    for (action, freeze_at) in frozen {
        for (at, fault) in moments {
            cases.push(Case { action, freeze_at, fault, at });
        }
    }
    cases
}

fn rounds() -> usize {
    std::env::var("VG_FREEZE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// The source hypervisor (the one that freezes), the migration target and
/// the guest, put back in the state each case starts from.
struct Lab {
    // Dropped first: it removes the guest while both daemons still answer.
    guest: GuestGuard,
    source: PrivateHypervisor,
    target: PrivateHypervisor,
}

impl Lab {
    fn daemon(&self) -> Pid {
        Pid::from_raw(self.source.libvirtd_pid().expect("the source's libvirtd runs") as i32)
    }

    /// Answering daemons, the guest running on the source only (or, for
    /// start, nowhere).
    fn prepare(&self, action: &str) {
        if self.source.libvirtd_pid().is_none() {
            self.source.restart_daemon();
        }
        support::remove_domain(&self.target.uri, &self.guest.name);
        let running = support::domstate(&self.source.uri, &self.guest.name).is_some_and(|(s, _)| s == "running");
        if action == "start" {
            support::remove_domain(&self.source.uri, &self.guest.name);
        } else if !running {
            support::remove_domain(&self.source.uri, &self.guest.name);
            support::virsh_ok(&self.source.uri, &["create", &self.guest.xml.to_string_lossy()]);
        }
    }

    fn env(&self, case: &Case, rsctmp: &str, port: u16) -> Vec<(String, String)> {
        let pairs = [
            ("HA_RSCTMP", rsctmp.to_owned()),
            ("OCF_RESKEY_config", self.guest.xml.to_string_lossy().into_owned()),
            ("OCF_RESKEY_hypervisor", self.source.uri.clone()),
            ("OCF_RESKEY_CRM_meta_timeout", case.timeout().as_millis().to_string()),
            ("OCF_RESKEY_remoteuri", self.target.uri.clone()),
            ("OCF_RESKEY_migrateuri", format!("tcp://127.0.0.1:{port}")),
            ("OCF_RESKEY_migration_speed", "1".to_owned()),
            ("OCF_RESKEY_CRM_meta_migrate_source", "node1".to_owned()),
            ("OCF_RESKEY_CRM_meta_migrate_target", "node2".to_owned()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// One agent call with the case's freeze and fault; the daemon answers
    /// again (continued, or restarted after a kill) when this returns.
    fn run(&self, case: &Case, fault_at: Option<Duration>) -> AgentRun {
        self.prepare(case.action);
        let daemon = self.daemon();
        let rsctmp = support::rsctmp_for_this_test().to_string_lossy().into_owned();
        let env = self.env(case, &rsctmp, support::free_port());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if case.freeze_at.is_none() {
            kill(daemon, Signal::SIGSTOP).expect("freezing our own libvirtd");
        }
        let run = std::thread::scope(|scope| {
            let started = Instant::now();
            let call = scope.spawn(|| support::agent(case.action, &env));
            if let Some(at) = case.freeze_at {
                sleep_until(started + at);
                kill(daemon, Signal::SIGSTOP).expect("freezing our own libvirtd");
            }
            let run = match fault_at {
                Some(at) => {
                    sleep_until(started + at);
                    fault(daemon, case.fault);
                    call.join()
                }
                None => {
                    let run = call.join();
                    fault(daemon, case.fault);
                    run
                }
            };
            run.expect("the agent call did not panic")
        });
        if case.fault == Fault::Kill {
            self.source.restart_daemon();
        }
        run
    }
}

fn fault(daemon: Pid, fault: Fault) {
    match fault {
        Fault::Thaw => kill(daemon, Signal::SIGCONT).expect("continuing our own libvirtd"),
        Fault::Kill => kill(daemon, Signal::SIGKILL).expect("killing our own libvirtd"),
    }
}

fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

fn lab() -> Lab {
    support::ensure_libvirtd();
    if !nix::unistd::Uid::effective().is_root() {
        support::missing_prerequisite("private hypervisors need root");
    }
    let source = PrivateHypervisor::start("frzsrc");
    let target = PrivateHypervisor::start("frztgt");
    let mut guest = support::firmware_guest("frozen");
    guest.uris.clear();
    guest.track(&source.uri);
    guest.track(&target.uri);
    Lab { guest, source, target }
}

/// How one call ended, for the table and the assertions.
fn ending(run: &AgentRun) -> String {
    match run.signal {
        Some(signal) => format!("signal {signal}"),
        None => format!("exit {}", run.code),
    }
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn the_agent_ends_with_an_ocf_exit_code_within_its_timeout_whatever_its_libvirtd_does() {
    let lab = lab();
    let mut random = XorShift::new(u64::from(std::process::id()));
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for round in 0..rounds() {
        let mut end = Duration::ZERO;
        for case in cases() {
            let jitter = if round == 0 { Duration::ZERO } else { Duration::from_millis(random.below(80) as u64) };
            let fault_at = case.fault_at(end, jitter);
            let run = lab.run(&case, fault_at);
            if matches!(case.at, Moment::AfterExit) {
                end = run.elapsed;
            }
            let line = format!(
                "{:<10} freeze {:<6} {:?} at {}: {} after {:.2}s (timeout {}s){}",
                case.action,
                case.freeze_at.map_or("before".to_owned(), |at| format!("{:.1}s", at.as_secs_f64())),
                case.fault,
                fault_at.map_or("exit".to_owned(), |at| format!("{:.2}s", at.as_secs_f64())),
                ending(&run),
                run.elapsed.as_secs_f64(),
                case.timeout().as_secs(),
                run.exit_reason().map(|r| format!(": {r}")).unwrap_or_default(),
            );
            eprintln!("FIGURE {line}");
            let stop_failed = case.action == "stop" && run.code != 0;
            if run.signal.is_some() || run.elapsed >= case.timeout() || stop_failed {
                failures.push(format!("{line}\n--- stderr ---\n{}", run.stderr.trim_end()));
            }
            table.push(line);
        }
    }
    eprintln!("{} calls, {} failed", table.len(), failures.len());
    assert!(
        failures.is_empty(),
        "calls that died, overran their timeout, or stops that failed:\n{}\n--- libvirtd log ---\n{}",
        failures.join("\n\n"),
        lab.source.log_tail(20)
    );
}
