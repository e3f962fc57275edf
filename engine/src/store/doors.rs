//! Summaries of the door events, built once at load, that the door rules read instead of the
//! 150 million events themselves.
//!
//! Door events are held sorted by building and time. For each building the store keeps:
//! - **who was seen there, and when last**: each identity with its last event at the building
//!   (R04 asks whether a resident was seen within the last days, and when last before that);
//! - **the nights of identities registered elsewhere**: each (identity, night) pair of an identity
//!   without an active record in the building, with the night's first event (R01 counts the
//!   nights in a window).
//!
//! Both are exact for any `as_of`: a night counts when its first event is not after `as_of`; the
//! last event of an identity is the summary's when the building has no event after `as_of`, and is
//! worked out from the events otherwise ([`Doors::last_seen`]).

use super::NONE;
use super::index::Indexes;
use crate::time::{CST_OFFSET, DAY, HOUR};
use arrow::array::ArrayRef;
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// The night an instant belongs to (`Some(D)` for `[D 20:00, D+1 06:00)` CST), else `None`.
pub fn night_of(ts: i64) -> Option<i32> {
    let local = ts + CST_OFFSET;
    let date = local.div_euclid(DAY) as i32;
    let tod = local.rem_euclid(DAY);
    if tod >= 20 * HOUR {
        Some(date)
    } else if tod < 6 * HOUR {
        Some(date - 1)
    } else {
        None
    }
}

/// An identity and its last event at a building.
pub type LastSeen = (u32, i64);

/// One night an identity spent at a building it is not registered at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Night {
    /// The identity.
    pub identity: u32,
    /// The night's date (it starts at 20:00 that day).
    pub date: i32,
    /// The first event of the identity at the building that night.
    pub first: i64,
}

/// Per-building summaries of the door events (see the module's text).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doors {
    /// `seen[seen_offsets[b]..seen_offsets[b + 1]]`: (identity, last event) at building `b`,
    /// sorted by identity.
    seen_offsets: Vec<usize>,
    seen: Vec<(u32, i64)>,
    /// `nights[night_offsets[b]..night_offsets[b + 1]]`: the nights at `b` of identities without
    /// an active record there, sorted by identity and date.
    night_offsets: Vec<usize>,
    nights: Vec<Night>,
}

/// Each identity of some events with its last event, sorted by identity (`NONE` left out).
fn last_of(rows: Range<usize>, ids: &[u32], ts: &[i64]) -> Vec<(u32, i64)> {
    let mut seen: Vec<(u32, i64)> = rows
        .filter(|&r| ids[r] != NONE)
        .map(|r| (ids[r], ts[r]))
        .collect();
    seen.sort_unstable();
    // Sorted by identity then time: the last of a run is the latest.
    let mut out: Vec<(u32, i64)> = Vec::with_capacity(seen.len() / 2);
    for (id, t) in seen {
        match out.last_mut() {
            Some(last) if last.0 == id => last.1 = t,
            _ => out.push((id, t)),
        }
    }
    out
}

/// Concatenates per-building parts into one array and its offsets.
fn flatten<T>(parts: Vec<Vec<T>>) -> (Vec<usize>, Vec<T>) {
    let mut offsets = Vec::with_capacity(parts.len() + 1);
    offsets.push(0);
    let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        all.extend(p);
        offsets.push(all.len());
    }
    (offsets, all)
}

/// One building's summaries: who was seen there and when last, and the nights of identities
/// without an active record there.
fn summary_of(
    ix: &Indexes,
    b: u32,
    ids: &[u32],
    ts: &[i64],
    person_ids: &[u32],
) -> (Vec<LastSeen>, Vec<Night>) {
    let range = ix.events_of(b);
    if range.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let seen = last_of(range.clone(), ids, ts);
    let mut residents: Vec<u32> = ix
        .rooms_of_building
        .get(b)
        .iter()
        .flat_map(|&r| ix.active_of_room.get(r))
        .map(|&p| person_ids[p as usize])
        .collect();
    residents.sort_unstable();
    let mut nights: Vec<Night> = range
        .filter(|&r| ids[r] != NONE)
        .filter_map(|r| {
            let date = night_of(ts[r])?;
            Some(Night {
                identity: ids[r],
                date,
                first: ts[r],
            })
        })
        .filter(|n| residents.binary_search(&n.identity).is_err())
        .collect();
    nights.sort_unstable();
    nights.dedup_by_key(|n| (n.identity, n.date));
    (seen, nights)
}

