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

use anyhow::{anyhow, bail, Context};

use super::model::DrbdState;

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
