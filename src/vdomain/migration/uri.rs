//! Where a migration goes: the URI of the target's hypervisor (the control
//! connection) and the URI the guest's memory travels over (the data
//! connection). Pure functions of the parameters and the target node name.

use std::hash::{BuildHasher, Hasher};

use anyhow::{anyhow, ensure};

use crate::vdomain::Params;

use super::options::MigrateOptions;

/// The placeholder for the target node in `remoteuri`, `migrateuri` and
/// `--migrateuri=`.
pub const NODE_PLACEHOLDER: &str = "%n";

/// The range libvirt itself picks migration ports from; the classic agent
/// draws the computed URI's port from it too.
pub const MIGRATION_PORTS: std::ops::RangeInclusive<u16> = 49152..=49215;

/// The parts of a libvirt URI of the form
/// `driver[+transport]://[user@]host[:port]/path[?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HypervisorUri {
    pub driver: String,
    pub transport: Option<String>,
    pub user: Option<String>,
    /// As written in the URI: IPv6 literals keep their brackets. Empty for
    /// the local hypervisor (`qemu:///system`).
    pub host: String,
    pub port: Option<String>,
    /// Everything from the first `/` (or `?`) after the authority on.
    pub rest: String,
}

impl HypervisorUri {
    pub fn parse(uri: &str) -> anyhow::Result<HypervisorUri> {
        let (scheme, after) = uri
            .split_once("://")
            .ok_or_else(|| anyhow!("'{uri}' is not a libvirt URI of the form driver[+transport]://host/path"))?;
        let valid_scheme = !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        ensure!(valid_scheme, "'{uri}' has no valid scheme");
        let (driver, transport) = match scheme.split_once('+') {
            Some((driver, transport)) => (driver, Some(transport.to_owned())),
            None => (scheme, None),
        };
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(authority_end);
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, host_port)) => (Some(user.to_owned()), host_port),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port).ok_or_else(|| anyhow!("'{uri}' has a malformed host"))?;
        Ok(HypervisorUri {
            driver: driver.to_owned(),
            transport,
            user,
            host: host.to_owned(),
            port: port.map(str::to_owned),
            rest: rest.to_owned(),
        })
    }
}

impl std::fmt::Display for HypervisorUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.driver)?;
        if let Some(transport) = &self.transport {
            write!(f, "+{transport}")?;
        }
        f.write_str("://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = &self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(&self.rest)
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; `None` when malformed.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let close = text.find(']')?;
        let (host, after) = text.split_at(close + 1);
        return match after {
            "" => Some((host, None)),
            _ => after.strip_prefix(':').filter(|p| is_port(p)).map(|p| (host, Some(p))),
        };
    }
    match text.split_once(':') {
        None => Some((text, None)),
        Some((host, port)) if is_port(port) => Some((host, Some(port))),
        Some(_) => None,
    }
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.chars().all(|c| c.is_ascii_digit())
}

/// The node name as it must appear in a URI's host part: IPv6 literals get
/// brackets, everything else is taken as it is.
pub fn uri_host(node: &str) -> String {
    if node.contains(':') && !node.starts_with('[') {
        format!("[{node}]")
    } else {
        node.to_owned()
    }
}

fn is_ip_literal(node: &str) -> bool {
    let bare = node.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
}

/// `migration_network_suffix` applied to a node name: inserted after the
/// first label, so `node2` -> `node2-mig` and `node2.example` ->
/// `node2-mig.example`. An address has no labels to extend.
pub fn with_network_suffix(node: &str, suffix: &str) -> anyhow::Result<String> {
    ensure!(
        !is_ip_literal(node),
        "migration_network_suffix '{suffix}' cannot be applied to the address {node}; \
         use migrateuri for address-based migration networks"
    );
    Ok(match node.split_once('.') {
        Some((first, domain)) => format!("{first}{suffix}.{domain}"),
        None => format!("{node}{suffix}"),
    })
}

/// User names that fit into a URI's user part without escaping.
pub fn check_migration_user(user: &str) -> anyhow::Result<()> {
    let valid = user.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    ensure!(valid, "migration_user '{user}' is not a plain user name (letters, digits, '.', '_', '-')");
    Ok(())
}

/// Transports libvirt's remote driver knows (`driver+transport://`).
pub const TRANSPORTS: [&str; 7] = ["tls", "tcp", "unix", "ssh", "libssh", "libssh2", "ext"];

pub fn check_migration_transport(transport: &str) -> anyhow::Result<()> {
    ensure!(
        TRANSPORTS.contains(&transport),
        "migration_transport '{transport}' is not a libvirt transport ({})",
        TRANSPORTS.join(", ")
    );
    Ok(())
}

