//! The OCF protocol, independent of libvirt.

pub(crate) mod dispatch;
pub(crate) mod env;
pub(crate) mod manpage;
pub(crate) mod metadata;
pub(crate) mod params;
pub(crate) mod status;

/// Re-exported: operations are bounded by it, though it is no OCF concept.
pub use crate::deadline::Deadline;
pub use env::{Action, OcfEnv};
pub use params::Params;
pub use status::{OcfError, OcfResult, OcfStatus};
