//! Room to grow: a table's fixed-width columns written into memory with room for later rows, so
//! that a batch of door events is written after the rows served, in place, instead of the
//! columns (3.2 GB at scale 1.0) being copied into a new version.
//!
//! A version's column is a buffer over the first `rows` values of an arena; a later version's is
//! a buffer over more of the same arena. The values past a version's rows belong to no version
//! until a later one claims them, and only one may: the room's claimed count moves from the
//! rows of the version grown to the rows of the new one, once. So writing them never touches
//! memory that a reader of a served version reads. Null bitmaps (a bit a row, where a byte may
//! hold bits of both) are copied; columns of other types (text) are concatenated.
//!
//! The arenas are anonymous mappings: the room not used yet costs address space, not memory.
//! One of the places with `unsafe` code (with [`crate::memory`] and the snapshot's mapped
//! files): the mapping, the writes into the room claimed, and the buffers made over an arena.
#![allow(unsafe_code)]

use super::mapped::Mapping;
use crate::error::{Error, Result};
use arrow::alloc::Allocation;
use arrow::array::BooleanBufferBuilder;
use arrow::array::{Array, ArrayData, ArrayRef, make_array};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::compute;
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory mapped for one column (anonymous), unmapped when the last buffer over it is dropped.
type Arena = Mapping;

impl Arena {
    /// Copies `bytes` in at `offset`. The caller has claimed `offset..offset + bytes.len()`,
    /// which no buffer covers yet.
    fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(
            offset + bytes.len() <= self.len,
            "a write past an arena's end"
        );
        // SAFETY: within the mapping (checked above); no buffer covers the bytes written, and
        // `bytes` lies in another allocation (a column of another table or arena range).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.at.as_ptr().add(offset),
                bytes.len(),
            );
        }
    }

    /// A buffer over the arena's first `len` bytes.
    fn buffer(self: &Arc<Self>, len: usize) -> Buffer {
        assert!(len <= self.len, "a buffer past an arena's end");
        let owner: Arc<dyn Allocation> = self.clone();
        // SAFETY: `at` is valid for `len` bytes (checked) for as long as `owner`, which the
        // buffer holds, lives; those bytes were written before and are not written again.
        unsafe { Buffer::from_custom_allocation(self.at, len, owner) }
    }
}

/// The bytes of an array's values (a fixed-width array's, `width` bytes each).
fn value_bytes(data: &ArrayData, width: usize) -> &[u8] {
    let b = data.buffers()[0].as_slice();
    &b[data.offset() * width..(data.offset() + data.len()) * width]
}

/// The null bitmap of arrays one after the other, or `None` when none has nulls.
fn nulls_of(pieces: &[ArrayData], rows: usize) -> Option<NullBuffer> {
    if pieces.iter().all(|p| p.nulls().is_none()) {
        return None;
    }
    let mut bits = BooleanBufferBuilder::new(rows);
    for p in pieces {
        match p.nulls() {
            Some(n) => bits.append_buffer(n.inner()),
            None => bits.append_n(p.len(), true),
        }
    }
    Some(NullBuffer::new(bits.finish()))
}

/// The width of a column's values when it can be held in an arena (a primitive type).
fn width_of(a: &dyn Array) -> Option<usize> {
    let t = a.data_type();
    if !t.is_primitive() {
        return None;
    }
    let w = t.primitive_width()?;
    let data = a.to_data();
    (data.buffers().len() == 1 && data.child_data().is_empty()).then_some(w)
}

/// A column's arena and the width of its values.
type Held = (Arc<Arena>, usize);

