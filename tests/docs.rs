//! The README's parameter table is generated from the agent's own
//! meta-data; this keeps the two in step.

mod support;

use support::agent;

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[start..].split('"').next()
}

#[test]
fn readme_lists_every_parameter_with_its_type_and_default() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let metadata = agent("meta-data", &[]).stdout;
    let mut checked = 0;
    for chunk in metadata.split("<parameter ").skip(1) {
        let open_tag = chunk.split('>').next().unwrap();
        let name = attribute(&format!(" {open_tag}"), "name").expect("parameter name").to_owned();
        let content = chunk.split("<content").nth(1).expect("content element").split("/>").next().unwrap();
        let kind = attribute(content, "type").expect("content type");
        let default = attribute(content, "default").map(|d| format!("`{d}`")).unwrap_or_default();
        let row = format!("| `{name}` | {kind} | {default} |");
        assert!(readme.contains(&row), "README lacks the row starting {row}");
        checked += 1;
    }
    assert!(checked >= 29, "only {checked} parameters in meta-data");
}
