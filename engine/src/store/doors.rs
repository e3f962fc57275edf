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

/// Buildings per part of the summaries: a batch of door events writes again the parts of the
/// buildings it touched, and shares the rest with the version before.
const PART: usize = 256;

/// The summaries of a run of buildings, one after the other.
#[derive(Debug, Clone, Default, PartialEq)]
struct Part {
    /// `seen[seen_offsets[b]..seen_offsets[b + 1]]`: (identity, last event) at the run's
    /// building `b`, sorted by identity.
    seen_offsets: Vec<usize>,
    seen: Vec<(u32, i64)>,
    /// `nights[night_offsets[b]..night_offsets[b + 1]]`: the nights at `b` of identities without
    /// an active record there, sorted by identity and date.
    night_offsets: Vec<usize>,
    nights: Vec<Night>,
}

impl Part {
    /// Buildings' summaries put one after the other.
    fn of(parts: Vec<(Vec<LastSeen>, Vec<Night>)>) -> Part {
        let (seen, nights): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        let (seen_offsets, seen) = flatten(seen);
        let (night_offsets, nights) = flatten(nights);
        Part {
            seen_offsets,
            seen,
            night_offsets,
            nights,
        }
    }

    /// Number of buildings.
    fn buildings(&self) -> usize {
        self.seen_offsets.len().saturating_sub(1)
    }

    /// The run's building `b`'s (identity, last event) pairs.
    fn seen(&self, b: usize) -> &[LastSeen] {
        match self.seen_offsets.get(b..b + 2) {
            Some(o) => &self.seen[o[0]..o[1]],
            None => &[],
        }
    }

    /// The run's building `b`'s nights.
    fn nights(&self, b: usize) -> &[Night] {
        match self.night_offsets.get(b..b + 2) {
            Some(o) => &self.nights[o[0]..o[1]],
            None => &[],
        }
    }

    /// The run's buildings `buildings` as a run of their own.
    fn slice(&self, buildings: Range<usize>) -> Part {
        fn cut<T: Clone>(offsets: &[usize], items: &[T], b: &Range<usize>) -> (Vec<usize>, Vec<T>) {
            let o = &offsets[b.start..=b.end];
            (
                o.iter().map(|&x| x - o[0]).collect(),
                items[o[0]..o[o.len() - 1]].to_vec(),
            )
        }
        let (seen_offsets, seen) = cut(&self.seen_offsets, &self.seen, &buildings);
        let (night_offsets, nights) = cut(&self.night_offsets, &self.nights, &buildings);
        Part {
            seen_offsets,
            seen,
            night_offsets,
            nights,
        }
    }
}

/// Per-building summaries of the door events (see the module's text), in parts of [`PART`]
/// buildings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doors {
    parts: Vec<Arc<Part>>,
}

/// Each identity of some events with its last event, sorted by identity (`NONE` left out).
fn last_of(rows: impl Iterator<Item = usize>, ids: &[u32], ts: &[i64]) -> Vec<(u32, i64)> {
    latest(rows.map(|r| (ids[r], ts[r])))
}

