//! The grid hierarchy, in one place: district (6 digits) ⊃ street (9) ⊃ community (12) ⊃ grid
//! (15), each code a prefix of the codes below it (`spec/data-contract.md`, grids), and how each
//! table's rows reach their grid (`rules.md`, "the subject's grid").
//!
//! Scopes ([`crate::scope`]), KPI roll-ups ([`crate::kpis`]) and SQL index filters
//! ([`crate::sql`]) all ask this module; none spells the code lengths or the grid paths itself.

use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::store::{NONE, Store};
use arrow::array::Array;
use roaring::RoaringBitmap;
use std::str::FromStr;

/// A level of the grid hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// 网格
    Grid,
    /// 社区
    Community,
    /// 街道
    Street,
    /// 区
    District,
    /// 市
    City,
}

impl Level {
    /// Every level, finest first.
    pub const ALL: [Level; 5] = [
        Level::Grid,
        Level::Community,
        Level::Street,
        Level::District,
        Level::City,
    ];

    /// The level's name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Grid => "grid",
            Level::Community => "community",
            Level::Street => "street",
            Level::District => "district",
            Level::City => "city",
        }
    }

    /// The length of a code at this level (`None` for the city, which is not a prefix of its
    /// grids' codes).
    pub fn code_len(self) -> Option<usize> {
        match self {
            Level::Grid => Some(15),
            Level::Community => Some(12),
            Level::Street => Some(9),
            Level::District => Some(6),
            Level::City => None,
        }
    }

    /// The level of a code of the hierarchy, from its form (6, 9, 12 or 15 ASCII digits).
    pub fn of_code(code: &str) -> Option<Level> {
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match code.len() {
            6 => Some(Level::District),
            9 => Some(Level::Street),
            12 => Some(Level::Community),
            15 => Some(Level::Grid),
            _ => None,
        }
    }

    /// The position of this level among a grid's parent codes (`Indexes::grid_parents`).
    fn parent_index(self) -> Option<usize> {
        match self {
            Level::Community => Some(0),
            Level::Street => Some(1),
            Level::District => Some(2),
            _ => None,
        }
    }
}

impl FromStr for Level {
    type Err = Error;
    fn from_str(s: &str) -> Result<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                Error::param(
                    "level",
                    format!(
                        "{s:?} is unknown (expected grid, community, street, district or city)"
                    ),
                )
            })
    }
}

/// The code of a grid at a level: its own code, or the code of the community, street, district
/// or city it lies in (the city is the district code's first four digits and `00`).
pub fn code_at(store: &Store, grid: u32, level: Level) -> String {
    let parents = &store.indexes.grid_parents[grid as usize];
    match level {
        Level::Grid => grid_code(store, grid).to_string(),
        Level::City => format!("{}00", parents[2].get(..4).unwrap_or("")),
        l => l
            .parent_index()
            .map(|i| parents[i].clone())
            .unwrap_or_default(),
    }
}

/// The code of a grid row (empty for [`NONE`]).
pub fn grid_code(store: &Store, grid: u32) -> &str {
    match store.table(TableId::Grids).strings("grid_code") {
        Ok(codes) if (grid as usize) < codes.len() => codes.value(grid as usize),
        _ => "",
    }
}

/// The grid rows whose code at `level` passes a test.
pub fn grids_where(store: &Store, level: Level, test: impl Fn(&str) -> bool) -> RoaringBitmap {
    let grids = store.table(TableId::Grids);
    let parents = &store.indexes.grid_parents;
    match level.parent_index() {
        Some(i) => (0..grids.rows as u32)
            .filter(|&g| test(parents[g as usize][i].as_str()))
            .collect(),
        None => match grids.strings("grid_code") {
            Ok(codes) => (0..codes.len() as u32)
                .filter(|&g| test(codes.value(g as usize)))
                .collect(),
            Err(_) => RoaringBitmap::new(),
        },
    }
}

/// The grid rows inside a code of the hierarchy (every grid whose code starts with it).
pub fn grids_within(store: &Store, code: &str) -> RoaringBitmap {
    grids_where(store, Level::Grid, |c| c.starts_with(code))
}

