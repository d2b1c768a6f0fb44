//! `drbdsetup show`: the configuration the kernel runs with. The gate needs
//! one fact from it that events2 does not carry: whether a connection has
//! `allow-two-primaries` (needed for the short dual-primary phase of a live
//! migration). `drbdsetup show` prints only options that differ from the
//! defaults, so a connection listed without the option has it off.
//!
//! DRBD 9 (one `connection` block per peer, named by `_name` in its `net`):
//! ```text
//! resource "r0" {
//!     connection {
//!         _peer_node_id 1;
//!         path { _this_host ipv4 10.0.0.1:7789; _remote_host ipv4 10.0.0.2:7789; }
//!         net { allow-two-primaries yes; _name "node2"; }
//!     }
//! }
//! ```
//! DRBD 8.4 has a single `net` block in the resource.
//!
//! It also tells the `fencing` policy (rule F1 of the gate). DRBD 8.4 keeps
//! it among the disk options of each volume, DRBD 9 among the net options of
//! each connection; like every option it is printed only when it is not the
//! default, `dont-care`:
//! ```text
//! resource r0 {                               connection {
//!     _this_host {                                net { fencing resource-only; _name "node2"; }
//!         volume 0 {                          }
//!             disk "/dev/vda";
//!             disk { fencing resource-only; }
//!         }
//!     }
//! }
//! ```
//! A detached 8.4 volume (Diskless) has no disk options at all: its policy
//! is unknown, not `dont-care`.

use anyhow::{anyhow, bail, Context};

use super::model::{DrbdState, FencingPolicy};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    pub resource: String,
    /// The connection name; `None` for DRBD 8.4's single unnamed peer.
    pub connection: Option<String>,
    pub allow_two_primaries: bool,
}

pub fn parse(text: &str) -> anyhow::Result<Vec<NetOptions>> {
    let statements = parse_blocks(text)?;
    let mut options = Vec::new();
    for resource in statements.iter().filter(|s| s.keyword() == Some("resource")) {
        let name = resource.words.get(1).context("a resource block without a name")?;
        let body = resource.body.as_deref().with_context(|| format!("resource {name} has no block"))?;
        for connection in body.iter().filter(|s| s.keyword() == Some("connection")) {
            let inner = connection.body.as_deref().unwrap_or_default();
            let net = inner.iter().find(|s| s.keyword() == Some("net")).and_then(|n| n.body.as_deref());
            let conn_name = net
                .and_then(|n| value_of(n, "_name"))
                .or_else(|| value_of(inner, "_name"))
                .with_context(|| format!("resource {name}: a connection without _name"))?;
            options.push(NetOptions {
                resource: name.clone(),
                connection: Some(conn_name.to_owned()),
                allow_two_primaries: allow_two_primaries(net.unwrap_or_default())?,
            });
        }
        let has_connections = body.iter().any(|s| s.keyword() == Some("connection"));
        if !has_connections {
            let net = body.iter().find(|s| s.keyword() == Some("net")).and_then(|n| n.body.as_deref());
            options.push(NetOptions {
                resource: name.clone(),
                connection: None,
                allow_two_primaries: allow_two_primaries(net.unwrap_or_default())?,
            });
        }
    }
    Ok(options)
}

/// Fills `allow_two_primaries` of every peer that `options` describes. 8.4's
/// single unnamed `net` block belongs to the resource's one peer, whatever
/// the state source called that peer (drbdsetup-84's events2 says `peer`).
pub fn apply(state: &mut DrbdState, options: &[NetOptions]) {
    for resource in &mut state.resources {
        let single_peer = resource.peers.len() == 1;
        for peer in &mut resource.peers {
            let found = options.iter().find(|o| {
                o.resource == resource.name && (o.connection == peer.name || (o.connection.is_none() && single_peer))
            });
            if let Some(o) = found {
                peer.allow_two_primaries = Some(o.allow_two_primaries);
            }
        }
    }
}

/// What a `fencing` setting belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FencingScope {
    /// DRBD 8.4: a disk option, per volume.
    Volume(u32),
    /// DRBD 9: a net option, per connection (named as in events2).
    Connection(String),
}

impl std::fmt::Display for FencingScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FencingScope::Volume(number) => write!(f, "volume {number}"),
            FencingScope::Connection(name) => write!(f, "connection to {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencingSetting {
    pub resource: String,
    pub scope: FencingScope,
    /// `None` when the kernel does not say: a volume without a local disk.
    pub policy: Option<FencingPolicy>,
}

