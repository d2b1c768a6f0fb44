//! The owner tag: an element in virtguard's own XML namespace inside the
//! domain's `<metadata>`, naming the Pacemaker resource instance that runs
//! the guest. libvirt keeps it in the live definition and sends it along
//! with a live migration, so a node that never saw the config file can still
//! tell "the guest of resource X" from any other domain.

use anyhow::{anyhow, Context};
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

/// The namespace of the tag (an identifier, never fetched).
pub const NAMESPACE: &str = "http://virtguard.org/xmlns/owner/1";
/// The prefix libvirt writes the tag with.
pub const PREFIX: &str = "virtguard";

/// The tag as `virDomainSetMetadata` takes it (libvirt adds the namespace).
pub fn element(instance: &str) -> String {
    format!("<owner resource=\"{}\"/>", escape(instance))
}

/// The tag as it appears inside a domain XML's `<metadata>`.
fn element_in_domain(instance: &str) -> String {
    format!("<{PREFIX}:owner xmlns:{PREFIX}=\"{NAMESPACE}\" resource=\"{}\"/>", escape(instance))
}

/// The instance named by a tag element as `virDomainGetMetadata` returns it.
pub fn owner_of_element(xml: &str) -> Option<String> {
    let mut reader = NsReader::from_str(xml);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) => return resource_attribute(&e),
            Event::Eof => return None,
            _ => {}
        }
    }
}

fn resource_attribute(element: &quick_xml::events::BytesStart) -> Option<String> {
    let value = element.try_get_attribute("resource").ok()??;
    let raw: &str = &value.value;
    quick_xml::escape::unescape(raw).ok().map(|v| v.into_owned())
}

/// Where the tag sits in a domain XML, found by a streaming pass.
#[derive(Default)]
struct Layout {
    /// Byte offset just inside `<metadata>` (after its start tag).
    metadata_inside: Option<usize>,
    /// Byte range of a self-closing `<metadata/>`.
    metadata_empty: Option<(usize, usize)>,
    /// Byte ranges of existing tags in our namespace.
    old_tags: Vec<(usize, usize)>,
    /// Byte offset of the root's end tag.
    root_end: Option<usize>,
    owner: Option<String>,
}

fn is_ours(ns: &ResolveResult) -> bool {
    matches!(ns, ResolveResult::Bound(Namespace(uri)) if *uri == NAMESPACE)
}

