//! A small element tree read with quick-xml: the CIB and crm_mon's XML are
//! walked by structure (a primitive inside a group inside resources), which
//! an event stream makes awkward. Text content is not kept: Pacemaker puts
//! everything in attributes.

use anyhow::{anyhow, Context};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn attr_or_empty(&self, name: &str) -> &str {
        self.attr(name).unwrap_or("")
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// This element and every descendant (depth first), each with its ancestors.
    pub fn walk<'a>(&'a self, ancestors: &mut Vec<&'a Element>, visit: &mut dyn FnMut(&'a Element, &[&'a Element])) {
        visit(self, ancestors);
        ancestors.push(self);
        for child in &self.children {
            child.walk(ancestors, visit);
        }
        ancestors.pop();
    }
}

pub fn parse(xml: &str) -> anyhow::Result<Element> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        match reader.read_event().map_err(|e| anyhow!("XML error at byte {}: {e}", reader.buffer_position()))? {
            Event::Start(start) => stack.push(element(&start)?),
            Event::Empty(start) => {
                let leaf = element(&start)?;
                stack.last_mut().expect("the root stays").children.push(leaf);
            }
            Event::End(_) => {
                let done = stack.pop().expect("quick-xml checks nesting");
                stack.last_mut().context("unbalanced XML")?.children.push(done);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let document = stack.pop().filter(|_| stack.is_empty()).context("unterminated XML")?;
    document.children.into_iter().next().context("empty XML document")
}

fn element(start: &BytesStart) -> anyhow::Result<Element> {
    let name = start.name().into_inner().to_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| anyhow!("bad attribute in <{name}>: {e}"))?;
        let key = attribute.key.into_inner().to_owned();
        let value = attribute.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(|e| anyhow!("bad value of {key} in <{name}>: {e}"))?.into_owned();
        attributes.push((key, value));
    }
    Ok(Element { name, attributes, children: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_and_unescapes() {
        let root = parse(r#"<?xml version="1.0"?><a x="1"><b y="&quot;q&quot;"/><c><d/></c></a>"#).unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.attr("x"), Some("1"));
        assert_eq!(root.child("b").unwrap().attr("y"), Some("\"q\""));
        assert_eq!(root.child("c").unwrap().children[0].name, "d");
        let mut seen = Vec::new();
        root.walk(&mut Vec::new(), &mut |e, ancestors| {
            let names: Vec<&str> = ancestors.iter().map(|a| a.name.as_str()).collect();
            seen.push(format!("{}:{}", names.join("/"), e.name));
        });
        assert_eq!(seen, [":a", "a:b", "a:c", "a/c:d"]);
        assert!(parse("<a><b></a>").is_err());
    }
}
