//! Where the guest is after a migration attempt, from what each side's
//! hypervisor says, and how to say it in an exit reason.

use crate::hypervisor::{DomainState, StateKind};

/// What one hypervisor answered about the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideView {
    /// The domain exists there and is active (running, paused, ...).
    Active(DomainState),
    /// No such domain, or it is shut off.
    Inactive,
    /// The hypervisor did not answer; the text says why.
    Unknown(String),
}

impl SideView {
    pub fn from_state(state: Option<DomainState>) -> SideView {
        match state {
            Some(s) if s.is_active() => SideView::Active(s),
            _ => SideView::Inactive,
        }
    }

    /// Active and running (not paused, not shutting down).
    pub fn executing(&self) -> bool {
        matches!(self, SideView::Active(s) if s.kind == StateKind::Running)
    }

    fn describe(&self) -> String {
        match self {
            SideView::Active(s) => s.to_string(),
            SideView::Inactive => "not active".into(),
            SideView::Unknown(why) => format!("unknown ({why})"),
        }
    }
}

/// Where the guest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Active on the source only; the target has nothing that could run.
    Source,
    /// Active on the target only: the migration happened after all.
    Target,
    /// Active on both sides.
    Both,
    /// Active on neither side.
    Neither,
    /// Cannot be told from the answers.
    Unknown,
}

impl Placement {
    /// A placement worth reporting; the others may be transitional and are
    /// looked at again while time remains.
    pub fn is_settled(self) -> bool {
        matches!(self, Placement::Source | Placement::Target)
    }
}

/// The placement from both sides' answers. A guest executing on the source
/// is on the source even when the target cannot be asked: a target only
/// runs an incoming guest when its own hypervisor resumes it, and it was
/// the source that decided the migration did not complete. A paused source
/// with a silent target is unknown: the switch-over may have happened.
pub fn placement(source: &SideView, target: &SideView) -> Placement {
    match (source, target) {
        (SideView::Active(_), SideView::Inactive) => Placement::Source,
        (SideView::Active(_), SideView::Unknown(_)) if source.executing() => Placement::Source,
        (SideView::Active(_), SideView::Active(_)) => Placement::Both,
        (SideView::Inactive, SideView::Active(_)) => Placement::Target,
        (SideView::Inactive, SideView::Inactive) => Placement::Neither,
        _ => Placement::Unknown,
    }
}

/// The end of an exit reason: where the guest is, in words.
pub fn whereabouts(name: &str, source_node: &str, target_node: &str, source: &SideView, target: &SideView) -> String {
    match placement(source, target) {
        Placement::Source => match (source, target) {
            (SideView::Active(s), _) if s.kind != StateKind::Running => {
                format!("{name} is still on {source_node}, {s}")
            }
            (_, SideView::Unknown(why)) => {
                format!("{name} still runs on {source_node} ({target_node} did not answer: {why})")
            }
            _ => format!("{name} still runs on {source_node}"),
        },
        Placement::Target => format!("{name} runs on {target_node} now"),
        Placement::Both => format!(
            "{name} is active on both {source_node} ({}) and {target_node} ({})",
            source.describe(),
            target.describe()
        ),
        Placement::Neither => format!("{name} runs neither on {source_node} nor on {target_node}"),
        Placement::Unknown => format!(
            "location of {name} unknown: {source_node} says {}, {target_node} says {}",
            source.describe(),
            target.describe()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(kind: StateKind, reason: u32) -> SideView {
        SideView::Active(DomainState::new(kind, reason))
    }

    fn running() -> SideView {
        active(StateKind::Running, 1)
    }

    fn unknown() -> SideView {
        SideView::Unknown("End of file while reading data".into())
    }

    #[test]
    fn placements() {
        let paused_migration = active(StateKind::Paused, 2);
        let cases = [
            (running(), SideView::Inactive, Placement::Source),
            (running(), unknown(), Placement::Source),
            (paused_migration.clone(), SideView::Inactive, Placement::Source),
            (paused_migration.clone(), unknown(), Placement::Unknown),
            (SideView::Inactive, running(), Placement::Target),
            (running(), paused_migration.clone(), Placement::Both),
            (running(), running(), Placement::Both),
            (SideView::Inactive, SideView::Inactive, Placement::Neither),
            (SideView::Inactive, unknown(), Placement::Unknown),
            (unknown(), SideView::Inactive, Placement::Unknown),
            (unknown(), unknown(), Placement::Unknown),
        ];
        for (source, target, expected) in cases {
            assert_eq!(placement(&source, &target), expected, "{source:?} / {target:?}");
        }
        assert!(Placement::Source.is_settled() && Placement::Target.is_settled());
        assert!(!Placement::Both.is_settled() && !Placement::Unknown.is_settled());
    }

    #[test]
    fn shut_off_counts_as_inactive() {
        assert_eq!(SideView::from_state(Some(DomainState::new(StateKind::Shutoff, 4))), SideView::Inactive);
        assert_eq!(SideView::from_state(None), SideView::Inactive);
        assert_eq!(SideView::from_state(Some(DomainState::new(StateKind::Running, 1))), running());
    }

    #[test]
    fn reasons_say_where_the_guest_is() {
        assert_eq!(whereabouts("vm1", "node1", "node2", &running(), &SideView::Inactive), "vm1 still runs on node1");
        assert_eq!(
            whereabouts("vm1", "node1", "node2", &running(), &unknown()),
            "vm1 still runs on node1 (node2 did not answer: End of file while reading data)"
        );
        assert_eq!(
            whereabouts("vm1", "node1", "node2", &active(StateKind::Paused, 2), &SideView::Inactive),
            "vm1 is still on node1, paused (migration)"
        );
        assert_eq!(whereabouts("vm1", "node1", "node2", &SideView::Inactive, &running()), "vm1 runs on node2 now");
        assert_eq!(
            whereabouts("vm1", "node1", "node2", &running(), &active(StateKind::Paused, 2)),
            "vm1 is active on both node1 (running (booted)) and node2 (paused (migration))"
        );
        assert_eq!(
            whereabouts("vm1", "node1", "node2", &SideView::Inactive, &SideView::Inactive),
            "vm1 runs neither on node1 nor on node2"
        );
        assert_eq!(
            whereabouts("vm1", "node1", "node2", &active(StateKind::Paused, 2), &unknown()),
            "location of vm1 unknown: node1 says paused (migration), node2 says unknown (End of file while reading data)"
        );
    }
}
