//! `proto/dait.proto` (for other languages) must declare the same messages, field names and numbers as the
//! `prost` structs in `src/proto.rs`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;

fn read(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// (message, field, number) from the .proto text.
fn from_proto_file() -> BTreeSet<(String, String, u32)> {
    let mut out = BTreeSet::new();
    let mut message = String::new();
    for line in read("proto/dait.proto").lines() {
        let line = line.split("//").next().unwrap().trim();
        if let Some(rest) = line.strip_prefix("message ") {
            message = rest.trim_end_matches('{').trim().to_string();
        } else if let Some((lhs, rhs)) = line.split_once('=') {
            if message.is_empty() || line.starts_with("PLATFORM_") {
                continue;
            }
            let name = lhs.split_whitespace().last().unwrap().to_string();
            let number = rhs.trim().trim_end_matches(';').trim().parse().unwrap();
            out.insert((message.clone(), name, number));
        }
    }
    out
}

/// (message, field, number) from the prost attributes in src/proto.rs (oneof variants in snake case).
fn from_prost_source() -> BTreeSet<(String, String, u32)> {
    let mut out = BTreeSet::new();
    let mut message = String::new();
    let mut pending_tag: Option<u32> = None;
    for line in read("src/proto.rs").lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            message = rest.trim_end_matches('{').trim().to_string();
        } else if line.starts_with("pub enum Evidence") {
            message = "CpuEvidence".to_string();
        } else if line.starts_with("#[prost(") && line.contains("tag = \"") {
            let tag = line
                .split("tag = \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            pending_tag = Some(tag.parse().unwrap());
        } else if let Some(tag) = pending_tag.take() {
            let name = if let Some(rest) = line.strip_prefix("pub ") {
                rest.split(':').next().unwrap().to_string()
            } else {
                // Oneof variant `TdxQuote(Vec<u8>),` -> tdx_quote.
                let camel = line.split('(').next().unwrap();
                let mut snake = String::new();
                for (i, c) in camel.chars().enumerate() {
                    if c.is_uppercase() && i > 0 {
                        snake.push('_');
                    }
                    snake.push(c.to_ascii_lowercase());
                }
                snake
            };
            out.insert((message.clone(), name, tag));
        }
    }
    out
}

#[test]
fn proto_file_matches_prost_structs() {
    let file = from_proto_file();
    let src = from_prost_source();
    assert!(src.len() > 80, "parsed {} prost fields", src.len());
    assert_eq!(file, src);
}