impl Doors {
    /// Builds the summaries. `ids` and `ts` are the door events' identities and times, sorted by
    /// building and time as `ix.events_of` says; `person_ids` are the `people` records'
    /// identities.
    pub fn build(ix: &Indexes, ids: &[u32], ts: &[i64], person_ids: &[u32]) -> Doors {
        let buildings = ix.event_offsets.len().saturating_sub(1);
        let parts: Vec<(Vec<LastSeen>, Vec<Night>)> = (0..buildings as u32)
            .into_par_iter()
            .map(|b| summary_of(ix, b, ids, ts, person_ids))
            .collect();
        let (seen, nights): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        let (seen_offsets, seen) = flatten(seen);
        let (night_offsets, nights) = flatten(nights);
        Doors {
            seen_offsets,
            seen,
            night_offsets,
            nights,
        }
    }

    /// The summaries after events were added at some buildings (`touched`, sorted): those
    /// buildings' summaries are worked out again from their events (`ids`, `ts` and `ix` as in
    /// [`Doors::build`], of the events with the new ones), every other building's is this one's.
    pub fn rebuilt(
        &self,
        ix: &Indexes,
        touched: &[u32],
        ids: &[u32],
        ts: &[i64],
        person_ids: &[u32],
    ) -> Doors {
        let buildings = ix.event_offsets.len().saturating_sub(1);
        let fresh: Vec<(Vec<LastSeen>, Vec<Night>)> = touched
            .par_iter()
            .map(|&b| summary_of(ix, b, ids, ts, person_ids))
            .collect();
        let mut out = Doors {
            seen_offsets: Vec::with_capacity(buildings + 1),
            seen: Vec::with_capacity(
                self.seen.len() + fresh.iter().map(|f| f.0.len()).sum::<usize>(),
            ),
            night_offsets: Vec::with_capacity(buildings + 1),
            nights: Vec::with_capacity(
                self.nights.len() + fresh.iter().map(|f| f.1.len()).sum::<usize>(),
            ),
        };
        out.seen_offsets.push(0);
        out.night_offsets.push(0);
        // Untouched buildings are copied a run at a time.
        let mut from = 0usize;
        for (&b, (seen, nights)) in touched.iter().zip(fresh) {
            self.copy_buildings(&mut out, from..b as usize);
            out.seen.extend(seen);
            out.nights.extend(nights);
            out.seen_offsets.push(out.seen.len());
            out.night_offsets.push(out.nights.len());
            from = b as usize + 1;
        }
        self.copy_buildings(&mut out, from..buildings);
        out
    }

    /// Appends these buildings' summaries to `out`.
    fn copy_buildings(&self, out: &mut Doors, buildings: Range<usize>) {
        if buildings.is_empty() {
            return;
        }
        let at = |o: &[usize], b: usize| o.get(b).or(o.last()).copied().unwrap_or(0);
        let (s0, s1) = (
            at(&self.seen_offsets, buildings.start),
            at(&self.seen_offsets, buildings.end),
        );
        let (n0, n1) = (
            at(&self.night_offsets, buildings.start),
            at(&self.night_offsets, buildings.end),
        );
        let (sb, nb) = (out.seen.len(), out.nights.len());
        out.seen.extend_from_slice(&self.seen[s0..s1]);
        out.nights.extend_from_slice(&self.nights[n0..n1]);
        for b in buildings.start + 1..=buildings.end {
            out.seen_offsets.push(sb + at(&self.seen_offsets, b) - s0);
            out.night_offsets.push(nb + at(&self.night_offsets, b) - n0);
        }
    }

