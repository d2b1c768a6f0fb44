//! `migrate_options`: virsh-style migration options turned into our typed
//! [`MigrateOptions`] (the hypervisor backend maps them to its own flags and
//! parameters). Everything virtguard does not understand is refused here, so
//! that validate-all finds it at configuration time instead of a migration
//! failing at 3 a.m.

use anyhow::{anyhow, bail, ensure};

pub use crate::hypervisor::migration::{MigrateOptions, MigrationPlan, PostcopyPolicy};

/// What an option does: a switch sets something; a `--name=value` /
/// `--name value` option parses its value (the name is for error texts).
enum Effect {
    Switch(fn(&mut MigrateOptions)),
    Value(fn(&mut MigrateOptions, &str, &str) -> anyhow::Result<()>),
}

/// Every option virtguard understands, and what it does: the one list.
const KNOWN: &[(&str, Effect)] = &[
    ("live", Effect::Switch(|_| {})),
    ("verbose", Effect::Switch(|_| {})),
    ("p2p", Effect::Switch(|o| o.p2p = true)),
    ("tunnelled", Effect::Switch(|o| o.tunnelled = true)),
    ("persistent", Effect::Switch(|o| o.persistent = true)),
    ("undefinesource", Effect::Switch(|o| o.undefine_source = true)),
    ("auto-converge", Effect::Switch(|o| o.auto_converge = true)),
    ("compressed", Effect::Switch(|o| o.compressed = true)),
    ("unsafe", Effect::Switch(|o| o.unsafe_ = true)),
    ("abort-on-error", Effect::Switch(|o| o.abort_on_error = true)),
    ("copy-storage-all", Effect::Switch(|o| o.copy_storage_all = true)),
    ("copy-storage-inc", Effect::Switch(|o| o.copy_storage_inc = true)),
    ("change-protection", Effect::Switch(|o| o.change_protection = true)),
    ("tls", Effect::Switch(|o| o.tls = true)),
    ("parallel", Effect::Switch(|o| o.parallel = true)),
    (
        "postcopy",
        Effect::Switch(|o| {
            if o.postcopy == PostcopyPolicy::Never {
                o.postcopy = PostcopyPolicy::BeforeDeadline;
            }
        }),
    ),
    ("postcopy-after-precopy", Effect::Switch(|o| o.postcopy = PostcopyPolicy::AfterFirstPass)),
    ("migrateuri", Effect::Value(|o, n, v| {
        o.migrateuri = Some(text(n, v)?);
        Ok(())
    })),
    ("listen-address", Effect::Value(|o, n, v| {
        o.listen_address = Some(text(n, v)?);
        Ok(())
    })),
    ("tls-destination", Effect::Value(|o, n, v| {
        o.tls_destination = Some(text(n, v)?);
        Ok(())
    })),
    ("parallel-connections", Effect::Value(|o, n, v| {
        let count = number(n, v, 256)?;
        ensure!(count > 0, "migrate_options: --parallel-connections must be at least 1");
        o.parallel_connections = Some(count as u32);
        Ok(())
    })),
    ("bandwidth", Effect::Value(|o, n, v| {
        o.bandwidth = Some(number(n, v, u64::from(u32::MAX))?);
        Ok(())
    })),
    ("postcopy-bandwidth", Effect::Value(|o, n, v| {
        o.postcopy_bandwidth = Some(number(n, v, u64::from(u32::MAX))?);
        Ok(())
    })),
    ("auto-converge-initial", Effect::Value(|o, n, v| {
        o.auto_converge_initial = Some(number(n, v, 100)? as u32);
        Ok(())
    })),
    ("auto-converge-increment", Effect::Value(|o, n, v| {
        o.auto_converge_increment = Some(number(n, v, 100)? as u32);
        Ok(())
    })),
    ("disks-port", Effect::Value(|o, n, v| {
        o.disks_port = Some(number(n, v, 65535)? as u32);
        Ok(())
    })),
    ("comp-methods", Effect::Value(|o, n, v| {
        let methods = list(n, v)?;
        // The `virt` crate passes one compression parameter; libvirt would take several.
        ensure!(methods.len() <= 1, "migrate_options: --comp-methods: give one compression method");
        if let Some(bad) = methods.iter().find(|m| !["xbzrle", "mt", "zlib", "zstd"].contains(&m.as_str())) {
            bail!("migrate_options: --comp-methods: unknown compression method '{bad}'");
        }
        o.compression_methods = methods;
        Ok(())
    })),
    ("migrate-disks", Effect::Value(|o, n, v| {
        o.migrate_disks = list(n, v)?;
        Ok(())
    })),
];

fn text(name: &str, value: &str) -> anyhow::Result<String> {
    ensure!(!value.is_empty(), "migrate_options: --{name} needs a value");
    Ok(value.to_owned())
}

fn number(name: &str, value: &str, max: u64) -> anyhow::Result<u64> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| anyhow!("migrate_options: --{name}={value} is not a whole number between 0 and {max}"))
}