/// Where a table's columns may grow in place (see the module's text).
pub struct Room {
    /// Per column: its arena and value width, `None` for a column held otherwise.
    arenas: Vec<Option<Held>>,
    /// Rows the arenas have room for.
    capacity: usize,
    /// Rows written and claimed by a version.
    claimed: AtomicUsize,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("capacity", &self.capacity)
            .field("claimed", &self.claimed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Room {
    /// Columns made of pieces (`pieces[c]`: column `c`'s arrays, to be put one after the
    /// other, `rows` in all), written into arenas with room for `room` rows more; with the room
    /// they may grow into. A column that is not fixed-width, or whose arena the system refuses,
    /// is concatenated instead.
    pub fn build(
        pieces: &[Vec<ArrayRef>],
        rows: usize,
        room: usize,
    ) -> Result<(Vec<ArrayRef>, Arc<Room>)> {
        let capacity = rows + room;
        let built: Vec<(ArrayRef, Option<Held>)> = pieces
            .par_iter()
            .map(|p| {
                let Some(first) = p.first() else {
                    return Err(Error::Internal("a column of no pieces".into()));
                };
                let arena = width_of(first.as_ref())
                    .and_then(|w| Some((Arena::anonymous(capacity * w)?, w)));
                let Some((arena, w)) = arena else {
                    let refs: Vec<&dyn Array> = p.iter().map(|a| a.as_ref()).collect();
                    return Ok((compute::concat(&refs)?, None));
                };
                let data: Vec<ArrayData> = p.iter().map(|a| a.to_data()).collect();
                let mut at = 0usize;
                for d in &data {
                    let bytes = value_bytes(d, w);
                    arena.write(at, bytes);
                    at += bytes.len();
                }
                if at != rows * w {
                    return Err(Error::Internal(format!(
                        "a column's pieces hold {} rows, not {rows}",
                        at / w
                    )));
                }
                let array = array_over(first.data_type(), &arena, rows, w, nulls_of(&data, rows))?;
                Ok((array, Some((arena, w))))
            })
            .collect::<Result<_>>()?;
        let (columns, arenas) = built.into_iter().unzip();
        Ok((
            columns,
            Arc::new(Room {
                arenas,
                capacity,
                claimed: AtomicUsize::new(rows),
            }),
        ))
    }

    /// Rows the room has left after a version of `rows` rows.
    pub fn left(&self, rows: usize) -> usize {
        self.capacity.saturating_sub(rows)
    }

    /// The columns `old` (a version of this room's, all of its columns) with `new`'s rows after
    /// theirs: written in place where the room allows, or `None` when it does not (the columns
    /// are not this room's, another version already grew from these rows, or the room is used
    /// up); the caller then writes the columns anew.
    pub fn append(&self, old: &[ArrayRef], new: &[ArrayRef]) -> Result<Option<Vec<ArrayRef>>> {
        let rows = old.first().map_or(0, |a| a.len());
        let more = new.first().map_or(0, |a| a.len());
        let ours = old.len() == self.arenas.len()
            && new.len() == old.len()
            && old
                .iter()
                .zip(new)
                .all(|(o, n)| o.len() == rows && n.len() == more)
            && old.iter().zip(&self.arenas).all(|(a, arena)| match arena {
                Some((arena, w)) => {
                    let d = a.to_data();
                    d.buffers().len() == 1
                        && d.buffers()[0].as_ptr() as usize + d.offset() * w
                            == arena.at.as_ptr() as usize
                }
                None => true,
            });
        if !ours || rows + more > self.capacity {
            return Ok(None);
        }
        // One version only grows from these rows.
        if self
            .claimed
            .compare_exchange(rows, rows + more, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(None);
        }
        let columns = old
            .par_iter()
            .zip(new.par_iter())
            .zip(self.arenas.par_iter())
            .map(|((o, n), arena)| {
                if o.data_type() != n.data_type() {
                    return Err(Error::Internal(
                        "an appended column's type differs from the served one's".into(),
                    ));
                }
                let Some((arena, w)) = arena else {
                    return Ok(compute::concat(&[o.as_ref(), n.as_ref()])?);
                };
                let (od, nd) = (o.to_data(), n.to_data());
                arena.write(rows * w, value_bytes(&nd, *w));
                let nulls = nulls_of(&[od, nd], rows + more);
                array_over(o.data_type(), arena, rows + more, *w, nulls)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(columns))
    }
}

/// An array of `rows` values over an arena.
fn array_over(
    t: &arrow::datatypes::DataType,
    arena: &Arc<Arena>,
    rows: usize,
    width: usize,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let data = ArrayData::builder(t.clone())
        .len(rows)
        .add_buffer(arena.buffer(rows * width))
        .nulls(nulls)
        .build()?;
    Ok(make_array(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, UInt32Array};

    fn cols(ts: &[i64], keys: &[Option<u32>], text: &[&str]) -> Vec<ArrayRef> {
        vec![
            Arc::new(Int64Array::from(ts.to_vec())),
            Arc::new(UInt32Array::from(keys.to_vec())),
            Arc::new(StringArray::from(text.to_vec())),
        ]
    }

    #[test]
    fn columns_grow_in_place_once_per_version_and_as_concatenation_would_make_them() {
        let a = cols(&[1, 2], &[Some(7), None], &["a", "b"]);
        let b = cols(&[3], &[Some(9)], &["c"]);
        let pieces: Vec<Vec<ArrayRef>> = (0..3).map(|c| vec![a[c].clone(), b[c].clone()]).collect();
        let (first, room) = Room::build(&pieces, 3, 2).unwrap();
        assert_eq!(
            first,
            cols(&[1, 2, 3], &[Some(7), None, Some(9)], &["a", "b", "c"])
        );
        assert_eq!(room.left(3), 2);
        let more = cols(&[4, 5], &[None, Some(1)], &["d", "e"]);
        let grown = room
            .append(&first, &more)
            .unwrap()
            .expect("room for two rows");
        let want = cols(
            &[1, 2, 3, 4, 5],
            &[Some(7), None, Some(9), None, Some(1)],
            &["a", "b", "c", "d", "e"],
        );
        assert_eq!(grown, want);
        // The version grown from keeps its rows; it may not grow a second time (its rows'
        // successors are taken), and a full room takes nothing more.
        assert_eq!(
            first,
            cols(&[1, 2, 3], &[Some(7), None, Some(9)], &["a", "b", "c"])
        );
        assert!(room.append(&first, &b).unwrap().is_none());
        assert!(room.append(&grown, &b).unwrap().is_none());
        // Columns that are not the room's are refused.
        assert!(room.append(&a, &b).unwrap().is_none());
    }
}