    /// Each identity seen at a building up to `as_of`, with its last event then, sorted by
    /// identity. From the summary when the building has no event after `as_of`, else from the
    /// events (`ids`, `ts` as given to [`Doors::build`]).
    pub fn last_seen<'a>(
        &'a self,
        ix: &Indexes,
        building: u32,
        as_of: i64,
        ids: &[u32],
        ts: &[i64],
    ) -> Cow<'a, [(u32, i64)]> {
        let range = ix.events_of(building);
        if range.is_empty() || ts[range.end - 1] <= as_of {
            let b = building as usize;
            return match self.seen_offsets.get(b..b + 2) {
                Some(o) => Cow::Borrowed(&self.seen[o[0]..o[1]]),
                None => Cow::Owned(Vec::new()),
            };
        }
        let end = range.start + ts[range.clone()].partition_point(|&t| t <= as_of);
        Cow::Owned(last_of(range.start..end, ids, ts))
    }

    /// The nights at a building of identities without an active record there, sorted by
    /// identity and date (all of them: the caller keeps those of its window).
    pub fn nights(&self, building: u32) -> &[Night] {
        let b = building as usize;
        match self.night_offsets.get(b..b + 2) {
            Some(o) => &self.nights[o[0]..o[1]],
            None => &[],
        }
    }

    /// The summaries as named Arrow arrays, as a snapshot keeps them: who was seen where and
    /// when last (`seen.identity`, `seen.last`), the nights (`nights.identity`, `nights.date`,
    /// `nights.first`), and each one's per-building offsets (`seen.offsets`, `nights.offsets`).
    pub fn to_arrays(&self) -> Vec<(&'static str, ArrayRef)> {
        use arrow::array::{Int32Array, Int64Array, UInt32Array, UInt64Array};
        let offsets = |o: &[usize]| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(o.iter().map(|&v| v as u64)))
        };
        let (seen, nights) = (&self.seen, &self.nights);
        vec![
            (
                "seen.identity",
                Arc::new(UInt32Array::from_iter_values(seen.iter().map(|s| s.0))),
            ),
            (
                "seen.last",
                Arc::new(Int64Array::from_iter_values(seen.iter().map(|s| s.1))),
            ),
            ("seen.offsets", offsets(&self.seen_offsets)),
            (
                "nights.identity",
                Arc::new(UInt32Array::from_iter_values(
                    nights.iter().map(|n| n.identity),
                )),
            ),
            (
                "nights.date",
                Arc::new(Int32Array::from_iter_values(nights.iter().map(|n| n.date))),
            ),
            (
                "nights.first",
                Arc::new(Int64Array::from_iter_values(nights.iter().map(|n| n.first))),
            ),
            ("nights.offsets", offsets(&self.night_offsets)),
        ]
    }

    /// The summaries from their arrays ([`Doors::to_arrays`]; `get` finds one by name) for
    /// `buildings` buildings and `identities` identity numbers; `None` when they do not hold
    /// together (an array missing or of the wrong type, arrays of one list of unequal lengths,
    /// offsets that are not a run from 0 to the end for each building, an identity beyond the
    /// pool).
    pub fn from_arrays(
        get: impl Fn(&str) -> Option<ArrayRef>,
        buildings: usize,
        identities: usize,
    ) -> Option<Doors> {
        use arrow::array::{Array, AsArray};
        use arrow::buffer::ScalarBuffer;
        use arrow::datatypes::{ArrowPrimitiveType, Int32Type, Int64Type, UInt32Type, UInt64Type};
        fn values<T: ArrowPrimitiveType>(a: Option<ArrayRef>) -> Option<ScalarBuffer<T::Native>> {
            let a = a?;
            let a = a.as_primitive_opt::<T>()?;
            (a.null_count() == 0).then(|| a.values().clone())
        }
        let offsets = |name: &str, len: usize| -> Option<Vec<usize>> {
            let o = values::<UInt64Type>(get(name))?;
            let ok = (o.is_empty() && len == 0)
                || (o.len() == buildings + 1
                    && o[0] == 0
                    && o.windows(2).all(|w| w[0] <= w[1])
                    && o[buildings] as usize == len);
            ok.then(|| o.iter().map(|&v| v as usize).collect())
        };
        let si = values::<UInt32Type>(get("seen.identity"))?;
        let sl = values::<Int64Type>(get("seen.last"))?;
        let ni = values::<UInt32Type>(get("nights.identity"))?;
        let nd = values::<Int32Type>(get("nights.date"))?;
        let nf = values::<Int64Type>(get("nights.first"))?;
        if sl.len() != si.len()
            || nd.len() != ni.len()
            || nf.len() != ni.len()
            || !(si.iter().chain(ni.iter())).all(|&i| (i as usize) < identities)
        {
            return None;
        }
        Some(Doors {
            seen_offsets: offsets("seen.offsets", si.len())?,
            seen: si.iter().copied().zip(sl.iter().copied()).collect(),
            night_offsets: offsets("nights.offsets", ni.len())?,
            nights: (0..ni.len())
                .map(|i| Night {
                    identity: ni[i],
                    date: nd[i],
                    first: nf[i],
                })
                .collect(),
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.seen_offsets.len() + self.night_offsets.len()) * size_of::<usize>()
            + self.seen.len() * size_of::<(u32, i64)>()
            + self.nights.len() * size_of::<Night>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{at, ymd};
    use std::collections::BTreeMap;

    #[test]
    fn nights_run_from_20_00_to_06_00() {
        let d = ymd(2026, 10, 5).unwrap();
        assert_eq!(night_of(at(d, 20, 0, 0)), Some(d));
        assert_eq!(night_of(at(d, 23, 59, 59)), Some(d));
        assert_eq!(night_of(at(d + 1, 0, 0, 0)), Some(d));
        assert_eq!(night_of(at(d + 1, 5, 59, 59)), Some(d));
        assert_eq!(night_of(at(d + 1, 6, 0, 0)), None);
        assert_eq!(night_of(at(d, 19, 59, 59)), None);
        assert_eq!(night_of(at(d, 12, 0, 0)), None);
    }

    #[test]
    fn summaries_read_back_from_their_columns_and_broken_ones_are_refused() {
        let doors = Doors {
            seen_offsets: vec![0, 2, 2, 3],
            seen: vec![(1, 10), (4, 20), (2, 30)],
            night_offsets: vec![0, 0, 1, 1],
            nights: vec![Night {
                identity: 3,
                date: 7,
                first: 40,
            }],
        };
        let arrays: BTreeMap<&str, ArrayRef> = doors.to_arrays().into_iter().collect();
        let read = |arrays: &BTreeMap<&str, ArrayRef>, buildings, identities| {
            Doors::from_arrays(|n| arrays.get(n).cloned(), buildings, identities)
        };
        assert_eq!(read(&arrays, 3, 5), Some(doors.clone()));
        // Other buildings, an identity beyond the pool, offsets past the end: refused.
        assert_eq!(read(&arrays, 4, 5), None);
        assert_eq!(read(&arrays, 3, 4), None);
        let mut bad = arrays.clone();
        bad.insert(
            "seen.offsets",
            Arc::new(arrow::array::UInt64Array::from(vec![0, 2, 4, 3])),
        );
        assert_eq!(read(&bad, 3, 5), None);
        let mut bad = arrays.clone();
        bad.insert(
            "nights.offsets",
            Arc::new(arrow::array::UInt32Array::from(vec![0, 0, 1, 1])),
        );
        assert_eq!(read(&bad, 3, 5), None);
        // A list whose arrays differ in length; an array missing.
        let mut bad = arrays.clone();
        bad.insert(
            "nights.first",
            Arc::new(arrow::array::Int64Array::from(Vec::<i64>::new())),
        );
        assert_eq!(read(&bad, 3, 5), None);
        let mut bad = arrays;
        bad.remove("seen.last");
        assert_eq!(read(&bad, 3, 5), None);
        // A city without door events.
        let none: BTreeMap<&str, ArrayRef> = Doors::default().to_arrays().into_iter().collect();
        assert_eq!(read(&none, 3, 5), Some(Doors::default()));
    }

    #[test]
    fn last_of_keeps_each_identitys_latest_event() {
        let ids = [7, NONE, 3, 7, 3, 9];
        let ts = [1, 2, 3, 4, 5, 6];
        assert_eq!(last_of(0..6, &ids, &ts), vec![(3, 5), (7, 4), (9, 6)]);
        assert_eq!(last_of(0..3, &ids, &ts), vec![(3, 3), (7, 1)]);
    }
}