/// The URI of the target node's hypervisor. `remoteuri` wins (with `%n`
/// replaced by the target); otherwise `local_uri` (the `hypervisor`
/// parameter, or the URI of the open local connection) with the target as
/// host, `migration_user@` as user and `+migration_transport` as transport,
/// replacing what the local URI had there; port, path and query stay.
/// `migration_network_suffix` is applied to the host, as the classic agent
/// does: the whole migration, control and data, uses the dedicated network.
pub fn remote_hypervisor_uri(params: &Params, local_uri: &str, target: &str) -> anyhow::Result<String> {
    if let Some(remote) = &params.remoteuri {
        return Ok(remote.replace(NODE_PLACEHOLDER, target));
    }
    let mut uri = HypervisorUri::parse(local_uri)
        .map_err(|e| anyhow!("cannot derive the target's hypervisor URI ({e:#}); set remoteuri"))?;
    uri.host = match &params.migration_network_suffix {
        Some(suffix) => uri_host(&with_network_suffix(target, suffix)?),
        None => uri_host(target),
    };
    if let Some(user) = &params.migration_user {
        check_migration_user(user)?;
        uri.user = Some(user.clone());
    }
    if let Some(transport) = &params.migration_transport {
        uri.transport = Some(transport.clone());
    }
    Ok(uri.to_string())
}

/// The URI the guest's memory is sent to, or `None` to let libvirt choose
/// (the target's host name and a port of its own). In order of precedence:
/// `migrateuri`, `--migrateuri=` in migrate_options (both with `%n`
/// replaced by the target), and `tcp:<target with suffix>:<port>` when
/// `migration_network_suffix` is set, the port being `migrateport` or
/// `random_port()`. A tunnelled migration has no data connection.
pub fn migration_data_uri(
    params: &Params,
    options: &MigrateOptions,
    target: &str,
    random_port: impl FnOnce() -> u16,
) -> anyhow::Result<Option<String>> {
    if options.tunnelled {
        return Ok(None);
    }
    if let Some(explicit) = params.migrateuri.as_ref().or(options.migrateuri.as_ref()) {
        return Ok(Some(explicit.replace(NODE_PLACEHOLDER, target)));
    }
    let Some(suffix) = &params.migration_network_suffix else { return Ok(None) };
    let host = uri_host(&with_network_suffix(target, suffix)?);
    let port = match params.migrateport {
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| anyhow!("migrateport {port} is not a TCP port"))?,
        None => random_port(),
    };
    Ok(Some(format!("tcp:{host}:{port}")))
}