fn list(name: &str, value: &str) -> anyhow::Result<Vec<String>> {
    Ok(text(name, value)?.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// virsh options that make sense for a person at a terminal but not for an
/// agent, each with the reason given to the operator.
const REFUSED: &[(&str, &str)] = &[
    ("offline", "an offline migration does not move a running guest"),
    ("suspend", "the guest would stay paused on the target"),
    ("direct", "direct migration is for hypervisors other than QEMU"),
    ("timeout", "virtguard bounds the migration by the operation timeout"),
    ("timeout-suspend", "virtguard bounds the migration by the operation timeout"),
    ("timeout-postcopy", "use --postcopy: virtguard switches before the operation timeout"),
    ("dname", "the guest must keep its name for the cluster to find it"),
    ("xml", "the target definition comes from the config parameter"),
    ("persistent-xml", "the target definition comes from the config parameter"),
    ("desturi", "the target comes from Pacemaker and remoteuri"),
    ("domain", "the domain comes from the config parameter"),
    ("async", "virtguard already watches the migration"),
];

impl MigrateOptions {
    /// Parses the space-separated options; the error names the offending one.
    pub fn parse(text: &str) -> anyhow::Result<MigrateOptions> {
        let mut options = MigrateOptions::default();
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            let Some(body) = word.strip_prefix("--") else {
                bail!("migrate_options: '{word}' is not an option (options start with --)");
            };
            let (name, inline_value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            if let Some((_, why)) = REFUSED.iter().find(|(refused, _)| *refused == name) {
                bail!("migrate_options: --{name} is not supported: {why}");
            }
            let Some((_, effect)) = KNOWN.iter().find(|(known, _)| *known == name) else {
                bail!("migrate_options: unknown option --{name}");
            };
            match (effect, inline_value) {
                (Effect::Switch(set), None) => set(&mut options),
                (Effect::Switch(_), Some(_)) => bail!("migrate_options: --{name} takes no value"),
                (Effect::Value(set), Some(value)) => set(&mut options, name, value)?,
                (Effect::Value(set), None) => {
                    let value = words
                        .next()
                        .filter(|next| !next.starts_with("--"))
                        .ok_or_else(|| anyhow!("migrate_options: --{name} needs a value"))?;
                    set(&mut options, name, value)?
                }
            }
        }
        options.check_combinations()?;
        Ok(options)
    }

    /// Combinations libvirt would only refuse once the migration starts.
    fn check_combinations(&self) -> anyhow::Result<()> {
        if self.tunnelled && !self.p2p {
            bail!("migrate_options: --tunnelled needs --p2p");
        }
        if self.tunnelled && self.migrateuri.is_some() {
            bail!("migrate_options: --migrateuri cannot be used with --tunnelled");
        }
        if self.tunnelled && self.parallel {
            bail!("migrate_options: --parallel cannot be used with --tunnelled");
        }
        if self.parallel_connections.is_some() && !self.parallel {
            bail!("migrate_options: --parallel-connections needs --parallel");
        }
        if self.postcopy_bandwidth.is_some() && self.postcopy == PostcopyPolicy::Never {
            bail!("migrate_options: --postcopy-bandwidth needs --postcopy");
        }
        if (self.auto_converge_initial.is_some() || self.auto_converge_increment.is_some()) && !self.auto_converge {
            bail!("migrate_options: --auto-converge-initial/-increment need --auto-converge");
        }
        if !self.compression_methods.is_empty() && !self.compressed {
            bail!("migrate_options: --comp-methods needs --compressed");
        }
        if (!self.migrate_disks.is_empty() || self.disks_port.is_some())
            && !(self.copy_storage_all || self.copy_storage_inc)
        {
            bail!("migrate_options: --migrate-disks/--disks-port need --copy-storage-all or --copy-storage-inc");
        }
        if self.copy_storage_all && self.copy_storage_inc {
            bail!("migrate_options: use either --copy-storage-all or --copy-storage-inc");
        }
        if self.tls_destination.is_some() && !self.tls {
            bail!("migrate_options: --tls-destination needs --tls");
        }
        Ok(())
    }
}

/// The bandwidth in MiB/s: `--bandwidth` or `migration_speed` (0 = unlimited);
/// both set and different is a configuration error.
pub fn effective_bandwidth(migration_speed: u64, options: &MigrateOptions) -> anyhow::Result<Option<u64>> {
    let from_param = (migration_speed > 0).then_some(migration_speed);
    match (from_param, options.bandwidth.filter(|b| *b > 0)) {
        (Some(a), Some(b)) if a != b => {
            bail!("migration_speed={a} and --bandwidth={b} in migrate_options disagree; set only one")
        }
        (a, b) => Ok(a.or(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> MigrateOptions {
        MigrateOptions::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        MigrateOptions::parse(text).expect_err(text).to_string()
    }

    #[test]
    fn empty_is_a_plain_live_migration() {
        assert_eq!(parse(""), MigrateOptions::default());
        assert_eq!(parse("  --live --verbose "), MigrateOptions::default());
    }

    #[test]
    fn postcopy_policies() {
        assert_eq!(parse("").postcopy, PostcopyPolicy::Never);
        assert_eq!(parse("--postcopy").postcopy, PostcopyPolicy::BeforeDeadline);
        assert_eq!(parse("--postcopy --postcopy-after-precopy").postcopy, PostcopyPolicy::AfterFirstPass);
        assert_eq!(parse("--postcopy-after-precopy --postcopy").postcopy, PostcopyPolicy::AfterFirstPass);
    }

    #[test]
    fn values_in_both_spellings() {
        let o = parse(
            "--p2p --migrateuri=tcp://%n:49152 --listen-address 0.0.0.0 --parallel \
             --parallel-connections=4 --bandwidth 100 --postcopy --postcopy-bandwidth=50 \
             --auto-converge --auto-converge-initial=20 --auto-converge-increment 5 \
             --compressed --comp-methods=xbzrle --copy-storage-all --migrate-disks=vda,vdb \
             --disks-port=49153 --tls --tls-destination=node2.example",
        );
        assert_eq!(o.migrateuri.as_deref(), Some("tcp://%n:49152"));
        assert_eq!(o.listen_address.as_deref(), Some("0.0.0.0"));
        assert_eq!(o.parallel_connections, Some(4));
        assert_eq!(o.bandwidth, Some(100));
        assert_eq!(o.postcopy_bandwidth, Some(50));
        assert_eq!((o.auto_converge_initial, o.auto_converge_increment), (Some(20), Some(5)));
        assert_eq!(o.compression_methods, vec!["xbzrle"]);
        assert_eq!(o.migrate_disks, vec!["vda", "vdb"]);
        assert_eq!(o.disks_port, Some(49153));
        assert_eq!(o.tls_destination.as_deref(), Some("node2.example"));
    }

    #[test]
    fn unknown_and_malformed_options_are_named() {
        assert!(error("--p2p --frobnicate").contains("--frobnicate"));
        assert!(error("p2p").contains("'p2p'"));
        assert!(error("--bandwidth=fast").contains("--bandwidth=fast"));
        assert!(error("--bandwidth=-1").contains("--bandwidth"));
        assert!(error("--bandwidth").contains("needs a value"));
        assert!(error("--bandwidth --p2p").contains("needs a value"));
        assert!(error("--migrateuri=").contains("needs a value"));
        assert!(error("--p2p=yes").contains("takes no value"));
        assert!(error("--parallel --parallel-connections=0").contains("at least 1"));
        assert!(error("--parallel --parallel-connections=x").contains("--parallel-connections"));
        assert!(error("--auto-converge --auto-converge-initial=101").contains("100"));
        assert!(error("--compressed --comp-methods=lz4").contains("lz4"));
        assert!(error("--compressed --comp-methods=mt,zstd").contains("one compression method"));
        assert!(error("--copy-storage-all --disks-port=70000").contains("65535"));
    }

    #[test]
    fn refused_virsh_options_say_why() {
        assert!(error("--suspend").contains("paused"));
        assert!(error("--timeout 30").contains("operation timeout"));
        assert!(error("--offline").contains("--offline"));
        assert!(error("--dname=x").contains("name"));
    }

    #[test]
    fn impossible_combinations() {
        assert!(error("--tunnelled").contains("--p2p"));
        assert!(error("--p2p --tunnelled --migrateuri=tcp://x").contains("--tunnelled"));
        assert!(error("--p2p --tunnelled --parallel").contains("--tunnelled"));
        assert!(error("--parallel-connections=2").contains("--parallel"));
        assert!(error("--postcopy-bandwidth=5").contains("--postcopy"));
        assert!(error("--auto-converge-initial=5").contains("--auto-converge"));
        assert!(error("--comp-methods=mt").contains("--compressed"));
        assert!(error("--migrate-disks=vda").contains("--copy-storage"));
        assert!(error("--copy-storage-all --copy-storage-inc").contains("either"));
        assert!(error("--tls-destination=x").contains("--tls"));
    }

    #[test]
    fn bandwidth_from_parameter_or_option() {
        assert_eq!(effective_bandwidth(0, &parse("")).unwrap(), None);
        assert_eq!(effective_bandwidth(5, &parse("")).unwrap(), Some(5));
        assert_eq!(effective_bandwidth(0, &parse("--bandwidth=7")).unwrap(), Some(7));
        assert_eq!(effective_bandwidth(7, &parse("--bandwidth=7")).unwrap(), Some(7));
        assert_eq!(effective_bandwidth(0, &parse("--bandwidth=0")).unwrap(), None);
        assert!(effective_bandwidth(5, &parse("--bandwidth=7")).unwrap_err().to_string().contains("migration_speed"));
    }
}
