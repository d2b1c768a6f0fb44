//! How an OCF agent call ends: the exit status, and the one place that
//! prints `ocf-exit-reason:`; and what an invalid environment means for
//! each action.

use super::env::Action;
use super::status::{OcfError, OcfStatus};

/// Turns an action's result into the exit status, printing the exit reason.
pub fn finish(result: Result<OcfStatus, OcfError>) -> OcfStatus {
    match result {
        Ok(status) => status,
        Err(error) => {
            // Not running is an answer, not a failure to explain.
            if error.status == OcfStatus::NotRunning {
                tracing::info!("{}", error.reason);
            } else if error.status == OcfStatus::Degraded {
                // Running, with something the operator must fix: crm_mon
                // shows the reason next to the degraded result.
                tracing::warn!("{}", error.reason);
                eprintln!("ocf-exit-reason:{}", one_line(&error.reason));
            } else {
                tracing::error!("{}", error.reason);
                eprintln!("ocf-exit-reason:{}", one_line(&error.reason));
            }
            error.status
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What an action answers when the environment is invalid (OCF rules): a
/// probe says "not running", a recurring monitor reports a soft error so the
/// cluster recovers, everything else gets the validation error itself. Stop
/// decides for itself, because it may still know what it must stop.
pub fn invalid_environment(action: Action, is_probe: bool, error: OcfError) -> OcfError {
    match action {
        Action::Monitor | Action::Status if is_probe => OcfError::not_running(error.reason),
        Action::Monitor | Action::Status => OcfError::generic(error.reason),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_environment_rules() {
        let e = OcfError::installed("config missing");
        assert_eq!(invalid_environment(Action::Monitor, true, e.clone()).status, OcfStatus::NotRunning);
        assert_eq!(invalid_environment(Action::Monitor, false, e.clone()).status, OcfStatus::ErrGeneric);
        assert_eq!(invalid_environment(Action::Start, false, e.clone()).status, OcfStatus::ErrInstalled);
        assert_eq!(invalid_environment(Action::MigrateTo, false, e).status, OcfStatus::ErrInstalled);
    }
}
