//! DRBD state readers and the gate that keeps guests off stale data.
