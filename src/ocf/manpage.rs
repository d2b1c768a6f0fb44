//! An agent's man page, generated from the same tables as its meta-data.

use std::fmt::Write;

use super::env::ACTIONS;
use super::metadata::AgentDescription;
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

pub fn render(agent: &AgentDescription) -> String {
    let mut man = String::new();
    let title = format!("ocf_{}_{}", agent.provider, agent.name);
    let _ = writeln!(man, ".TH {} 7 \"\" \"virtguard {}\" \"OCF resource agents\"", roff(&title.to_uppercase()), env!("CARGO_PKG_VERSION"));
    let _ = writeln!(man, ".SH NAME\n{} \\- {}", roff(&title), roff(agent.shortdesc));
    let _ = writeln!(man, ".SH SYNOPSIS\n.B {}\n{{{}}}", roff(agent.name), roff(agent.actions));
    let _ = writeln!(man, ".SH DESCRIPTION\n{}", roff(agent.longdesc));
    let _ = writeln!(man, ".SH PARAMETERS");
    let _ = writeln!(
        man,
        "A parameter marked reloadable only steers later actions: when nothing but reloadable parameters change, \
Pacemaker runs reload\\-agent instead of restarting the resource."
    );
    for p in agent.parameters {
        let _ = writeln!(man, ".TP\n.B {}", roff(p.name));
        let mut facts = vec![p.kind.ocf_name().to_string()];
        if p.required {
            facts.push("required".into());
        }
        if p.unique {
            facts.push("unique".into());
        }
        if p.reloadable {
            facts.push("reloadable".into());
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
    use crate::vdomain::params::{TABLE, VIRTUAL_DOMAIN};

    #[test]
    fn documents_every_parameter() {
        let man = super::render(&VIRTUAL_DOMAIN);
        for p in TABLE {
            assert!(man.contains(&format!(".B {}\n", super::roff(p.name))), "{}", p.name);
        }
    }

    #[test]
    fn says_which_parameters_are_reloadable() {
        let man = super::render(&VIRTUAL_DOMAIN);
        for p in TABLE {
            let entry = man.split(&format!(".B {}\n", super::roff(p.name))).nth(1).unwrap();
            let facts = entry.lines().next().unwrap();
            assert_eq!(facts.contains("reloadable"), p.reloadable, "{}: {facts}", p.name);
        }
    }
}
