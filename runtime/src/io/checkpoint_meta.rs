//! The checks a checkpoint's metadata and optimizer state pass on load: a checksum of the
//! metadata (so a flipped byte is caught as the tensors' CRCs catch one in the data), and the
//! range of every field netc reads back. A hand-edited `lr_scale = -1` used to resume as
//! gradient ascent, a negative Adam second moment gave NaN weights, `val_fraction = 2` made
//! `eval` score the training images: each is now an error naming the field.

use std::collections::{BTreeMap, HashSet};

/// The metadata key holding the CRC-32 of the other metadata entries.
pub(super) const META_CRC_KEY: &str = "netc_meta_crc32";

/// The CRC-32 of the metadata entries other than the checksums themselves, over a canonical
/// form (the entries sorted by key, as one JSON object), so the order a writer put the keys
/// in does not matter.
pub(super) fn meta_crc<'a>(
    entries: impl Iterator<Item = (&'a String, &'a String)>,
    skip: &[&str],
) -> String {
    let sorted: BTreeMap<&String, &String> = entries
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    let text = serde_json::to_string(&sorted).unwrap_or_default();
    format!("{:08x}", crc32fast::hash(text.as_bytes()))
}

/// Counters a run records (steps, epochs, seeds): whole numbers.
const COUNTERS: [&str; 8] = [
    "step",
    "epoch",
    "bad_epochs",
    "seed",
    "split_seed",
    "g_step",
    "d_step",
    "d_batches",
];

/// Checks every metadata field netc reads back and the optimizer state; the message names the
/// field and what it must be.
pub(super) fn validate(
    meta: &BTreeMap<String, String>,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), String> {
    let bad = |key: &str, why: &str| {
        Err(format!(
            "its metadata `{key}` is `{}`, but it must be {why}",
            short(&meta[key])
        ))
    };
    for key in COUNTERS {
        if meta.contains_key(key) && meta[key].parse::<u64>().is_err() {
            return bad(key, "a whole number");
        }
    }
    let number = |key: &str| meta.get(key).map(|v| v.parse::<f64>().ok());
    for key in ["lr_scale", "lr"] {
        match number(key) {
            Some(Some(v)) if v.is_finite() && v > 0.0 => {}
            Some(_) => return bad(key, "a finite number above 0"),
            None => {}
        }
    }
    if let Some(v) = number("best_test_loss") {
        if !v.is_some_and(|v| v >= 0.0) {
            return bad("best_test_loss", "a number at least 0 (or inf)");
        }
    }
    if let Some(v) = number("val_fraction") {
        if !v.is_some_and(|v| (0.0..1.0).contains(&v)) {
            return bad("val_fraction", "a number in [0, 1)");
        }
    }
    let list = |key: &str| {
        meta.get(key)
            .map(|v| serde_json::from_str::<Vec<f64>>(v).ok())
    };
    let mean = list("image_mean");
    if let Some(m) = &mean {
        if !m.as_ref().is_some_and(|m| m.iter().all(|x| x.is_finite())) {
            return bad("image_mean", "a JSON list of finite numbers");
        }
    }
    if let Some(s) = list("image_std") {
        let Some(s) = s.filter(|s| s.iter().all(|x| x.is_finite() && *x > 0.0)) else {
            return bad("image_std", "a JSON list of finite numbers above 0");
        };
        if let Some(Some(m)) = &mean {
            if m.len() != s.len() {
                return bad("image_std", "as long as `image_mean` (one per channel)");
            }
        }
    }
    if let Some(p) = list("image_pca") {
        if !p.is_some_and(|p| p.len() == 12 && p.iter().all(|x| x.is_finite())) {
            return bad("image_pca", "a JSON list of 12 finite numbers");
        }
    }
    if meta.contains_key("classes") {
        classes(&meta["classes"]).or_else(|why| bad("classes", &why))?;
    }
    data_record(meta)?;
    optimizer_state(tensors)
}

/// The record of the data a run trained on (see [`crate::data::record`]): a folder, its files
/// with their sizes, a SHA-256 fingerprint and the images' shape, each in its form.
fn data_record(meta: &BTreeMap<String, String>) -> Result<(), String> {
    use crate::data::record::{DIR_KEY, FILES_KEY, FINGERPRINT_KEY, SHAPE_KEY};
    let bad = |key: &str, why: &str| {
        Err(format!(
            "its metadata `{key}` is `{}`, but it must be {why}",
            short(&meta[key])
        ))
    };
    if meta.get(DIR_KEY).is_some_and(|d| d.is_empty()) {
        return bad(DIR_KEY, "the data folder's path");
    }
    if let Some(f) = meta.get(FILES_KEY) {
        if serde_json::from_str::<BTreeMap<String, u64>>(f).is_err() {
            return bad(FILES_KEY, "a JSON object of file names and sizes in bytes");
        }
    }
    if let Some(f) = meta.get(FINGERPRINT_KEY) {
        if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(FINGERPRINT_KEY, "a SHA-256 (64 hexadecimal digits)");
        }
    }
    let record = [DIR_KEY, FILES_KEY, FINGERPRINT_KEY].map(|k| meta.contains_key(k));
    if record.contains(&true) && record.contains(&false) {
        let missing = [DIR_KEY, FILES_KEY, FINGERPRINT_KEY]
            .into_iter()
            .find(|k| !meta.contains_key(*k))
            .unwrap_or(DIR_KEY);
        return Err(format!(
            "its metadata records the data set only in part (no `{missing}`)"
        ));
    }
    if let Some(s) = meta.get(SHAPE_KEY) {
        let ok = serde_json::from_str::<Vec<u64>>(s)
            .is_ok_and(|v| v.len() == 3 && v.iter().all(|&d| (1..=1 << 20).contains(&d)));
        if !ok {
            return bad(
                SHAPE_KEY,
                "a JSON list of 3 sizes [channels, height, width]",
            );
        }
    }
    Ok(())
}

/// The class names: a JSON list of distinct, non-empty strings.
fn classes(text: &str) -> Result<(), String> {
    let names: Vec<String> = serde_json::from_str(text)
        .map_err(|_| "a JSON list of class names (strings)".to_string())?;
    let mut seen = HashSet::new();
    for n in &names {
        if n.is_empty() {
            return Err("a list of non-empty class names".into());
        }
        if !seen.insert(n) {
            return Err(format!(
                "a list of distinct class names (`{n}` appears twice)"
            ));
        }
    }
    Ok(())
}

/// Optimizer state is finite, and Adam's second moments (`exp_avg_sq`, a running mean of
/// squares) are not negative: the update divides by their square root.
fn optimizer_state(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<(), String> {
    for (name, _, data) in tensors {
        if !name.starts_with(super::run_checkpoint::OPTIMIZER_GROUP) {
            continue;
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "optimizer state `{name}` holds NaN or infinite values"
            ));
        }
        if name.ends_with(".exp_avg_sq") && data.iter().any(|v| *v < 0.0) {
            return Err(format!(
                "optimizer state `{name}` (Adam's second moments) holds negative values"
            ));
        }
    }
    Ok(())
}

/// A value cut short for a message.
fn short(v: &str) -> String {
    if v.chars().count() > 60 {
        format!("{}...", v.chars().take(60).collect::<String>())
    } else {
        v.to_string()
    }
}
