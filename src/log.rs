//! Logging to stderr, which Pacemaker records in its log.

use tracing_subscriber::EnvFilter;

/// `HA_debug=1` (or `HA_DEBUG`, `OCF_TRACE_RA`) turns on debug messages;
/// `VIRTGUARD_LOG` takes a full tracing filter.
pub fn init(instance: &str) {
    let debug = ["HA_debug", "HA_DEBUG", "OCF_TRACE_RA"]
        .iter()
        .any(|v| std::env::var(v).map(|s| !s.is_empty() && s != "0").unwrap_or(false));
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("VIRTGUARD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_level(true)
        .compact()
        .try_init();
    tracing::debug!(instance, "virtguard {}", env!("CARGO_PKG_VERSION"));
}
