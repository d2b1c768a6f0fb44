//! The last line of defence for bounded operations: a libvirt call can block
//! (a frozen libvirtd answers nothing), and Pacemaker would kill us at the
//! timeout, which for stop means fencing. Shortly before the timeout this
//! thread ends the process itself: stop by killing the emulator process,
//! monitor by looking for it, every other action with an error
//! that says what happened.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::host::emulator::{find_emulator, terminate};
use crate::host::processes::Processes;
use crate::ocf::outcome::finish;
use crate::ocf::{Action, Deadline, OcfError, OcfStatus};

/// The emulator the watchdog looks for, and where: it runs on a thread of
/// its own, so it owns what it needs.
pub struct Watched {
    pub domain: String,
    /// The emulator image, when known (the config's, or cached at start).
    pub emulator: Option<PathBuf>,
    pub processes: Arc<dyn Processes>,
}

/// How much of Pacemaker's timeout the action leaves unused: the watchdog
/// acts in the second half of it, after the action's own deadline.
pub fn margin(total: Duration) -> Duration {
    (total / 20).clamp(Duration::from_millis(700), Duration::from_secs(3))
}

/// The deadline the action itself works to.
pub fn working_deadline(operation: &Deadline) -> Deadline {
    operation.before(margin(operation.total()))
}

/// Until when a stop that signals its emulator waits for it to be gone: the
/// operation's own deadline, not the working one. A SIGKILLed process needs
/// a moment to disappear, and a libvirtd that fails just as the working
/// deadline runs out leaves no time before it; reporting the stop failed
/// then gets the node fenced while the watchdog, which acts on the same
/// deadline, would have seen the emulator gone.
pub fn signal_deadline(operation: &Deadline) -> Deadline {
    operation.before(Duration::from_millis(100))
}

/// Starts the watchdog for the operation ending at `deadline`. `problem`:
/// what a monitor already knows is wrong with the configuration, kept in
/// its answer if the watchdog has to give it (a running guest is then
/// degraded, not plainly healthy).
pub fn arm(action: Action, deadline: Deadline, watched: Watched, problem: Option<String>) {
    let fire_at = deadline.before(margin(deadline.total()) / 2);
    let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        while fire_at.sleep(Duration::from_secs(3600)) {}
        let status = if action == Action::Stop {
            stop_by_signal(&watched, &deadline)
        } else if matches!(action, Action::Monitor | Action::Status) {
            monitor_by_process(&watched, problem.as_deref())
        } else {
            finish(Err(OcfError::generic(format!(
                "{} of {} did not finish within {:.0}s (libvirt stopped answering?)",
                action.name(),
                watched.domain,
                deadline.total().as_secs_f64()
            ))))
        };
        std::process::exit(status.code() as i32);
    });
    // Without it the operation still has its own deadlines; only a frozen
    // libvirtd would then go unnoticed.
    if let Err(e) = spawned {
        tracing::warn!("cannot start the watchdog thread: {e}");
    }
}

/// A frozen libvirtd says nothing about the guest: its emulator process does.
/// Failing the monitor here would make the cluster kill a healthy guest.
fn monitor_by_process(watched: &Watched, problem: Option<&str>) -> OcfStatus {
    let domain = &watched.domain;
    let result = match find_emulator(&*watched.processes, domain, watched.emulator.as_deref()) {
        Some(p) => {
            tracing::warn!("libvirt did not answer in time; emulator pid {} of {domain} is alive", p.pid);
            match problem {
                Some(problem) => Err(OcfError::new(OcfStatus::Degraded, format!("{domain} runs here, but {problem}"))),
                None => Ok(OcfStatus::Success),
            }
        }
        None => Err(OcfError::not_running(format!("libvirt did not answer in time and {domain} has no emulator process"))),
    };
    finish(result)
}

fn stop_by_signal(watched: &Watched, deadline: &Deadline) -> OcfStatus {
    let domain = &watched.domain;
    tracing::warn!("stop of {domain} is about to time out; stopping its emulator process directly");
    let processes = &*watched.processes;
    let result = match find_emulator(processes, domain, watched.emulator.as_deref()) {
        None => Ok(OcfStatus::Success),
        Some(p) if terminate(processes, p.pid, &signal_deadline(deadline)) => Ok(OcfStatus::Success),
        Some(p) => Err(OcfError::generic(format!("emulator pid {} of {domain} survived SIGKILL", p.pid))),
    };
    finish(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_past_its_working_deadline_still_waits_for_its_signalled_emulator() {
        let total = Duration::from_secs(4);
        let operation = Deadline::after_on(crate::deadline::Clock::manual(), total);
        let working = working_deadline(&operation);
        while working.sleep(Duration::from_millis(50)) {}
        assert!(working.expired());
        // It waits at least until the watchdog would take over with the same deadline.
        assert!(signal_deadline(&operation).remaining() >= margin(total) / 2);
    }

    #[test]
    fn margin_is_a_twentieth_within_bounds() {
        assert_eq!(margin(Duration::from_secs(90)), Duration::from_millis(4500).min(Duration::from_secs(3)));
        assert_eq!(margin(Duration::from_secs(20)), Duration::from_secs(1));
        assert_eq!(margin(Duration::from_secs(5)), Duration::from_millis(700));
    }
}
