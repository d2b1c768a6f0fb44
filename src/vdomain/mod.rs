//! The VirtualDomain actions, one file each, under the dispatcher that
//! runs the fixed pipeline leading to them (`dispatch`); what every action
//! takes is one call's context (`vm`).

pub(crate) mod config_file;
pub(crate) mod cow;
pub(crate) mod dispatch;
pub(crate) mod drbd_gate;
pub(crate) mod guest_health;
#[cfg(test)]
pub(crate) mod invariants;
pub(crate) mod migrate_from;
pub(crate) mod migrate_to;
pub(crate) mod missing_config;
pub(crate) mod monitor;
pub(crate) mod observe;
pub(crate) mod ownership;
pub mod params;
pub(crate) mod scripts;
pub(crate) mod start;
pub(crate) mod state_files;
pub(crate) mod stop;
pub(crate) mod utilization;
pub(crate) mod validate;
pub(crate) mod vm;
pub(crate) mod watchdog;

#[cfg(test)]
mod tests;

pub mod migration;

pub use dispatch::run_agent;
pub use params::Params;
pub use vm::{Identity, Vm};