/// A port from [`MIGRATION_PORTS`], different from one call to the next.
pub fn random_migration_port() -> u16 {
    let noise = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let span = u64::from(MIGRATION_PORTS.end() - MIGRATION_PORTS.start()) + 1;
    MIGRATION_PORTS.start() + (noise % span) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs).expect("valid test parameters")
    }

    fn remote(pairs: &[(&str, &str)], local: &str, target: &str) -> anyhow::Result<String> {
        remote_hypervisor_uri(&params(pairs), local, target)
    }

    fn data(pairs: &[(&str, &str)], options: &str, target: &str) -> anyhow::Result<Option<String>> {
        let p = params(pairs);
        let opts = MigrateOptions::parse(options).expect("valid test options");
        migration_data_uri(&p, &opts, target, || 49200)
    }

    #[test]
    fn parses_and_prints_libvirt_uris_unchanged() {
        for uri in [
            "qemu:///system",
            "qemu:///session",
            "qemu+ssh://root@node1/system",
            "qemu+tcp://node1:16509/system",
            "qemu+tls://[fe80::1]:16514/system?no_verify=1",
            "qemu+unix:///system?socket=/x",
            "qemu://node1.example.com/system",
            "test:///default",
            "xen+ssh://[2001:db8::2]/",
        ] {
            assert_eq!(HypervisorUri::parse(uri).unwrap().to_string(), uri);
        }
        let u = HypervisorUri::parse("qemu+tls://admin@[fe80::1]:16514/system?x=1").unwrap();
        assert_eq!(u.driver, "qemu");
        assert_eq!(u.transport.as_deref(), Some("tls"));
        assert_eq!(u.user.as_deref(), Some("admin"));
        assert_eq!(u.host, "[fe80::1]");
        assert_eq!(u.port.as_deref(), Some("16514"));
        assert_eq!(u.rest, "/system?x=1");
    }

    #[test]
    fn rejects_what_is_not_a_uri() {
        for bad in ["", "qemu", "system", "://x/y", "qemu://[fe80::1/system", "qemu://host:port/system"] {
            assert!(HypervisorUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_uri_replaces_the_host_of_the_local_uri() {
        assert_eq!(remote(&[], "qemu:///system", "node2").unwrap(), "qemu://node2/system");
        assert_eq!(remote(&[], "qemu://node1/system", "node2").unwrap(), "qemu://node2/system");
        assert_eq!(remote(&[], "qemu:///system", "node2.example.com").unwrap(), "qemu://node2.example.com/system");
        assert_eq!(remote(&[], "qemu+tcp://node1:16509/system", "node2").unwrap(), "qemu+tcp://node2:16509/system");
        assert_eq!(remote(&[], "qemu:///session", "node2").unwrap(), "qemu://node2/session");
    }

    #[test]
    fn remote_uri_with_transport_and_user() {
        let p = [("migration_transport", "ssh")];
        assert_eq!(remote(&p, "qemu:///system", "node2").unwrap(), "qemu+ssh://node2/system");
        // An existing transport is replaced, not stacked.
        assert_eq!(remote(&p, "qemu+tls://node1/system", "node2").unwrap(), "qemu+ssh://node2/system");
        let p = [("migration_transport", "ssh"), ("migration_user", "hauser")];
        assert_eq!(remote(&p, "qemu:///system", "node2.example").unwrap(), "qemu+ssh://hauser@node2.example/system");
        // migration_user replaces a user of the local URI; without it that user stays.
        assert_eq!(remote(&p, "qemu+ssh://root@node1/system", "node2").unwrap(), "qemu+ssh://hauser@node2/system");
        assert_eq!(remote(&[], "qemu+ssh://root@node1/system", "node2").unwrap(), "qemu+ssh://root@node2/system");
        let p = [("migration_user", "hauser")];
        assert_eq!(remote(&p, "qemu:///system", "node2").unwrap(), "qemu://hauser@node2/system");
    }

    #[test]
    fn remote_uri_keeps_path_and_query() {
        let p = [("migration_transport", "tcp")];
        assert_eq!(
            remote(&p, "qemu+unix:///system?socket=/x", "node2").unwrap(),
            "qemu+tcp://node2/system?socket=/x"
        );
        assert_eq!(
            remote(&[], "qemu+tls://node1/system?no_verify=1&pkipath=/etc/pki", "node2").unwrap(),
            "qemu+tls://node2/system?no_verify=1&pkipath=/etc/pki"
        );
        assert_eq!(remote(&[], "qemu+unix:///system?socket=/x", "node2").unwrap(), "qemu+unix://node2/system?socket=/x");
    }

    #[test]
    fn remote_uri_with_ipv6_hosts() {
        assert_eq!(remote(&[], "qemu+tcp://[fe80::1]:16509/system", "node2").unwrap(), "qemu+tcp://node2:16509/system");
        assert_eq!(remote(&[], "qemu+tcp://node1/system", "fe80::2").unwrap(), "qemu+tcp://[fe80::2]/system");
        assert_eq!(remote(&[], "qemu+tcp://node1/system", "[fe80::2]").unwrap(), "qemu+tcp://[fe80::2]/system");
        let p = [("migration_user", "ha")];
        assert_eq!(
            remote(&p, "qemu+tcp://[2001:db8::1]:16509/system", "2001:db8::2").unwrap(),
            "qemu+tcp://ha@[2001:db8::2]:16509/system"
        );
        assert_eq!(remote(&[], "qemu:///system", "10.0.0.2").unwrap(), "qemu://10.0.0.2/system");
    }

    #[test]
    fn network_suffix_is_applied_to_the_hypervisor_uri_as_in_the_classic_agent() {
        let p = [("migration_network_suffix", "-mig"), ("migration_transport", "tcp")];
        assert_eq!(remote(&p, "qemu:///system", "node2.example").unwrap(), "qemu+tcp://node2-mig.example/system");
        assert_eq!(remote(&p, "qemu:///system", "node2").unwrap(), "qemu+tcp://node2-mig/system");
        let p = [("migration_network_suffix", "-mig"), ("remoteuri", "qemu+ssh://%n/system")];
        assert_eq!(remote(&p, "qemu:///system", "node2").unwrap(), "qemu+ssh://node2/system", "remoteuri is taken as given");
    }

    #[test]
    fn remoteuri_wins_and_replaces_every_placeholder() {
        let p = [
            ("remoteuri", "qemu+tls://%n.ha.example/system?name=%n"),
            ("migration_user", "ignored"),
            ("migration_transport", "ssh"),
        ];
        assert_eq!(remote(&p, "qemu:///system", "node2").unwrap(), "qemu+tls://node2.ha.example/system?name=node2");
        let p = [("remoteuri", "qemu+unix:///system?socket=/run/vm/sock")];
        assert_eq!(remote(&p, "not a uri", "node2").unwrap(), "qemu+unix:///system?socket=/run/vm/sock");
        let p = [("remoteuri", "qemu+tcp://[fe80::%n]/system")];
        assert_eq!(remote(&p, "qemu:///system", "2").unwrap(), "qemu+tcp://[fe80::2]/system");
    }

    #[test]
    fn remote_uri_errors_name_the_problem() {
        assert!(remote(&[], "system", "node2").unwrap_err().to_string().contains("remoteuri"));
        assert!(remote(&[("migration_user", "a@b")], "qemu:///system", "node2").unwrap_err().to_string().contains("migration_user"));
        assert!(remote(&[("migration_user", "a/b")], "qemu:///system", "node2").is_err());
    }

    #[test]
    fn suffix_goes_after_the_first_label() {
        assert_eq!(with_network_suffix("node2", "-mig").unwrap(), "node2-mig");
        assert_eq!(with_network_suffix("node2.example.com", "-mig").unwrap(), "node2-mig.example.com");
        assert_eq!(with_network_suffix("node2.", "m").unwrap(), "node2m.");
        for address in ["10.0.0.2", "fe80::2", "[fe80::2]", "::1"] {
            assert!(with_network_suffix(address, "-mig").unwrap_err().to_string().contains(address), "{address}");
        }
    }

    #[test]
    fn data_uri_precedence() {
        let all = [
            ("migrateuri", "tcp://%n-x:49000"),
            ("migration_network_suffix", "-mig"),
            ("migrateport", "49999"),
        ];
        let with_option = "--migrateuri=tcp://%n-y:49001";
        assert_eq!(data(&all, with_option, "node2").unwrap().as_deref(), Some("tcp://node2-x:49000"));
        assert_eq!(data(&all[1..], with_option, "node2").unwrap().as_deref(), Some("tcp://node2-y:49001"));
        assert_eq!(data(&all[1..], "", "node2").unwrap().as_deref(), Some("tcp:node2-mig:49999"));
        assert_eq!(data(&all[2..], "", "node2").unwrap(), None);
        assert_eq!(data(&[], "--p2p", "node2").unwrap(), None);
    }

    #[test]
    fn data_uri_option_in_both_spellings() {
        assert_eq!(data(&[], "--p2p --migrateuri tcp://%n:1 --compressed", "n2").unwrap().as_deref(), Some("tcp://n2:1"));
        assert_eq!(data(&[], "--migrateuri=tcp://127.0.0.1:49300", "n2").unwrap().as_deref(), Some("tcp://127.0.0.1:49300"));
    }

    #[test]
    fn computed_data_uri_for_fqdn_short_and_random_port() {
        let p = [("migration_network_suffix", "-mig")];
        assert_eq!(data(&p, "", "node2.example.com").unwrap().as_deref(), Some("tcp:node2-mig.example.com:49200"));
        assert_eq!(data(&p, "", "node2").unwrap().as_deref(), Some("tcp:node2-mig:49200"));
        let opts = MigrateOptions::default();
        let p = params(&p);
        let uri = migration_data_uri(&p, &opts, "node2", random_migration_port).unwrap().unwrap();
        let port: u16 = uri.rsplit(':').next().unwrap().parse().unwrap();
        assert!(MIGRATION_PORTS.contains(&port), "{uri}");
    }

    #[test]
    fn computed_data_uri_refuses_addresses_and_bad_ports() {
        let p = [("migration_network_suffix", "-mig")];
        assert!(data(&p, "", "192.168.1.2").is_err());
        assert!(data(&p, "", "fe80::2").is_err());
        assert!(data(&[("migration_network_suffix", "-mig"), ("migrateport", "70000")], "", "n2").unwrap_err().to_string().contains("70000"));
        assert!(data(&[("migration_network_suffix", "-mig"), ("migrateport", "0")], "", "n2").is_err());
    }

    #[test]
    fn explicit_data_uris_with_ipv6_literals() {
        let p = [("migrateuri", "tcp://[fe80::2%25eth1]:49152")];
        assert_eq!(data(&p, "", "node2").unwrap().as_deref(), Some("tcp://[fe80::2%25eth1]:49152"));
        let p = [("migrateuri", "tcp://%n:49152")];
        // %n is the node name as Pacemaker gives it; bracketing an address is the operator's job.
        assert_eq!(data(&p, "", "node2.example").unwrap().as_deref(), Some("tcp://node2.example:49152"));
    }

    #[test]
    fn tunnelled_migrations_have_no_data_uri() {
        let p = [("migration_network_suffix", "-mig")];
        assert_eq!(data(&p, "--p2p --tunnelled", "node2").unwrap(), None);
    }

    #[test]
    fn random_ports_stay_in_range_and_vary() {
        let ports: std::collections::HashSet<u16> = (0..200).map(|_| random_migration_port()).collect();
        assert!(ports.iter().all(|p| MIGRATION_PORTS.contains(p)));
        assert!(ports.len() > 10, "{ports:?}");
    }
}
