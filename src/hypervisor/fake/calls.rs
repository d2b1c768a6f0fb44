//! The calls the fake records. [`Op`] is generated from [`Call`]'s variant
//! list, so a new call cannot be left without its operation.

use std::path::PathBuf;
use std::time::Duration;

use crate::hypervisor::ShutdownModes;

/// Declares `Call` as written and `Op` with one argument-free variant per
/// `Call` variant, and `Call::op` between them.
macro_rules! calls_and_ops {
    ($($(#[$doc:meta])* $variant:ident $(($($arg:ty),*))? $({$($field:ident: $ty:ty),*})?,)*) => {
        /// One call made on the fake, with its arguments.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Call {
            $($(#[$doc])* $variant $(($($arg),*))? $({$($field: $ty),*})?,)*
        }

        /// What a [`Call`] does, without its arguments: the key
        /// [`FakeHypervisor::failing`](super::FakeHypervisor::failing) injects a failure by.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Op {
            $($variant,)*
        }

        impl Call {
            pub fn op(&self) -> Op {
                match self {
                    $(Call::$variant { .. } => Op::$variant,)*
                }
            }
        }
    };
}

calls_and_ops! {
    State(String),
    Create(String),
    Define(String),
    Start(String),
    Undefine(String),
    Shutdown(String, ShutdownModes),
    Destroy(String),
    Save(String, PathBuf),
    Restore(PathBuf),
    InactiveXml(String),
    EnsurePool(String),
    EnsureNetwork(String),
    OpenConnection(String),
    SetMaxDowntime(String, u64),
    Migrate { name: String, remote_uri: String },
    JobStats(String),
    AbortJob(String),
    StartPostcopy(String),
    Resume(String),
    ActiveDomains,
    Owner(String),
    SetOwner(String, String),
    /// A guest agent command (`ping`, `filesystems`) with its bound.
    GuestAgent { name: String, question: &'static str, bound: Duration },
}
