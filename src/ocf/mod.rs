//! The OCF protocol, independent of libvirt.

pub mod dispatch;
pub mod env;
pub mod manpage;
pub mod metadata;
pub mod params;
pub mod status;

/// Re-exported: operations are bounded by it, though it is no OCF concept.
pub use crate::deadline::Deadline;
pub use env::{Action, OcfEnv};
pub use params::Params;
pub use status::{OcfError, OcfResult, OcfStatus};
