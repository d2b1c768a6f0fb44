//! DRBD 9: the text of `drbdsetup events2 --now`.
//!
//! One line per object (`exists resource|connection|device|peer-device ...`),
//! `key:value` fields in any order, and `exists -` once the whole state has
//! been dumped. Without that last line the dump was cut short, so the result
//! is an error rather than a partial (and possibly too rosy) picture. Keys we
//! do not interpret (statistics, `open`, `write-ordering`, ...) are ignored;
//! an interpreted key with a value outside its known set is an error.

use anyhow::{anyhow, bail, Context};

use super::model::{ConnState, DiskState, Peer, PeerVolume, ReplState, Resource, Role, SyncVerdict, Volume};

pub fn parse(text: &str) -> anyhow::Result<Vec<Resource>> {
    let mut resources: Vec<Resource> = Vec::new();
    let mut complete = false;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let at = |message: anyhow::Error| anyhow!("line {line_no}: {message:#}");
        let mut words = line.split_whitespace();
        let Some(action) = words.next() else { continue };
        if complete {
            return Err(at(anyhow!("'{}' after the end of the state dump ('exists -')", shorten(line))));
        }
        let object = words.next();
        match (action, object) {
            ("exists", Some("-")) => {
                if words.next().is_some() {
                    return Err(at(anyhow!("the end marker 'exists -' carries extra words")));
                }
                complete = true;
            }
            ("exists", Some(object)) => {
                let fields = Fields::parse(words).map_err(at)?;
                apply(&mut resources, object, &fields).map_err(at)?;
            }
            // Helper scripts that DRBD ran while we listened: not state.
            ("call" | "response", Some("helper")) => {}
            ("create" | "change" | "destroy" | "rename" | "call" | "response", _) => {
                return Err(at(anyhow!("unexpected '{action}' event: not a 'drbdsetup events2 --now' state dump")));
            }
            _ => return Err(at(anyhow!("not an events2 line: '{}'", shorten(line)))),
        }
    }
    if !complete {
        return Err(if resources.is_empty() && text.trim().is_empty() {
            anyhow!("empty output (no 'exists -' end marker)")
        } else {
            anyhow!("truncated: the state dump does not end with 'exists -'")
        });
    }
    for resource in &resources {
        check_complete(resource)?;
    }
    Ok(resources)
}

fn apply(resources: &mut Vec<Resource>, object: &str, fields: &Fields) -> anyhow::Result<()> {
    match object {
        "resource" => add_resource(resources, fields),
        "connection" => add_connection(owner(resources, fields, object)?, fields),
        "device" => add_device(owner(resources, fields, object)?, fields),
        "peer-device" => add_peer_device(owner(resources, fields, object)?, fields),
        // Network paths and anything newer DRBD reports: not needed for the gate.
        _ => Ok(()),
    }
}

fn add_resource(resources: &mut Vec<Resource>, fields: &Fields) -> anyhow::Result<()> {
    let name = fields.require("name")?;
    if resources.iter().any(|r| r.name == name) {
        bail!("resource {name} appears twice");
    }
    resources.push(Resource {
        name: name.to_owned(),
        role: Role::parse(fields.require("role")?)?,
        suspended: fields.get("suspended").map(parse_suspended).transpose()?.unwrap_or_default(),
        force_io_failures: fields.yes_no("force-io-failures")?,
        may_promote: fields.yes_no("may_promote")?,
        promotion_score: fields.number::<i64>("promotion_score")?,
        volumes: Vec::new(),
        missing_volumes: Vec::new(),
        peers: Vec::new(),
    });
    Ok(())
}

fn add_connection(resource: &mut Resource, fields: &Fields) -> anyhow::Result<()> {
    let key = PeerKey::of(fields)?;
    if resource.peers.iter().any(|p| key.matches(p)) {
        bail!("{}: connection {key} appears twice", resource.name);
    }
    resource.peers.push(Peer {
        name: key.name.map(str::to_owned),
        node_id: key.node_id,
        connection: ConnState::parse(fields.require("connection")?)?,
        role: Role::parse(fields.require("role")?)?,
        sync_state: fields.get("sync-state").map(SyncVerdict::parse).transpose()?,
        allow_two_primaries: None,
        volumes: Vec::new(),
    });
    Ok(())
}

