//! Canonical XML without comments: inclusive (C14N 1.0 and 1.1, which agree on documents without `xml:*`
//! attributes, refused by the parser for `xml:base`) and exclusive (xml-exc-c14n, empty prefix list), over an
//! element subtree, optionally leaving out one descendant (the enveloped-signature transform).

use std::collections::BTreeMap;

use super::xml::{Element, Node};

/// Which canonicalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Canonical XML 1.0 / 1.1 (inclusive namespaces).
    Inclusive,
    /// Exclusive XML canonicalisation 1.0 without an InclusiveNamespaces prefix list.
    Exclusive,
}

/// Namespace bindings: prefix ("" = default) → URI.
pub type Bindings = BTreeMap<String, String>;

/// Canonicalises `el` as the apex of a document subset. `inherited` holds the namespace bindings in scope
/// from its ancestors (empty for a root element). `skip` is left out with its subtree, compared by address.
pub fn canonicalize(
    el: &Element,
    inherited: &Bindings,
    mode: Mode,
    skip: Option<&Element>,
) -> String {
    let mut out = String::new();
    write_element(el, inherited, &Bindings::new(), mode, skip, &mut out);
    out
}

fn write_element(
    el: &Element,
    inherited: &Bindings,
    rendered: &Bindings,
    mode: Mode,
    skip: Option<&Element>,
    out: &mut String,
) {
    let mut in_scope = inherited.clone();
    for (p, u) in &el.ns_decls {
        in_scope.insert(p.clone(), u.clone());
    }
    let mut now_rendered = rendered.clone();
    let mut decls: Vec<(&str, &str)> = Vec::new();
    match mode {
        Mode::Inclusive => {
            for (p, u) in &in_scope {
                if consider(p, u, rendered) {
                    decls.push((p, u));
                }
            }
        }
        Mode::Exclusive => {
            let mut used: Vec<&str> = vec![el.prefix.as_str()];
            for a in &el.attrs {
                if let Some((p, _)) = a.qname.split_once(':') {
                    used.push(p);
                }
            }
            for (p, u) in &in_scope {
                if used.contains(&p.as_str()) && consider(p, u, rendered) {
                    decls.push((p, u));
                }
            }
            // An unprefixed element with no default namespace in scope, under a rendered default: undeclare.
            if el.prefix.is_empty()
                && !in_scope.contains_key("")
                && rendered.get("").is_some_and(|u| !u.is_empty())
            {
                decls.push(("", ""));
            }
        }
    }
    out.push('<');
    out.push_str(&el.qname);
    for (p, u) in &decls {
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
        }
        escape_attr(u, out);
        out.push('"');
        now_rendered.insert((*p).to_owned(), (*u).to_owned());
    }
    let mut attrs: Vec<_> = el.attrs.iter().collect();
    attrs.sort_by(|a, b| {
        (a.ns.as_deref().unwrap_or(""), &a.local).cmp(&(b.ns.as_deref().unwrap_or(""), &b.local))
    });
    for a in attrs {
        out.push(' ');
        out.push_str(&a.qname);
        out.push_str("=\"");
        escape_attr(&a.value, out);
        out.push('"');
    }
    out.push('>');
    for child in &el.children {
        match child {
            Node::Text(t) => escape_text(t, out),
            Node::Element(c) => {
                if skip.is_some_and(|s| std::ptr::eq(s, c)) {
                    continue;
                }
                write_element(c, &in_scope, &now_rendered, mode, skip, out);
            }
        }
    }
    out.push_str("</");
    out.push_str(&el.qname);
    out.push('>');
}

/// Whether a binding must be output: not the xml prefix, not already rendered with the same URI, and not an
/// empty default namespace where none was rendered.
fn consider(prefix: &str, uri: &str, rendered: &Bindings) -> bool {
    if prefix == "xml" {
        return false;
    }
    match rendered.get(prefix) {
        Some(r) => r != uri,
        None => !(prefix.is_empty() && uri.is_empty()),
    }
}

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            _ => out.push(c),
        }
    }
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::super::xml::parse;
    use super::*;

    // Examples in the spirit of Canonical XML 1.0 §3 (empty elements, attribute order, redundant declarations).
    #[test]
    fn inclusive_sorts_and_expands() {
        let doc = parse(b"<doc xmlns:b=\"urn:b\" xmlns=\"urn:a\"><e1   b:x=\"1\" a=\"2\"/><e2 xmlns=\"urn:a\">t&amp;&gt;</e2></doc>")
            .expect("parse");
        let c = canonicalize(&doc, &Bindings::new(), Mode::Inclusive, None);
        assert_eq!(
            c,
            "<doc xmlns=\"urn:a\" xmlns:b=\"urn:b\"><e1 a=\"2\" b:x=\"1\"></e1><e2>t&amp;&gt;</e2></doc>"
        );
    }

    #[test]
    fn exclusive_renders_only_used_namespaces() {
        let doc =
            parse(b"<r xmlns:a=\"urn:a\" xmlns:b=\"urn:b\"><a:x><b:y/></a:x></r>").expect("parse");
        let Some(Node::Element(x)) = doc.children.first() else {
            panic!("child")
        };
        let mut inherited = Bindings::new();
        inherited.insert("a".into(), "urn:a".into());
        inherited.insert("b".into(), "urn:b".into());
        assert_eq!(
            canonicalize(x, &inherited, Mode::Exclusive, None),
            "<a:x xmlns:a=\"urn:a\"><b:y xmlns:b=\"urn:b\"></b:y></a:x>"
        );
        assert_eq!(
            canonicalize(x, &inherited, Mode::Inclusive, None),
            "<a:x xmlns:a=\"urn:a\" xmlns:b=\"urn:b\"><b:y></b:y></a:x>"
        );
    }
}
