//! A small, capped XML tree for signed RIM documents: elements keep their qualified names as written, their
//! own namespace declarations and their attribute values after XML attribute-value normalisation, which is
//! what canonicalisation needs. DOCTYPEs (and therefore entity declarations) and processing instructions in
//! the document are refused; comments are dropped (canonical XML without comments).

use quick_xml::events::{BytesStart, Event};

/// The largest document accepted.
pub const MAX_XML_LEN: usize = 256 * 1024;
/// The most elements accepted.
pub const MAX_ELEMENTS: usize = 4096;
/// The deepest nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// Why XML was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum XmlError {
    /// Not well-formed, or not UTF-8.
    #[error("malformed XML")]
    Malformed,
    /// A construct this parser refuses (DOCTYPE, processing instruction, undeclared prefix, xml:base).
    #[error("unsupported XML construct: {0}")]
    Unsupported(&'static str),
    /// Above a size, count or depth cap.
    #[error("XML above its {0} limit")]
    TooLarge(&'static str),
}

/// One attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Qualified name as written.
    pub qname: String,
    /// Namespace URI of its prefix (None for unprefixed attributes).
    pub ns: Option<String>,
    /// Local name.
    pub local: String,
    /// Value after normalisation and unescaping.
    pub value: String,
}

/// A child node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// An element.
    Element(Element),
    /// Character data (unescaped, line ends normalised).
    Text(String),
}

/// An element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// Qualified name as written.
    pub qname: String,
    /// Prefix ("" for none).
    pub prefix: String,
    /// Local name.
    pub local: String,
    /// Namespace URI (None when unprefixed with no default namespace).
    pub ns: Option<String>,
    /// Namespace declarations made on this element: (prefix, "" for default; URI).
    pub ns_decls: Vec<(String, String)>,
    /// Attributes other than namespace declarations, in document order.
    pub attrs: Vec<Attr>,
    /// Children in document order.
    pub children: Vec<Node>,
}

impl Element {
    /// The value of the unprefixed attribute `local`.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.local == local)
            .map(|a| a.value.as_str())
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with namespace `ns` and local name `local`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.elements()
            .find(|e| e.ns.as_deref() == Some(ns) && e.local == local)
    }

    /// Concatenated text of the direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }
}

fn split_qname(q: &str) -> (&str, &str) {
    match q.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", q),
    }
}

fn normalise_line_ends(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

fn unescape(s: &str) -> Result<String, XmlError> {
    quick_xml::escape::unescape(s)
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| XmlError::Malformed)
}

/// Namespace scope: a stack of (prefix, uri) bindings.
struct Scope {
    bindings: Vec<(String, String)>,
}

impl Scope {
    fn lookup(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some("http://www.w3.org/XML/1998/namespace");
        }
        self.bindings
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, u)| u.as_str())
            .filter(|u| !u.is_empty())
    }
}