/// Whether a code names a district, street, community or grid of the city (some grid lies
/// inside it).
pub fn is_known(store: &Store, code: &str) -> bool {
    Level::of_code(code).is_some() && !grids_within(store, code).is_empty()
}

/// How each row of a table reaches its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridPath {
    /// The table is `grids`.
    Itself,
    /// Its own `grid_code` key column (workers, buildings, incidents).
    Own,
    /// Through `room_id` (rooms through their building).
    Room,
    /// Through `building_id`.
    Building,
    /// Through the record's room (`people`).
    Person,
    /// Through the visiting worker's grid.
    Worker,
    /// The table has no grid.
    None,
}

impl GridPath {
    /// The path of a table.
    pub fn of(t: TableId) -> GridPath {
        match t {
            TableId::Grids => GridPath::Itself,
            TableId::Workers | TableId::Buildings | TableId::Incidents => GridPath::Own,
            TableId::Rooms => GridPath::Room,
            TableId::Households | TableId::Leases | TableId::UtilityReadings => GridPath::Room,
            TableId::AccessEvents => GridPath::Building,
            TableId::People => GridPath::Person,
            TableId::Visits => GridPath::Worker,
            TableId::Deaths | TableId::SlaRules | TableId::Calendar => GridPath::None,
        }
    }

    /// Whether SQL sees a derived `grid_code` column on the table (it lies in a grid but has no
    /// `grid_code` of its own).
    pub fn derives_grid_code(self) -> bool {
        !matches!(self, GridPath::None | GridPath::Itself | GridPath::Own)
    }
}

/// The grid (row of `grids`, [`NONE`] if none) of each of some rows of a table.
pub fn grids_of(store: &Store, table: TableId, rows: &[u32]) -> Vec<u32> {
    let t = store.table(table);
    let ix = &store.indexes;
    let key = |name: &str| t.keys(name).unwrap_or(&[]);
    let building_grid = store
        .table(TableId::Buildings)
        .keys("grid_code")
        .unwrap_or(&[]);
    let at = |v: &[u32], i: u32| v.get(i as usize).copied().unwrap_or(NONE);
    match GridPath::of(table) {
        GridPath::Itself => rows.to_vec(),
        GridPath::Own => {
            let g = key("grid_code");
            rows.iter().map(|&r| at(g, r)).collect()
        }
        GridPath::Room if table == TableId::Rooms => {
            rows.iter().map(|&r| at(&ix.room_grid, r)).collect()
        }
        GridPath::Room => {
            let room = key("room_id");
            rows.iter()
                .map(|&r| at(&ix.room_grid, at(room, r)))
                .collect()
        }
        GridPath::Building => {
            let b = key("building_id");
            rows.iter().map(|&r| at(building_grid, at(b, r))).collect()
        }
        GridPath::Person => rows
            .iter()
            .map(|&r| at(building_grid, at(&ix.person_building, r)))
            .collect(),
        GridPath::Worker => {
            let w = key("worker_id");
            let wg = store
                .table(TableId::Workers)
                .keys("grid_code")
                .unwrap_or(&[]);
            rows.iter().map(|&r| at(wg, at(w, r))).collect()
        }
        GridPath::None => vec![NONE; rows.len()],
    }
}

/// The rows of a table that lie in a set of grids (nothing for a table without grids).
pub fn rows_of_grids(store: &Store, table: TableId, grids: &RoaringBitmap) -> RoaringBitmap {
    if table == TableId::Grids {
        return grids.clone();
    }
    match store.indexes.grid_rows.get(&table) {
        Some(gr) => gr.rows_of(grids),
        None => RoaringBitmap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_levels_by_length() {
        assert_eq!(Level::of_code("440104"), Some(Level::District));
        assert_eq!(Level::of_code("440104001"), Some(Level::Street));
        assert_eq!(Level::of_code("440104001001"), Some(Level::Community));
        assert_eq!(Level::of_code("440104001001001"), Some(Level::Grid));
        for bad in ["", " ", "4401", "44010400", "44010a", "４４０１０４"] {
            assert_eq!(Level::of_code(bad), None, "{bad:?}");
        }
        assert_eq!("Street".parse::<Level>().unwrap(), Level::Street);
        assert!("town".parse::<Level>().is_err());
    }
}
