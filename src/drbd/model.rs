//! One normalized picture of DRBD state, whichever DRBD version reported it:
//! resources with their local volumes and their peers.

use anyhow::anyhow;
use serde::{Serialize, Serializer};

/// Declares a closed set of DRBD state names: the enum, its spelling, and the
/// strict parse (an unknown spelling is an error, never a default).
macro_rules! drbd_names {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            pub fn parse(text: &str) -> anyhow::Result<$name> {
                match text {
                    $($text => Ok($name::$variant),)*
                    other => Err(anyhow!("unknown {} '{}'", $what, other)),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

drbd_names!(
    Role, "role" {
        Primary = "Primary",
        Secondary = "Secondary",
        Unknown = "Unknown",
    }
);

drbd_names!(
    /// The state of a disk, local (`disk:`) or as a peer reports it (`peer-disk:`).
    DiskState, "disk state" {
        Diskless = "Diskless",
        Attaching = "Attaching",
        Detaching = "Detaching",
        Failed = "Failed",
        Negotiating = "Negotiating",
        Inconsistent = "Inconsistent",
        Outdated = "Outdated",
        DUnknown = "DUnknown",
        Consistent = "Consistent",
        UpToDate = "UpToDate",
    }
);

drbd_names!(
    /// DRBD 9 connection states (8.4's WFConnection/WFReportParams map to Connecting).
    ConnState, "connection state" {
        StandAlone = "StandAlone",
        Disconnecting = "Disconnecting",
        Unconnected = "Unconnected",
        Timeout = "Timeout",
        BrokenPipe = "BrokenPipe",
        NetworkFailure = "NetworkFailure",
        ProtocolError = "ProtocolError",
        TearDown = "TearDown",
        Connecting = "Connecting",
        Connected = "Connected",
    }
);

drbd_names!(
    /// Replication state of one volume towards one peer.
    ReplState, "replication state" {
        Off = "Off",
        Established = "Established",
        StartingSyncS = "StartingSyncS",
        StartingSyncT = "StartingSyncT",
        WfBitMapS = "WFBitMapS",
        WfBitMapT = "WFBitMapT",
        WfSyncUuid = "WFSyncUUID",
        SyncSource = "SyncSource",
        SyncTarget = "SyncTarget",
        VerifyS = "VerifyS",
        VerifyT = "VerifyT",
        PausedSyncS = "PausedSyncS",
        PausedSyncT = "PausedSyncT",
        Ahead = "Ahead",
        Behind = "Behind",
    }
);

drbd_names!(
    /// Why a StandAlone connection gave up (DRBD 9 `sync-state:`).
    SyncVerdict, "sync-state" {
        SplitBrain = "SplitBrain",
        Unrelated = "Unrelated",
    }
);

drbd_names!(
    /// DRBD's `fencing` policy: what a node does about its peer's data when
    /// the replication link is lost. Only with a policy other than
    /// `dont-care` can DRBD mark a cut-off peer Outdated.
    FencingPolicy, "fencing policy" {
        DontCare = "dont-care",
        ResourceOnly = "resource-only",
        ResourceAndStonith = "resource-and-stonith",
    }
);

impl ReplState {
    /// This node is receiving a resync (or about to): its data is not complete.
    pub fn is_sync_target(self) -> bool {
        matches!(
            self,
            ReplState::StartingSyncT
                | ReplState::WfBitMapT
                | ReplState::WfSyncUuid
                | ReplState::SyncTarget
                | ReplState::PausedSyncT
                | ReplState::Behind
        )
    }

    /// The peer is receiving a resync from this node (or about to).
    pub fn is_sync_source(self) -> bool {
        matches!(
            self,
            ReplState::StartingSyncS
                | ReplState::WfBitMapS
                | ReplState::SyncSource
                | ReplState::PausedSyncS
                | ReplState::Ahead
        )
    }

    /// Writes reach the peer as they happen (online verify does not change that).
    pub fn is_replicating(self) -> bool {
        matches!(self, ReplState::Established | ReplState::VerifyS | ReplState::VerifyT)
    }
}

impl DiskState {
    /// The volume has no usable local backing disk (now, or soon).
    pub fn lacks_local_disk(self) -> bool {
        matches!(self, DiskState::Diskless | DiskState::Failed | DiskState::Detaching)
    }
}

/// Which DRBD told us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StateOrigin {
    /// DRBD 9: `drbdsetup events2 --now` (or a file with its output).
    Events2 { from: String },
    /// DRBD 8.4: `/proc/drbd`, names from `/dev/drbd/by-res` or `drbdadm`.
    ProcDrbd { version: String, from: String },
    /// DRBD 8.4 read through `drbdsetup events2` (drbd-utils 9 hands the
    /// call to drbdsetup-84); `version` from `/proc/drbd`.
    Events2Drbd84 { version: String, from: String },
}

impl StateOrigin {
    pub fn describe(&self) -> String {
        match self {
            StateOrigin::Events2 { from } => format!("DRBD 9 ({from})"),
            StateOrigin::ProcDrbd { version, from } | StateOrigin::Events2Drbd84 { version, from } => {
                format!("DRBD {version} ({from})")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrbdState {
    pub origin: StateOrigin,
    pub resources: Vec<Resource>,
    /// DRBD 8.4 minors whose resource name could not be found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unnamed_minors: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub name: String,
    pub role: Role,
    /// Why I/O is suspended (`user`, `no-data`, `fencing`, `quorum`); empty when it runs.
    pub suspended: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_io_failures: Option<bool>,
    /// DRBD 9 only: whether drbdsetup thinks this node may become Primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub may_promote: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion_score: Option<i64>,
    pub volumes: Vec<Volume>,
    /// DRBD 8.4: volumes the names (by-res links, drbdadm) list but
    /// /proc/drbd does not report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_volumes: Vec<u32>,
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    pub number: u32,
    pub minor: u32,
    pub disk: DiskState,
    /// DRBD 9: an intentionally diskless client (`client:yes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<bool>,
    /// DRBD 9 only; `None` where DRBD does not report quorum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_dev: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peer {
    /// The connection name (DRBD 9 `conn-name`, normally the peer's host name).
    /// `None` for DRBD 8.4, whose /proc/drbd does not name its single peer.
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u32>,
    pub connection: ConnState,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<SyncVerdict>,
    /// From `drbdsetup show` when it was read; `None` when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_two_primaries: Option<bool>,
    pub volumes: Vec<PeerVolume>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerVolume {
    pub number: u32,
    pub replication: ReplState,
    pub peer_disk: DiskState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_client: Option<bool>,
    /// Resync progress in percent while a resync runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<f64>,
}

impl DrbdState {
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// The resource and volume that own DRBD minor `minor`.
    pub fn by_minor(&self, minor: u32) -> Option<(&Resource, &Volume)> {
        self.resources
            .iter()
            .find_map(|r| r.volumes.iter().find(|v| v.minor == minor).map(|v| (r, v)))
    }
}

impl Resource {
    pub fn volume(&self, number: u32) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.number == number)
    }
}

impl Peer {
    /// How reasons name this peer.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("peer {name}"),
            None => "the peer".to_owned(),
        }
    }

    pub fn volume(&self, number: u32) -> Option<&PeerVolume> {
        self.volumes.iter().find(|v| v.number == number)
    }

    pub fn is_connected(&self) -> bool {
        self.connection == ConnState::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_unknown_names_are_errors() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), *r);
        }
        for d in DiskState::ALL {
            assert_eq!(DiskState::parse(d.as_str()).unwrap(), *d);
        }
        for c in ConnState::ALL {
            assert_eq!(ConnState::parse(c.as_str()).unwrap(), *c);
        }
        for s in ReplState::ALL {
            assert_eq!(ReplState::parse(s.as_str()).unwrap(), *s);
        }
        assert_eq!(DiskState::ALL.len(), 10);
        assert_eq!(ConnState::ALL.len(), 10);
        assert_eq!(ReplState::ALL.len(), 15);
        assert!(DiskState::parse("uptodate").is_err());
        assert!(DiskState::parse("").is_err());
        assert!(Role::parse("Primary ").is_err());
        assert_eq!(DiskState::parse("Fresh").unwrap_err().to_string(), "unknown disk state 'Fresh'");
    }

    #[test]
    fn serializes_with_drbd_spelling() {
        assert_eq!(serde_json::to_string(&ReplState::WfSyncUuid).unwrap(), "\"WFSyncUUID\"");
        assert_eq!(serde_json::to_string(&DiskState::DUnknown).unwrap(), "\"DUnknown\"");
    }
}
