//! DRBD 8.4: `/proc/drbd`, and the minor -> resource names that it lacks
//! (`/dev/drbd/by-res/<res>[/<vol>]` links, or `drbdadm sh-resources` plus
//! `drbdadm sh-dev <res>`).
//!
//! ```text
//! version: 8.4.11 (api:1/proto:86-101)
//!  0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
//!     ns:1048 nr:0 dw:1048 dr:2213 al:3 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
//! ```
//! `ro` and `ds` are local/peer. 8.4 has one peer per resource and does not
//! name it, reports no quorum and no `may_promote`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};

use super::model::{ConnState, DiskState, DrbdState, Peer, PeerVolume, ReplState, Resource, Role, StateOrigin, Volume};

#[derive(Debug, Clone, PartialEq)]
pub struct ProcDrbd {
    /// `8.4.11`, `9.2.8`, ...
    pub version: String,
    pub minors: Vec<ProcMinor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcMinor {
    pub minor: u32,
    pub connection: ConnState,
    pub replication: ReplState,
    pub role: Role,
    pub peer_role: Role,
    pub disk: DiskState,
    pub peer_disk: DiskState,
    pub io_suspended: bool,
    pub done: Option<f64>,
}

impl ProcDrbd {
    pub fn major(&self) -> Option<u32> {
        self.version.split('.').next()?.parse().ok()
    }
}

/// Only the `version:` line: enough to tell DRBD 8 from DRBD 9.
pub fn parse_version(text: &str) -> anyhow::Result<String> {
    let first = text.lines().find(|l| !l.trim().is_empty()).context("empty /proc/drbd")?;
    let rest = first
        .trim()
        .strip_prefix("version:")
        .with_context(|| format!("not /proc/drbd: first line is '{}'", first.trim()))?;
    let version = rest.split_whitespace().next().context("no version number on the version: line")?;
    let valid = version.split('.').count() >= 2 && version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        bail!("'{version}' is not a DRBD version");
    }
    Ok(version.to_owned())
}

pub fn parse(text: &str) -> anyhow::Result<ProcDrbd> {
    let version = parse_version(text)?;
    let mut minors: Vec<ProcMinor> = Vec::new();
    let mut seen: Vec<u32> = Vec::new();
    // Progress lines belong to the minor line above them, if that one is configured.
    let mut progress_owner: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let at = |m: anyhow::Error| anyhow!("/proc/drbd line {}: {m:#}", index + 1);
        let trimmed = line.trim();
        if let Some(minor) = minor_prefix(trimmed) {
            if seen.contains(&minor.0) {
                return Err(at(anyhow!("minor {} appears twice", minor.0)));
            }
            seen.push(minor.0);
            progress_owner = None;
            if let Some(parsed) = parse_minor(minor.0, minor.1).map_err(at)? {
                minors.push(parsed);
                progress_owner = Some(minors.len() - 1);
            }
        } else if let Some(done) = sync_progress(trimmed) {
            // "[==>....] sync'ed: 12.1% (...)"
            if let Some(owner) = progress_owner {
                minors[owner].done = Some(done);
            }
        }
    }
    Ok(ProcDrbd { version, minors })
}

/// ` 0: cs:...` -> (0, "cs:...").
fn minor_prefix(line: &str) -> Option<(u32, &str)> {
    let (number, rest) = line.split_once(':')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    Some((number.parse().ok()?, rest.trim()))
}

fn sync_progress(line: &str) -> Option<f64> {
    let rest = line.split_once("sync'ed:")?.1.trim();
    let percent = rest.split('%').next()?.trim();
    percent.parse().ok().filter(|p: &f64| (0.0..=100.0).contains(p))
}

