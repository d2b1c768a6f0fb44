//! An agent's meta-data XML, generated from its parameter and action tables.

use std::fmt::Write;

use quick_xml::escape::escape;

use super::env::ACTIONS;
use super::params::ParamSpec;

/// What an agent's meta-data and man page say of it besides its tables.
pub struct AgentDescription {
    /// The agent's type (`ocf:<provider>:<name>`).
    pub name: &'static str,
    pub provider: &'static str,
    pub shortdesc: &'static str,
    pub longdesc: &'static str,
    /// The actions it answers, as its usage line lists them (`a|b|c`).
    pub actions: &'static str,
    pub parameters: &'static [ParamSpec],
}

/// The document type, with the OCF 1.1 additions that the ra-api-1.dtd of
/// resource-agents (4.12, Debian 12) lacks: the `reloadable` attribute and
/// the `reload-agent` action. Declared in the internal subset, which takes
/// precedence over the external DTD, so that `xmllint --valid` (ocf-tester)
/// still checks everything else; the action names are this agent's own.
fn doctype() -> String {
    let names: Vec<&str> = ACTIONS.iter().filter(|a| a.advertised).map(|a| a.name).collect();
    format!(
        "<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\" [\n<!ATTLIST parameter reloadable (1|0) \"0\">\n<!ATTLIST action name ({}) #REQUIRED>\n]>",
        names.join("|")
    )
}

pub fn render(agent: &AgentDescription) -> String {
    let mut xml = String::new();
    let _ = writeln!(xml, "<?xml version=\"1.0\"?>");
    let _ = writeln!(xml, "{}", doctype());
    let _ = writeln!(xml, "<resource-agent name=\"{}\" version=\"{}\">", agent.name, env!("CARGO_PKG_VERSION"));
    let _ = writeln!(xml, "<version>1.1</version>");
    let _ = writeln!(xml, "<longdesc lang=\"en\">{}</longdesc>", escape(agent.longdesc));
    let _ = writeln!(xml, "<shortdesc lang=\"en\">{}</shortdesc>", escape(agent.shortdesc));
    let _ = writeln!(xml, "<parameters>");
    for p in agent.parameters {
        let _ = writeln!(
            xml,
            "<parameter name=\"{}\" unique=\"{}\" required=\"{}\" reloadable=\"{}\">",
            p.name, p.unique as u8, p.required as u8, p.reloadable as u8
        );
        let _ = writeln!(xml, "<longdesc lang=\"en\">{}</longdesc>", escape(p.longdesc));
        let _ = writeln!(xml, "<shortdesc lang=\"en\">{}</shortdesc>", escape(p.shortdesc));
        match p.default {
            Some(default) => {
                let _ = writeln!(xml, "<content type=\"{}\" default=\"{}\"/>", p.kind.ocf_name(), escape(default));
            }
            None => {
                let _ = writeln!(xml, "<content type=\"{}\"/>", p.kind.ocf_name());
            }
        }
        let _ = writeln!(xml, "</parameter>");
    }
    let _ = writeln!(xml, "</parameters>");
    let _ = writeln!(xml, "<actions>");
    for a in ACTIONS.iter().filter(|a| a.advertised) {
        let _ = write!(xml, "<action name=\"{}\" timeout=\"{}s\"", a.name, a.timeout_secs);
        if let Some(depth) = a.depth {
            let _ = write!(xml, " depth=\"{depth}\"");
        }
        if let Some(interval) = a.interval_secs {
            let _ = write!(xml, " interval=\"{interval}s\"");
        }
        let _ = writeln!(xml, "/>");
    }
    let _ = writeln!(xml, "</actions>");
    let _ = writeln!(xml, "</resource-agent>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::vdomain::params::{TABLE, VIRTUAL_DOMAIN};

    #[test]
    fn lists_every_parameter_and_action_once() {
        let xml = render(&VIRTUAL_DOMAIN);
        for p in TABLE {
            assert_eq!(xml.matches(&format!("<parameter name=\"{}\"", p.name)).count(), 1, "{}", p.name);
        }
        for a in ["start", "stop", "status", "monitor", "migrate_from", "migrate_to", "meta-data", "validate-all"] {
            assert_eq!(xml.matches(&format!("<action name=\"{a}\"")).count(), 1, "{a}");
        }
        assert!(!xml.contains("name=\"usage\""));
        assert!(xml.contains("<action name=\"monitor\" timeout=\"30s\" depth=\"0\" interval=\"10s\"/>"));
        assert!(xml.contains("<content type=\"boolean\" default=\"true\"/>"));
    }

    /// The `reloadable` attribute of every `<parameter>`, by name, as a
    /// parser reads it (as Pacemaker's controller does).
    fn reloadable_in_xml(xml: &str) -> Vec<(String, Option<String>)> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut found = Vec::new();
        loop {
            match reader.read_event().expect("well-formed") {
                quick_xml::events::Event::Start(e) if e.name().as_ref() == "parameter" => {
                    let attr = |key: &str| e.try_get_attribute(key).unwrap().map(|a| a.value.into_owned());
                    found.push((attr("name").unwrap(), attr("reloadable")));
                }
                quick_xml::events::Event::Eof => return found,
                _ => {}
            }
        }
    }

    #[test]
    fn marks_exactly_the_tables_reloadable_rows_and_offers_reload_agent() {
        let xml = render(&VIRTUAL_DOMAIN);
        assert_eq!(xml.matches("<action name=\"reload-agent\" timeout=\"60s\"/>").count(), 1);
        assert!(xml.contains("<version>1.1</version>"), "Pacemaker reloads only OCF 1.1 agents with reload-agent");
        let seen = reloadable_in_xml(&xml);
        let wanted: Vec<(String, Option<String>)> =
            TABLE.iter().map(|p| (p.name.to_owned(), Some(if p.reloadable { "1" } else { "0" }.to_owned()))).collect();
        assert_eq!(seen, wanted);
        assert!(TABLE.iter().any(|p| p.reloadable) && TABLE.iter().any(|p| !p.reloadable));
    }

    #[test]
    fn is_well_formed() {
        let xml = render(&VIRTUAL_DOMAIN);
        let mut reader = quick_xml::Reader::from_str(&xml);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("meta-data is not well-formed: {e}"),
            }
        }
    }
}