/// The fencing policy of every volume (8.4) or connection (9) of every
/// resource in `drbdsetup show` output.
pub fn fencing(text: &str) -> anyhow::Result<Vec<FencingSetting>> {
    let statements = parse_blocks(text)?;
    let mut settings = Vec::new();
    for resource in statements.iter().filter(|s| s.keyword() == Some("resource")) {
        let name = resource.words.get(1).context("a resource block without a name")?;
        let body = resource.body.as_deref().with_context(|| format!("resource {name} has no block"))?;
        let setting = |scope, policy| FencingSetting { resource: name.clone(), scope, policy };
        let connections: Vec<&Statement> = body.iter().filter(|s| s.keyword() == Some("connection")).collect();
        if !connections.is_empty() {
            for connection in connections {
                let inner = connection.body.as_deref().unwrap_or_default();
                let net = block(inner, "net").unwrap_or_default();
                let peer = value_of(net, "_name")
                    .or_else(|| value_of(inner, "_name"))
                    .with_context(|| format!("resource {name}: a connection without _name"))?;
                let policy = fencing_policy(net).with_context(|| format!("resource {name}, connection to {peer}"))?;
                settings.push(setting(FencingScope::Connection(peer.to_owned()), Some(policy)));
            }
            continue;
        }
        let this_host = block(body, "_this_host").unwrap_or_default();
        for volume in this_host.iter().filter(|s| s.keyword() == Some("volume") && s.body.is_some()) {
            let number = volume
                .words
                .get(1)
                .and_then(|n| n.parse::<u32>().ok())
                .with_context(|| format!("resource {name}: a volume without a number"))?;
            let options = volume.body.as_deref().unwrap_or_default();
            // `disk "/dev/..."` names the backing device; `disk { ... }` holds its options.
            let attached = value_of(options, "disk").is_some();
            let policy = if attached {
                let disk_options = block(options, "disk").unwrap_or_default();
                Some(fencing_policy(disk_options).with_context(|| format!("resource {name}, volume {number}"))?)
            } else {
                None
            };
            settings.push(setting(FencingScope::Volume(number), policy));
        }
    }
    Ok(settings)
}

/// `fencing` in an option block; absent means DRBD's default, `dont-care`.
fn fencing_policy(options: &[Statement]) -> anyhow::Result<FencingPolicy> {
    value_of(options, "fencing").map_or(Ok(FencingPolicy::DontCare), FencingPolicy::parse)
}

fn block<'a>(statements: &'a [Statement], key: &str) -> Option<&'a [Statement]> {
    statements.iter().find(|s| s.keyword() == Some(key) && s.body.is_some()).and_then(|s| s.body.as_deref())
}

fn allow_two_primaries(net: &[Statement]) -> anyhow::Result<bool> {
    match value_of(net, "allow-two-primaries") {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(other) => Err(anyhow!("allow-two-primaries {other}: neither yes nor no")),
    }
}

fn value_of<'a>(statements: &'a [Statement], key: &str) -> Option<&'a str> {
    statements
        .iter()
        .find(|s| s.body.is_none() && s.keyword() == Some(key))
        .and_then(|s| s.words.get(1))
        .map(String::as_str)
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    words: Vec<String>,
    body: Option<Vec<Statement>>,
}

impl Statement {
    fn keyword(&self) -> Option<&str> {
        self.words.first().map(String::as_str)
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    End,
}

fn tokenize(text: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' | '}' | ';' => {
                chars.next();
                tokens.push(match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    _ => Token::End,
                });
            }
            '"' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().context("unterminated quoted string")?),
                        Some(c) => word.push(c),
                        None => bail!("unterminated quoted string"),
                    }
                }
                tokens.push(Token::Word(word));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

fn parse_blocks(text: &str) -> anyhow::Result<Vec<Statement>> {
    let tokens = tokenize(text)?;
    let mut position = 0;
    let statements = parse_statements(&tokens, &mut position, 0)?;
    if position != tokens.len() {
        bail!("unbalanced '}}'");
    }
    Ok(statements)
}