fn parse_minor(minor: u32, rest: &str) -> anyhow::Result<Option<ProcMinor>> {
    let mut cs = None;
    let mut ro = None;
    let mut ds = None;
    let mut flags = None;
    for word in rest.split_whitespace() {
        match word.split_once(':') {
            Some(("cs", v)) => cs = Some(v),
            Some(("ro" | "st", v)) => ro = Some(v),
            Some(("ds", v)) => ds = Some(v),
            Some(_) => {}
            None if word.len() > 1 && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') => flags = Some(word),
            None => {}
        }
    }
    let cs = cs.with_context(|| format!("minor {minor}: no cs: field"))?;
    if cs == "Unconfigured" {
        return Ok(None);
    }
    let (connection, replication) = connection_84(cs)?;
    let (role, peer_role) = pair(ro.with_context(|| format!("minor {minor}: no ro: field"))?, Role::parse)?;
    let (disk, peer_disk) = pair(ds.with_context(|| format!("minor {minor}: no ds: field"))?, DiskState::parse)?;
    Ok(Some(ProcMinor {
        minor,
        connection,
        replication,
        role,
        peer_role,
        disk,
        peer_disk,
        io_suspended: flags.is_some_and(|f| f.starts_with('s')),
        done: None,
    }))
}

fn pair<T>(text: &str, parse: fn(&str) -> anyhow::Result<T>) -> anyhow::Result<(T, T)> {
    let (local, peer) = text.split_once('/').with_context(|| format!("'{text}' is not local/peer"))?;
    Ok((parse(local)?, parse(peer)?))
}

/// 8.4 folds connection and replication into one `cs:` value.
fn connection_84(cs: &str) -> anyhow::Result<(ConnState, ReplState)> {
    if let Ok(repl) = ReplState::parse(cs) {
        if repl != ReplState::Off && repl != ReplState::Established {
            return Ok((ConnState::Connected, repl));
        }
    }
    Ok(match cs {
        "Connected" => (ConnState::Connected, ReplState::Established),
        "WFConnection" | "WFReportParams" => (ConnState::Connecting, ReplState::Off),
        other => match ConnState::parse(other) {
            Ok(c) if c != ConnState::Connected && c != ConnState::Connecting => (c, ReplState::Off),
            _ => bail!("unknown connection state cs:{other}"),
        },
    })
}

/// Which resource and volume a minor belongs to.
pub type MinorNames = BTreeMap<u32, (String, u32)>;

/// `drbdadm sh-resources`: resource names separated by white space.
pub fn parse_sh_resources(text: &str) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if let Some(bad) = names.iter().find(|n| n.contains('/') || n.contains(':')) {
        bail!("'{bad}' is not a DRBD resource name");
    }
    Ok(names)
}

/// `drbdadm sh-dev <res>`: one `/dev/drbdN` per volume. The volume numbers
/// are not printed; they are taken as 0, 1, ... in the order listed.
pub fn parse_sh_dev(resource: &str, text: &str, names: &mut MinorNames) -> anyhow::Result<()> {
    for (volume, line) in text.split_whitespace().enumerate() {
        let minor = minor_of_device(line)
            .with_context(|| format!("drbdadm sh-dev {resource}: '{line}' is not /dev/drbdN"))?;
        names.insert(minor, (resource.to_owned(), volume as u32));
    }
    Ok(())
}

