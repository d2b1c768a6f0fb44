//! DRBD state readers and the gate that keeps guests off stale data.

/// Why the gate is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Start,
    MigrateSource { target: String },
    MigrateTarget { source: String },
}