fn parse_statements(tokens: &[Token], position: &mut usize, depth: usize) -> anyhow::Result<Vec<Statement>> {
    if depth > 16 {
        bail!("blocks nested too deeply");
    }
    let mut statements = Vec::new();
    let mut words = Vec::new();
    while let Some(token) = tokens.get(*position) {
        *position += 1;
        match token {
            Token::Word(w) => words.push(w.clone()),
            Token::End => {
                if !words.is_empty() {
                    statements.push(Statement { words: std::mem::take(&mut words), body: None });
                }
            }
            Token::Open => {
                let body = parse_statements(tokens, position, depth + 1)?;
                match tokens.get(*position - 1) {
                    Some(Token::Close) => {}
                    _ => bail!("unterminated block"),
                }
                statements.push(Statement { words: std::mem::take(&mut words), body: Some(body) });
            }
            Token::Close => {
                if depth == 0 {
                    *position -= 1;
                    bail!("unbalanced '}}'");
                }
                if !words.is_empty() {
                    bail!("'{}' is not followed by ';'", words.join(" "));
                }
                return Ok(statements);
            }
        }
    }
    if depth > 0 {
        bail!("unterminated block");
    }
    if !words.is_empty() {
        bail!("'{}' is not followed by ';'", words.join(" "));
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NINE: &str = r#"resource "r0" {
    options {
        quorum          majority;
        on-no-quorum    io-error;
    }
    _this_host {
        node-id                 0;
        volume 0 {
            device                      minor 0;
            disk                        "/dev/vg0/r0";
            meta-disk                   internal;
        }
    }
    connection {
        _peer_node_id 1;
        path {
            _this_host ipv4 10.0.0.1:7789;
            _remote_host ipv4 10.0.0.2:7789;
        }
        _cstate Connected;
        net {
            allow-two-primaries yes;
            _name               "node2";
        }
    }
    connection {
        _peer_node_id 2;
        path {
            _this_host ipv4 10.0.0.1:7790;
            _remote_host ipv4 10.0.0.3:7790;
        }
        _cstate Connected;
        net {
            _name               "node3";
        }
    }
}

"#;

    const EIGHT: &str = "resource r0 {\n    options {\n    }\n    net {\n        allow-two-primaries\tyes;\n        after-sb-0pri\tdiscard-zero-changes;\n    }\n    _remote_host {\n        address\t\t\tipv4 10.0.0.2:7789;\n    }\n}\n";

    #[test]
    fn reads_allow_two_primaries_per_connection() {
        let o = parse(NINE).unwrap();
        assert_eq!(
            o,
            vec![
                NetOptions { resource: "r0".into(), connection: Some("node2".into()), allow_two_primaries: true },
                NetOptions { resource: "r0".into(), connection: Some("node3".into()), allow_two_primaries: false },
            ]
        );
    }

    #[test]
    fn reads_the_single_8_4_net_block() {
        let o = parse(EIGHT).unwrap();
        assert_eq!(o, vec![NetOptions { resource: "r0".into(), connection: None, allow_two_primaries: true }]);
    }

    /// drbdsetup-84's events2 calls the 8.4 peer `peer`; the unnamed net
    /// block is still that peer's.
    #[test]
    fn the_8_4_net_block_reaches_the_single_peer_whatever_its_name() {
        use crate::drbd::model::{ConnState, Peer, Resource, Role, StateOrigin};
        let peer = |name: &str| Peer {
            name: Some(name.to_owned()),
            node_id: Some(0),
            connection: ConnState::Connected,
            role: Role::Secondary,
            sync_state: None,
            allow_two_primaries: None,
            volumes: vec![],
        };
        let resource = |peers: Vec<Peer>| Resource {
            name: "r0".into(),
            role: Role::Primary,
            suspended: vec![],
            force_io_failures: None,
            may_promote: None,
            promotion_score: None,
            volumes: vec![],
            missing_volumes: vec![],
            peers,
        };
        let mut state = DrbdState { origin: StateOrigin::Events2 { from: "test".into() }, resources: vec![resource(vec![peer("peer")])], unnamed_minors: vec![] };
        apply(&mut state, &parse(EIGHT).unwrap());
        assert_eq!(state.resources[0].peers[0].allow_two_primaries, Some(true));
        // With two named peers an unnamed block says nothing about either.
        state.resources[0] = resource(vec![peer("b"), peer("c")]);
        apply(&mut state, &parse(EIGHT).unwrap());
        assert!(state.resources[0].peers.iter().all(|p| p.allow_two_primaries.is_none()));
    }

    fn fencing_of(resource: &str, scope: FencingScope, policy: Option<FencingPolicy>) -> FencingSetting {
        FencingSetting { resource: resource.into(), scope, policy }
    }

    /// What the real 8.4.11 kernel printed in tests/lab/drbd-nodes.sh,
    /// whose drbd.conf sets `fencing resource-only`.
    #[test]
    fn reads_the_8_4_fencing_policy_per_volume_from_the_kernel_captures() {
        let real = |state: &str| match state {
            "healthy" => include_str!("../../tests/fixtures/drbd84-real/healthy.alpha.show"),
            "standalone" => include_str!("../../tests/fixtures/drbd84-real/standalone.beta.show"),
            "diskless" => include_str!("../../tests/fixtures/drbd84-real/diskless.beta.show"),
            // drbd.conf's `fencing dont-care` adjusted into the running kernel.
            "no-fencing" => include_str!("../../tests/fixtures/drbd84-real/no-fencing.alpha.show"),
            "cut-no-fencing" => include_str!("../../tests/fixtures/drbd84-real/cut-no-fencing.beta.show"),
            _ => unreachable!(),
        };
        let resource_only = vec![fencing_of("r0", FencingScope::Volume(0), Some(FencingPolicy::ResourceOnly))];
        assert_eq!(fencing(real("healthy")).unwrap(), resource_only);
        // StandAlone: no net section any more, the disk options stay.
        assert_eq!(fencing(real("standalone")).unwrap(), resource_only);
        // Detached: the volume lists no disk and no disk options.
        assert_eq!(fencing(real("diskless")).unwrap(), vec![fencing_of("r0", FencingScope::Volume(0), None)]);
        // The kernel leaves the default out: not printed is dont-care, not unknown.
        let dont_care = vec![fencing_of("r0", FencingScope::Volume(0), Some(FencingPolicy::DontCare))];
        assert!(!real("no-fencing").contains("fencing"));
        assert_eq!(fencing(real("no-fencing")).unwrap(), dont_care);
        assert_eq!(fencing(real("cut-no-fencing")).unwrap(), dont_care);
        // No disk options at all, the backing disk still there: dont-care.
        assert_eq!(
            fencing(include_str!("../../tests/fixtures/drbd/84-single.show")).unwrap(),
            vec![fencing_of("r0", FencingScope::Volume(0), Some(FencingPolicy::DontCare))]
        );
    }

    #[test]
    fn reads_the_drbd_9_fencing_policy_per_connection() {
        let fenced = NINE.replace("allow-two-primaries yes;", "allow-two-primaries yes;\n            fencing resource-and-stonith;");
        assert_ne!(fenced, NINE);
        assert_eq!(
            fencing(&fenced).unwrap(),
            vec![
                fencing_of("r0", FencingScope::Connection("node2".into()), Some(FencingPolicy::ResourceAndStonith)),
                fencing_of("r0", FencingScope::Connection("node3".into()), Some(FencingPolicy::DontCare)),
            ]
        );
        // The DRBD 9 fixtures set no fencing; volumes of _this_host do not count in 9.
        let dual = fencing(include_str!("../../tests/fixtures/drbd/3node-dual.show")).unwrap();
        assert_eq!(dual.len(), 2);
        assert!(dual.iter().all(|s| matches!(s.scope, FencingScope::Connection(_)) && s.policy == Some(FencingPolicy::DontCare)), "{dual:?}");
    }

    #[test]
    fn an_unknown_fencing_policy_is_an_error_not_a_default() {
        let e = fencing("resource r0 { _this_host { volume 0 { disk \"/dev/vda\"; disk { fencing sometimes; } } } }").unwrap_err();
        assert!(format!("{e:#}").contains("unknown fencing policy 'sometimes'"), "{e:#}");
        assert!(fencing("resource r0 { connection { net { fencing maybe; _name \"b\"; } } }").is_err());
        assert!(fencing("resource r0 { _this_host { volume x { disk \"/dev/vda\"; } } }").is_err());
        assert_eq!(fencing("").unwrap(), vec![]);
    }

    #[test]
    fn malformed_configuration_is_an_error() {
        assert!(parse("resource r0 {").is_err());
        assert!(parse("resource r0 { net { x } }").is_err());
        assert!(parse("}").is_err());
        assert!(parse("resource \"r0 {}").is_err());
        assert!(parse("resource r0 { net { allow-two-primaries maybe; } }").is_err());
        assert!(parse("resource r0 { connection { net { } } }").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
    }
}
