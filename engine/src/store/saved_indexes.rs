//! The store's indexes as named Arrow arrays, as a snapshot keeps them, and back: a start reads
//! them instead of building them from the tables again.
//!
//! Bitmaps are held in roaring's own serialized form (one binary value per bitmap), compressed
//! rows as their offsets and values, lists as arrays, the door summaries as their own arrays
//! ([`Doors::to_arrays`]). What is read back is checked against the
//! tables it indexes (every length, every offset run); anything that does not hold together is
//! refused, and the caller builds the indexes from the tables instead.

use super::doors::Doors;
use super::index::{Csr, GridRows, Indexes};
use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::store::StoredTable;
use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{UInt32Type, UInt64Type};
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The compressed-row indexes, by name.
const CSRS: [&str; 5] = [
    "rooms_of_building",
    "active_of_room",
    "active_of_identity",
    "active_of_household",
    "event_tail",
];

fn bitmaps<'a>(b: impl Iterator<Item = &'a RoaringBitmap>) -> Result<ArrayRef> {
    let bytes = b
        .map(|b| {
            let mut v = Vec::with_capacity(b.serialized_size());
            b.serialize_into(&mut v)
                .map_err(|e| Error::Internal(format!("serializing a bitmap: {e}")))?;
            Ok(v)
        })
        .collect::<Result<Vec<Vec<u8>>>>()?;
    Ok(Arc::new(BinaryArray::from_iter_values(bytes)))
}

fn u32s(v: &[u32]) -> ArrayRef {
    Arc::new(UInt32Array::from(v.to_vec()))
}

fn csr_of<'a>(ix: &'a Indexes, name: &str) -> &'a Csr {
    match name {
        "rooms_of_building" => &ix.rooms_of_building,
        "active_of_room" => &ix.active_of_room,
        "active_of_identity" => &ix.active_of_identity,
        "event_tail" => &ix.event_tail,
        _ => &ix.active_of_household,
    }
}

/// Every index, the door summaries included, as named arrays.
pub fn to_arrays(ix: &Indexes) -> Result<Vec<(String, ArrayRef)>> {
    let mut out: Vec<(String, ArrayRef)> = vec![
        (
            "sets".into(),
            bitmaps(
                [
                    &ix.active,
                    &ix.access_buildings,
                    &ix.residential_rooms,
                    &ix.vacant_rooms,
                ]
                .into_iter(),
            )?,
        ),
        (
            "tag_names".into(),
            Arc::new(StringArray::from_iter_values(ix.tags.keys())),
        ),
        ("tag_rows".into(), bitmaps(ix.tags.values())?),
        ("residence".into(), bitmaps(ix.residence.iter())?),
        ("person_building".into(), u32s(&ix.person_building)),
        ("room_grid".into(), u32s(&ix.room_grid)),
        (
            "event_offsets".into(),
            Arc::new(UInt64Array::from_iter_values(
                ix.event_offsets.iter().map(|&o| o as u64),
            )),
        ),
    ];
    for name in CSRS {
        let (offsets, values) = csr_of(ix, name).parts();
        out.push((format!("{name}.offsets"), u32s(offsets)));
        out.push((format!("{name}.values"), u32s(values)));
    }
    out.push((
        "grid_rows.tables".into(),
        Arc::new(StringArray::from_iter_values(
            ix.grid_rows.keys().map(|t| t.name()),
        )),
    ));
    for (t, rows) in &ix.grid_rows {
        out.push((
            format!("grid_rows.{}", t.name()),
            bitmaps(rows.by_grid.iter())?,
        ));
    }
    for (name, a) in ix.doors.to_arrays() {
        out.push((format!("doors.{name}"), a));
    }
    for (i, level) in ["community", "street", "district"].iter().enumerate() {
        out.push((
            format!("grid_parents.{level}"),
            Arc::new(StringArray::from_iter_values(
                ix.grid_parents.iter().map(|p| p[i].as_str()),
            )),
        ));
    }
    Ok(out)
}