/// Which connection a `connection` or `peer-device` line belongs to: its
/// `conn-name`, else its `peer-node-id`. drbdsetup-84 (drbd-utils 9 on a
/// DRBD 8.4 kernel) leaves `conn-name` off in StandAlone, as the real 8.4.11
/// kernel showed (tests/fixtures/drbd84-real); the node id still ties the
/// lines together.
struct PeerKey<'a> {
    name: Option<&'a str>,
    node_id: Option<u32>,
}

impl<'a> PeerKey<'a> {
    fn of(fields: &Fields<'a>) -> anyhow::Result<PeerKey<'a>> {
        let name = match fields.get("conn-name") {
            Some("") => bail!("field 'conn-name' is empty"),
            other => other,
        };
        let node_id = fields.number::<u32>("peer-node-id")?;
        if name.is_none() && node_id.is_none() {
            bail!("neither conn-name nor peer-node-id names the connection");
        }
        Ok(PeerKey { name, node_id })
    }

    fn matches(&self, peer: &Peer) -> bool {
        match self.name {
            Some(name) => peer.name.as_deref() == Some(name),
            None => peer.name.is_none() && peer.node_id == self.node_id,
        }
    }
}

impl std::fmt::Display for PeerKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.name, self.node_id) {
            (Some(name), _) => f.write_str(name),
            (None, Some(id)) => write!(f, "to peer-node-id {id}"),
            (None, None) => f.write_str("(unnamed)"),
        }
    }
}

fn add_device(resource: &mut Resource, fields: &Fields) -> anyhow::Result<()> {
    let number = fields.require_number::<u32>("volume")?;
    if resource.volume(number).is_some() {
        bail!("{}: volume {number} appears twice", resource.name);
    }
    resource.volumes.push(Volume {
        number,
        minor: fields.require_number("minor")?,
        disk: DiskState::parse(fields.require("disk")?)?,
        client: fields.yes_no_unknown("client")?,
        quorum: fields.yes_no("quorum")?,
        backing_dev: fields.get("backing_dev").filter(|d| *d != "none").map(str::to_owned),
    });
    Ok(())
}

fn add_peer_device(resource: &mut Resource, fields: &Fields) -> anyhow::Result<()> {
    let key = PeerKey::of(fields)?;
    let conn_name = key.to_string();
    let res_name = resource.name.clone();
    let peer = resource
        .peers
        .iter_mut()
        .find(|p| key.matches(p))
        .with_context(|| format!("{res_name}: peer-device for connection {conn_name} before its connection line"))?;
    let node_id = key.node_id;
    if node_id.is_some() && peer.node_id.is_some() && node_id != peer.node_id {
        bail!("{res_name}: peer-device {conn_name} has another peer-node-id than its connection");
    }
    let number = fields.require_number::<u32>("volume")?;
    if peer.volume(number).is_some() {
        bail!("{res_name}: peer-device {conn_name} volume {number} appears twice");
    }
    let done = fields.number::<f64>("done")?;
    if done.is_some_and(|d| !(0.0..=100.0).contains(&d)) {
        bail!("{res_name}: done:{} is not a percentage", fields.get("done").unwrap_or(""));
    }
    peer.volumes.push(PeerVolume {
        number,
        replication: ReplState::parse(fields.require("replication")?)?,
        peer_disk: DiskState::parse(fields.require("peer-disk")?)?,
        peer_client: fields.yes_no_unknown("peer-client")?,
        done,
    });
    Ok(())
}

fn owner<'a>(resources: &'a mut [Resource], fields: &Fields, object: &str) -> anyhow::Result<&'a mut Resource> {
    let name = fields.require("name")?;
    resources
        .iter_mut()
        .find(|r| r.name == name)
        .with_context(|| format!("{object} of resource {name} before its resource line"))
}

