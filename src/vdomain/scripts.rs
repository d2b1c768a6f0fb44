//! monitor_scripts: the operator's own health checks, run after the state
//! check succeeded, each bounded by the operation deadline.

use crate::exec;
use crate::ocf::{Deadline, OcfError};
use crate::vdomain::Params;

pub fn run_all(params: &Params, deadline: &Deadline) -> Result<(), OcfError> {
    let Some(scripts) = &params.monitor_scripts else { return Ok(()) };
    for script in scripts.split_whitespace() {
        let no_args: [&str; 0] = [];
        exec::run(script, &no_args, deadline).map_err(|e| OcfError::generic(format!("monitor script failed: {e}")))?;
    }
    Ok(())
}