/// Each identity of some (identity, time) pairs with its latest time, sorted by identity
/// (`NONE` left out).
fn latest(pairs: impl Iterator<Item = (u32, i64)>) -> Vec<(u32, i64)> {
    let mut seen: Vec<(u32, i64)> = pairs.filter(|&(id, _)| id != NONE).collect();
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

/// The identities of a building's active records, sorted.
fn residents_of(ix: &Indexes, b: u32, person_ids: &[u32]) -> Vec<u32> {
    let mut residents: Vec<u32> = ix
        .rooms_of_building
        .get(b)
        .iter()
        .flat_map(|&r| ix.active_of_room.get(r))
        .map(|&p| person_ids[p as usize])
        .collect();
    residents.sort_unstable();
    residents
}

/// A building's summaries with some of its (identity, time) events taken in: `seen` and
/// `nights` as they were (empty for none), `residents` the identities of the building's active
/// records (sorted). Who was seen there and when last, and the nights of identities without an
/// active record there, each with its first event (sorted by identity and date).
fn taken_in(
    seen: &[LastSeen],
    nights: &[Night],
    events: impl Iterator<Item = (u32, i64)> + Clone,
    residents: &[u32],
) -> (Vec<LastSeen>, Vec<Night>) {
    let seen = latest(seen.iter().copied().chain(events.clone()));
    let mut nights: Vec<Night> = nights.to_vec();
    nights.extend(
        events
            .filter(|&(id, _)| id != NONE && residents.binary_search(&id).is_err())
            .filter_map(|(identity, t)| {
                Some(Night {
                    identity,
                    date: night_of(t)?,
                    first: t,
                })
            }),
    );
    nights.sort_unstable();
    nights.dedup_by_key(|n| (n.identity, n.date));
    (seen, nights)
}

/// One building's summaries from all its events.
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
    let events = range.rows().map(|r| (ids[r], ts[r]));
    taken_in(&[], &[], events, &residents_of(ix, b, person_ids))
}

impl Doors {
    /// Builds the summaries. `ids` and `ts` are the door events' identities and times, by
    /// building as `ix.events_of` says; `person_ids` are the `people` records' identities.
    pub fn build(ix: &Indexes, ids: &[u32], ts: &[i64], person_ids: &[u32]) -> Doors {
        let buildings = ix.event_offsets.len().saturating_sub(1);
        let parts = (0..buildings.div_ceil(PART))
            .into_par_iter()
            .map(|p| {
                let run = p * PART..((p + 1) * PART).min(buildings);
                Arc::new(Part::of(
                    run.map(|b| summary_of(ix, b as u32, ids, ts, person_ids))
                        .collect(),
                ))
            })
            .collect();
        Doors { parts }
    }

    /// The summaries after door events were added: `added` holds each new event's building,
    /// identity and time, sorted by building. A building's summaries are its events' (the
    /// latest event of each identity; the nights, each with its first event), so those of the
    /// buildings added to are this version's with the new events taken in, and written with the
    /// rest of their parts; every other part is this one's. (`ix`: the indexes of the version
    /// with the events; `person_ids`: the `people` records' identities.)
    pub fn with_added(&self, ix: &Indexes, added: &[(u32, u32, i64)], person_ids: &[u32]) -> Doors {
        let buildings = ix.event_offsets.len().saturating_sub(1);
        let mut parts = self.parts.clone();
        parts.resize_with(buildings.div_ceil(PART), Default::default);
        // The new events of each part, by building.
        let runs: Vec<&[(u32, u32, i64)]> = added
            .chunk_by(|a, b| a.0 as usize / PART == b.0 as usize / PART)
            .collect();
        let fresh: Vec<(usize, Arc<Part>)> = runs
            .par_iter()
            .map(|run| {
                let p = run[0].0 as usize / PART;
                let start = p * PART;
                let old = &parts[p];
                let mut next = run.chunk_by(|a, b| a.0 == b.0).peekable();
                let part = Part::of(
                    (start..((p + 1) * PART).min(buildings))
                        .map(|b| {
                            let (seen, nights) = (old.seen(b - start), old.nights(b - start));
                            match next.next_if(|e| e[0].0 as usize == b) {
                                Some(events) => taken_in(
                                    seen,
                                    nights,
                                    events.iter().map(|&(_, id, t)| (id, t)),
                                    &residents_of(ix, b as u32, person_ids),
                                ),
                                None => (seen.to_vec(), nights.to_vec()),
                            }
                        })
                        .collect(),
                );
                (p, Arc::new(part))
            })
            .collect();
        for (p, part) in fresh {
            parts[p] = part;
        }
        Doors { parts }
    }