/// `/dev/drbd12`, `../../drbd12`, `drbd12` -> 12.
pub fn minor_of_device(path: &str) -> Option<u32> {
    let file = path.rsplit('/').next()?;
    let digits = file.strip_prefix("drbd")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The normalized model: minors grouped by resource, the one peer unnamed.
pub fn to_state(proc: &ProcDrbd, names: &MinorNames, from: &str) -> DrbdState {
    let mut resources: Vec<Resource> = Vec::new();
    let mut unnamed_minors = Vec::new();
    for m in &proc.minors {
        match names.get(&m.minor) {
            Some((name, volume)) => add_minor(resource_for(&mut resources, name, m), *volume, m),
            None => unnamed_minors.push(m.minor),
        }
    }
    mark_missing_volumes(&mut resources, proc, names);
    for r in &mut resources {
        r.missing_volumes.sort_unstable();
        r.volumes.sort_by_key(|v| v.number);
        r.peers[0].volumes.sort_by_key(|v| v.number);
    }
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    DrbdState {
        origin: StateOrigin::ProcDrbd { version: proc.version.clone(), from: from.to_owned() },
        resources,
        unnamed_minors,
    }
}

/// The resource `name`, created from its first minor `m` when new. 8.4 has
/// one peer per resource, and no names for it.
fn resource_for<'a>(resources: &'a mut Vec<Resource>, name: &str, m: &ProcMinor) -> &'a mut Resource {
    let index = match resources.iter().position(|r| r.name == name) {
        Some(i) => i,
        None => {
            resources.push(Resource {
                name: name.to_owned(),
                role: m.role,
                suspended: Vec::new(),
                force_io_failures: None,
                may_promote: None,
                promotion_score: None,
                volumes: Vec::new(),
                missing_volumes: Vec::new(),
                peers: vec![Peer {
                    name: None,
                    node_id: None,
                    connection: m.connection,
                    role: m.peer_role,
                    sync_state: None,
                    allow_two_primaries: None,
                    volumes: Vec::new(),
                }],
            });
            resources.len() - 1
        }
    };
    &mut resources[index]
}

/// Minor `m` as volume `volume` of `r`: its own side and the peer's.
fn add_minor(r: &mut Resource, volume: u32, m: &ProcMinor) {
    r.role = merge_role(r.role, m.role);
    if m.io_suspended && r.suspended.is_empty() {
        r.suspended.push("io-suspended".to_owned());
    }
    r.volumes.push(Volume { number: volume, minor: m.minor, disk: m.disk, client: None, quorum: None, backing_dev: None });
    let peer = &mut r.peers[0];
    peer.role = merge_role(peer.role, m.peer_role);
    if peer.connection == ConnState::Connected && m.connection != ConnState::Connected {
        peer.connection = m.connection;
    }
    peer.volumes.push(PeerVolume {
        number: volume,
        replication: m.replication,
        peer_disk: m.peer_disk,
        peer_client: None,
        done: m.done,
    });
}

/// Volumes the configuration names but /proc/drbd does not report.
fn mark_missing_volumes(resources: &mut [Resource], proc: &ProcDrbd, names: &MinorNames) {
    let reported: Vec<u32> = proc.minors.iter().map(|m| m.minor).collect();
    for (minor, (name, volume)) in names {
        if let Some(r) = resources.iter_mut().find(|r| &r.name == name) {
            if !reported.contains(minor) {
                r.missing_volumes.push(*volume);
            }
        }
    }
}

