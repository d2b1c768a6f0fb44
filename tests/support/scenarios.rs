//! The one scenario runner of the cluster suites (tests/cluster.rs,
//! tests/cluster_systemd.rs, tests/cluster_scale.rs): every scenario runs even
//! when an earlier one failed (after a repair of the cluster), so that one run
//! tells everything that is wrong; each runs beside the invariant sampler,
//! whose verdict counts as much as the scenario's own checks; the figures are
//! printed at the end, never judged.
//!
//! VG_CLUSTER_SCENARIOS=3,8 runs only the scenarios with those numbers (the
//! cluster is still brought up and torn down once); a scenario a suite wraps
//! in `when_named` runs only then.

// Shared by the cluster suites; each uses all of it, but not every test binary.
#![allow(dead_code)]

use std::time::Instant;

use super::cluster::progress;

/// A scenario: its number and title, and what it does.
pub type Scenario<R> = (&'static str, fn(&mut R));

/// What a suite provides around its scenarios.
pub trait Suite {
    /// Before each scenario: start watching the safety properties.
    fn begin(&mut self);
    /// After each scenario: the safety properties' verdict.
    fn end(&mut self, number: &str) -> Result<(), String>;
    /// After a failed scenario: bring the cluster back to the suite's baseline.
    fn repair(&mut self);
    fn figures(&self) -> &[(String, String)];
}

/// The scenario numbers named in VG_CLUSTER_SCENARIOS, or `None` for all.
pub fn chosen() -> Option<Vec<String>> {
    let list = std::env::var("VG_CLUSTER_SCENARIOS").ok().filter(|v| !v.trim().is_empty())?;
    Some(list.split([',', ' ']).map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect())
}

/// A scenario that runs only when VG_CLUSTER_SCENARIOS names it: a
/// benchmark whose figures are worth their minutes only when asked for.
pub fn when_named<R>(scenario: Scenario<R>) -> Option<Scenario<R>> {
    chosen().is_some_and(|c| c.iter().any(|n| n == number(scenario.0))).then_some(scenario)
}

fn number(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Runs the chosen scenarios in order, prints the figures and fails the test
/// when any scenario (or its invariants) failed. `title` names the suite in
/// the last lines; `start` is when the suite began (cluster bring-up included).
pub fn run<R: Suite>(suite: &mut R, title: &str, scenarios: Vec<Scenario<R>>, start: Instant) {
    let chosen = chosen();
    let scenarios: Vec<Scenario<R>> =
        scenarios.into_iter().filter(|(name, _)| chosen.as_ref().is_none_or(|c| c.iter().any(|n| n == number(name)))).collect();
    let mut failures = Vec::new();
    for &(name, scenario) in &scenarios {
        let scenario_start = Instant::now();
        let number = number(name);
        progress(&format!("scenario {name}"));
        suite.begin();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(suite)));
        let invariants = suite.end(number);
        let mut headlines = Vec::new();
        if let Err(panic) = outcome {
            headlines.push(panic_text(panic.as_ref()).lines().next().unwrap_or_default().to_owned());
        }
        if let Err(violation) = invariants {
            progress(&format!("  {violation}"));
            headlines.push(violation.lines().next().unwrap_or_default().to_owned());
        }
        if headlines.is_empty() {
            progress(&format!("scenario {number} passed in {:.1}s", scenario_start.elapsed().as_secs_f64()));
        } else {
            let headline = headlines.join("; ");
            progress(&format!("scenario {number} FAILED: {headline}"));
            failures.push(format!("scenario {name}: {headline}"));
            suite.repair();
        }
    }
    eprintln!("\nfigures ({title}):");
    for (what, value) in suite.figures() {
        eprintln!("  {what}: {value}");
    }
    eprintln!("whole {title}: {:.0}s\n", start.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {} scenarios of the {title} failed (details above):\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}
