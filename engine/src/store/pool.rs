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

/// Shards of a [`KeyIndex`]: a value's shard is taken from its hash, so that the shards are
/// built side by side.
const SHARDS: usize = 16;

/// An index over a column of unique strings (a table's key): value → row.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    shards: Vec<HashTable<u32>>,
    state: ahash::RandomState,
}

/// The shard of a hash (its top bits: hashbrown places entries by the low bits).
fn shard_of(h: u64) -> usize {
    (h >> 60) as usize % SHARDS
}

/// Finds repeated values among items, in [`SHARDS`] hash shards built side by side. `hashes[i]`
/// is item `i`'s hash (`None`: leave the item out) and `same(i, j)` whether two items hold the same
/// value. Returns each shard's table of first items and, for every later item equal to an
/// earlier one, `(item, first item)`, in item order.
fn first_items(
    hashes: &[Option<u64>],
    same: impl Fn(usize, usize) -> bool + Sync,
) -> (Vec<HashTable<u32>>, Vec<(usize, usize)>) {
    use rayon::prelude::*;
    // Each shard takes its items in order, so the first of repeated values is kept.
    type Shard = (HashTable<u32>, Vec<(usize, usize)>);
    let built: Vec<Shard> = (0..SHARDS)
        .into_par_iter()
        .map(|shard| {
            let mut table: HashTable<u32> = HashTable::new();
            let mut repeats = Vec::new();
            for (i, h) in hashes.iter().enumerate() {
                let Some(h) = *h else { continue };
                if shard_of(h) != shard {
                    continue;
                }
                match table.find(h, |&j| same(i, j as usize)) {
                    Some(&first) => repeats.push((i, first as usize)),
                    None => {
                        table.insert_unique(h, i as u32, |&j| hashes[j as usize].unwrap_or(0));
                    }
                }
            }
            (table, repeats)
        })
        .collect();
    let mut tables = Vec::with_capacity(SHARDS);
    let mut repeats = Vec::new();
    for (t, r) in built {
        tables.push(t);
        repeats.extend(r);
    }
    repeats.sort_unstable();
    (tables, repeats)
}

impl KeyIndex {
    /// Indexes `values`, keeping the first row of each value. Returns the index and, for every
    /// later row whose value repeats an earlier one, `(row, first_row)`, in row order. Null rows
    /// and rows where `skip(row)` is true are not indexed. Runs on every core.
    pub fn build(
        values: &StringArray,
        skip: impl Fn(usize) -> bool + Sync,
    ) -> (KeyIndex, Vec<(usize, usize)>) {
        use rayon::prelude::*;
        let state = hasher();
        let hashes: Vec<Option<u64>> = (0..values.len())
            .into_par_iter()
            .map(|row| {
                (!values.is_null(row) && !skip(row)).then(|| state.hash_one(values.value(row)))
            })
            .collect();
        let (shards, repeats) = first_items(&hashes, |a, b| values.value(a) == values.value(b));
        (KeyIndex { shards, state }, repeats)
    }

    /// The row holding `v` in `values` (the array the index was built over, or a filtered copy
    /// whose rows were renumbered through [`KeyIndex::renumber`]).
    pub fn get(&self, values: &StringArray, v: &str) -> Option<u32> {
        let h = self.state.hash_one(v);
        self.shards[shard_of(h)]
            .find(h, |&r: &u32| values.value(r as usize) == v)
            .copied()
    }

