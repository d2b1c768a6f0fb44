//! The cpu / host_memory / hv_memory utilization attributes. Written through
//! crm_resource only when the value differs from what this node last
//! published (remembered under HA_RSCTMP), so that the steady-state monitor
//! spawns nothing and never aborts a transition with a needless CIB write.

use std::time::Duration;

use crate::exec::ExecError;
use crate::hypervisor::domain_xml::Sizes;
use crate::ocf::{Deadline};
use crate::vdomain::Params;

use super::state_files::{StateFiles, StateKey};
use super::vm::Vm;

/// One wanted change: `Some(value)` publishes, `None` removes the attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub attribute: &'static str,
    pub value: Option<String>,
}

const REMOVED: &str = "-";
/// After a failed write (no CIB yet, crm_resource missing) the same value is
/// not tried again before this many seconds, so that a monitor outside a
/// working cluster does not spawn crm_resource every time.
pub const RETRY_AFTER_SECS: u64 = 600;
/// A failed write is tried once more after this pause, within the same
/// action, before the long wait above: on a Pacemaker Remote node
/// crm_resource reaches the CIB through pacemaker-remoted's proxy, which
/// now and then fails one call (exit 71) while dozens of guests start at
/// once; without a second try that guest's utilization would stay unset
/// for ten minutes.
pub const SECOND_TRY_AFTER: Duration = Duration::from_secs(1);

