//! The standard library: layers written in the DSL from tensor primitives (layernorm, GELU,
//! attention, a transformer block, ...), shipped inside netc (`compiler/stdlib/layers.net`,
//! which users read and copy) and callable by name from any model file. A block the file
//! defines itself takes precedence.

use crate::ast::BlockDef;
use std::sync::OnceLock;

/// The library's text, as shipped.
pub const SOURCE: &str = include_str!("../stdlib/layers.net");

/// The library's blocks, parsed once.
pub fn blocks() -> &'static [BlockDef] {
    static BLOCKS: OnceLock<Vec<BlockDef>> = OnceLock::new();
    BLOCKS.get_or_init(|| {
        crate::parse_dsl::parse(SOURCE)
            .map(|d| d.blocks)
            .expect("the standard library parses (tested)")
    })
}

/// Whether a block is the library's (its spans then point into [`SOURCE`], not the model
/// file, so what it adds is located at the call).
pub fn contains(b: &BlockDef) -> bool {
    blocks().iter().any(|s| std::ptr::eq(s, b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_library_parses_and_names_its_blocks() {
        let names: Vec<&str> = super::blocks().iter().map(|b| b.name.name.as_str()).collect();
        for want in ["layernorm", "gelu", "attention", "transformer", "embedding", "groupnorm"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }
}
