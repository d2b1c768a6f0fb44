//! The man page, generated from the same tables as the meta-data.

use std::fmt::Write;

use super::env::ACTIONS;
use super::metadata::{AGENT_LONGDESC, AGENT_SHORTDESC};
use super::params::TABLE;
use super::status::OcfStatus;

/// troff needs backslashes doubled and lines that start with . or ' escaped.
fn roff(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

pub fn render() -> String {
    let mut man = String::new();
    let _ = writeln!(man, ".TH OCF_VIRTGUARD_VIRTUALDOMAIN 7 \"\" \"virtguard {}\" \"OCF resource agents\"", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(man, ".SH NAME\nocf_virtguard_VirtualDomain \\- {}", roff(AGENT_SHORTDESC));
    let _ = writeln!(man, ".SH SYNOPSIS\n.B VirtualDomain\n{{start|stop|status|monitor|migrate_to|migrate_from|meta\\-data|validate\\-all|usage}}");
    let _ = writeln!(man, ".SH DESCRIPTION\n{}", roff(AGENT_LONGDESC));
    let _ = writeln!(man, ".SH PARAMETERS");
    for p in TABLE {
        let _ = writeln!(man, ".TP\n.B {}", roff(p.name));
        let mut facts = vec![p.kind.ocf_name().to_string()];
        if p.required {
            facts.push("required".into());
        }
        if p.unique {
            facts.push("unique".into());
        }
        if let Some(d) = p.default {
            facts.push(format!("default: {d}"));
        }
        let _ = writeln!(man, "{} ({}).\n{}", roff(p.shortdesc), roff(&facts.join(", ")), roff(p.longdesc));
    }
    let _ = writeln!(man, ".SH ACTIONS");
    for a in ACTIONS.iter().filter(|a| a.advertised) {
        let interval = a.interval_secs.map(|i| format!(", interval {i}s")).unwrap_or_default();
        let _ = writeln!(man, ".TP\n.B {}\ntimeout {}s{}", roff(a.name), a.timeout_secs, interval);
    }
    let _ = writeln!(man, ".SH EXIT STATUS");
    for s in OcfStatus::ALL {
        let _ = writeln!(man, ".TP\n.B {}\n{}", s.code(), roff(s.name()));
    }
    let _ = writeln!(man, ".SH SEE ALSO\n.BR crm_resource (8),\n.BR pcs (8),\n.BR virsh (1)");
    man
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_every_parameter() {
        let man = super::render();
        for p in super::TABLE {
            assert!(man.contains(&format!(".B {}\n", super::roff(p.name))), "{}", p.name);
        }
    }
}