    /// Renumbers the rows after the indexed array was filtered: `new_row[old]` is the row's new
    /// number (`u32::MAX` for rows that were dropped, which must not be indexed).
    pub fn renumber(&mut self, new_row: &[u32]) {
        use rayon::prelude::*;
        self.shards.par_iter_mut().for_each(|t| {
            for r in t.iter_mut() {
                *r = new_row[*r as usize];
            }
        });
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashTable::is_empty)
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
        // Entries past the frozen copy live only in the builder; compare against either.
        if let Some(r) = self.find_any(h, v) {
            return r;
        }
        let r = self.table.len() as u32;
        self.values.append_value(v);
        let (frozen, values, state) = (&self.frozen, &self.values, &self.state);
        self.table
            .insert_unique(h, r, |&x| state.hash_one(pooled(frozen, values, x)));
        r
    }

    /// Interns many identities at once, as if by [`IdentityPool::intern`] one after another
    /// (new identities take positions in the order they first appear), working on every core.
    pub fn intern_all(&mut self, values: &[&str]) -> Vec<u32> {
        use rayon::prelude::*;
        let state = &self.state;
        let hashes: Vec<u64> = values.par_iter().map(|v| state.hash_one(v)).collect();
        // Identities already pooled, and for the others the first item with the same value.
        const NEW: u32 = u32::MAX;
        let known: Vec<u32> = {
            let this = &*self;
            values
                .par_iter()
                .zip(hashes.par_iter())
                .map(|(v, &h)| this.find_any(h, v).unwrap_or(NEW))
                .collect()
        };
        // first[i]: the earlier item holding the same new value, if any.
        let new: Vec<Option<u64>> = hashes
            .iter()
            .zip(&known)
            .map(|(&h, &k)| (k == NEW).then_some(h))
            .collect();
        let mut first = vec![NEW; values.len()];
        for (i, j) in first_items(&new, |a, b| values[a] == values[b]).1 {
            first[i] = j as u32;
        }
        let added = known
            .iter()
            .zip(&first)
            .filter(|&(&k, &f)| k == NEW && f == NEW)
            .count();
        let (frozen, values_b, state) = (&self.frozen, &self.values, &self.state);
        self.table
            .reserve(added, |&x| state.hash_one(pooled(frozen, values_b, x)));
        let mut out = known;
        for i in 0..values.len() {
            if out[i] != NEW {
                continue;
            }
            if first[i] != NEW {
                out[i] = out[first[i] as usize];
                continue;
            }
            let r = self.table.len() as u32;
            self.values.append_value(values[i]);
            let (frozen, values_b, state) = (&self.frozen, &self.values, &self.state);
            self.table.insert_unique(hashes[i], r, |&x| {
                state.hash_one(pooled(frozen, values_b, x))
            });
            out[i] = r;
        }
        out
    }

    /// The position of an identity interned at any time (frozen or not).
    fn find_any(&self, h: u64, v: &str) -> Option<u32> {
        let (frozen, values) = (&self.frozen, &self.values);
        self.table
            .find(h, |&r| pooled(frozen, values, r) == v)
            .copied()
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

/// An identity of the pool: in the frozen copy, or past it, only in the builder.
fn pooled<'a>(frozen: &'a StringArray, values: &'a StringBuilder, r: u32) -> &'a str {
    let r = r as usize;
    if r < frozen.len() {
        frozen.value(r)
    } else {
        builder_value(values, r)
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
    fn interning_many_at_once_is_interning_one_by_one() {
        let items: Vec<String> = (0..5000)
            .map(|i| format!("id{}", (i * 7919) % 1300))
            .collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let mut one = IdentityPool::default();
        one.intern("id5");
        one.freeze();
        one.intern("id9");
        let mut all = IdentityPool::default();
        all.intern("id5");
        all.freeze();
        all.intern("id9");
        let expected: Vec<u32> = refs.iter().map(|v| one.intern(v)).collect();
        assert_eq!(all.intern_all(&refs), expected);
        one.freeze();
        all.freeze();
        assert_eq!(one.values(), all.values());
        assert_eq!(all.get("id9"), Some(1));
    }

    #[test]
    fn key_index_keeps_the_first_of_repeats_in_row_order() {
        let values: Vec<String> = (0..3000).map(|i| format!("k{}", i % 1000)).collect();
        let a = StringArray::from(values.iter().map(String::as_str).collect::<Vec<_>>());
        let (idx, rep) = KeyIndex::build(&a, |r| r == 5);
        assert_eq!(idx.len(), 1000);
        assert_eq!(rep.len(), 1999);
        assert_eq!(rep[0], (1000, 0));
        assert!(
            rep.contains(&(2005, 1005)),
            "row 5 is skipped: row 1005 is the first k5"
        );
        assert!(rep.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(idx.get(&a, "k5"), Some(1005));
        assert_eq!(idx.get(&a, "k6"), Some(6));
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