/// Runs `write`; on failure, once more after [`SECOND_TRY_AFTER`] when the
/// deadline leaves room for the pause and a second call.
fn with_second_try(deadline: &Deadline, mut write: impl FnMut() -> Result<(), ExecError>) -> Result<(), ExecError> {
    match write() {
        Err(e) if deadline.remaining() > SECOND_TRY_AFTER * 3 => {
            tracing::info!("{e}; trying once more in {}s", SECOND_TRY_AFTER.as_secs());
            deadline.sleep(SECOND_TRY_AFTER);
            write()
        }
        result => result,
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether the cached line settles `wanted`: published, or failed recently.
fn settled(cached: Option<&str>, wanted: &str, now: u64) -> bool {
    match cached.map(|c| c.split_once(" failed-at=").map_or((c, None), |(v, t)| (v, Some(t)))) {
        Some((value, None)) => value == wanted,
        Some((value, Some(at))) => value == wanted && at.parse::<u64>().is_ok_and(|at| now.saturating_sub(at) < RETRY_AFTER_SECS),
        None => false,
    }
}

/// What the parameters ask for, given the domain's sizes.
pub fn wanted(params: &Params, sizes: &Sizes) -> Vec<Wanted> {
    let memory = sizes.max_memory_mib.to_string();
    let rows = [
        ("cpu", params.autoset_utilization_cpu, params.unset_utilization_cpu, sizes.vcpus.to_string()),
        ("host_memory", params.autoset_utilization_host_memory, params.unset_utilization_host_memory, memory.clone()),
        ("hv_memory", params.autoset_utilization_hv_memory, params.unset_utilization_hv_memory, memory),
    ];
    rows.into_iter()
        .filter_map(|(attribute, set, unset, value)| {
            if unset {
                Some(Wanted { attribute, value: None })
            } else if set {
                Some(Wanted { attribute, value: Some(value) })
            } else {
                None
            }
        })
        .collect()
}

/// The changes still to make, given what this node published last.
pub fn pending(wanted: Vec<Wanted>, files: &StateFiles) -> Vec<Wanted> {
    let now = now_secs();
    wanted
        .into_iter()
        .filter(|w| !settled(files.read(StateKey::Utilization(w.attribute)).as_deref(), w.value.as_deref().unwrap_or(REMOVED), now))
        .collect()
}

/// Publishes what changed, inside Pacemaker only (it sets
/// `OCF_RESKEY_crm_feature_set`; by hand or under ocf-tester there is no CIB
/// to write to). Failures (no CIB, crm_resource missing) are logged and
/// retried later; they never fail the action.
pub fn publish(vm: &Vm, deadline: &Deadline) {
    let Some(sizes) = vm.domain.sizes.filter(|_| vm.env.crm_feature_set.is_some()) else {
        return; // outside a cluster, or the config is unknown
    };
    let (instance, files) = (vm.env.instance.as_str(), vm.files());
    for change in pending(wanted(vm.params, &sizes), &files) {
        let result = with_second_try(deadline, || match &change.value {
            Some(value) => vm.host.services().set_utilization(instance, change.attribute, value, deadline),
            None => vm.host.services().delete_utilization(instance, change.attribute, deadline),
        });
        match result {
            Ok(()) => {
                let _ = files.write(StateKey::Utilization(change.attribute), change.value.as_deref().unwrap_or(REMOVED));
                tracing::info!("utilization {} of {instance}: {}", change.attribute, change.value.as_deref().unwrap_or("removed"));
            }
            Err(e) => {
                let value = change.value.as_deref().unwrap_or(REMOVED);
                let _ = files.write(StateKey::Utilization(change.attribute), &format!("{value} failed-at={}", now_secs()));
                tracing::warn!("cannot update utilization {} of {instance} (retrying in {RETRY_AFTER_SECS}s): {e}", change.attribute);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs).expect("valid test parameters")
    }

    fn sizes() -> Sizes {
        Sizes { vcpus: 2, max_memory_mib: 512 }
    }

    #[test]
    fn defaults_publish_all_three() {
        let w = wanted(&params(&[]), &sizes());
        assert_eq!(
            w,
            vec![
                Wanted { attribute: "cpu", value: Some("2".into()) },
                Wanted { attribute: "host_memory", value: Some("512".into()) },
                Wanted { attribute: "hv_memory", value: Some("512".into()) },
            ]
        );
    }

    #[test]
    fn unset_wins_and_autoset_false_leaves_alone() {
        let w = wanted(
            &params(&[("unset_utilization_cpu", "true"), ("autoset_utilization_hv_memory", "false")]),
            &sizes(),
        );
        assert_eq!(
            w,
            vec![Wanted { attribute: "cpu", value: None }, Wanted { attribute: "host_memory", value: Some("512".into()) }]
        );
    }

    #[test]
    fn nothing_pending_once_published() {
        let dir = std::env::temp_dir().join(format!("vg-util-{}", std::process::id()));
        let files = StateFiles::new(&dir, "vm1");
        let all = wanted(&params(&[]), &sizes());
        assert_eq!(pending(all.clone(), &files).len(), 3);
        files.write(StateKey::Utilization("cpu"), "2").unwrap();
        files.write(StateKey::Utilization("host_memory"), "512").unwrap();
        assert_eq!(pending(all.clone(), &files), vec![all[2].clone()]);
        files.write(StateKey::Utilization("hv_memory"), "512").unwrap();
        assert!(pending(all, &files).is_empty());
        files.write(StateKey::Utilization("cpu"), "4").unwrap();
        assert_eq!(pending(wanted(&params(&[]), &sizes()), &files).len(), 1, "a changed value is published again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn failing_write() -> ExecError {
        ExecError::Spawn { program: "crm_resource".into(), message: "exit 71".into() }
    }

    #[test]
    fn a_failed_write_is_tried_once_more_after_a_pause() {
        let deadline = Deadline::after_on(crate::deadline::Clock::manual(), Duration::from_secs(20));
        let mut calls = 0;
        let result = with_second_try(&deadline, || {
            calls += 1;
            if calls == 1 { Err(failing_write()) } else { Ok(()) }
        });
        assert!(result.is_ok());
        assert_eq!((calls, deadline.elapsed()), (2, SECOND_TRY_AFTER));

        let mut calls = 0;
        let result = with_second_try(&deadline, || {
            calls += 1;
            Err(failing_write())
        });
        assert!(result.is_err());
        assert_eq!(calls, 2, "two tries, never more");
    }

    #[test]
    fn no_second_try_without_room_before_the_deadline() {
        let deadline = Deadline::after_on(crate::deadline::Clock::manual(), SECOND_TRY_AFTER * 2);
        let mut calls = 0;
        let result = with_second_try(&deadline, || {
            calls += 1;
            Err(failing_write())
        });
        assert!(result.is_err());
        assert_eq!((calls, deadline.elapsed()), (1, Duration::ZERO));
    }

    #[test]
    fn a_failed_write_is_retried_only_after_the_backoff() {
        let now = 1_000_000;
        assert!(settled(Some("2"), "2", now));
        assert!(!settled(Some("2"), "4", now));
        assert!(settled(Some(&format!("2 failed-at={}", now - 10)), "2", now));
        assert!(!settled(Some(&format!("2 failed-at={}", now - RETRY_AFTER_SECS)), "2", now));
        assert!(!settled(Some(&format!("2 failed-at={}", now - 10)), "4", now), "a new value is tried at once");
        assert!(!settled(Some("2 failed-at=garbage"), "2", now));
        assert!(!settled(None, "2", now));
    }
}
