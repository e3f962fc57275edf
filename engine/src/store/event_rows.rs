//! Where each building's door events lie in the events table.
//!
//! The table is a run of rows sorted by building and time (the dataset's events, and the
//! batches folded into them), then the rows of the batches added since, in the order they came
//! (each batch sorted by building and time): a batch is written after the rows served instead of
//! among them (see [`crate::store::room`]). A building's events are then its range of the
//! sorted rows and its list of the added rows, in time order ([`EventRows`]). The added rows are
//! folded into the sorted ones when the table's room is used up
//! ([`crate::load::append`]).

use super::index::Csr;
use rayon::prelude::*;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::ops::Range;

/// The door-event rows of one building: a range of the rows sorted by building and time, and
/// the building's rows added since, in time order (equal times in the order they came).
#[derive(Debug, Clone)]
pub struct EventRows<'a> {
    /// The building's run of the sorted rows.
    pub sorted: Range<usize>,
    /// The building's rows added after the sorted ones.
    pub added: &'a [u32],
}

impl<'a> EventRows<'a> {
    /// Whether the building has no events.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.added.is_empty()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.added.len()
    }

    /// The rows: the sorted ones, then the added ones (not, as a whole, in time order).
    pub fn rows(&self) -> impl Iterator<Item = usize> + Clone + 'a {
        self.sorted
            .clone()
            .chain(self.added.iter().map(|&r| r as usize))
    }

    /// The time of the building's latest event (`ts`: the events' times).
    pub fn latest(&self, ts: &[i64]) -> Option<i64> {
        let a = (!self.sorted.is_empty()).then(|| ts[self.sorted.end - 1]);
        let b = self.added.last().map(|&r| ts[r as usize]);
        a.max(b)
    }

    /// Those of the events whose time lies between `lo` and `hi`: a run of the sorted rows
    /// and a run of the added ones, found by binary search.
    pub fn within(&self, ts: &[i64], lo: Bound<i64>, hi: Bound<i64>) -> EventRows<'a> {
        let before = |t: i64| match lo {
            Included(v) => t < v,
            Excluded(v) => t <= v,
            Unbounded => false,
        };
        let not_after = |t: i64| match hi {
            Included(v) => t <= v,
            Excluded(v) => t < v,
            Unbounded => true,
        };
        let s = &ts[self.sorted.clone()];
        let (a, b) = (
            s.partition_point(|&t| before(t)),
            s.partition_point(|&t| not_after(t)),
        );
        let at = |r: &u32| ts[*r as usize];
        let (c, d) = (
            self.added.partition_point(|r| before(at(r))),
            self.added.partition_point(|r| not_after(at(r))),
        );
        EventRows {
            sorted: self.sorted.start + a..self.sorted.start + b.max(a),
            added: &self.added[c..d.max(c)],
        }
    }

    /// Those of the events at or before `t`.
    pub fn up_to(&self, ts: &[i64], t: i64) -> EventRows<'a> {
        self.within(ts, Unbounded, Included(t))
    }

    /// Whether some event lies in `(from, to]`.
    pub fn any_in(&self, ts: &[i64], from: i64, to: i64) -> bool {
        !self.within(ts, Excluded(from), Included(to)).is_empty()
    }
}

/// Door events added to the table: each one's building, identity and time, sorted by building
/// and time (a batch as it is written).
#[derive(Debug, Clone, Copy)]
pub struct AddedEvents<'a> {
    /// Each event's building.
    pub buildings: &'a [u32],
    /// Each event's identity (`NONE`: a stranger).
    pub identities: &'a [u32],
    /// Each event's time.
    pub times: &'a [i64],
}

impl AddedEvents<'_> {
    /// The events as (building, identity, time).
    pub fn events(&self) -> Vec<(u32, u32, i64)> {
        (0..self.buildings.len())
            .map(|i| (self.buildings[i], self.identities[i], self.times[i]))
            .collect()
    }
}

/// How the rows after a sorted run are held: each building's rows (numbers), in time order.
fn in_time_order(rows: &mut [u32], ts: &[i64]) {
    rows.sort_unstable_by_key(|&r| (ts[r as usize], r));
}