fn start_element(e: &BytesStart<'_>, scope: &mut Scope) -> Result<(Element, usize), XmlError> {
    let qname = std::str::from_utf8(e.name().as_ref())
        .map_err(|_| XmlError::Malformed)?
        .to_owned();
    let mut ns_decls = Vec::new();
    let mut raw_attrs = Vec::new();
    for a in e.attributes().with_checks(true) {
        let a = a.map_err(|_| XmlError::Malformed)?;
        let key = std::str::from_utf8(a.key.as_ref())
            .map_err(|_| XmlError::Malformed)?
            .to_owned();
        let raw = std::str::from_utf8(&a.value).map_err(|_| XmlError::Malformed)?;
        // XML 1.0 §3.3.3: literal whitespace in attribute values becomes a space; character references stay.
        let normalised: String = normalise_line_ends(raw)
            .chars()
            .map(|c| if c == '\t' || c == '\n' { ' ' } else { c })
            .collect();
        let value = unescape(&normalised)?;
        if key == "xmlns" {
            ns_decls.push((String::new(), value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            ns_decls.push((p.to_owned(), value));
        } else {
            raw_attrs.push((key, value));
        }
    }
    let pushed = ns_decls.len();
    scope.bindings.extend(ns_decls.iter().cloned());
    let (prefix, local) = split_qname(&qname);
    let ns = match (prefix, scope.lookup(prefix)) {
        ("", u) => u.map(str::to_owned),
        (_, Some(u)) => Some(u.to_owned()),
        (_, None) => return Err(XmlError::Unsupported("undeclared element prefix")),
    };
    let mut attrs = Vec::with_capacity(raw_attrs.len());
    for (key, value) in raw_attrs {
        let (p, l) = split_qname(&key);
        if p == "xml" && l == "base" {
            return Err(XmlError::Unsupported("xml:base"));
        }
        let ans = if p.is_empty() {
            None
        } else {
            Some(
                scope
                    .lookup(p)
                    .ok_or(XmlError::Unsupported("undeclared attribute prefix"))?
                    .to_owned(),
            )
        };
        let local = l.to_owned();
        attrs.push(Attr {
            qname: key,
            ns: ans,
            local,
            value,
        });
    }
    let el = Element {
        prefix: prefix.to_owned(),
        local: local.to_owned(),
        ns,
        qname,
        ns_decls,
        attrs,
        children: Vec::new(),
    };
    Ok((el, pushed))
}

/// Parses a document into its root element.
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    if bytes.len() > MAX_XML_LEN {
        return Err(XmlError::TooLarge("size"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::Malformed)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut scope = Scope {
        bindings: Vec::new(),
    };
    let mut stack: Vec<(Element, usize)> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let ev = reader.read_event().map_err(|_| XmlError::Malformed)?;
        match ev {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err(XmlError::Malformed);
            }
            Event::Start(e) => {
                count = count.saturating_add(1);
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge("element count"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooLarge("depth"));
                }
                stack.push(start_element(&e, &mut scope)?);
            }
            Event::Empty(e) => {
                count = count.saturating_add(1);
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge("element count"));
                }
                let (el, pushed) = start_element(&e, &mut scope)?;
                scope
                    .bindings
                    .truncate(scope.bindings.len().saturating_sub(pushed));
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let (el, pushed) = stack.pop().ok_or(XmlError::Malformed)?;
                scope
                    .bindings
                    .truncate(scope.bindings.len().saturating_sub(pushed));
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let raw = std::str::from_utf8(t.as_ref()).map_err(|_| XmlError::Malformed)?;
                push_text(&mut stack, unescape(&normalise_line_ends(raw))?)?;
            }
            Event::CData(t) => {
                let raw = std::str::from_utf8(t.as_ref()).map_err(|_| XmlError::Malformed)?;
                push_text(&mut stack, normalise_line_ends(raw))?;
            }
            Event::Comment(_) => {}
            Event::Decl(_) => {
                if root.is_some() || !stack.is_empty() {
                    return Err(XmlError::Malformed);
                }
            }
            Event::PI(_) => return Err(XmlError::Unsupported("processing instruction")),
            Event::DocType(_) => return Err(XmlError::Unsupported("DOCTYPE")),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed);
    }
    root.ok_or(XmlError::Malformed)
}

fn attach(stack: &mut [(Element, usize)], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some((parent, _)) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

fn push_text(stack: &mut [(Element, usize)], text: String) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some((parent, _)) => {
            if let Some(Node::Text(prev)) = parent.children.last_mut() {
                prev.push_str(&text);
            } else {
                parent.children.push(Node::Text(text));
            }
            Ok(())
        }
        // Outside the root only whitespace is allowed.
        None if text.chars().all(|c| c.is_ascii_whitespace()) => Ok(()),
        None => Err(XmlError::Malformed),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn doctype_is_refused() {
        assert!(matches!(
            parse(b"<!DOCTYPE a [<!ENTITY x \"y\">]><a/>"),
            Err(XmlError::Unsupported("DOCTYPE"))
        ));
    }

    #[test]
    fn undeclared_prefix_is_refused() {
        assert!(matches!(parse(b"<p:a/>"), Err(XmlError::Unsupported(_))));
    }

    #[test]
    fn attributes_are_normalised() {
        let e = parse(b"<a b=\"x\ny&#xA;&amp;\"/>").expect("parse");
        assert_eq!(e.attr("b"), Some("x y\n&"));
    }

    #[test]
    fn mismatched_end_is_refused() {
        assert!(matches!(parse(b"<a><b></a></b>"), Err(XmlError::Malformed)));
    }
}
