//! `netc stdlib`: the standard library of layers written in the DSL, whole or one block with
//! the comment above it, to read or copy into a model file.

use crate::common::{fail, Failure};
use netc_compiler::diag::did_you_mean;
use netc_compiler::stdlib::{blocks, SOURCE};

pub(crate) fn stdlib(name: Option<&str>) -> Result<(), Failure> {
    let Some(name) = name else {
        print!("{SOURCE}");
        return Ok(());
    };
    let Some(b) = blocks().iter().find(|b| b.name.name == name) else {
        let names = blocks().iter().map(|b| b.name.name.as_str());
        let hint = match did_you_mean(name, names.clone()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the blocks are: {}", names.collect::<Vec<_>>().join(", ")),
        };
        return Err(fail(format!(
            "the standard library has no block `{name}`; {hint}"
        )));
    };
    // The block's text with the comment lines right above it.
    let head = &SOURCE[..b.span.start];
    let comment_start = head
        .lines()
        .rev()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    println!("{}", &SOURCE[b.span.start - comment_start..b.span.end]);
    Ok(())
}
