//! String interning: the index from a key column's values to their rows, and the shared pool of
//! identity numbers that joins every source together.
//!
//! Both keep the strings once, in Arrow buffers, and hold only row numbers in a hash table
//! (`hashbrown::HashTable<u32>`), so that 16 million keys cost a few bytes each beyond their text.

use arrow::array::{Array, StringArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use hashbrown::HashTable;
use std::sync::{Arc, OnceLock};

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

/// The shard of a hash: bits that hashbrown uses neither to place an entry (the low bits) nor
/// for its tag (the top 7), so that entries of one shard still differ in their tags.
fn shard_of(h: u64) -> usize {
    (h >> 40) as usize % SHARDS
}

/// Item numbers by shard, each shard's in item order (`None` hashes are left out).
fn by_shard(hashes: &[Option<u64>]) -> Vec<Vec<u32>> {
    let mut counts = [0usize; SHARDS];
    for h in hashes.iter().flatten() {
        counts[shard_of(*h)] += 1;
    }
    let mut out: Vec<Vec<u32>> = counts.iter().map(|&c| Vec::with_capacity(c)).collect();
    for (i, h) in hashes.iter().enumerate() {
        if let Some(h) = h {
            out[shard_of(*h)].push(i as u32);
        }
    }
    out
}

/// Items that repeat an earlier item's value, as `(item, first item)` in item order: `hashes[i]`
/// is item `i`'s hash (`None`: leave the item out) and `same(i, j)` whether two items hold the
/// same value. Runs on every core.
pub fn repeats(
    hashes: &[Option<u64>],
    same: impl Fn(usize, usize) -> bool + Sync,
) -> Vec<(usize, usize)> {
    first_items(hashes, same).1
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
    let built: Vec<Shard> = by_shard(hashes)
        .into_par_iter()
        .map(|items| {
            let mut table: HashTable<u32> = HashTable::with_capacity(items.len());
            let mut repeats = Vec::new();
            for i in items {
                let i = i as usize;
                let h = hashes[i].unwrap_or(0);
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

/// A table's key index: built with the table (at load), or on first use (a table read back from
/// a snapshot, whose index a starting server builds after it answers). Clones of a table share it.
#[derive(Debug, Clone)]
pub struct KeyIndexCell(Arc<OnceLock<Arc<KeyIndex>>>);

impl KeyIndexCell {
    /// A cell holding an index built already.
    pub fn built(index: Arc<KeyIndex>) -> KeyIndexCell {
        let cell = OnceLock::new();
        let _ = cell.set(index);
        KeyIndexCell(Arc::new(cell))
    }

    /// A cell whose index is built on first use.
    pub fn deferred() -> KeyIndexCell {
        KeyIndexCell(Arc::new(OnceLock::new()))
    }

    /// Whether the index is built.
    pub fn is_built(&self) -> bool {
        self.0.get().is_some()
    }

    /// The index, built over `values` (the key column) if it was not yet; a caller arriving
    /// while another builds it waits for that one.
    pub fn get_or_build(&self, values: impl FnOnce() -> Option<StringArray>) -> &Arc<KeyIndex> {
        self.0.get_or_init(|| {
            let values = values().unwrap_or_else(|| StringArray::from(Vec::<&str>::new()));
            Arc::new(KeyIndex::build(&values, |_| false).0)
        })
    }
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

    /// Adds rows `from..` of `values` (the array the index was built over, grown at its end by
    /// values it does not hold yet).
    pub fn extend(&mut self, values: &StringArray, from: usize) {
        let state = self.state.clone();
        for r in from..values.len() {
            if values.is_null(r) {
                continue;
            }
            let h = state.hash_one(values.value(r));
            self.shards[shard_of(h)]
                .insert_unique(h, r as u32, |&x| state.hash_one(values.value(x as usize)));
        }
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

/// A pool of distinct strings, each kept once and known by its position: the identity numbers
/// (`id_number`, `tenant_id_number`, …) of every source, the cross-source join key; and a pooled
/// text column's own dictionary.
///
/// The strings live in one byte buffer with offsets (handed to Arrow without a copy by
/// [`StringPool::into_values`]); positions are found through [`SHARDS`] hash tables, so that
/// many strings are interned on every core at once. Each string's hash is kept by position, so
/// that a table grows without reading its strings again.
#[derive(Debug)]
pub struct StringPool {
    bytes: Vec<u8>,
    offsets: Vec<i32>,
    hashes: Vec<u64>,
    shards: Vec<HashTable<u32>>,
    state: ahash::RandomState,
}

impl Default for StringPool {
    fn default() -> Self {
        StringPool {
            bytes: Vec::new(),
            offsets: vec![0],
            hashes: Vec::new(),
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
            state: hasher(),
        }
    }
}

impl StringPool {
    /// The number of strings.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The string at a position.
    pub fn value(&self, r: u32) -> &str {
        // Only whole `&str`s are appended, so every range is valid UTF-8.
        std::str::from_utf8(self.bytes_at(r)).unwrap_or("")
    }

    fn bytes_at(&self, r: u32) -> &[u8] {
        let r = r as usize;
        &self.bytes[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    /// The position of a string, if pooled; safe to call from many threads.
    pub fn get(&self, v: &str) -> Option<u32> {
        self.find(self.state.hash_one(v), v)
    }

    fn find(&self, h: u64, v: &str) -> Option<u32> {
        self.shards[shard_of(h)]
            .find(h, |&r| self.bytes_at(r) == v.as_bytes())
            .copied()
    }

    fn push(&mut self, v: &str, hash: u64) -> u32 {
        let r = self.len() as u32;
        self.bytes.extend_from_slice(v.as_bytes());
        self.offsets.push(self.bytes.len() as i32);
        self.hashes.push(hash);
        r
    }

    /// Interns a string, returning its position.
    pub fn intern(&mut self, v: &str) -> u32 {
        let h = self.state.hash_one(v);
        if let Some(r) = self.find(h, v) {
            return r;
        }
        let r = self.push(v, h);
        let hashes = &self.hashes;
        self.shards[shard_of(h)].insert_unique(h, r, |&x| hashes[x as usize]);
        r
    }

    /// Interns many strings at once, as if by [`StringPool::intern`] one after another (new
    /// strings take positions in the order they first appear), working on every core.
    pub fn intern_all(&mut self, values: &[&str]) -> Vec<u32> {
        use rayon::prelude::*;
        const NEW: u32 = u32::MAX;
        let state = &self.state;
        let hashes: Vec<Option<u64>> = values.par_iter().map(|v| Some(state.hash_one(v))).collect();
        let shards = by_shard(&hashes);
        // Per shard, in item order: pooled strings, and among the others the first item of each
        // value and the later items repeating it.
        struct Found {
            known: Vec<(u32, u32)>,
            firsts: Vec<u32>,
            repeats: Vec<(u32, u32)>,
        }
        let found: Vec<Found> = {
            let this = &*self;
            shards
                .par_iter()
                .map(|items| {
                    let mut f = Found {
                        known: Vec::new(),
                        firsts: Vec::new(),
                        repeats: Vec::new(),
                    };
                    let mut fresh: HashTable<u32> = HashTable::with_capacity(items.len());
                    for &i in items {
                        let (v, h) = (values[i as usize], hashes[i as usize].unwrap_or(0));
                        if let Some(r) = this.find(h, v) {
                            f.known.push((i, r));
                        } else if let Some(&j) = fresh.find(h, |&j| values[j as usize] == v) {
                            f.repeats.push((i, j));
                        } else {
                            fresh.insert_unique(h, i, |&j| hashes[j as usize].unwrap_or(0));
                            f.firsts.push(i);
                        }
                    }
                    f
                })
                .collect()
        };
        let mut out = vec![NEW; values.len()];
        let mut is_first = vec![false; values.len()];
        let mut added_bytes = 0usize;
        for f in &found {
            for &(i, r) in &f.known {
                out[i as usize] = r;
            }
            for &i in &f.firsts {
                is_first[i as usize] = true;
                added_bytes += values[i as usize].len();
            }
        }
        // New strings take positions in item order.
        let added: usize = found.iter().map(|f| f.firsts.len()).sum();
        self.bytes.reserve(added_bytes);
        self.offsets.reserve(added);
        self.hashes.reserve(added);
        for (i, first) in is_first.iter().enumerate() {
            if *first {
                out[i] = self.push(values[i], hashes[i].unwrap_or(0));
            }
        }
        for f in &found {
            for &(i, j) in &f.repeats {
                out[i as usize] = out[j as usize];
            }
        }
        let (out_ref, pooled) = (&out, &self.hashes);
        self.shards
            .par_iter_mut()
            .zip(found.par_iter())
            .for_each(|(table, f)| {
                table.reserve(f.firsts.len(), |&x| pooled[x as usize]);
                for &i in &f.firsts {
                    let hash = hashes[i as usize].unwrap_or(0);
                    table.insert_unique(hash, out_ref[i as usize], |&x| pooled[x as usize]);
                }
            });
        out
    }

    /// The strings, by position, as an Arrow array (the pool's buffers, not copied).
    pub fn into_values(self) -> StringArray {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        StringArray::new(offsets, Buffer::from_vec(self.bytes), None)
    }
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
        let mut one = StringPool::default();
        one.intern("id5");
        one.intern("id9");
        let mut all = StringPool::default();
        all.intern("id5");
        all.intern("id9");
        let expected: Vec<u32> = refs.iter().map(|v| one.intern(v)).collect();
        assert_eq!(all.intern_all(&refs), expected);
        let fresh: Vec<String> = (0..300).map(|i| format!("new{}", i % 120)).collect();
        let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
        let expected: Vec<u32> = fresh.iter().map(|v| one.intern(v)).collect();
        assert_eq!(all.intern_all(&fresh), expected);
        assert_eq!(all.get("id9"), Some(1));
        assert_eq!(all.get("id1299"), one.get("id1299"));
        assert_eq!(one.into_values(), all.into_values());
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
    fn string_pool_interns_once() {
        let mut p = StringPool::default();
        assert_eq!(p.intern("x"), 0);
        assert_eq!(p.intern("y"), 1);
        assert_eq!(p.intern("x"), 0);
        assert_eq!(p.get("x"), Some(0));
        assert_eq!(p.get("z"), None);
        assert_eq!(p.intern_all(&["z", "y", "z", "w"]), vec![2, 1, 2, 3]);
        assert_eq!(p.value(3), "w");
        assert_eq!(p.len(), 4);
        let v = p.into_values();
        assert_eq!(v.len(), 4);
        assert_eq!(v.value(2), "z");
    }
}
