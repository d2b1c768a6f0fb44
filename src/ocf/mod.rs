//! The OCF protocol, independent of libvirt.

pub mod deadline;
pub mod dispatch;
pub mod env;
pub mod manpage;
pub mod metadata;
pub mod params;
pub mod status;

pub use deadline::Deadline;
pub use env::{Action, OcfEnv};
pub use params::Params;
pub use status::{OcfError, OcfResult, OcfStatus};
