//! Compiler diagnostics: every model error carries a span and is rendered with the file name,
//! line, column, the source line and a caret (codespan-reporting, no colour, so output does not
//! depend on the terminal and can be snapshot-tested).

use crate::ast::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

/// Source lines longer than this are not echoed under an error (a generated line of 59 KB,
/// printed once per error, made megabytes of output).
const MAX_LINE: usize = 400;

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One model error. `notes` are rendered as `= help: ...` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub message: String,
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            primary: None,
            secondary: vec![],
            notes: vec![],
        }
    }
    pub fn at(mut self, span: Span, label: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span,
            message: label.into(),
        });
        self
    }
    pub fn also(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: label.into(),
        });
        self
    }
    pub fn help(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// All the errors of one compilation, with the source they point into.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub file_name: String,
    pub source: String,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Renders every diagnostic, rustc style, followed by a count.
    pub fn render(&self) -> String {
        let mut out = self.render_items(false);
        let n = self.items.len();
        out.push_str(&format!(
            "error: {} was not compiled: {} error{}\n",
            self.file_name,
            n,
            if n == 1 { "" } else { "s" }
        ));
        out
    }

    /// Renders the items as warnings (of a model that compiled: no count, no "not compiled").
    pub fn render_warnings(&self) -> String {
        self.render_items(true)
    }

    fn render_items(&self, warning: bool) -> String {
        let file = SimpleFile::new(self.file_name.as_str(), self.source.as_str());
        let config = Config::default();
        let mut out = String::new();
        for d in &self.items {
            if let Some(long) = self.long_line(d, warning) {
                out.push_str(&long);
                continue;
            }
            let cs = if warning {
                CsDiagnostic::warning()
            } else {
                CsDiagnostic::error()
            };
            let mut cs = cs.with_message(&d.message);
            let mut labels = vec![];
            if let Some(p) = &d.primary {
                labels.push(
                    CsLabel::primary((), clamp(p.span, &self.source)).with_message(&p.message),
                );
            }
            for s in &d.secondary {
                labels.push(
                    CsLabel::secondary((), clamp(s.span, &self.source)).with_message(&s.message),
                );
            }
            cs = cs.with_labels(labels);
            cs = cs.with_notes(d.notes.iter().map(|n| format!("help: {n}")).collect());
            // Writing into a String cannot fail.
            let _ = term::emit_to_string(&mut out, &config, &file, &cs);
        }
        out
    }

    /// A diagnostic whose labels point into a line too long to echo (generated or corrupted
    /// text), rendered as its location and messages without the source line.
    fn long_line(&self, d: &Diagnostic, warning: bool) -> Option<String> {
        let line_len = |l: &Label| {
            let r = clamp(l.span, &self.source);
            let start = self.source[..r.start].rfind('\n').map_or(0, |i| i + 1);
            let end = self.source[r.start..]
                .find('\n')
                .map_or(self.source.len(), |i| r.start + i);
            end - start
        };
        let labels: Vec<&Label> = d.primary.iter().chain(&d.secondary).collect();
        let longest = labels.iter().map(|l| line_len(l)).max()?;
        if longest <= MAX_LINE {
            return None;
        }
        let mut out = format!(
            "{}: {}\n",
            if warning { "warning" } else { "error" },
            d.message
        );
        for l in labels {
            let (line, col) = self.line_col(l.span.start);
            out.push_str(&format!(
                "  --> {}:{line}:{col}: {}\n",
                self.file_name, l.message
            ));
        }
        out.push_str(&format!(
            "   = note: the line is {longest} characters long; not shown\n"
        ));
        for n in &d.notes {
            out.push_str(&format!("   = help: {n}\n"));
        }
        out.push('\n');
        Some(out)
    }

    /// (line, column), both 1-based, of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source, offset)
    }

    /// The diagnostics for tools (`netc check --format json`): per error its message, where it
    /// points (1-based line and column of the primary label's start and end), every label and
    /// the help lines.
    pub fn json(&self) -> serde_json::Value {
        let label = |l: &Label, primary: bool| {
            let r = clamp(l.span, &self.source);
            let (line, column) = line_col(&self.source, r.start);
            let (end_line, end_column) = line_col(&self.source, r.end);
            serde_json::json!({
                "message": l.message,
                "primary": primary,
                "line": line,
                "column": column,
                "end_line": end_line,
                "end_column": end_column,
            })
        };
        let errors: Vec<serde_json::Value> = self
            .items
            .iter()
            .map(|d| {
                let labels: Vec<serde_json::Value> = d
                    .primary
                    .iter()
                    .map(|p| label(p, true))
                    .chain(d.secondary.iter().map(|s| label(s, false)))
                    .collect();
                let at = labels.first();
                serde_json::json!({
                    "severity": "error",
                    "message": d.message,
                    "file": self.file_name,
                    "line": at.map(|l| l["line"].clone()),
                    "column": at.map(|l| l["column"].clone()),
                    "labels": labels,
                    "help": d.notes,
                })
            })
            .collect();
        serde_json::json!({ "file": self.file_name, "ok": false, "errors": errors })
    }
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn clamp(span: Span, source: &str) -> std::ops::Range<usize> {
    let mut start = span.start.min(source.len());
    let mut end = span.end.min(source.len()).max(start);
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    while !source.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        let limit = (word.len().max(c.len()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Levenshtein distance where a swap of two neighbours counts as one edit (optimal string
/// alignment): `cnov` -> `conv` is 1. From strsim, already in the build through clap.
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("cnov", ["conv", "dense"]).as_deref(),
            Some("conv")
        );
        assert_eq!(
            did_you_mean("maxpol", ["maxpool", "avgpool"]).as_deref(),
            Some("maxpool")
        );
        assert_eq!(did_you_mean("zzzzzz", ["conv", "dense"]), None);
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
    }
}
