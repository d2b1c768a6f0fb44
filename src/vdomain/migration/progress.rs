//! How far a migration got: the figures of one job-statistics sample, the
//! transfer rate, and the words used for them in logs and exit reasons.

use std::time::Duration;

pub use crate::hypervisor::migration::JobSample;

impl JobSample {
    /// Share of guest memory already on the target, 0..=100.
    pub fn percent(&self) -> u64 {
        if self.mem_total == 0 {
            return 0;
        }
        let done = u128::from(self.mem_total.saturating_sub(self.mem_remaining));
        (done * 100 / u128::from(self.mem_total)) as u64
    }

    /// "63% (iteration 7)", the short form used in exit reasons.
    pub fn short(&self) -> String {
        match self.iteration {
            Some(i) if i > 0 => format!("{}% (iteration {i})", self.percent()),
            _ => format!("{}%", self.percent()),
        }
    }
}

/// Transfer rate: libvirt's own figure when it gives one, else the change of
/// `data_processed` between the last two samples.
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Option<(Duration, u64)>,
    rate: Option<f64>,
}

impl RateMeter {
    /// Feeds the sample taken `at` (time since the job began).
    pub fn update(&mut self, at: Duration, sample: &JobSample) {
        let measured = self.last.and_then(|(then, processed)| {
            let dt = at.checked_sub(then)?.as_secs_f64();
            (dt > 0.05 && sample.data_processed >= processed)
                .then(|| (sample.data_processed - processed) as f64 / dt)
        });
        self.rate = match sample.bytes_per_sec.filter(|b| *b > 0) {
            Some(reported) => Some(reported as f64),
            None => measured.or(self.rate),
        };
        self.last = Some((at, sample.data_processed));
    }

    /// Bytes per second, once known.
    pub fn rate(&self) -> Option<f64> {
        self.rate.filter(|r| *r > 0.0)
    }
}

/// Time to send `bytes` at `rate` bytes per second.
pub fn time_to_send(bytes: u64, rate: f64) -> Duration {
    Duration::from_secs_f64((bytes as f64 / rate).min(1e9))
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The progress log line.
pub fn describe(sample: &JobSample, rate: Option<f64>, time_left: Duration) -> String {
    if sample.mem_total == 0 && sample.data_processed == 0 {
        return format!("setting up, no memory sent yet, {}s left", time_left.as_secs());
    }
    let mut line = format!(
        "{} of {} in sync, {} sent, {} remaining",
        format_args!("{}%", sample.percent()),
        bytes(sample.mem_total),
        bytes(sample.data_processed),
        bytes(sample.data_remaining),
    );
    if let Some(rate) = rate {
        line += &format!(", {}/s", bytes(rate as u64));
    }
    if let Some(dirty) = sample.dirty_bytes_per_sec.filter(|d| *d > 0) {
        line += &format!(", guest dirties {}/s", bytes(dirty));
    }
    if let Some(i) = sample.iteration.filter(|i| *i > 0) {
        line += &format!(", iteration {i}");
    }
    if let Some(ms) = sample.expected_downtime_ms.filter(|ms| *ms > 0) {
        line += &format!(", expected downtime {ms} ms");
    }
    if let Some(requests) = sample.postcopy_requests.filter(|r| *r > 0) {
        line += &format!(", {requests} post-copy page requests");
    }
    line + &format!(", {}s left", time_left.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn sample(total: u64, remaining: u64, processed: u64) -> JobSample {
        JobSample { mem_total: total, mem_remaining: remaining, data_processed: processed, ..Default::default() }
    }

    #[test]
    fn percent_is_the_share_in_sync() {
        assert_eq!(sample(100, 37, 0).percent(), 63);
        assert_eq!(sample(100, 0, 0).percent(), 100);
        assert_eq!(sample(100, 200, 0).percent(), 0);
        assert_eq!(sample(0, 0, 0).percent(), 0);
        assert_eq!(sample(u64::MAX, u64::MAX / 2, 0).percent(), 50);
        let s = JobSample { iteration: Some(7), ..sample(100, 37, 0) };
        assert_eq!(s.short(), "63% (iteration 7)");
        assert_eq!(sample(100, 37, 0).short(), "63%");
    }

    #[test]
    fn rate_prefers_libvirt_and_falls_back_to_deltas() {
        let mut meter = RateMeter::default();
        meter.update(Duration::from_secs(1), &sample(0, 0, 10 * MIB));
        assert_eq!(meter.rate(), None);
        meter.update(Duration::from_secs(3), &sample(0, 0, 30 * MIB));
        assert_eq!(meter.rate(), Some(10.0 * MIB as f64));
        let reported = JobSample { bytes_per_sec: Some(MIB), ..sample(0, 0, 40 * MIB) };
        meter.update(Duration::from_secs(4), &reported);
        assert_eq!(meter.rate(), Some(MIB as f64));
        // Samples too close together keep the last estimate.
        meter.update(Duration::from_millis(4010), &sample(0, 0, 41 * MIB));
        assert_eq!(meter.rate(), Some(MIB as f64));
    }

    #[test]
    fn time_to_send_and_byte_units() {
        assert_eq!(time_to_send(10 * MIB, MIB as f64), Duration::from_secs(10));
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 * MIB), "64.0 MiB");
        assert_eq!(bytes(3 * 1024 * MIB / 2), "1.5 GiB");
    }

    #[test]
    fn log_line_before_the_first_byte() {
        assert_eq!(describe(&JobSample::default(), None, Duration::from_secs(9)), "setting up, no memory sent yet, 9s left");
    }

    #[test]
    fn log_line_names_every_known_figure() {
        let s = JobSample {
            mem_total: 1024 * MIB,
            mem_remaining: 512 * MIB,
            data_processed: 600 * MIB,
            data_remaining: 512 * MIB,
            bytes_per_sec: Some(100 * MIB),
            iteration: Some(3),
            expected_downtime_ms: Some(300),
            dirty_bytes_per_sec: Some(20 * MIB),
            postcopy_requests: None,
        };
        let line = describe(&s, Some(100.0 * MIB as f64), Duration::from_secs(42));
        assert_eq!(
            line,
            "50% of 1.0 GiB in sync, 600.0 MiB sent, 512.0 MiB remaining, 100.0 MiB/s, \
             guest dirties 20.0 MiB/s, iteration 3, expected downtime 300 ms, 42s left"
        );
    }
}
