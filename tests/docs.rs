//! The README's parameter table is written by hand; this test holds it to
//! the agent's own meta-data, which is rendered from the one parameter
//! table in src/ocf/params.rs (`TABLE`; a unit test there checks that the
//! meta-data lists each of its entries once). Both ways: every row names a
//! parameter the agent has, with its type, default and short description
//! (plus "required, unique" or "reloadable" when so), and every parameter has exactly one
//! row.

mod support;

use std::collections::BTreeMap;

use support::agent;

/// What one parameter's row says: type, default (with its backticks, empty
/// when none) and meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    kind: String,
    default: String,
    meaning: String,
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[start..].split('"').next()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The rows the meta-data calls for, by parameter name.
fn rows_from_metadata(metadata: &str) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for chunk in metadata.split("<parameter ").skip(1) {
        let open_tag = format!(" {}", chunk.split('>').next().unwrap());
        let name = attribute(&open_tag, "name").expect("parameter name").to_owned();
        let flags: Vec<&str> = ["required", "unique", "reloadable"].into_iter().filter(|f| attribute(&open_tag, f) == Some("1")).collect();
        let short = chunk.split("<shortdesc lang=\"en\">").nth(1).expect("shortdesc").split("</shortdesc>").next().unwrap();
        let content = chunk.split("<content").nth(1).expect("content element").split("/>").next().unwrap();
        let mut meaning = unescape(short);
        if !flags.is_empty() {
            meaning += &format!(" ({})", flags.join(", "));
        }
        let row = Row {
            kind: attribute(content, "type").expect("content type").to_owned(),
            default: attribute(content, "default").map(|d| format!("`{}`", unescape(d))).unwrap_or_default(),
            meaning,
        };
        assert!(rows.insert(name.clone(), row).is_none(), "meta-data lists {name} twice");
    }
    rows
}

/// The rows of the README's table under "## Parameters", by name; a name
/// given twice fails.
fn rows_from_readme(readme: &str) -> BTreeMap<String, Row> {
    let section = readme.split("\n## Parameters\n").nth(1).expect("README has a Parameters section");
    let table = section.split("| name | type | default | meaning |\n|---|---|---|---|\n").nth(1).expect("the parameter table");
    let mut rows = BTreeMap::new();
    for line in table.lines().take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "README row is not name | type | default | meaning: {line}");
        let name = cells[0].trim_matches('`').to_owned();
        let row = Row { kind: cells[1].to_owned(), default: cells[2].to_owned(), meaning: cells[3].to_owned() };
        assert!(rows.insert(name.clone(), row).is_none(), "README lists {name} twice");
    }
    rows
}

#[test]
fn readme_parameter_table_matches_the_agents_parameters_both_ways() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let run = agent("meta-data", &[]);
    assert_eq!(run.code, 0, "meta-data: {}", run.stderr);
    let wanted = rows_from_metadata(&run.stdout);
    assert!(!wanted.is_empty(), "no parameter in the meta-data:\n{}", run.stdout);
    let written = rows_from_readme(&readme);

    let mut wrong = Vec::new();
    for (name, row) in &wanted {
        match written.get(name) {
            None => wrong.push(format!("README lacks {name}: | `{name}` | {} | {} | {} |", row.kind, row.default, row.meaning)),
            Some(w) if w != row => wrong.push(format!("README's {name} says {w:?}, the agent {row:?}")),
            Some(_) => {}
        }
    }
    for name in written.keys().filter(|n| !wanted.contains_key(*n)) {
        wrong.push(format!("README lists {name}, which is no parameter of the agent"));
    }
    assert!(wrong.is_empty(), "README parameter table out of step with the agent:\n{}", wrong.join("\n"));
}
