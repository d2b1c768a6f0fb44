//! The OCF protocol, what any OCF agent needs: the call's environment and
//! actions, exit statuses, the parameter table machinery, meta-data and
//! man page rendering.

pub(crate) mod env;
pub(crate) mod manpage;
pub(crate) mod metadata;
pub(crate) mod outcome;
pub(crate) mod params;
pub(crate) mod status;

/// Re-exported: operations are bounded by it, though it is no OCF concept.
pub use crate::deadline::Deadline;
pub use env::{Action, OcfEnv, DEFAULT_STATE_DIR};
pub use status::{OcfError, OcfResult, OcfStatus};