fn layout(xml: &str) -> anyhow::Result<Layout> {
    let mut reader = NsReader::from_str(xml);
    let mut found = Layout::default();
    let mut path: Vec<String> = Vec::new();
    let mut tag_start: Option<usize> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let (ns, event) = reader.read_resolved_event().map_err(|e| anyhow!("not well-formed XML: {e}"))?;
        let ours = is_ours(&ns);
        let after = reader.buffer_position() as usize;
        let in_metadata = path.len() == 2 && path[1] == "metadata";
        match event {
            Event::Start(e) => {
                let name = e.local_name().into_inner().to_owned();
                if path.len() == 1 && name == "metadata" {
                    found.metadata_inside = Some(after);
                }
                if in_metadata && ours && name == "owner" {
                    found.owner = resource_attribute(&e);
                    tag_start = Some(before);
                }
                path.push(name);
            }
            Event::Empty(e) => {
                let name = e.local_name().into_inner().to_owned();
                if path.len() == 1 && name == "metadata" {
                    found.metadata_empty = Some((before, after));
                }
                if in_metadata && ours && name == "owner" {
                    found.owner = resource_attribute(&e);
                    found.old_tags.push((before, after));
                }
            }
            Event::End(_) => {
                path.pop();
                if path.len() == 2 && path[1] == "metadata" {
                    if let Some(start) = tag_start.take() {
                        found.old_tags.push((start, after));
                    }
                }
                if path.is_empty() {
                    found.root_end = Some(before);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found)
}

/// The resource instance a domain XML's tag names, if it carries one.
pub fn owner_in_domain_xml(xml: &str) -> Option<String> {
    layout(xml).ok()?.owner
}

/// `xml` with exactly one tag naming `instance` (an old tag, of this or any
/// other resource, is replaced); everything else is left byte for byte.
pub fn tag_domain_xml(xml: &str, instance: &str) -> anyhow::Result<String> {
    let found = layout(xml)?;
    let tag = element_in_domain(instance);
    let root_end = found.root_end.context("the domain XML has no root element")?;
    let mut edits: Vec<(usize, usize, String)> = found.old_tags.iter().map(|&(a, b)| (a, b, String::new())).collect();
    if let Some((a, b)) = found.metadata_empty {
        edits.push((a, b, format!("<metadata>{tag}</metadata>")));
    } else if let Some(inside) = found.metadata_inside {
        edits.push((inside, inside, tag));
    } else {
        edits.push((root_end, root_end, format!("<metadata>{tag}</metadata>")));
    }
    edits.sort_by_key(|&(a, _, _)| std::cmp::Reverse(a));
    let mut out = xml.to_owned();
    for (a, b, text) in edits {
        out.replace_range(a..b, &text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::domain_xml::DomainConfig;

    const PLAIN: &str = "<domain type='kvm'>\n  <name>vm1</name>\n  <memory unit='MiB'>64</memory>\n</domain>\n";

    #[test]
    fn a_domain_without_metadata_gets_a_metadata_element() {
        let tagged = tag_domain_xml(PLAIN, "vm1-rsc").unwrap();
        assert_eq!(owner_in_domain_xml(&tagged).as_deref(), Some("vm1-rsc"));
        assert!(tagged.starts_with("<domain type='kvm'>\n  <name>vm1</name>"), "{tagged}");
        assert_eq!(DomainConfig::parse(&tagged).unwrap(), DomainConfig::parse(PLAIN).unwrap());
        assert_eq!(owner_in_domain_xml(PLAIN), None);
    }

    #[test]
    fn other_metadata_is_kept_and_an_old_tag_is_replaced() {
        let xml = format!(
            "<domain><name>vm1</name><metadata><libosinfo:libosinfo xmlns:libosinfo=\"http://libosinfo.org/xmlns/libvirt/domain/1.0\"><libosinfo:os id=\"x\"/></libosinfo:libosinfo>\
             <vg:owner xmlns:vg=\"{NAMESPACE}\" resource=\"old\"></vg:owner></metadata></domain>"
        );
        assert_eq!(owner_in_domain_xml(&xml).as_deref(), Some("old"));
        let tagged = tag_domain_xml(&xml, "new").unwrap();
        assert_eq!(owner_in_domain_xml(&tagged).as_deref(), Some("new"));
        assert!(tagged.contains("libosinfo:os id=\"x\""), "{tagged}");
        assert_eq!(tagged.matches("resource=").count(), 1, "{tagged}");
        let twice = tag_domain_xml(&tagged, "new").unwrap();
        assert_eq!(twice.matches("resource=").count(), 1, "{twice}");
    }

    #[test]
    fn an_owner_element_in_another_namespace_is_not_ours() {
        let xml = "<domain><name>vm1</name><metadata><x:owner xmlns:x=\"urn:other\" resource=\"a\"/></metadata></domain>";
        assert_eq!(owner_in_domain_xml(xml), None);
        let tagged = tag_domain_xml(xml, "b").unwrap();
        assert!(tagged.contains("urn:other"));
        assert_eq!(owner_in_domain_xml(&tagged).as_deref(), Some("b"));
        let empty = tag_domain_xml("<domain><name>v</name><metadata/></domain>", "c:0").unwrap();
        assert_eq!(owner_in_domain_xml(&empty).as_deref(), Some("c:0"));
    }

    #[test]
    fn names_are_escaped_and_read_back() {
        let tagged = tag_domain_xml(PLAIN, "a\"<b>&c").unwrap();
        assert_eq!(owner_in_domain_xml(&tagged).as_deref(), Some("a\"<b>&c"));
        assert_eq!(owner_of_element(&element("vm1")).as_deref(), Some("vm1"));
        // As libvirt hands it back from virDomainGetMetadata.
        let from_libvirt = format!("<virtguard:owner xmlns:virtguard=\"{NAMESPACE}\" resource=\"cfgr\"/>\n");
        assert_eq!(owner_of_element(&from_libvirt).as_deref(), Some("cfgr"));
        assert!(tag_domain_xml("<domain><name>", "x").is_err());
    }
}
