//! A strict parser of the OpenMetrics text format (what the agent's `/metrics` serves), for tests:
//! every line must be a `# HELP`/`# TYPE`/`# UNIT` line or a sample of the family last declared,
//! label values are quoted with the format's escapes, the exposition ends with `# EOF`, no sample
//! repeats, and each histogram's buckets are cumulative and end at `+Inf` equal to its `_count`.

use std::collections::{BTreeMap, HashMap};

/// Labels of one sample.
pub type Labels = BTreeMap<String, String>;

/// A parsed exposition: every sample's value by name and labels, and each family's type.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: BTreeMap<(String, Labels), f64>,
    pub types: HashMap<String, String>,
}

impl Scrape {
    /// The value of `name{labels}`, 0 when absent (a labelled counter appears at its first use).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Suffixes a sample of a family of type `ty` may add to the family name.
fn suffixes(ty: &str) -> &'static [&'static str] {
    match ty {
        "counter" => &["_total", "_created"],
        "histogram" | "gaugehistogram" => {
            &["_bucket", "_count", "_sum", "_created", "_gcount", "_gsum"]
        }
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

/// `{k="v",...}` at the start of `s`: the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = rest.get(..eq).unwrap();
        if !is_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut chars = rest.get(eq + 1..).unwrap().char_indices();
        if chars.next() != Some((0, '"')) {
            return Err("label value not quoted".into());
        }
        let mut value = String::new();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} repeated"));
        }
        rest = rest.get(eq + 1 + end + 1..).unwrap();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or }".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Parse an OpenMetrics text exposition, failing on anything the format does not allow.
pub fn parse_openmetrics(text: &str) -> Result<Scrape, String> {
    let body = text.strip_suffix("# EOF\n").ok_or("no final # EOF")?;
    let mut scrape = Scrape::default();
    let mut family: Option<(String, String)> = None;
    for (n, line) in body.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts
                .next()
                .ok_or_else(|| err("metadata without name".into()))?;
            let arg = parts
                .next()
                .ok_or_else(|| err("metadata without value".into()))?;
            if !is_name(name) {
                return Err(err("bad metric name".into()));
            }
            match kind {
                "TYPE" => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ];
                    if !known.contains(&arg) {
                        return Err(err(format!("unknown type {arg}")));
                    }
                    if scrape
                        .types
                        .insert(name.to_owned(), arg.to_owned())
                        .is_some()
                    {
                        return Err(err("family declared twice".into()));
                    }
                    family = Some((name.to_owned(), arg.to_owned()));
                }
                "HELP" | "UNIT" => {}
                _ => return Err(err(format!("unknown metadata {kind}"))),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("sample without value".into()))?;
        let name = line.get(..name_end).unwrap();
        if !is_name(name) {
            return Err(err("bad sample name".into()));
        }
        let (labels, rest) = if line.get(name_end..).unwrap().starts_with('{') {
            parse_labels(line.get(name_end..).unwrap()).map_err(err)?
        } else {
            (Labels::new(), line.get(name_end..).unwrap())
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("expected a space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).map_err(err)?;
        if let Some(ts) = fields.next() {
            parse_value(ts).map_err(err)?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let (fam, ty) = family
            .as_ref()
            .ok_or_else(|| err("sample before any # TYPE".into()))?;
        let suffix = name
            .strip_prefix(fam.as_str())
            .ok_or_else(|| err(format!("sample outside family {fam}")))?;
        if !suffixes(ty).contains(&suffix) {
            return Err(err(format!("suffix {suffix:?} not allowed for a {ty}")));
        }
        if scrape
            .samples
            .insert((name.to_owned(), labels), value)
            .is_some()
        {
            return Err(err("sample repeated".into()));
        }
    }
    check_histograms(&scrape)?;
    Ok(scrape)
}

/// Each histogram series: buckets cumulative, `+Inf` present and equal to `_count`.
fn check_histograms(scrape: &Scrape) -> Result<(), String> {
    for (fam, ty) in &scrape.types {
        if ty != "histogram" {
            continue;
        }
        let bucket = format!("{fam}_bucket");
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in &scrape.samples {
            if *name != bucket {
                continue;
            }
            let mut rest = labels.clone();
            let le = rest
                .remove("le")
                .ok_or_else(|| format!("{bucket} without le"))?;
            series
                .entry(rest)
                .or_default()
                .push((parse_value(&le)?, *v));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{fam}{labels:?}: buckets not cumulative"));
            }
            let (le, inf) = *buckets.last().unwrap();
            let count = scrape
                .samples
                .get(&(format!("{fam}_count"), labels.clone()))
                .ok_or_else(|| format!("{fam}{labels:?}: no _count"))?;
            if le != f64::INFINITY || inf != *count {
                return Err(format!(
                    "{fam}{labels:?}: +Inf bucket {inf} != count {count}"
                ));
            }
        }
    }
    Ok(())
}
