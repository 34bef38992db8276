//! The YAML document read into its typed form without one mistake hiding the rest: unknown
//! keys are reported (all of them) and dropped so the layers and the training section are still
//! checked (serde stopped at the first one), and a key serde finds missing because of its
//! indentation is reported as an indentation slip at its line.

use super::{key_span, YDoc};
use crate::ast::Span;
use crate::diag::Diagnostic;
use serde_yaml::Value as Y;

const TOP: &[&str] = &["networks", "blocks", "train"];
const NETWORK: &[&str] = &["name", "inputs", "layers", "outputs"];
const BLOCK: &[&str] = &["name", "params", "layers"];
const HELP: &str = "the keys of a YAML model are: networks, blocks, train; a network has name, inputs, layers, outputs";

/// The typed document, and the errors of the keys dropped to read it.
pub(super) fn document(source: &str) -> Result<(YDoc, Vec<Diagnostic>), Vec<Diagnostic>> {
    let first = match serde_yaml::from_str::<YDoc>(source) {
        Ok(d) => return Ok((d, vec![])),
        Err(e) => e,
    };
    if !first.to_string().contains("unknown field") {
        return Err(vec![yaml_error(source, &first)]);
    }
    let mut v: Y = serde_yaml::from_str(source).map_err(|e| vec![yaml_error(source, &e)])?;
    let mut errors = vec![];
    let mut from = 0;
    strip(&mut v, "", TOP, source, &mut from, &mut errors);
    for (list, keys) in [("networks", NETWORK), ("blocks", BLOCK)] {
        if let Some(Y::Sequence(items)) = v.get_mut(list) {
            from = key_span(source, 0, list).map_or(0, |s| s.end);
            for (i, item) in items.iter_mut().enumerate() {
                strip(
                    item,
                    &format!("{list}[{i}]: "),
                    keys,
                    source,
                    &mut from,
                    &mut errors,
                );
            }
        }
    }
    match serde_yaml::from_value::<YDoc>(v) {
        Ok(d) => Ok((d, errors)),
        // What is still wrong follows from a dropped key (`layer:` for `layers:`): the key's
        // error says it.
        Err(_) if !errors.is_empty() => Err(errors),
        Err(_) => Err(vec![yaml_error(source, &first)]),
    }
}

/// Drops the keys of the map `v` that are not `keys`, each an error at its line (searched from
/// `from`, which moves past it), worded as serde words it.
fn strip(
    v: &mut Y,
    path: &str,
    keys: &[&str],
    source: &str,
    from: &mut usize,
    errors: &mut Vec<Diagnostic>,
) {
    let Y::Mapping(m) = v else { return };
    let unknown: Vec<Y> = m
        .keys()
        .filter(|k| k.as_str().is_none_or(|k| !keys.contains(&k)))
        .cloned()
        .collect();
    for k in unknown {
        m.remove(&k);
        let name = match &k {
            Y::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let expected: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        let mut d = Diagnostic::error(format!(
            "invalid YAML model: {path}unknown field `{name}`, expected one of {}",
            expected.join(", ")
        ));
        if let Some(sp) = key_span(source, *from, &name) {
            *from = sp.end;
            d = d.at(Span::new(sp.start, line_end(source, sp.start)), "here");
        }
        errors.push(d.help(HELP));
    }
}

/// serde_yaml's error at its line; a missing key that stands a few spaces off its siblings, or
/// a line YAML cannot nest, is said to be the indentation it is.
pub(super) fn yaml_error(source: &str, e: &serde_yaml::Error) -> Diagnostic {
    let msg = e.to_string();
    // serde_yaml appends " at line L column C"; the span carries that already.
    let text = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let start = e
        .location()
        .map(|l| l.index())
        .unwrap_or(0)
        .min(source.len());
    if let Some(d) = misindented(source, &text, start) {
        return d;
    }
    let end = line_end(source, start)
        .max(start + 1)
        .min(source.len().max(start));
    let mut d =
        Diagnostic::error(format!("invalid YAML model: {text}")).at(Span::new(start, end), "here");
    if text.contains("unknown field") {
        d = d.help(HELP);
    }
    if text.contains("mapping values are not allowed") {
        d = d.help("a key here is indented differently from the keys beside it: YAML nests by indentation, so the keys of one map need the same number of spaces");
    }
    d
}

fn line_end(source: &str, at: usize) -> usize {
    source[at..].find('\n').map_or(source.len(), |o| at + o)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// "missing field `inputs`" at a map starting at `start`, when a later line of the map holds
/// `inputs:` at another indentation than the map's first key: the error at that line.
fn misindented(source: &str, text: &str, start: usize) -> Option<Diagnostic> {
    let key = text.split("missing field `").nth(1)?.split('`').next()?;
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let want = start - line_start;
    let mut at = line_end(source, start);
    while at < source.len() {
        let ls = at + 1;
        let le = line_end(source, ls);
        let line = &source[ls..le];
        let body = line.trim_start_matches(' ');
        // The map ends at a line indented less than its dash (`- name:` at want - 2).
        if !body.is_empty() && !body.starts_with('#') && indent(line) + 2 < want {
            return None;
        }
        if body.starts_with(&format!("{key}:")) && indent(line) != want {
            let (have, n) = (indent(line), source[..ls].matches('\n').count() + 1);
            let path = text.split("missing field").next().unwrap_or("");
            let sp = Span::new(ls + have, ls + have + key.len());
            return Some(
                Diagnostic::error(format!(
                    "invalid YAML model: {path}`{key}` on line {n} is indented {have} spaces, the keys above it {want}: YAML does not read it as a key of this map (missing field `{key}`)"
                ))
                .at(sp, format!("indented {have}, not {want}"))
                .help(format!("indent `{key}:` by {want} spaces, as the keys beside it")),
            );
        }
        at = le;
    }
    None
}
