//! String interning: the index from a key column's values to their rows, and the shared pool of
//! identity numbers that joins every source together.
//!
//! Both keep the strings once, in Arrow buffers, and hold only row numbers in a hash table
//! (`hashbrown::HashTable<u32>`), so that 16 million keys cost a few bytes each beyond their text.

use arrow::array::{Array, StringArray, StringBuilder};
use hashbrown::HashTable;

/// Fixed seeds: hashing is deterministic from run to run.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x6772_6964, 0x6c65_6e73, 0x2026_1101, 0x0440_1040)
}

/// Hashes a string with the pools' hasher.
pub fn hash_str(state: &ahash::RandomState, s: &str) -> u64 {
    state.hash_one(s)
}

/// An index over a column of unique strings (a table's key): value → row.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    table: HashTable<u32>,
    state: ahash::RandomState,
}

impl KeyIndex {
    /// Indexes `values`, keeping the first row of each value. Returns the index and, for every
    /// later row whose value repeats an earlier one, `(row, first_row)`. Null rows and rows
    /// where `skip(row)` is true are not indexed.
    pub fn build(
        values: &StringArray,
        skip: impl Fn(usize) -> bool,
    ) -> (KeyIndex, Vec<(usize, usize)>) {
        let state = hasher();
        let mut table = HashTable::with_capacity(values.len());
        let mut repeats = Vec::new();
        for row in 0..values.len() {
            if values.is_null(row) || skip(row) {
                continue;
            }
            let v = values.value(row);
            let h = state.hash_one(v);
            match table.find(h, |&r: &u32| values.value(r as usize) == v) {
                Some(&first) => repeats.push((row, first as usize)),
                None => {
                    table.insert_unique(h, row as u32, |&r: &u32| {
                        state.hash_one(values.value(r as usize))
                    });
                }
            }
        }
        (KeyIndex { table, state }, repeats)
    }

    /// The row holding `v` in `values` (the array the index was built over, or a filtered copy
    /// whose rows were renumbered through [`KeyIndex::renumber`]).
    pub fn get(&self, values: &StringArray, v: &str) -> Option<u32> {
        let h = self.state.hash_one(v);
        self.table
            .find(h, |&r: &u32| values.value(r as usize) == v)
            .copied()
    }

    /// Renumbers the rows after the indexed array was filtered: `new_row[old]` is the row's new
    /// number (`u32::MAX` for rows that were dropped, which must not be indexed).
    pub fn renumber(&mut self, new_row: &[u32]) {
        for r in self.table.iter_mut() {
            *r = new_row[*r as usize];
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The pool of identity numbers (`id_number`, `tenant_id_number`, …) from every source, each
/// kept once and known by its position: the cross-source join key.
#[derive(Debug)]
pub struct IdentityPool {
    values: StringBuilder,
    /// A frozen copy of `values`, refreshed by [`IdentityPool::freeze`], that lookups read.
    frozen: StringArray,
    table: HashTable<u32>,
    state: ahash::RandomState,
}

impl Default for IdentityPool {
    fn default() -> Self {
        IdentityPool {
            values: StringBuilder::new(),
            frozen: StringArray::from(Vec::<&str>::new()),
            table: HashTable::new(),
            state: hasher(),
        }
    }
}

impl IdentityPool {
    /// The number of identities; `get` answers for identities below [`IdentityPool::frozen_len`].
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// How many identities lookups through [`IdentityPool::get`] see.
    pub fn frozen_len(&self) -> usize {
        self.frozen.len()
    }

    /// Looks up an identity interned before the last [`IdentityPool::freeze`]; safe to call
    /// from many threads.
    pub fn get(&self, v: &str) -> Option<u32> {
        let h = self.state.hash_one(v);
        let frozen = &self.frozen;
        self.table
            .find(h, |&r: &u32| {
                (r as usize) < frozen.len() && frozen.value(r as usize) == v
            })
            .copied()
            .filter(|&r| (r as usize) < frozen.len())
    }

    /// Interns an identity, returning its position. Call [`IdentityPool::freeze`] before
    /// looking up new identities with [`IdentityPool::get`].
    pub fn intern(&mut self, v: &str) -> u32 {
        let h = self.state.hash_one(v);
        let frozen = &self.frozen;
        let values = &self.values;
        // Entries past the frozen copy live only in the builder; compare against either.
        let find = |r: u32| -> bool {
            let r = r as usize;
            if r < frozen.len() {
                frozen.value(r) == v
            } else {
                builder_value(values, r) == v
            }
        };
        if let Some(&r) = self.table.find(h, |&r| find(r)) {
            return r;
        }
        let r = self.table.len() as u32;
        self.values.append_value(v);
        let state = &self.state;
        let values = &self.values;
        self.table.insert_unique(h, r, |&x| {
            let x = x as usize;
            if x < frozen.len() {
                state.hash_one(frozen.value(x))
            } else {
                state.hash_one(builder_value(values, x))
            }
        });
        r
    }

    /// Makes every interned identity visible to [`IdentityPool::get`].
    pub fn freeze(&mut self) {
        self.frozen = self.values.finish_cloned();
    }

    /// The identities, by position.
    pub fn values(&self) -> &StringArray {
        &self.frozen
    }
}

fn builder_value(b: &StringBuilder, i: usize) -> &str {
    let offsets = b.offsets_slice();
    let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
    std::str::from_utf8(&b.values_slice()[start..end]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_index_finds_rows_and_repeats() {
        let a = StringArray::from(vec![Some("a"), Some("b"), None, Some("a"), Some("c")]);
        let (idx, rep) = KeyIndex::build(&a, |_| false);
        assert_eq!(rep, vec![(3, 0)]);
        assert_eq!(idx.get(&a, "b"), Some(1));
        assert_eq!(idx.get(&a, "c"), Some(4));
        assert_eq!(idx.get(&a, "z"), None);
        let (idx, rep) = KeyIndex::build(&a, |r| r == 0);
        assert!(rep.is_empty());
        assert_eq!(idx.get(&a, "a"), Some(3));
    }

    #[test]
    fn identity_pool_interns_once() {
        let mut p = IdentityPool::default();
        assert_eq!(p.intern("x"), 0);
        assert_eq!(p.intern("y"), 1);
        assert_eq!(p.intern("x"), 0);
        assert_eq!(p.get("x"), None, "not visible before freeze");
        p.freeze();
        assert_eq!(p.get("x"), Some(0));
        assert_eq!(p.intern("z"), 2);
        assert_eq!(p.intern("y"), 1);
        assert_eq!(p.get("z"), None);
        p.freeze();
        assert_eq!(p.get("z"), Some(2));
        assert_eq!(p.values().len(), 3);
    }
}