/// Every index from its arrays (`get` finds one by name) over `tables`; `None` when an array
/// is missing, of another type, or does not fit the tables.
pub fn from_arrays(
    get: impl Fn(&str) -> Option<ArrayRef>,
    tables: &[StoredTable],
    identities: usize,
) -> Option<Indexes> {
    let rows = |t: TableId| tables.get(t as usize).map(|t| t.rows);
    let (people, rooms, buildings, grids, households) = (
        rows(TableId::People)?,
        rows(TableId::Rooms)?,
        rows(TableId::Buildings)?,
        rows(TableId::Grids)?,
        rows(TableId::Households)?,
    );
    let bitmaps = |name: &str, len: Option<usize>| -> Option<Vec<RoaringBitmap>> {
        let a = get(name)?;
        let a = a.as_binary_opt::<i32>()?;
        if len.is_some_and(|n| a.len() != n) || a.null_count() > 0 {
            return None;
        }
        a.iter()
            .map(|b| RoaringBitmap::deserialize_from(b?).ok())
            .collect()
    };
    let u32s = |name: &str, len: usize| -> Option<Vec<u32>> {
        let a = get(name)?;
        let v = a.as_primitive_opt::<UInt32Type>()?;
        (v.len() == len && v.null_count() == 0).then(|| v.values().to_vec())
    };
    // At most one more offset than keys: an index of identities may end before the identities
    // that door events merged in later (they have no records).
    let csr = |name: &str, keys: usize, items: usize| -> Option<Csr> {
        let offsets = get(&format!("{name}.offsets"))?;
        let offsets = offsets.as_primitive_opt::<UInt32Type>()?;
        if offsets.len() > keys + 1 || offsets.null_count() > 0 {
            return None;
        }
        let offsets = offsets.values().to_vec();
        if offsets.is_empty() {
            return Some(Csr::default());
        }
        let values_len = *offsets.last()? as usize;
        let values = u32s(&format!("{name}.values"), values_len)?;
        Csr::from_parts(offsets, values).filter(|c| c.items_below(items as u32))
    };
    let [active, access_buildings, residential_rooms, vacant_rooms]: [RoaringBitmap; 4] =
        bitmaps("sets", Some(4))?.try_into().ok()?;
    let names = get("tag_names")?;
    let names = names.as_string_opt::<i32>()?;
    let tag_rows = bitmaps("tag_rows", Some(names.len()))?;
    let tags: BTreeMap<String, RoaringBitmap> = names
        .iter()
        .zip(tag_rows)
        .map(|(n, b)| Some((n?.to_string(), b)))
        .collect::<Option<_>>()?;
    let event_offsets = get("event_offsets")?;
    let event_offsets: Vec<usize> = event_offsets
        .as_primitive_opt::<UInt64Type>()?
        .values()
        .iter()
        .map(|&o| o as usize)
        .collect();
    let events = rows(TableId::AccessEvents)?;
    // The rows added after the sorted run lie after it.
    let event_tail = csr("event_tail", buildings, events)?;
    let sorted = event_offsets.last().copied().unwrap_or(0);
    if event_offsets.len() != buildings + 1
        || event_offsets.windows(2).any(|w| w[0] > w[1])
        || sorted + event_tail.parts().1.len() != events
        || event_tail.parts().1.iter().any(|&r| (r as usize) < sorted)
    {
        return None;
    }
    let mut grid_rows = BTreeMap::new();
    let with_grid_rows = get("grid_rows.tables")?;
    for name in with_grid_rows.as_string_opt::<i32>()?.iter() {
        let t = TableId::from_name(name?)?;
        let by_grid = bitmaps(&format!("grid_rows.{}", t.name()), Some(grids))?;
        grid_rows.insert(t, Arc::new(GridRows { by_grid }));
    }
    let parents: Vec<Vec<String>> = ["community", "street", "district"]
        .iter()
        .map(|level| {
            let a = get(&format!("grid_parents.{level}"))?;
            let a = a.as_string_opt::<i32>()?;
            (a.len() == grids && a.null_count() == 0)
                .then(|| a.iter().flatten().map(str::to_string).collect())
        })
        .collect::<Option<_>>()?;
    let grid_parents = (0..grids)
        .map(|g| {
            [
                parents[0][g].clone(),
                parents[1][g].clone(),
                parents[2][g].clone(),
            ]
        })
        .collect();
    Some(Indexes {
        active,
        tags,
        residence: bitmaps("residence", None)?,
        person_building: Arc::new(u32s("person_building", people)?),
        room_grid: Arc::new(u32s("room_grid", rooms)?),
        rooms_of_building: Arc::new(csr("rooms_of_building", buildings, rooms)?),
        active_of_room: Arc::new(csr("active_of_room", rooms, people)?),
        active_of_identity: Arc::new(csr("active_of_identity", identities, people)?),
        active_of_household: Arc::new(csr("active_of_household", households, people)?),
        event_offsets: Arc::new(event_offsets),
        event_tail: Arc::new(event_tail),
        access_buildings,
        residential_rooms,
        vacant_rooms,
        grid_rows,
        grid_parents: Arc::new(grid_parents),
        doors: Doors::from_arrays(|n| get(&format!("doors.{n}")), buildings, identities)?,
    })
}