/// 8.4 keeps a role per minor; Primary anywhere makes the resource Primary.
fn merge_role(a: Role, b: Role) -> Role {
    match (a, b) {
        (Role::Primary, _) | (_, Role::Primary) => Role::Primary,
        (Role::Secondary, Role::Secondary) => Role::Secondary,
        _ => Role::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
version: 8.4.11 (api:1/proto:86-101)
srcversion: 5D9B2C1E8A0F6C3D4E7B9A1
 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
    ns:1048 nr:0 dw:1048 dr:2213 al:3 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 1: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
    ns:123456 nr:0 dw:0 dr:124000 al:0 bm:0 lo:0 pe:1 ua:0 ap:0 ep:1 wo:f oos:900000
\t[==>.................] sync'ed: 12.1% (878900/1000000)K
\tfinish: 0:00:44 speed: 19,868 (19,868) K/sec
 2: cs:Unconfigured
";

    #[test]
    fn reads_minors_and_skips_unconfigured() {
        let p = parse(TWO).unwrap();
        assert_eq!(p.version, "8.4.11");
        assert_eq!(p.major(), Some(8));
        assert_eq!(p.minors.len(), 2);
        let m0 = &p.minors[0];
        assert_eq!((m0.connection, m0.replication), (ConnState::Connected, ReplState::Established));
        assert_eq!((m0.role, m0.peer_role), (Role::Primary, Role::Secondary));
        assert_eq!((m0.disk, m0.peer_disk), (DiskState::UpToDate, DiskState::UpToDate));
        assert!(!m0.io_suspended);
        let m1 = &p.minors[1];
        assert_eq!(m1.replication, ReplState::SyncSource);
        assert_eq!(m1.peer_disk, DiskState::Inconsistent);
        assert_eq!(m1.done, Some(12.1));
    }

    #[test]
    fn folds_8_4_connection_states() {
        assert_eq!(connection_84("WFConnection").unwrap(), (ConnState::Connecting, ReplState::Off));
        assert_eq!(connection_84("StandAlone").unwrap(), (ConnState::StandAlone, ReplState::Off));
        assert_eq!(connection_84("SyncTarget").unwrap(), (ConnState::Connected, ReplState::SyncTarget));
        assert!(connection_84("Connecting").is_err(), "not an 8.4 spelling");
        assert!(connection_84("Established").is_err());
        assert!(connection_84("Whatever").is_err());
    }

    #[test]
    fn errors_on_garbage() {
        assert!(parse("").is_err());
        assert!(parse("hello\n").is_err());
        assert!(parse("version: x.y\n").is_err());
        assert!(parse("version: 8.4.11\n 0: cs:Connected ro:Primary/Boss ds:UpToDate/UpToDate C r-----\n").is_err());
        assert!(parse("version: 8.4.11\n 0: cs:Connected ro:Primary ds:UpToDate/UpToDate C r-----\n").is_err());
        assert!(parse("version: 8.4.11\n 0: cs:Connected ds:UpToDate/UpToDate C r-----\n").is_err());
        assert!(parse("version: 8.4.11\n 0: ro:Primary/Secondary ds:UpToDate/UpToDate\n").is_err());
        assert!(parse("version: 8.4.11\n 0: cs:Connected ro:Primary/Secondary ds:Fresh/UpToDate\n").is_err());
        let dup = "version: 8.4.11\n 0: cs:Unconfigured\n 0: cs:Unconfigured\n";
        assert!(parse(dup).is_err());
    }

    #[test]
    fn drbd9_proc_has_no_minors() {
        let p = parse("version: 9.2.8 (api:2/proto:86-122)\nGIT-hash: abc build by x, 2024-01-01\nTransports (api:20): tcp (9.2.8)\n").unwrap();
        assert_eq!(p.major(), Some(9));
        assert!(p.minors.is_empty());
    }

    #[test]
    fn names_from_drbdadm() {
        assert_eq!(parse_sh_resources("r0 r1\n").unwrap(), vec!["r0", "r1"]);
        assert!(parse_sh_resources("/dev/x").is_err());
        let mut names = MinorNames::new();
        parse_sh_dev("r1", "/dev/drbd3\n/dev/drbd4\n", &mut names).unwrap();
        assert_eq!(names.get(&4), Some(&("r1".to_string(), 1)));
        assert!(parse_sh_dev("r1", "/dev/sda\n", &mut names).is_err());
        assert_eq!(minor_of_device("../../drbd12"), Some(12));
        assert_eq!(minor_of_device("/dev/drbd"), None);
        assert_eq!(minor_of_device("/dev/drbd1p1"), None);
    }

    #[test]
    fn groups_minors_into_resources() {
        let p = parse(TWO).unwrap();
        let mut names = MinorNames::new();
        names.insert(0, ("r0".into(), 0));
        names.insert(1, ("r0".into(), 1));
        let s = to_state(&p, &names, "test");
        assert_eq!(s.resources.len(), 1);
        let r = &s.resources[0];
        assert_eq!(r.role, Role::Primary);
        assert_eq!(r.volumes.len(), 2);
        assert_eq!(r.peers.len(), 1);
        assert_eq!(r.peers[0].name, None);
        assert_eq!(r.peers[0].volumes[1].replication, ReplState::SyncSource);
        let s = to_state(&p, &MinorNames::new(), "test");
        assert_eq!(s.unnamed_minors, vec![0, 1]);
        names.insert(7, ("r0".into(), 2));
        assert_eq!(to_state(&p, &names, "test").resources[0].missing_volumes, vec![2]);
    }
}