    /// The part holding a building, and the building's place in it.
    fn part_of(&self, building: u32) -> Option<(&Part, usize)> {
        let b = building as usize;
        Some((self.parts.get(b / PART)?, b % PART))
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
        if range.latest(ts).is_none_or(|t| t <= as_of) {
            return match self.part_of(building) {
                Some((part, b)) => Cow::Borrowed(part.seen(b)),
                None => Cow::Owned(Vec::new()),
            };
        }
        Cow::Owned(last_of(range.up_to(ts, as_of).rows(), ids, ts))
    }

    /// The nights at a building of identities without an active record there, sorted by
    /// identity and date (all of them: the caller keeps those of its window).
    pub fn nights(&self, building: u32) -> &[Night] {
        match self.part_of(building) {
            Some((part, b)) => part.nights(b),
            None => &[],
        }
    }

    /// The parts one after the other, as one run.
    fn whole(&self) -> Part {
        if self.parts.is_empty() {
            return Part::default();
        }
        let mut all = Part {
            seen_offsets: vec![0],
            night_offsets: vec![0],
            ..Part::default()
        };
        for p in &self.parts {
            let (s0, n0) = (all.seen.len(), all.nights.len());
            all.seen.extend_from_slice(&p.seen);
            all.nights.extend_from_slice(&p.nights);
            all.seen_offsets
                .extend(p.seen_offsets.iter().skip(1).map(|&o| s0 + o));
            all.night_offsets
                .extend(p.night_offsets.iter().skip(1).map(|&o| n0 + o));
        }
        all
    }

    /// The summaries of one run of buildings, in parts.
    fn of_whole(whole: &Part) -> Doors {
        let buildings = whole.buildings();
        Doors {
            parts: (0..buildings.div_ceil(PART))
                .map(|p| Arc::new(whole.slice(p * PART..((p + 1) * PART).min(buildings))))
                .collect(),
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
        let whole = self.whole();
        let (seen, nights) = (&whole.seen, &whole.nights);
        vec![
            (
                "seen.identity",
                Arc::new(UInt32Array::from_iter_values(seen.iter().map(|s| s.0))),
            ),
            (
                "seen.last",
                Arc::new(Int64Array::from_iter_values(seen.iter().map(|s| s.1))),
            ),
            ("seen.offsets", offsets(&whole.seen_offsets)),
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
            ("nights.offsets", offsets(&whole.night_offsets)),
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
        Some(Doors::of_whole(&Part {
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
        }))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| {
                (p.seen_offsets.len() + p.night_offsets.len()) * size_of::<usize>()
                    + p.seen.len() * size_of::<(u32, i64)>()
                    + p.nights.len() * size_of::<Night>()
            })
            .sum()
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
        let doors = Doors::of_whole(&Part {
            seen_offsets: vec![0, 2, 2, 3],
            seen: vec![(1, 10), (4, 20), (2, 30)],
            night_offsets: vec![0, 0, 1, 1],
            nights: vec![Night {
                identity: 3,
                date: 7,
                first: 40,
            }],
        });
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

    #[test]
    fn summaries_split_into_parts_and_joined_again_are_the_same() {
        let buildings = 2 * PART + 3;
        let whole = Part::of(
            (0..buildings)
                .map(|b| {
                    let seen = (0..b % 3)
                        .map(|i| (i as u32, (b * 10 + i) as i64))
                        .collect();
                    let nights = (0..b % 2)
                        .map(|i| Night {
                            identity: i as u32,
                            date: b as i32,
                            first: b as i64,
                        })
                        .collect();
                    (seen, nights)
                })
                .collect(),
        );
        let doors = Doors::of_whole(&whole);
        assert_eq!(doors.parts.len(), 3);
        assert_eq!(doors.whole(), whole);
        assert_eq!(doors.nights(PART as u32 + 1), whole.nights(PART + 1));
        assert_eq!(
            doors.part_of(2 * PART as u32 + 2).unwrap().0.seen(2),
            whole.seen(2 * PART + 2)
        );
    }
}