/// The events' layout worked out from the table: its longest run of rows sorted by building and
/// time from the start, as offsets per building (`buildings + 1` of them), and every row after
/// it, by building in time order. `eb`: each row's building; `ts`: its time.
pub fn layout(buildings: usize, eb: &[u32], ts: &[i64]) -> (Vec<usize>, Csr) {
    let n = eb.len();
    // The first row out of order ends the sorted run.
    let sorted = (1..n)
        .into_par_iter()
        .find_first(|&i| eb[i - 1] > eb[i] || (eb[i - 1] == eb[i] && ts[i - 1] > ts[i]))
        .unwrap_or(n);
    let mut offsets = vec![0usize; buildings + 1];
    for &b in &eb[..sorted] {
        if (b as usize) < buildings {
            offsets[b as usize + 1] += 1;
        }
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let tail = added_by_building(buildings, eb, ts, sorted);
    (offsets, tail)
}

/// The rows from `from` on, by building in time order.
fn added_by_building(buildings: usize, eb: &[u32], ts: &[i64], from: usize) -> Csr {
    let (offsets, mut rows) = Csr::build(eb, buildings, |r| r >= from).into_parts();
    for b in 0..buildings {
        in_time_order(&mut rows[offsets[b] as usize..offsets[b + 1] as usize], ts);
    }
    Csr::from_parts(offsets, rows).unwrap_or_default()
}

/// The added rows by building after more rows were added (`new`: each new row's number and
/// building, sorted by building and time, numbered after every row before): the new rows are
/// merged among the touched buildings' rows in time order, every other building's are copied.
pub fn with_added(tail: &Csr, buildings: usize, new: &[(u32, u32)], ts: &[i64]) -> Csr {
    let (old_offsets, old_rows) = tail.parts();
    let at = |b: usize| -> usize {
        old_offsets
            .get(b)
            .or(old_offsets.last())
            .map_or(0, |&o| o as usize)
    };
    let mut offsets: Vec<u32> = Vec::with_capacity(buildings + 1);
    let mut rows: Vec<u32> = Vec::with_capacity(old_rows.len() + new.len());
    offsets.push(0);
    let mut next = 0usize;
    let mut b = 0usize;
    while b < buildings {
        // The next touched building, and the untouched run before it copied at once.
        let touched = new.get(next).map_or(buildings, |&(_, nb)| nb as usize);
        if touched > b {
            let shift = rows.len() as i64 - at(b) as i64;
            rows.extend_from_slice(&old_rows[at(b)..at(touched)]);
            offsets.extend((b + 1..=touched).map(|k| (at(k) as i64 + shift) as u32));
            b = touched;
            continue;
        }
        // The new rows (in time order, numbered after every old one) merged among the old
        // ones: each goes after the old rows up to its time.
        let old = &old_rows[at(b)..at(b + 1)];
        let mut from = 0usize;
        while next < new.len() && new[next].1 as usize == b {
            let r = new[next].0;
            let t = ts[r as usize];
            let place = from + old[from..].partition_point(|&o| ts[o as usize] <= t);
            rows.extend_from_slice(&old[from..place]);
            rows.push(r);
            from = place;
            next += 1;
        }
        rows.extend_from_slice(&old[from..]);
        offsets.push(rows.len() as u32);
        b += 1;
    }
    Csr::from_parts(offsets, rows).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_is_the_sorted_run_then_the_rest_by_building_in_time_order() {
        // Buildings 0..3; rows 0..4 sorted, then rows added as they came.
        let eb = [0, 0, 2, 2, 1, 0, 2, 0];
        let ts = [1, 5, 2, 9, 4, 3, 9, 3];
        let (offsets, tail) = layout(3, &eb, &ts);
        assert_eq!(offsets, vec![0, 2, 2, 4]);
        assert_eq!(tail.get(0), &[5, 7]);
        assert_eq!(tail.get(1), &[4]);
        assert_eq!(tail.get(2), &[6]);
        let ev = |b: usize| EventRows {
            sorted: offsets[b]..offsets[b + 1],
            added: tail.get(b as u32),
        };
        assert_eq!(ev(0).rows().collect::<Vec<_>>(), vec![0, 1, 5, 7]);
        assert_eq!(ev(0).latest(&ts), Some(5));
        assert_eq!(ev(1).latest(&ts), Some(4));
        assert_eq!(
            ev(0).up_to(&ts, 3).rows().collect::<Vec<_>>(),
            vec![0, 5, 7]
        );
        assert!(ev(0).any_in(&ts, 2, 3));
        assert!(!ev(0).any_in(&ts, 3, 4));
        let w = ev(0).within(&ts, Excluded(1), Excluded(5));
        assert_eq!(w.rows().collect::<Vec<_>>(), vec![5, 7]);
        assert!(ev(0).within(&ts, Included(5), Excluded(2)).is_empty());
        assert!(ev(1).any_in(&ts, 3, 4));
        // Two more rows: building 0 at time 2, building 2 at time 1.
        let ts2 = [1, 5, 2, 9, 4, 3, 9, 3, 2, 1];
        let grown = with_added(&tail, 3, &[(8, 0), (9, 2)], &ts2);
        let eb2 = [0, 0, 2, 2, 1, 0, 2, 0, 0, 2];
        assert_eq!(grown, layout(3, &eb2, &ts2).1);
        assert_eq!(grown.get(0), &[8, 5, 7]);
        assert_eq!(grown.get(2), &[9, 6]);
        // From nothing added.
        assert_eq!(
            with_added(&Csr::default(), 3, &[(8, 0), (9, 2)], &ts2).get(2),
            &[9]
        );
    }
}