/// DRBD lists every peer-device of every connection; a gap means the dump is not whole.
fn check_complete(resource: &Resource) -> anyhow::Result<()> {
    for peer in &resource.peers {
        let peer_name = peer.name.as_deref().unwrap_or("?");
        for pv in &peer.volumes {
            if resource.volume(pv.number).is_none() {
                bail!("{}: peer-device {peer_name} volume {} has no device line", resource.name, pv.number);
            }
        }
        for v in &resource.volumes {
            if peer.volume(v.number).is_none() {
                bail!("{}: connection {peer_name} has no peer-device line for volume {}", resource.name, v.number);
            }
        }
    }
    Ok(())
}

fn parse_suspended(text: &str) -> anyhow::Result<Vec<String>> {
    if text == "no" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|reason| match reason {
            "user" | "no-data" | "no-disk" | "fencing" | "quorum" => Ok(reason.to_owned()),
            other => Err(anyhow!("unknown suspension reason '{other}' in suspended:{text}")),
        })
        .collect()
}

fn shorten(line: &str) -> String {
    const MAX: usize = 80;
    let line = line.trim();
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The `key:value` words of one line.
struct Fields<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    fn parse(words: impl Iterator<Item = &'a str>) -> anyhow::Result<Fields<'a>> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for word in words {
            let (key, value) = word
                .split_once(':')
                .filter(|(k, _)| !k.is_empty())
                .with_context(|| format!("'{}' is not a key:value field", shorten(word)))?;
            if pairs.iter().any(|(k, _)| *k == key) {
                bail!("field '{key}' appears twice");
            }
            pairs.push((key, value));
        }
        Ok(Fields { pairs })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn require(&self, key: &str) -> anyhow::Result<&'a str> {
        match self.get(key) {
            Some("") => Err(anyhow!("field '{key}' is empty")),
            Some(value) => Ok(value),
            None => Err(anyhow!("field '{key}' is missing")),
        }
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.get(key)
            .map(|v| v.parse::<T>().map_err(|_| anyhow!("{key}:{v} is not a number")))
            .transpose()
    }

    fn require_number<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<T> {
        self.require(key)?;
        Ok(self.number(key)?.expect("present"))
    }

    fn yes_no(&self, key: &str) -> anyhow::Result<Option<bool>> {
        self.get(key)
            .map(|v| match v {
                "yes" => Ok(true),
                "no" => Ok(false),
                other => Err(anyhow!("{key}:{other} is neither yes nor no")),
            })
            .transpose()
    }

    /// Like `yes_no`, with DRBD's explicit `unknown` read as "not reported".
    fn yes_no_unknown(&self, key: &str) -> anyhow::Result<Option<bool>> {
        match self.get(key) {
            Some("unknown") => Ok(None),
            _ => self.yes_no(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shape of drbd-utils 9.2x output for a healthy two-node resource.
    const HEALTHY: &str = "\
exists resource name:r0 role:Secondary suspended:no force-io-failures:no may_promote:yes promotion_score:10101
exists connection name:r0 peer-node-id:1 conn-name:node2 connection:Connected role:Secondary
exists device name:r0 volume:0 minor:0 backing_dev:/dev/vg0/r0 disk:UpToDate client:no open:no quorum:yes
exists peer-device name:r0 peer-node-id:1 conn-name:node2 volume:0 replication:Established peer-disk:UpToDate peer-client:no resync-suspended:no
exists path name:r0 peer-node-id:1 conn-name:node2 local:ipv4:10.0.0.1:7789 peer:ipv4:10.0.0.2:7789 established:yes
exists -
";

    #[test]
    fn reads_a_healthy_two_node_resource() {
        let rs = parse(HEALTHY).unwrap();
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(r.name, "r0");
        assert_eq!(r.role, Role::Secondary);
        assert!(r.suspended.is_empty());
        assert_eq!(r.may_promote, Some(true));
        assert_eq!(r.promotion_score, Some(10101));
        assert_eq!(r.force_io_failures, Some(false));
        assert_eq!(r.volumes.len(), 1);
        let v = &r.volumes[0];
        assert_eq!((v.number, v.minor, v.disk), (0, 0, DiskState::UpToDate));
        assert_eq!(v.quorum, Some(true));
        assert_eq!(v.client, Some(false));
        assert_eq!(v.backing_dev.as_deref(), Some("/dev/vg0/r0"));
        let p = &r.peers[0];
        assert_eq!(p.name.as_deref(), Some("node2"));
        assert_eq!(p.node_id, Some(1));
        assert_eq!((p.connection, p.role), (ConnState::Connected, Role::Secondary));
        assert_eq!(p.volumes[0].replication, ReplState::Established);
        assert_eq!(p.volumes[0].peer_disk, DiskState::UpToDate);
    }

    #[test]
    fn field_order_does_not_matter_and_unknown_keys_are_ignored() {
        let text = "\
exists resource role:Primary write-ordering:flush name:r0 suspended:no future-key:whatever
exists connection role:Primary connection:Connected conn-name:b name:r0 ap-in-flight:0 rs-in-flight:0 congested:no
exists device disk:Outdated minor:7 volume:0 name:r0 size:1048576 read:10 written:20 al-writes:1 bm-writes:0 upper-pending:0 lower-pending:0 al-suspended:no blocked:no
exists peer-device volume:0 peer-disk:UpToDate replication:SyncTarget conn-name:b name:r0 done:42.50 received:1 sent:2 out-of-sync:100 pending:0 unacked:0
exists -
";
        let r = &parse(text).unwrap()[0];
        assert_eq!(r.role, Role::Primary);
        assert_eq!(r.may_promote, None);
        assert_eq!(r.volumes[0].minor, 7);
        assert_eq!(r.volumes[0].quorum, None);
        assert_eq!(r.peers[0].role, Role::Primary);
        assert_eq!(r.peers[0].volumes[0].replication, ReplState::SyncTarget);
        assert_eq!(r.peers[0].volumes[0].done, Some(42.5));
    }

    #[test]
    fn split_brain_and_suspension_are_read() {
        let text = "\
exists resource name:r0 role:Secondary suspended:user,quorum may_promote:no promotion_score:0
exists connection name:r0 peer-node-id:1 conn-name:node2 connection:StandAlone role:Unknown sync-state:SplitBrain
exists device name:r0 volume:0 minor:0 backing_dev:none disk:Diskless client:yes quorum:no
exists peer-device name:r0 peer-node-id:1 conn-name:node2 volume:0 replication:Off peer-disk:DUnknown peer-client:no resync-suspended:no
exists -
";
        let r = &parse(text).unwrap()[0];
        assert_eq!(r.suspended, vec!["user".to_string(), "quorum".to_string()]);
        assert_eq!(r.peers[0].sync_state, Some(SyncVerdict::SplitBrain));
        assert_eq!(r.volumes[0].backing_dev, None);
        assert_eq!(r.volumes[0].client, Some(true));
        assert_eq!(r.volumes[0].quorum, Some(false));
    }

    #[test]
    fn no_resources_is_a_valid_complete_dump() {
        assert_eq!(parse("exists -\n").unwrap(), vec![]);
    }

    #[test]
    fn missing_end_marker_is_truncation() {
        let cut = HEALTHY.replace("exists -\n", "");
        assert!(parse(&cut).unwrap_err().to_string().contains("truncated"));
        assert!(parse("").unwrap_err().to_string().contains("empty"));
        assert!(parse("\n\n").unwrap_err().to_string().contains("empty"));
        // Cut in the middle of a line: the marker is missing too.
        let mid = &HEALTHY[..HEALTHY.len() / 2];
        assert!(parse(mid).is_err());
    }

    #[test]
    fn unknown_values_of_known_keys_are_errors() {
        for (from, to) in [
            ("disk:UpToDate", "disk:Fresh"),
            ("role:Secondary suspended", "role:Boss suspended"),
            ("connection:Connected", "connection:Online"),
            ("replication:Established", "replication:Fine"),
            ("peer-disk:UpToDate", "peer-disk:uptodate"),
            ("quorum:yes", "quorum:maybe"),
            ("may_promote:yes", "may_promote:1"),
            ("minor:0", "minor:zero"),
            ("volume:0 minor", "volume:-1 minor"),
            ("suspended:no", "suspended:sleepy"),
            ("promotion_score:10101", "promotion_score:high"),
        ] {
            let text = HEALTHY.replacen(from, to, 1);
            assert_ne!(text, HEALTHY, "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("line "), "{err}");
        }
    }

    #[test]
    fn garbage_and_inconsistent_dumps_are_errors() {
        for text in [
            "hello world\nexists -\n",
            "exists resource name:r0 role:Secondary garbage\nexists -\n",
            "exists resource name:r0 role:Secondary name:r1\nexists -\n",
            "exists resource role:Secondary\nexists -\n",
            "exists resource name: role:Secondary\nexists -\n",
            "exists device name:r0 volume:0 minor:0 disk:UpToDate\nexists -\n",
            "change resource name:r0 role:Primary\nexists -\n",
            "exists -\nexists resource name:r0 role:Secondary\n",
            "exists - extra\n",
            "exists resource name:r0 role:Secondary\nexists resource name:r0 role:Secondary\nexists -\n",
            "exists resource name:r0 role:Secondary\nexists peer-device name:r0 conn-name:x volume:0 replication:Off peer-disk:DUnknown\nexists -\n",
            // Neither conn-name nor peer-node-id: nothing ties the lines together.
            "exists resource name:r0 role:Secondary\nexists connection name:r0 connection:StandAlone role:Unknown\nexists -\n",
            "exists resource name:r0 role:Secondary\nexists connection name:r0 conn-name: connection:StandAlone role:Unknown\nexists -\n",
        ] {
            assert!(parse(text).is_err(), "accepted: {text}");
        }
        // A connection without the peer-device of an existing volume.
        let gap = HEALTHY.lines().filter(|l| !l.contains("peer-device")).collect::<Vec<_>>().join("\n");
        assert!(parse(&gap).unwrap_err().to_string().contains("no peer-device line for volume 0"));
    }

    /// What drbdsetup-84 (drbd-utils 9.22) printed on the real 8.4.11 kernel
    /// in StandAlone (tests/fixtures/drbd84-real/standalone.beta.events2):
    /// no conn-name, the lines tied by peer-node-id.
    #[test]
    fn a_connection_without_conn_name_is_keyed_by_peer_node_id() {
        let text = "\
exists resource name:r0 role:Secondary suspended:no
exists connection name:r0 peer-node-id:0 connection:StandAlone role:Unknown
exists device name:r0 volume:0 minor:0 disk:Outdated
exists peer-device name:r0 peer-node-id:0 volume:0 replication:Off peer-disk:DUnknown resync-suspended:no
exists -
";
        let r = &parse(text).unwrap()[0];
        assert_eq!(r.peers.len(), 1);
        assert_eq!((r.peers[0].name.as_deref(), r.peers[0].node_id), (None, Some(0)));
        assert_eq!(r.peers[0].connection, ConnState::StandAlone);
        assert_eq!(r.peers[0].volumes[0].peer_disk, DiskState::DUnknown);
        // A peer-device of another node id has no connection line.
        let stray = text.replace("peer-device name:r0 peer-node-id:0", "peer-device name:r0 peer-node-id:3");
        assert!(parse(&stray).unwrap_err().to_string().contains("before its connection line"));
    }

    #[test]
    fn helper_calls_are_not_state() {
        let text = format!("call helper name:r0 volume:0 minor:0 helper:before-resync-target\n{HEALTHY}");
        assert_eq!(parse(&text).unwrap().len(), 1);
    }
}
