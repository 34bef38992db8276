//! What an executor works out once per region and keeps with it: the CPU executor's prepared
//! evaluation of a region's graph at a tile size (each group's loop plan, views, last uses),
//! so that a training step, which runs every region with the same batch, finds it ready
//! instead of building it again each step. Opaque to the compiler: values of any type, each
//! under a key the executor chooses.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

/// At most this many values are kept per region: a program that varies its batch (a last,
/// shorter batch; generation at growing lengths) keeps the newest and drops the oldest.
const KEEP: usize = 16;

type Entry = (u64, Arc<dyn Any + Send + Sync>);

#[derive(Default)]
pub struct Memo(Mutex<Vec<Entry>>);

impl Memo {
    /// The value kept under `key` with type `V`, or `make()`'s, kept from now on. `make` runs
    /// without the lock held, so two threads may both make one; the first kept wins.
    pub fn get_or_make<V: Any + Send + Sync>(&self, key: u64, make: impl FnOnce() -> V) -> Arc<V> {
        if let Some(v) = self.find::<V>(key) {
            return v;
        }
        let made = Arc::new(make());
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = find_in::<V>(&list, key) {
            return v;
        }
        if list.len() >= KEEP {
            list.remove(0);
        }
        list.push((key, made.clone()));
        made
    }

    fn find<V: Any + Send + Sync>(&self, key: u64) -> Option<Arc<V>> {
        find_in(&self.0.lock().unwrap_or_else(|p| p.into_inner()), key)
    }
}

fn find_in<V: Any + Send + Sync>(list: &[Entry], key: u64) -> Option<Arc<V>> {
    list.iter()
        .filter(|(k, _)| *k == key)
        .find_map(|(_, v)| v.clone().downcast::<V>().ok())
}

/// A copy shares the kept values: they depend only on the region's graphs, which a copy has
/// too.
impl Clone for Memo {
    fn clone(&self) -> Self {
        Memo(Mutex::new(
            self.0.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        ))
    }
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().map_or(0, |l| l.len());
        write!(f, "Memo({n} kept)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_made_once_per_key_and_type() {
        let m = Memo::default();
        let mut made = 0;
        let a = m.get_or_make(1, || {
            made += 1;
            7u32
        });
        let b = m.get_or_make(1, || {
            made += 1;
            8u32
        });
        assert_eq!((*a, *b, made), (7, 7, 1));
        // The same key with another type is another value.
        assert_eq!(*m.get_or_make(1, || 2.5f64), 2.5);
        assert_eq!(*m.get_or_make(2, || 9u32), 9);
    }

    #[test]
    fn the_oldest_value_goes_when_the_memo_is_full() {
        let m = Memo::default();
        for k in 0..(KEEP as u64 + 1) {
            m.get_or_make(k, || k);
        }
        assert_eq!(
            *m.get_or_make(0, || 100u64),
            100,
            "key 0 was dropped and made again"
        );
        assert_eq!(*m.get_or_make(KEEP as u64, || 100u64), KEEP as u64);
    }
}
