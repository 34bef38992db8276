//! The limits that keep any input, however hostile, from crashing or exhausting the compiler:
//! each is checked before the work it bounds, with a located error. Nesting is bounded before
//! the recursive-descent parsers run (pest recurses once per bracket, and a 10,000-deep input
//! overflowed the stack); expansion is bounded by `build/expand.rs`'s statement budget and block
//! depth; the number of errors reported is capped as rustc does.

use crate::ast::Span;
use crate::diag::Diagnostic;

/// Brackets `(`, `[` and `{` open at once. Hand-written models nest a few levels; 128 leaves
/// ample room while keeping the parser's recursion far from the stack's end.
pub const MAX_NESTING: usize = 128;

/// Bytes of a model file: the largest shipped model is 3 KB; a runaway file is refused before
/// it is read whole.
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// Errors reported for one file; the rest are counted, not printed.
pub const MAX_ERRORS: usize = 50;

/// The first place `text` nests brackets deeper than [`MAX_NESTING`], as an error. `#`
/// comments (to the end of the line) and `"..."` strings are skipped, as the grammar reads
/// them. `base` is the offset of `text` in the file (a YAML scalar inside the document).
pub fn check_nesting(text: &str, base: usize) -> Result<(), Diagnostic> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic::error(format!(
                        "brackets nested more than {MAX_NESTING} deep"
                    ))
                    .at(Span::new(base + i, base + i + 1), "too deep here")
                    .help(
                        "a model nests a few levels; this looks like generated or corrupted text",
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Keeps the first [`MAX_ERRORS`] errors and, when there were more, says how many were left
/// out (a block with 10,000 parameters called without them printed 10,000 errors, 880 MB).
pub fn cap_errors(mut errors: Vec<Diagnostic>) -> Vec<Diagnostic> {
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        errors.truncate(MAX_ERRORS);
        errors.push(Diagnostic::error(format!(
            "aborting after {MAX_ERRORS} errors ({more} more not shown)"
        )));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_bounded_and_located() {
        let ok = format!("{}{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(check_nesting(&ok, 0).is_ok());
        let deep = format!("x = {}", "f(".repeat(MAX_NESTING + 1));
        let e = check_nesting(&deep, 10).expect_err("too deep");
        let at = e.primary.as_ref().map(|l| l.span.start);
        assert_eq!(at, Some(10 + 4 + 2 * MAX_NESTING + 1));
        // Comments and strings do not count.
        let quiet = format!("# {}\n\"{}\"", "(".repeat(500), "[".repeat(500));
        assert!(check_nesting(&quiet, 0).is_ok());
    }
}
