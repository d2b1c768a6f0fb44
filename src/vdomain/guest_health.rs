//! Guest health: whether the OS inside a running domain still serves, as the
//! QEMU guest agent answers through libvirt (no helper process).
//!
//! - monitor at `OCF_CHECK_LEVEL` 10 asks `guest-ping`; at 20 also whether
//!   the guest's file systems are frozen (`guest-fsfreeze-status`) and for
//!   their list (`guest-get-fsinfo`: the guest kernel walks its mounts and
//!   stats each one, which a wedged OS or a hung mount does not answer);
//! - a missed answer starts a grace period (`guest_agent_grace`), remembered
//!   under HA_RSCTMP because every monitor is a new process; monitor fails
//!   only once the silence outlasts it;
//! - start and migrate_from forget that memory (a new life of the guest), and
//!   with `wait_for_guest_agent` wait until the agent answers.
//!
//! Time here is wall-clock (it must survive between processes and be shown
//! to the operator); callers pass "now" so that tests choose it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::hypervisor::{DomainState, Hypervisor, StateKind};
use crate::ocf::{Action, Deadline, OcfEnv, OcfError};
use crate::vdomain::Params;

use super::state_files::StateKey;
use super::vm::Vm;

/// The virtio-serial port name qemu-ga listens on.
pub const AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";
/// What to add to `<devices>` when the channel is missing.
const CHANNEL_XML: &str = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>";
/// The bound of one agent command, and also the longest libvirt waits when
/// it first gets in step with an agent (not settable per call). A call is
/// only made while the operation has this much time left, plus a margin.
pub const CALL_BOUND: Duration = Duration::from_secs(5);
const CALL_MARGIN: Duration = Duration::from_secs(1);
/// The monitor depth from which the guest agent is asked at all.
pub const AGENT_LEVEL: u32 = 10;
/// The monitor depth from which the guest's file systems are asked too.
pub const FILESYSTEM_LEVEL: u32 = 20;


/// What one round of questions to the agent found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Answered,
    /// No answer; libvirt's message says why (not connected, timed out).
    Silent(String),
    /// The agent answers, but the OS behind it does not serve (level 20).
    Unwell(String),
}

/// What is remembered between monitors, in Unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// The last full answer since the domain started (or arrived) here.
    pub answered_ms: Option<u64>,
    /// The first monitor of the current silence.
    pub silent_since_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Silent, but within the grace: a warning for the log.
    Waiting(String),
    /// Silent for longer than the grace: the exit reason.
    Failed(String),
}

/// The decision, as a pure function of what was remembered, what the agent
/// just said, and the time.
pub fn judge(name: &str, memory: Memory, probe: &Probe, now_ms: u64, grace: Duration) -> (Memory, Verdict) {
    let detail = match probe {
        Probe::Answered => return (Memory { answered_ms: Some(now_ms), silent_since_ms: None }, Verdict::Healthy),
        Probe::Silent(detail) | Probe::Unwell(detail) => detail,
    };
    let since = memory.silent_since_ms.unwrap_or(now_ms).min(now_ms);
    let memory = Memory { silent_since_ms: Some(since), ..memory };
    let silent_for = Duration::from_millis(now_ms - since);
    // Rounded up: a silence that outlasted a 10 s grace never reads "10 s".
    let secs = silent_for.as_millis().div_ceil(1000);
    if !grace.is_zero() && silent_for <= grace {
        let what = if matches!(probe, Probe::Unwell(_)) { "guest agent answers but" } else { "guest agent did not answer:" };
        let warning = format!("{name}: {what} {detail}; silent for {secs} s of the {} s grace", grace.as_secs());
        return (memory, Verdict::Waiting(warning));
    }
    let reason = match (probe, memory.answered_ms) {
        (Probe::Unwell(_), Some(last)) => format!(
            "{name}: guest agent answers but {detail} for {secs} s (last good answer {}); the guest OS is not serving",
            clock_time(last)
        ),
        (Probe::Unwell(_), None) => {
            format!("{name}: guest agent answers but {detail} for {secs} s; the guest OS is not serving")
        }
        (_, Some(last)) => format!(
            "{name}: guest agent silent for {secs} s (last answer {}); the guest OS is not responding",
            clock_time(last)
        ),
        (_, None) => format!(
            "{name}: guest agent never answered since {name} started here (silent for {secs} s): the channel \
             exists but nothing listens on it; is qemu-guest-agent installed and running in the guest?"
        ),
    };
    (memory, Verdict::Failed(reason))
}

