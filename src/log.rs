//! Logging to stderr, which Pacemaker records in its log, in the shape of
//! the classic agents' lines: `VirtualDomain(vm1)[4242]: INFO: message`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

struct AgentLine {
    prefix: String,
}

impl<S, N> FormatEvent<S, N> for AgentLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        write!(writer, "{}: {level}: ", self.prefix)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Logging for the agent acting on resource `instance`.
pub fn init(instance: &str) {
    init_with_prefix(format!("VirtualDomain({instance})[{}]", std::process::id()));
}

/// Logging for a helper command (`virtguard drbd ...`): its warnings, e.g.
/// why a state source was skipped, reach stderr like the agent's.
pub fn init_helper(command: &str) {
    init_with_prefix(format!("virtguard-{command}[{}]", std::process::id()));
}

/// `HA_debug=1` (or `HA_DEBUG`, `OCF_TRACE_RA`) turns on debug messages;
/// `VIRTGUARD_LOG` takes a full tracing filter.
fn init_with_prefix(prefix: String) {
    let debug = ["HA_debug", "HA_DEBUG", "OCF_TRACE_RA"]
        .iter()
        .any(|v| std::env::var(v).map(|s| !s.is_empty() && s != "0").unwrap_or(false));
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("VIRTGUARD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(AgentLine { prefix })
        .try_init();
}