/// `hh:mm:ss UTC` of a Unix time in milliseconds.
pub fn clock_time(unix_ms: u64) -> String {
    let day_secs = (unix_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", day_secs / 3600, day_secs / 60 % 60, day_secs % 60)
}

pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whether the operation has time left for one more agent call.
pub fn time_for_a_call(deadline: &Deadline) -> bool {
    deadline.remaining() >= CALL_BOUND + CALL_MARGIN
}

/// Asks the agent; `None` when the deadline leaves no room to ask.
pub fn probe(hv: &dyn Hypervisor, name: &str, level: u32, deadline: &Deadline) -> Option<Probe> {
    if !time_for_a_call(deadline) {
        return None;
    }
    if let Err(e) = hv.guest_agent_ping(name, CALL_BOUND) {
        return Some(Probe::Silent(e.message));
    }
    if level < FILESYSTEM_LEVEL || deadline.remaining() < 2 * CALL_BOUND + CALL_MARGIN {
        return Some(Probe::Answered);
    }
    Some(match hv.guest_filesystems(name, CALL_BOUND) {
        Ok(fs) if fs.frozen => Probe::Unwell("its file systems are frozen".into()),
        Ok(_) => Probe::Answered,
        Err(e) => Probe::Unwell(format!("cannot list its file systems ({e})")),
    })
}

/// Whether the domain XML has the guest agent's virtio channel.
pub fn has_agent_channel(xml: &str) -> bool {
    #[derive(Deserialize)]
    struct Domain {
        devices: Option<Devices>,
    }
    #[derive(Deserialize)]
    struct Devices {
        #[serde(default)]
        channel: Vec<Channel>,
    }
    #[derive(Deserialize)]
    struct Channel {
        target: Option<Target>,
    }
    #[derive(Deserialize)]
    struct Target {
        #[serde(rename = "@type")]
        kind: Option<String>,
        #[serde(rename = "@name")]
        name: Option<String>,
    }
    let Ok(domain) = quick_xml::de::from_str::<Domain>(xml) else { return false };
    domain.devices.into_iter().flat_map(|d| d.channel).filter_map(|c| c.target).any(|t| {
        t.kind.as_deref() == Some("virtio") && t.name.as_deref() == Some(AGENT_CHANNEL)
    })
}

/// A guest agent check or wait needs the channel: without it nothing can
/// ever answer, which is a configuration error, not a sick guest.
pub fn check_config(params: &Params, env: &OcfEnv, action: Action, name: &str, xml: &str) -> Result<(), OcfError> {
    let monitor_asks = matches!(action, Action::Monitor | Action::Status | Action::ValidateAll)
        && env.check_level >= AGENT_LEVEL;
    let wait_asks = params.wait_for_guest_agent;
    if !(monitor_asks || wait_asks) || has_agent_channel(xml) {
        return Ok(());
    }
    let why = if wait_asks { "wait_for_guest_agent is set" } else { "the monitor depth (OCF_CHECK_LEVEL) is 10 or more" };
    Err(OcfError::configured(format!(
        "{why} but domain {name} has no guest agent channel: add {CHANNEL_XML} to its <devices>"
    )))
}

fn load(vm: &Vm) -> Memory {
    let files = vm.files();
    let read = |what| files.read(what).and_then(|text| text.parse().ok());
    Memory { answered_ms: read(StateKey::AgentAnswered), silent_since_ms: read(StateKey::AgentSilentSince) }
}

fn store(vm: &Vm, memory: Memory) {
    let files = vm.files();
    for (what, value) in [(StateKey::AgentAnswered, memory.answered_ms), (StateKey::AgentSilentSince, memory.silent_since_ms)] {
        let result = match value {
            Some(ms) => files.write(what, &ms.to_string()),
            None => {
                files.remove(what);
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!("cannot remember the guest agent state in {}: {e}", files.path(what).display());
        }
    }
}

/// The monitor's check of a domain libvirt reports as healthy in `state`.
pub fn monitor_check(vm: &Vm, state: Option<DomainState>, now: SystemTime) -> Result<(), OcfError> {
    let level = vm.env.check_level;
    let (Ok(hv), true) = (&vm.hv, level >= AGENT_LEVEL) else { return Ok(()) };
    let memory = load(vm);
    // A deliberately paused guest (operator, migration) cannot answer; its
    // silence is not the OS failing, and the grace starts anew when it runs.
    if state.is_some_and(|s| s.kind != StateKind::Running) {
        if memory.silent_since_ms.is_some() {
            store(vm, Memory { silent_since_ms: None, ..memory });
        }
        return Ok(());
    }
    let deadline = vm.deadline.before(Duration::from_millis(500));
    let Some(probe) = probe(*hv, vm.name(), level, &deadline) else {
        tracing::warn!("{}: no time left in the monitor to ask the guest agent", vm.name());
        return Ok(());
    };
    let grace = Duration::from_secs(vm.params.guest_agent_grace);
    let (after, verdict) = judge(vm.name(), memory, &probe, unix_ms(now), grace);
    if after != memory {
        store(vm, after);
    }
    if let (Some(since), Verdict::Healthy) = (memory.silent_since_ms, &verdict) {
        tracing::info!("{}: guest agent answers again after {} s of silence", vm.name(), unix_ms(now).saturating_sub(since) / 1000);
    }
    match verdict {
        Verdict::Healthy => Ok(()),
        Verdict::Waiting(warning) => {
            tracing::warn!("{warning}");
            Ok(())
        }
        Verdict::Failed(reason) => Err(OcfError::generic(reason)),
    }
}

/// start and migrate_from: a new life of the guest on this node; with
/// `wait_for_guest_agent`, also wait until its agent answers.
pub fn after_start(vm: &Vm, deadline: &Deadline, now: impl Fn() -> SystemTime) -> Result<(), OcfError> {
    store(vm, Memory::default());
    let (Ok(hv), true) = (&vm.hv, vm.params.wait_for_guest_agent) else { return Ok(()) };
    let mut step = Duration::from_millis(200);
    let mut last;
    loop {
        match probe(*hv, vm.name(), AGENT_LEVEL, deadline).unwrap_or(Probe::Silent("no time left to ask".into())) {
            Probe::Answered => {
                store(vm, Memory { answered_ms: Some(unix_ms(now())), silent_since_ms: None });
                tracing::info!("{}: guest agent answers", vm.name());
                return Ok(());
            }
            Probe::Silent(e) | Probe::Unwell(e) => last = e,
        }
        if !deadline.sleep(step) || !time_for_a_call(deadline) {
            return Err(OcfError::generic(format!(
                "{}: guest agent did not answer within {} s ({last}); is qemu-guest-agent installed and running in the guest?",
                vm.name(),
                deadline.total().as_secs()
            )));
        }
        step = (step * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);
    const T0: u64 = 1_700_000_000_000; // 22:13:20 UTC

    fn silent() -> Probe {
        Probe::Silent("QEMU guest agent is not connected".into())
    }

    #[test]
    fn an_answer_is_remembered_and_ends_a_silence() {
        let before = Memory { answered_ms: Some(T0), silent_since_ms: Some(T0 + 10_000) };
        let (after, verdict) = judge("vm1", before, &Probe::Answered, T0 + 20_000, GRACE);
        assert_eq!(verdict, Verdict::Healthy);
        assert_eq!(after, Memory { answered_ms: Some(T0 + 20_000), silent_since_ms: None });
    }

    #[test]
    fn silence_warns_within_the_grace_and_fails_after_it() {
        let answered = Memory { answered_ms: Some(T0), silent_since_ms: None };
        let (m1, v1) = judge("vm1", answered, &silent(), T0 + 10_000, GRACE);
        assert_eq!(m1.silent_since_ms, Some(T0 + 10_000));
        assert!(matches!(&v1, Verdict::Waiting(w) if w.contains("silent for 0 s of the 30 s grace")), "{v1:?}");
        let (m2, v2) = judge("vm1", m1, &silent(), T0 + 40_000, GRACE);
        assert_eq!(m2, m1, "the start of the silence stays");
        assert!(matches!(v2, Verdict::Waiting(_)), "exactly the grace is not longer than it");
        let (_, v3) = judge("vm1", m2, &silent(), T0 + 52_000, GRACE);
        assert_eq!(
            v3,
            Verdict::Failed(
                "vm1: guest agent silent for 42 s (last answer 22:13:20 UTC); the guest OS is not responding".into()
            )
        );
    }

    #[test]
    fn an_agent_that_never_answered_is_named_as_such() {
        let (m, _) = judge("vm1", Memory::default(), &silent(), T0, GRACE);
        let (_, v) = judge("vm1", m, &silent(), T0 + 31_000, GRACE);
        let Verdict::Failed(reason) = v else { panic!("{v:?}") };
        assert!(reason.contains("never answered since vm1 started"), "{reason}");
        assert!(reason.contains("qemu-guest-agent installed"), "{reason}");
    }

    #[test]
    fn zero_grace_fails_at_the_first_miss() {
        let (_, v) = judge("vm1", Memory { answered_ms: Some(T0), silent_since_ms: None }, &silent(), T0 + 1, Duration::ZERO);
        assert!(matches!(v, Verdict::Failed(_)));
    }

    #[test]
    fn a_clock_stepped_back_does_not_underflow() {
        let m = Memory { answered_ms: Some(T0), silent_since_ms: Some(T0 + 60_000) };
        let (after, v) = judge("vm1", m, &silent(), T0 + 1000, GRACE);
        assert_eq!(after.silent_since_ms, Some(T0 + 1000));
        assert!(matches!(v, Verdict::Waiting(_)));
    }

    #[test]
    fn an_unwell_os_has_its_own_reason() {
        let m = Memory { answered_ms: Some(T0), silent_since_ms: Some(T0 + 1000) };
        let (_, v) = judge("vm1", m, &Probe::Unwell("cannot list its file systems (timeout)".into()), T0 + 40_000, GRACE);
        let Verdict::Failed(reason) = v else { panic!("{v:?}") };
        assert!(reason.starts_with("vm1: guest agent answers but cannot list its file systems (timeout) for 39 s"), "{reason}");
    }

    #[test]
    fn the_channel_is_found_by_its_target() {
        let with = "<domain><name>a</name><devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices></domain>";
        let other = "<domain><name>a</name><devices><channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel></devices></domain>";
        assert!(has_agent_channel(with));
        assert!(!has_agent_channel(other));
        assert!(!has_agent_channel("<domain><name>a</name></domain>"));
    }

    #[test]
    fn clock_time_is_utc_hours_minutes_seconds() {
        assert_eq!(clock_time(T0), "22:13:20 UTC");
        assert_eq!(clock_time(0), "00:00:00 UTC");
    }
}
