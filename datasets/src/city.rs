//! The city model, the normal (rule-clean) city, and writing it out.
//!
//! A chunk of contiguous grids is generated at a time, from its own random stream. The normal
//! city keeps these invariants, so that no rule of `rules.md` fires on it:
//!
//! - everyone sleeps in the building they are registered in, and a visitor spends at most 4
//!   nights in another building (R01);
//! - every lease active at `as_of` is on a filed rental room and its tenant is registered there
//!   (R02, R03);
//! - everyone aged 6–79 who is registered in a building with door access goes in and out, and is
//!   seen at least once within the 60 days (R04);
//! - death records are only for deregistered people or people not in the registry (R05);
//! - an identity number has at most one active record (R06), and identity numbers are valid (R07);
//! - a residential room with nobody registered uses under 50 kWh a month (R08);
//! - a room has at least 5 m² per occupant (R09);
//! - everyone was verified within 365 days (hukou) or 180 days (others) (R10);
//! - every elderly person living alone had a care visit within the last 6 days (R11);
//! - every household has an active member (R12).
//!
//! Scenarios (`scenarios.rs`) then add their own rooms, people and events with known findings.

use crate::reference::{self, Community};
use crate::scenarios::{self, Truth};
use crate::writer::{FileWriter, OutputFormat, TableBuf, V, file_schema, table_path};
use crate::{GenError, GenerateOptions, Result, Summary, bad_rows};
use gridlens_engine::calendar::Calendar;
use gridlens_engine::contract::{self, TableId};
use gridlens_engine::idcard;
use gridlens_engine::time::{self, DAY, HOUR, MINUTE, SECOND};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// Grids at scale 1.0.
pub const GRIDS_AT_SCALE_1: f64 = 25_000.0;
/// At most this many chunks (each draws identity numbers from its own slice of 1/100 of the
/// sequence-number space).
pub const MAX_CHUNKS: usize = 100;
/// At least this many grids per chunk.
pub const MIN_GRIDS_PER_CHUNK: usize = 250;
/// Households per grid (the national standard is about 200).
pub const HOUSEHOLDS_PER_GRID: usize = 200;
/// Days of door-access events and visits before `as_of`.
pub const EVENT_DAYS: i32 = 60;
/// Days of incidents before `as_of`.
pub const INCIDENT_DAYS: i32 = 365;

/// One grid, with its place in the hierarchy.
#[derive(Debug, Clone)]
pub struct GridInfo {
    /// 15-digit code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// The community.
    pub community: Community,
    /// Street code and name.
    pub street: (String, String),
    /// District code and name.
    pub district: (String, String),
    /// Centre (lon, lat).
    pub center: (f64, f64),
}

/// Chooses the city's grids: communities (all 2,851 at full scale, a subset below), each with
/// one or more grids.
pub fn plan_grids(scale: f64, seed: u64) -> Vec<GridInfo> {
    let geo = reference::guangzhou();
    let n = ((GRIDS_AT_SCALE_1 * scale).round() as usize).max(4);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6772_6964_7331);
    let all = &geo.communities;
    let n_comm = all.len().min(n.div_ceil(3)).max(1);
    let mut idx: Vec<usize> = (0..all.len()).collect();
    idx.shuffle(&mut rng);
    idx.truncate(n_comm);
    idx.sort_unstable();
    let mut per = vec![1usize; n_comm];
    for _ in n_comm..n {
        let i = rng.random_range(0..n_comm);
        per[i] += 1;
    }
    // District centres (approximate lon/lat), so that buildings have plausible coordinates.
    let centre = |d: &str| -> (f64, f64) {
        match d {
            "440103" => (113.244, 23.126),
            "440104" => (113.267, 23.129),
            "440105" => (113.317, 23.084),
            "440106" => (113.361, 23.125),
            "440111" => (113.273, 23.158),
            "440112" => (113.459, 23.106),
            "440113" => (113.384, 22.938),
            "440114" => (113.220, 23.404),
            "440115" => (113.525, 22.801),
            "440117" => (113.586, 23.548),
            "440118" => (113.810, 23.261),
            _ => (113.26, 23.13),
        }
    };
    let mut grids = Vec::with_capacity(n);
    for (k, &ci) in idx.iter().enumerate() {
        let c = &all[ci];
        let street = geo
            .street(&c.code)
            .map(|s| (s.code.clone(), s.name.clone()))
            .unwrap_or_else(|| (c.code[..9].to_string(), String::new()));
        let district = geo
            .district(&c.code)
            .map(|d| (d.code.clone(), d.name.clone()))
            .unwrap_or_else(|| (c.code[..6].to_string(), String::new()));
        let (lon, lat) = centre(&district.0);
        for g in 0..per[k] {
            let code = format!("{}{:03}", c.code, g + 1);
            grids.push(GridInfo {
                name: format!("{}第{}网格", c.short, g + 1),
                code,
                community: c.clone(),
                street: street.clone(),
                district: district.clone(),
                center: (
                    lon + rng.random_range(-0.06..0.06),
                    lat + rng.random_range(-0.05..0.05),
                ),
            });
        }
    }
    grids
}

/// How many chunks a number of grids is generated in.
pub fn chunk_count(grids: usize) -> usize {
    let per = MIN_GRIDS_PER_CHUNK.max(grids.div_ceil(MAX_CHUNKS));
    grids.div_ceil(per).max(1)
}

// ---------------------------------------------------------------------------------------------
// The model.

/// A building.
#[derive(Debug, Clone)]
pub struct Building {
    /// `building_id`.
    pub id: String,
    /// Grid (position within the chunk).
    pub grid: usize,
    /// Address.
    pub address: String,
    /// Floors.
    pub floors: i64,
    /// Door access.
    pub access: bool,
    /// Since when the door system reports.
    pub since: Option<i32>,
    /// Location.
    pub lon: f64,
    /// Location.
    pub lat: f64,
    /// Rooms.
    pub rooms: Vec<usize>,
    /// Door events at this building happen only before this instant (a dead door system).
    pub events_until: Option<i64>,
    /// Made by a scenario: normal visitors and patrols leave it alone.
    pub dedicated: bool,
    /// Device ids.
    pub devices: Vec<String>,
}

/// A room.
#[derive(Debug, Clone)]
pub struct Room {
    /// `room_id`.
    pub id: String,
    /// Building.
    pub building: usize,
    /// Door number.
    pub unit_no: String,
    /// Floor.
    pub floor: i64,
    /// Area, m².
    pub area: f64,
    /// Usage.
    pub usage: &'static str,
    /// Tenure.
    pub tenure: &'static str,
    /// Rental filing date.
    pub rental_on: Option<i32>,
    /// Owner's identity number.
    pub owner: Option<String>,
    /// Electricity for the three months before `as_of`'s month (oldest first).
    pub kwh: [Option<f64>; 3],
    /// Made by a scenario: normal visits leave it alone.
    pub dedicated: bool,
    /// A scenario set its power use on purpose.
    pub power_set: bool,
}

/// A household.
#[derive(Debug, Clone)]
pub struct Household {
    /// `household_id`.
    pub id: String,
    /// Room.
    pub room: usize,
    /// Kind.
    pub kind: &'static str,
    /// Head's identity number.
    pub head: Option<String>,
    /// Registration date.
    pub registered_on: Option<i32>,
}

/// Care visits an elderly person living alone gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Care {
    /// Every 3–6 days, the last within 6 days.
    Regular,
    /// None from the normal process (a scenario writes its own).
    Scenario,
}

/// A person record.
#[derive(Debug, Clone)]
pub struct Person {
    /// `person_id`.
    pub id: String,
    /// Identity number.
    pub idn: String,
    /// Document type.
    pub doc: &'static str,
    /// Name.
    pub name: String,
    /// Sex.
    pub male: bool,
    /// Birth date.
    pub birth: i32,
    /// Household.
    pub household: Option<usize>,
    /// Registered room.
    pub room: usize,
    /// Residence kind.
    pub residence: &'static str,
    /// Registration date.
    pub registered_on: i32,
    /// Last in-person verification.
    pub last_verified: Option<i32>,
    /// Status.
    pub status: &'static str,
    /// Phone.
    pub phone: Option<String>,
    /// Care tags.
    pub tags: Vec<&'static str>,
    /// The building the person sleeps in (for door events), if any.
    pub lives_at: Option<usize>,
    /// Whether the person goes in and out (door events where they live).
    pub goes_out: bool,
    /// Care visits.
    pub care: Care,
    /// Part of the normal city (scenarios leave it alone).
    pub normal: bool,
}

/// A lease.
#[derive(Debug, Clone)]
pub struct Lease {
    /// `lease_id`.
    pub id: String,
    /// Room.
    pub room: usize,
    /// Tenant's identity number.
    pub tenant: String,
    /// Start.
    pub start: i32,
    /// End (inclusive).
    pub end: Option<i32>,
    /// Filing date.
    pub filed: Option<i32>,
}

/// A door event.
#[derive(Debug, Clone)]
pub struct Event {
    /// When.
    pub ts: i64,
    /// Building.
    pub building: usize,
    /// Identity number (None: stranger).
    pub idn: Option<String>,
    /// Entering.
    pub entering: bool,
}

/// A worker's visit.
#[derive(Debug, Clone)]
pub struct Visit {
    /// Worker (position within the chunk).
    pub worker: usize,
    /// When.
    pub at: i64,
    /// Kind.
    pub kind: &'static str,
    /// Room visited.
    pub room: Option<usize>,
    /// Person seen.
    pub idn: Option<String>,
}

/// A grid worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// `worker_id`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Grid.
    pub grid: usize,
    /// Partner grid (B role).
    pub partner: Option<usize>,
    /// Employment.
    pub employment: &'static str,
    /// Active.
    pub active: bool,
    /// Hired.
    pub hired_on: Option<i32>,
}

/// A death record.
#[derive(Debug, Clone)]
pub struct Death {
    /// Identity number.
    pub idn: String,
    /// Date of death.
    pub died_on: i32,
    /// Source.
    pub source: &'static str,
}

/// Identity numbers of one chunk: unique within the chunk by a set, and across chunks because
/// each chunk uses its own residue of the sequence number.
#[derive(Debug)]
pub struct IdAlloc {
    slot: u32,
    used: HashSet<String>,
    other: u64,
}

impl IdAlloc {
    fn new(chunk: usize) -> IdAlloc {
        IdAlloc {
            slot: (chunk % MAX_CHUNKS) as u32,
            used: HashSet::new(),
            other: 0,
        }
    }

    /// A new resident identity number for the area, birth date and sex. If every sequence
    /// number of this chunk is taken for that area and date, another county of the same
    /// province is used; only then (never in practice) does the birth date move by a day.
    /// Returns the number and the birth date it encodes.
    pub fn resident(
        &mut self,
        rng: &mut impl Rng,
        area: &str,
        birth: i32,
        male: bool,
    ) -> (String, i32) {
        let same_province: Vec<String> = reference::areas()
            .by_province
            .get(area.get(..2).unwrap_or("44"))
            .cloned()
            .unwrap_or_default();
        let mut b = birth;
        loop {
            let mut areas = vec![area.to_string()];
            for _ in 0..30 {
                if let Some(a) = same_province.choose(rng) {
                    areas.push(a.clone());
                }
            }
            for a in &areas {
                // Sequence numbers 000–999: j * 2 + parity, with j ≡ slot (mod 100).
                let start = rng.random_range(0..5);
                for i in 0..5 {
                    let j = self.slot + 100 * ((start + i) % 5);
                    let seq = j * 2 + u32::from(male);
                    let id = idcard::build(a, b, seq);
                    if self.used.insert(id.clone()) {
                        return (id, b);
                    }
                }
            }
            b -= 1;
        }
    }

    /// A new passport or HK/Macao/Taiwan permit number, unique across chunks.
    pub fn foreign(&mut self, prefix: char) -> String {
        self.other += 1;
        format!("{prefix}{:02}{:07}", self.slot, self.other)
    }
}

/// Everything generated for one chunk.
pub struct Chunk<'a> {
    /// Chunk number.
    pub index: usize,
    /// The chunk's grids.
    pub grids: &'a [GridInfo],
    /// Random stream.
    pub rng: ChaCha8Rng,
    /// `as_of`.
    pub as_of: i64,
    /// `date(as_of)`.
    pub today: i32,
    /// The working calendar.
    pub cal: &'a Calendar,
    /// Identity numbers.
    pub ids: IdAlloc,
    /// Buildings.
    pub buildings: Vec<Building>,
    /// Rooms.
    pub rooms: Vec<Room>,
    /// Households.
    pub households: Vec<Household>,
    /// People records.
    pub people: Vec<Person>,
    /// Leases.
    pub leases: Vec<Lease>,
    /// Deaths.
    pub deaths: Vec<Death>,
    /// Workers.
    pub workers: Vec<Worker>,
    /// Door events written by scenarios (normal events are drawn when writing).
    pub events: Vec<Event>,
    /// Visits written by scenarios.
    pub visits: Vec<Visit>,
    /// Planted anomalies.
    pub truth: Vec<Truth>,
    /// Planted near-misses.
    pub near: Vec<Truth>,
    next_building: Vec<u32>,
    next_room: HashMap<usize, u32>,
    next_household: Vec<u32>,
    next_person: Vec<u32>,
    next_lease: Vec<u32>,
}

const ROADS: &[&str] = &[
    "中山", "解放", "人民", "东风", "环市", "沿江", "江南", "昌岗", "工业", "新港", "科韵", "员村",
    "棠下", "石牌", "龙口", "五山", "广园", "黄石", "同和", "京溪", "沙太", "南浦", "市桥", "新华",
    "凤凰", "迎宾", "荔城", "街口", "黄阁", "金沙", "南岸", "白云",
];
const ROAD_KINDS: &[&str] = &["路", "大道", "街", "大街"];

fn lognormal(rng: &mut impl Rng, median: f64, sigma: f64) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * z).exp()
}

impl<'a> Chunk<'a> {
    fn new(
        index: usize,
        grids: &'a [GridInfo],
        seed: u64,
        as_of: i64,
        cal: &'a Calendar,
    ) -> Chunk<'a> {
        let n = grids.len();
        Chunk {
            index,
            grids,
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64),
            as_of,
            today: time::date_of(as_of),
            cal,
            ids: IdAlloc::new(index),
            buildings: Vec::new(),
            rooms: Vec::new(),
            households: Vec::new(),
            people: Vec::new(),
            leases: Vec::new(),
            deaths: Vec::new(),
            workers: Vec::new(),
            events: Vec::new(),
            visits: Vec::new(),
            truth: Vec::new(),
            near: Vec::new(),
            next_building: vec![0; n],
            next_room: HashMap::new(),
            next_household: vec![0; n],
            next_person: vec![0; n],
            next_lease: vec![0; n],
        }
    }

    /// The grid of a building.
    pub fn grid_of_building(&self, b: usize) -> &str {
        &self.grids[self.buildings[b].grid].code
    }

    /// The grid of a room.
    pub fn grid_of_room(&self, r: usize) -> &str {
        self.grid_of_building(self.rooms[r].building)
    }

    /// Adds a building to a grid.
    pub fn add_building(
        &mut self,
        grid: usize,
        rooms_hint: usize,
        access: bool,
        since: Option<i32>,
    ) -> usize {
        let k = self.next_building[grid];
        self.next_building[grid] += 1;
        let g = &self.grids[grid];
        let road = ROADS.choose(&mut self.rng).copied().unwrap_or("中山");
        let kind = ROAD_KINDS.choose(&mut self.rng).copied().unwrap_or("路");
        let no = self.rng.random_range(1..900);
        let floors = if rooms_hint <= 8 {
            self.rng.random_range(2..=8)
        } else if rooms_hint <= 30 {
            self.rng.random_range(6..=18)
        } else {
            self.rng.random_range(18..=40)
        };
        let id = format!("B{}{:03}", g.code, k);
        let devices = (0..if rooms_hint > 30 { 3 } else { 1 })
            .map(|d| format!("D{}{:03}{}", g.code, k, d))
            .collect();
        let b = Building {
            id,
            grid,
            address: format!("广州市{}{}{road}{kind}{no}号", g.district.1, g.street.1),
            floors,
            access,
            since,
            lon: g.center.0 + self.rng.random_range(-0.004..0.004),
            lat: g.center.1 + self.rng.random_range(-0.004..0.004),
            rooms: Vec::new(),
            events_until: None,
            dedicated: false,
            devices,
        };
        self.buildings.push(b);
        self.buildings.len() - 1
    }

    /// Adds a room to a building.
    pub fn add_room(
        &mut self,
        building: usize,
        area: f64,
        usage: &'static str,
        tenure: &'static str,
    ) -> usize {
        let k = {
            let e = self.next_room.entry(building).or_insert(0);
            *e += 1;
            *e
        };
        let floors = self.buildings[building].floors.max(1);
        let floor = ((k as i64 - 1) % floors) + 1;
        let unit = format!(
            "{}-{}{:02}",
            1 + (k as i64 - 1) / (floors * 4),
            floor,
            (k - 1) % 4 + 1
        );
        let id = format!("R{}{:04}", &self.buildings[building].id[1..], k);
        self.rooms.push(Room {
            id,
            building,
            unit_no: unit,
            floor,
            area: (area * 10.0).round() / 10.0,
            usage,
            tenure,
            rental_on: None,
            owner: None,
            kwh: [None; 3],
            dedicated: false,
            power_set: false,
        });
        let r = self.rooms.len() - 1;
        self.buildings[building].rooms.push(r);
        r
    }

    /// Adds a household.
    pub fn add_household(
        &mut self,
        room: usize,
        kind: &'static str,
        registered_on: Option<i32>,
    ) -> usize {
        let grid = self.buildings[self.rooms[room].building].grid;
        let k = self.next_household[grid];
        self.next_household[grid] += 1;
        self.households.push(Household {
            id: format!("H{}{:04}", self.grids[grid].code, k),
            room,
            kind,
            head: None,
            registered_on,
        });
        self.households.len() - 1
    }

    /// A new `person_id` in a grid.
    pub fn person_id(&mut self, grid: usize) -> String {
        let k = self.next_person[grid];
        self.next_person[grid] += 1;
        format!("P{}{:04}", self.grids[grid].code, k)
    }

    /// A new `lease_id` in a grid.
    pub fn lease_id(&mut self, grid: usize) -> String {
        let k = self.next_lease[grid];
        self.next_lease[grid] += 1;
        format!("L{}{:04}", self.grids[grid].code, k)
    }

    /// An address code for someone born in Guangzhou (mostly) or elsewhere in Guangdong.
    pub fn local_area(&mut self) -> String {
        let a = reference::areas();
        if self.rng.random_bool(0.75) {
            a.guangzhou
                .choose(&mut self.rng)
                .cloned()
                .unwrap_or_else(|| "440106".into())
        } else {
            a.by_province
                .get("44")
                .and_then(|v| v.choose(&mut self.rng).cloned())
                .unwrap_or_else(|| "440106".into())
        }
    }

    /// An address code of a migrant's home county.
    pub fn migrant_area(&mut self) -> String {
        let origins = reference::MIGRANT_ORIGINS;
        let w = WeightedIndex::new(origins.iter().map(|o| o.1)).ok();
        let p = w
            .map(|w| origins[w.sample(&mut self.rng)].0)
            .unwrap_or("43");
        reference::areas()
            .by_province
            .get(p)
            .and_then(|v| v.choose(&mut self.rng).cloned())
            .unwrap_or_else(|| "430102".into())
    }

    /// A birth date for an age range (in years, inclusive-exclusive) at `as_of`.
    pub fn birth_for_age(&mut self, min: i32, max: i32) -> i32 {
        let days = self
            .rng
            .random_range((min * 365 + 1)..(max * 365 - 1).max(min * 365 + 2));
        self.today - days
    }

    /// A phone number.
    pub fn phone(&mut self) -> String {
        let p = ["13", "15", "17", "18", "19"]
            .choose(&mut self.rng)
            .copied()
            .unwrap_or("13");
        format!("{p}{:09}", self.rng.random_range(0..1_000_000_000u64))
    }

    /// Adds a person record with sensible defaults: active, valid resident identity number,
    /// verified recently, living in the room's building and going out if 6–79.
    #[allow(clippy::too_many_arguments)]
    pub fn add_person(
        &mut self,
        room: usize,
        household: Option<usize>,
        residence: &'static str,
        male: bool,
        birth: i32,
        registered_on: i32,
        local: bool,
    ) -> usize {
        let grid = self.buildings[self.rooms[room].building].grid;
        let area = if local {
            self.local_area()
        } else {
            self.migrant_area()
        };
        let (idn, birth) = self.ids.resident(&mut self.rng, &area, birth, male);
        let id = self.person_id(grid);
        let name = reference::names().draw(&mut self.rng, male);
        let age = time::age_on(birth, self.today);
        let n = if residence == "hukou" { 365 } else { 180 };
        let verified_from = registered_on.max(self.today - n + 5);
        let last_verified = Some(
            self.rng
                .random_range(verified_from.min(self.today)..=self.today),
        );
        let phone = (age >= 12).then(|| self.phone());
        let building = self.rooms[room].building;
        self.people.push(Person {
            id,
            idn,
            doc: "resident_id",
            name,
            male,
            birth,
            household,
            room,
            residence,
            registered_on,
            last_verified,
            status: "active",
            phone,
            tags: Vec::new(),
            lives_at: Some(building),
            goes_out: (6..80).contains(&age),
            care: Care::Regular,
            normal: true,
        });
        self.people.len() - 1
    }

    /// Adds a lease.
    pub fn add_lease(&mut self, room: usize, tenant: &str, start: i32, end: Option<i32>) -> usize {
        let grid = self.buildings[self.rooms[room].building].grid;
        let id = self.lease_id(grid);
        let filed = (self.rng.random_bool(0.9))
            .then(|| (start + self.rng.random_range(0..10)).min(self.today));
        self.leases.push(Lease {
            id,
            room,
            tenant: tenant.to_string(),
            start,
            end,
            filed,
        });
        self.leases.len() - 1
    }

    fn grid_buildings(&mut self, grid: usize) {
        let target_rooms = (HOUSEHOLDS_PER_GRID as f64 * 1.1) as usize;
        let mut rooms = 0;
        let since_first = time::ymd(2019, 1, 1).unwrap_or(0);
        while rooms < target_rooms {
            let r: f64 = self.rng.random();
            let (size, p_access) = if r < 0.75 {
                (self.rng.random_range(3..=8), 0.15)
            } else if r < 0.97 {
                (self.rng.random_range(10..=25), 0.45)
            } else {
                (self.rng.random_range(30..=80), 0.9)
            };
            let size = size.min(target_rooms - rooms).max(1);
            let access = self.rng.random_bool(p_access);
            let since = access.then(|| {
                if self.rng.random_bool(0.05) {
                    // A door system installed recently: R04 does not apply yet.
                    self.today - self.rng.random_range(10..59)
                } else {
                    self.rng.random_range(since_first..self.today - 90)
                }
            });
            let b = self.add_building(grid, size, access, since);
            for _ in 0..size {
                self.normal_room(b);
            }
            rooms += size;
        }
    }

    /// A room of the normal city, with its household and people.
    fn normal_room(&mut self, b: usize) {
        let u: f64 = self.rng.random();
        if u < 0.03 {
            let area = self.rng.random_range(20.0..300.0);
            let tenure = if self.rng.random_bool(0.7) {
                "rental"
            } else {
                "owner_occupied"
            };
            let r = self.add_room(b, area, "commercial", tenure);
            let level = self.rng.random_range(300.0..2500.0);
            self.rooms[r].kwh = self.kwh(level);
            return;
        }
        if u < 0.04 {
            let area = self.rng.random_range(10.0..80.0);
            let usage = if self.rng.random_bool(0.5) {
                "other"
            } else {
                "mixed"
            };
            let r = self.add_room(b, area, usage, "other");
            let level = self.rng.random_range(20.0..400.0);
            self.rooms[r].kwh = self.kwh(level);
            return;
        }
        if u < 0.11 {
            // Vacant, or a rental between tenants: nobody registered, little power.
            let area = self.rng.random_range(25.0..140.0);
            let tenure = if self.rng.random_bool(0.75) {
                "vacant"
            } else {
                "rental"
            };
            let r = self.add_room(b, area, "residential", tenure);
            if tenure == "rental" {
                self.rooms[r].rental_on = Some(self.today - self.rng.random_range(100..2000));
                self.old_leases(r, 1);
            }
            let low = self.rng.random_range(0.0..30.0);
            self.rooms[r].kwh = [
                Some((low * 1.2_f64).round()),
                Some(low.round()),
                if self.rng.random_bool(0.9) {
                    Some((low * 0.8).round())
                } else {
                    None
                },
            ];
            self.owner(r);
            return;
        }
        // An occupied home.
        let kind_u: f64 = self.rng.random();
        let kind = if kind_u < 0.55 {
            "hukou"
        } else if kind_u < 0.98 {
            "non_local"
        } else {
            "collective"
        };
        let size = self.household_size(kind);
        let area = (size as f64 * 5.0 + self.rng.random_range(10.0..70.0)).max(18.0);
        let tenure = match kind {
            "hukou" => {
                let t: f64 = self.rng.random();
                if t < 0.85 {
                    "owner_occupied"
                } else if t < 0.95 {
                    "rental"
                } else {
                    "public"
                }
            }
            "non_local" => {
                if self.rng.random_bool(0.95) {
                    "rental"
                } else {
                    "other"
                }
            }
            _ => "public",
        };
        let r = self.add_room(b, area, "residential", tenure);
        self.owner(r);
        let registered = self.today
            - self
                .rng
                .random_range(1..(if kind == "hukou" { 9000 } else { 1800 }));
        let h = self.add_household(r, kind, Some(registered));
        let members = self.family(r, h, kind, size, registered);
        if let Some(&head) = members.first() {
            self.households[h].head = Some(self.people[head].idn.clone());
        }
        // Tenure-specific paperwork: leases for rentals, filed with the rental office.
        if tenure == "rental" {
            let adults: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&p| time::age_on(self.people[p].birth, self.today) >= 18)
                .collect();
            let tenants = if adults.is_empty() {
                members.clone()
            } else {
                adults
            };
            let start = self.people[tenants[0]].registered_on - self.rng.random_range(0..20);
            let start = start.min(self.today - 5);
            let filed = start + self.rng.random_range(0..30);
            self.rooms[r].rental_on = Some(filed.min(self.today - 1));
            let n_leases = if tenants.len() > 1 && self.rng.random_bool(0.3) {
                2
            } else {
                1
            };
            for t in tenants.iter().take(n_leases) {
                let tenant = self.people[*t].idn.clone();
                let end = if self.rng.random_bool(0.2) {
                    None
                } else {
                    // The lease runs past as_of (renewed yearly).
                    let mut e = start + 364;
                    while e < self.today {
                        e += 365;
                    }
                    Some(e)
                };
                self.add_lease(r, &tenant, start, end);
            }
            let n = self.rng.random_range(0..3);
            self.old_leases(r, n);
        }
        // Power use grows with the people who live there.
        let live = members.len() as f64;
        let level = 60.0 + 55.0 * live + self.rng.random_range(0.0..80.0);
        self.rooms[r].kwh = self.kwh(level);
        // Earlier occupants of the room who moved out (人户分离 history), and family members who
        // died.
        let moved = if self.rng.random_bool(0.1) {
            self.rng.random_range(1..3)
        } else {
            0
        };
        for _ in 0..moved {
            let hh = if self.rng.random_bool(0.4) {
                Some(h)
            } else {
                None
            };
            self.moved_out_record(r, hh);
        }
        if kind == "hukou" && self.rng.random_bool(0.055) {
            self.deceased_record(r, h);
        }
    }

    fn kwh(&mut self, level: f64) -> [Option<f64>; 3] {
        let mut out = [None; 3];
        for o in out.iter_mut() {
            // A few readings are missing.
            if self.rng.random_bool(0.985) {
                *o = Some((level * self.rng.random_range(0.8..1.25)).round());
            }
        }
        out
    }

    fn owner(&mut self, r: usize) {
        if self.rooms[r].tenure == "public" || self.rng.random_bool(0.15) {
            return;
        }
        let area = self.local_area();
        let male = self.rng.random_bool(0.5);
        let birth = self.birth_for_age(30, 75);
        let (idn, _) = self.ids.resident(&mut self.rng, &area, birth, male);
        self.rooms[r].owner = Some(idn);
    }

    fn household_size(&mut self, kind: &str) -> usize {
        let w: &[u32] = match kind {
            "hukou" => &[6, 18, 30, 26, 14, 6],
            "non_local" => &[20, 28, 28, 17, 5, 2],
            _ => &[40, 30, 20, 10, 0, 0],
        };
        WeightedIndex::new(w)
            .map(|d| d.sample(&mut self.rng) + 1)
            .unwrap_or(1)
    }

    /// The members of a household (the head first).
    fn family(
        &mut self,
        r: usize,
        h: usize,
        kind: &'static str,
        size: usize,
        registered: i32,
    ) -> Vec<usize> {
        let residence = match kind {
            "hukou" => "hukou",
            "non_local" => "floating",
            _ => {
                if self.rng.random_bool(0.5) {
                    "hukou"
                } else {
                    "floating"
                }
            }
        };
        let local = residence == "hukou";
        let mut members = Vec::with_capacity(size);
        let head_male = self.rng.random_bool(0.6);
        let head_age = match (kind, size) {
            ("hukou", 1) => {
                if self.rng.random_bool(0.45) {
                    (65, 96)
                } else {
                    (22, 65)
                }
            }
            ("hukou", _) => (28, 75),
            ("non_local", _) => (19, 50),
            _ => (18, 35),
        };
        let head_birth = self.birth_for_age(head_age.0, head_age.1);
        let reg = |c: &mut Self, birth: i32| -> i32 {
            // A child born after the household registered was registered at birth.
            registered.max(birth).min(c.today)
        };
        let rd = reg(self, head_birth);
        let head = self.add_person(r, Some(h), residence, head_male, head_birth, rd, local);
        members.push(head);
        let head_age_now = time::age_on(head_birth, self.today);
        for i in 1..size {
            let (male, birth) = if i == 1 && kind != "collective" && head_age_now >= 22 {
                // Spouse, of similar age.
                let b =
                    (head_birth + self.rng.random_range(-1500..1500)).min(self.today - 20 * 365);
                (!head_male, b)
            } else if kind == "collective" {
                (self.rng.random_bool(0.5), self.birth_for_age(18, 35))
            } else if i >= 4 && kind == "hukou" {
                // An elderly parent.
                (
                    self.rng.random_bool(0.4),
                    self.birth_for_age(
                        (head_age_now + 22).min(95),
                        (head_age_now + 35).min(100).max(head_age_now + 23),
                    ),
                )
            } else {
                // A child.
                let max_age = (head_age_now - 18).clamp(1, 30);
                (self.rng.random_bool(0.52), self.birth_for_age(0, max_age))
            };
            let rd = reg(self, birth);
            let p = self.add_person(r, Some(h), residence, male, birth, rd, local);
            if kind == "non_local" && self.rng.random_bool(0.01) {
                self.make_overseas(p);
            }
            members.push(p);
        }
        if size == 1 {
            let age = time::age_on(self.people[head].birth, self.today);
            if age >= 65 && self.rng.random_bool(0.85) {
                self.people[head].tags.push("elderly_alone");
            }
        }
        for &p in &members {
            let age = time::age_on(self.people[p].birth, self.today);
            if age >= 80 {
                if self.rng.random_bool(0.3) {
                    self.people[p].tags.push("housebound");
                    self.people[p].goes_out = false;
                } else {
                    // Many of the very old never pass the door; they are exempt from R04.
                    self.people[p].goes_out = self.rng.random_bool(0.4);
                }
            }
            if self.rng.random_bool(0.015) {
                self.people[p].tags.push("disabled");
            }
            if age < 14 && size >= 2 && self.rng.random_bool(0.01) {
                self.people[p].tags.push("minor_unattended");
            }
        }
        members
    }

    fn make_overseas(&mut self, p: usize) {
        let (doc, prefix) = if self.rng.random_bool(0.6) {
            ("passport", 'E')
        } else {
            ("hk_macao_taiwan", 'H')
        };
        self.people[p].doc = doc;
        self.people[p].residence = "overseas";
        self.people[p].idn = self.ids.foreign(prefix);
    }

    /// A record of someone who lived in the room and moved out (now elsewhere, outside the
    /// city's registry or registered in another room of this chunk).
    fn moved_out_record(&mut self, r: usize, h: Option<usize>) {
        let grid = self.buildings[self.rooms[r].building].grid;
        let male = self.rng.random_bool(0.5);
        let birth = self.birth_for_age(18, 70);
        // Reuse the identity of someone now registered elsewhere (moved within the city), or a
        // new one.
        let existing: Option<usize> = if self.rng.random_bool(0.3) && !self.people.is_empty() {
            let i = self.rng.random_range(0..self.people.len());
            let q = &self.people[i];
            (q.normal && q.status == "active" && q.room != r && q.doc == "resident_id").then_some(i)
        } else {
            None
        };
        let (idn, birth, male, name) = match existing {
            Some(i) => {
                let q = &self.people[i];
                (q.idn.clone(), q.birth, q.male, q.name.clone())
            }
            None => {
                let area = self.migrant_area();
                let (idn, b) = self.ids.resident(&mut self.rng, &area, birth, male);
                (idn, b, male, reference::names().draw(&mut self.rng, male))
            }
        };
        let id = self.person_id(grid);
        let registered_on = (self.today - self.rng.random_range(400..4000)).max(birth);
        let last_verified =
            Some(registered_on + self.rng.random_range(0..300)).map(|d: i32| d.min(self.today));
        self.people.push(Person {
            id,
            idn,
            doc: "resident_id",
            name,
            male,
            birth,
            household: h,
            room: r,
            residence: if self.rng.random_bool(0.5) {
                "floating"
            } else {
                "hukou"
            },
            registered_on,
            last_verified,
            status: "moved_out",
            phone: None,
            tags: Vec::new(),
            lives_at: None,
            goes_out: false,
            care: Care::Regular,
            normal: true,
        });
    }

    /// A family member who died: deregistered, with a death record.
    fn deceased_record(&mut self, r: usize, h: usize) {
        let grid = self.buildings[self.rooms[r].building].grid;
        let male = self.rng.random_bool(0.5);
        let birth = self.birth_for_age(70, 100);
        let area = self.local_area();
        let (idn, birth) = self.ids.resident(&mut self.rng, &area, birth, male);
        let died_on = self.today - self.rng.random_range(10..1500);
        let id = self.person_id(grid);
        let name = reference::names().draw(&mut self.rng, male);
        self.people.push(Person {
            id,
            idn: idn.clone(),
            doc: "resident_id",
            name,
            male,
            birth,
            household: Some(h),
            room: r,
            residence: "hukou",
            registered_on: (birth + 365 * 20).min(died_on),
            last_verified: Some(died_on - self.rng.random_range(30..300)),
            status: "deceased",
            phone: None,
            tags: Vec::new(),
            lives_at: None,
            goes_out: false,
            care: Care::Regular,
            normal: true,
        });
        let source = ["civil_affairs", "hospital", "funeral"]
            .choose(&mut self.rng)
            .copied()
            .unwrap_or("civil_affairs");
        self.deaths.push(Death {
            idn,
            died_on,
            source,
        });
    }

    /// Leases of earlier tenants, all ended before `as_of`.
    fn old_leases(&mut self, r: usize, n: usize) {
        let mut end = self.today - self.rng.random_range(1..200);
        for _ in 0..n {
            let start = end - self.rng.random_range(180..730);
            let area = self.migrant_area();
            let male = self.rng.random_bool(0.5);
            let birth = self.birth_for_age(20, 50);
            let (idn, _) = self.ids.resident(&mut self.rng, &area, birth, male);
            self.add_lease(r, &idn, start, Some(end));
            end = start - self.rng.random_range(1..60);
        }
    }

    fn workers(&mut self) {
        let n = self.grids.len();
        for g in 0..n {
            // About 2 % of grids have no active worker (vacancy): the partner covers as B role.
            let vacant = self.rng.random_bool(0.02);
            let male = self.rng.random_bool(0.45);
            let name = reference::names().draw(&mut self.rng, male);
            self.workers.push(Worker {
                id: format!("W{}1", self.grids[g].code),
                name,
                grid: g,
                partner: Some((g + 1) % n).filter(|&p| p != g),
                employment: if self.rng.random_bool(0.8) {
                    "full_time"
                } else {
                    "part_time"
                },
                active: !vacant,
                hired_on: Some(self.today - self.rng.random_range(30..3000)),
            });
            if self.rng.random_bool(0.04) {
                let male = self.rng.random_bool(0.5);
                let name = reference::names().draw(&mut self.rng, male);
                self.workers.push(Worker {
                    id: format!("W{}0", self.grids[g].code),
                    name,
                    grid: g,
                    partner: None,
                    employment: "full_time",
                    active: false,
                    hired_on: Some(self.today - self.rng.random_range(2000..5000)),
                });
            }
        }
    }

    /// Deaths of people not in the registry (they died elsewhere, or long ago).
    fn outside_deaths(&mut self) {
        let n = self.grids.len() * 2;
        for _ in 0..n {
            let area = self.local_area();
            let male = self.rng.random_bool(0.5);
            let birth = self.birth_for_age(60, 100);
            let (idn, _) = self.ids.resident(&mut self.rng, &area, birth, male);
            let died_on = self.today - self.rng.random_range(1..2000);
            self.deaths.push(Death {
                idn,
                died_on,
                source: "civil_affairs",
            });
        }
    }

    /// The worker who visits a grid's people: its own active worker, the B-role partner, or
    /// failing both an active worker of another grid of the chunk (the street sends someone).
    pub fn visitor_for(&self, grid: usize) -> usize {
        self.worker_for(grid)
            .or_else(|| self.workers.iter().position(|w| w.active))
            .unwrap_or(0)
    }

    /// The active worker of a grid, else the active worker covering it as B role.
    pub fn worker_for(&self, grid: usize) -> Option<usize> {
        self.workers
            .iter()
            .position(|w| w.active && w.grid == grid)
            .or_else(|| {
                self.workers
                    .iter()
                    .position(|w| w.active && w.partner == Some(grid))
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing events, visits, readings and incidents, and writing a chunk.

/// The tables of one chunk, as record batches.
pub struct ChunkTables {
    /// Batches per table.
    pub tables: BTreeMap<TableId, arrow::array::RecordBatch>,
    /// Planted anomalies.
    pub truth: Vec<Truth>,
    /// Planted near-misses.
    pub near: Vec<Truth>,
}

fn night_time(rng: &mut impl Rng) -> i64 {
    // Coming home: mostly 17:00–23:59, sometimes after midnight.
    if rng.random_bool(0.85) {
        17 * HOUR + rng.random_range(0..7 * HOUR)
    } else {
        DAY + rng.random_range(0..2 * HOUR)
    }
}

impl Chunk<'_> {
    /// Door events of the normal city: residents coming and going, a few visitors, strangers.
    fn normal_events(&mut self, buf: &mut TableBuf) {
        let first_day = self.today - EVENT_DAYS;
        let mut by_building: Vec<Vec<usize>> = vec![Vec::new(); self.buildings.len()];
        for (i, p) in self.people.iter().enumerate() {
            if let Some(b) = p.lives_at
                && p.goes_out
                && self.buildings[b].access
            {
                by_building[b].push(i);
            }
        }
        // Visitors: people of other buildings, at most 4 nights in any one building.
        let normals: Vec<usize> = self
            .people
            .iter()
            .enumerate()
            .filter(|(_, p)| p.normal && p.status == "active" && p.goes_out)
            .map(|(i, _)| i)
            .collect();
        let mut rows: Vec<(i64, usize, Option<usize>, bool)> = Vec::new();
        for b in 0..self.buildings.len() {
            let bd = &self.buildings[b];
            if !bd.access || bd.dedicated {
                continue;
            }
            let since = bd.since.unwrap_or(first_day).max(first_day);
            let until = bd.events_until.unwrap_or(self.as_of);
            let start = time::midnight(since);
            rows.clear();
            for &p in &by_building[b] {
                let mut any = false;
                for d in since..self.today {
                    let m = time::midnight(d);
                    if self.rng.random_bool(0.40) {
                        rows.push((m + night_time(&mut self.rng), b, Some(p), true));
                        any = true;
                    }
                    if self.rng.random_bool(0.11) {
                        rows.push((
                            m + 6 * HOUR + 30 * MINUTE + self.rng.random_range(0..150 * MINUTE),
                            b,
                            Some(p),
                            false,
                        ));
                        any = true;
                    }
                }
                if !any {
                    // Everyone who goes out is seen at least once.
                    let d = self
                        .rng
                        .random_range(since.max(self.today - 30)..self.today);
                    rows.push((
                        time::midnight(d) + night_time(&mut self.rng),
                        b,
                        Some(p),
                        true,
                    ));
                }
            }
            // Visitors and strangers; the system is alive within the last week.
            let n_visits = 1 + by_building[b].len() / 8;
            for _ in 0..n_visits {
                if normals.is_empty() {
                    break;
                }
                let v = normals[self.rng.random_range(0..normals.len())];
                if self.people[v].lives_at == Some(b) {
                    continue;
                }
                let nights = self.rng.random_range(1..=4);
                let mut days: Vec<i32> = (since..self.today).collect();
                days.shuffle(&mut self.rng);
                for &d in days.iter().take(nights) {
                    let t = if self.rng.random_bool(0.5) {
                        time::midnight(d) + night_time(&mut self.rng)
                    } else {
                        time::midnight(d) + 10 * HOUR + self.rng.random_range(0..7 * HOUR)
                    };
                    rows.push((t, b, Some(v), true));
                }
            }
            let strangers = 2 + by_building[b].len() / 10;
            for k in 0..strangers {
                let d = if k == 0 {
                    self.today - self.rng.random_range(1..=3)
                } else {
                    self.rng.random_range(since..self.today)
                };
                let t = time::midnight(d) + self.rng.random_range(7 * HOUR..23 * HOUR);
                rows.push((t, b, None, self.rng.random_bool(0.6)));
            }
            rows.retain(|r| r.0 >= start && r.0 < until);
            rows.sort_unstable_by_key(|r| r.0);
            for &(ts, b, p, entering) in rows.iter() {
                let dev =
                    &self.buildings[b].devices[(ts as usize / 7) % self.buildings[b].devices.len()];
                let idn = p.map(|p| self.people[p].idn.as_str());
                buf.push(&[
                    V::T(ts),
                    V::S(&self.buildings[b].id),
                    idn.into(),
                    V::S(if entering { "in" } else { "out" }),
                    V::S(dev),
                ]);
            }
        }
        for e in &self.events {
            let bd = &self.buildings[e.building];
            let dev = &bd.devices[0];
            buf.push(&[
                V::T(e.ts),
                V::S(&bd.id),
                e.idn.as_deref().into(),
                V::S(if e.entering { "in" } else { "out" }),
                V::S(dev),
            ]);
        }
    }

    /// Visits of the normal city, plus those of scenarios.
    fn normal_visits(&mut self, buf: &mut TableBuf) {
        let first_day = self.today - EVENT_DAYS;
        let mut visits: Vec<Visit> = Vec::new();
        // Patrols and household visits, by each grid's worker (or the B-role partner).
        let mut rooms_by_grid: Vec<Vec<usize>> = vec![Vec::new(); self.grids.len()];
        for (r, room) in self.rooms.iter().enumerate() {
            let b = &self.buildings[room.building];
            if !room.dedicated && !b.dedicated {
                rooms_by_grid[b.grid].push(r);
            }
        }
        for g in 0..self.grids.len() {
            let Some(w) = self.worker_for(g) else {
                continue;
            };
            for d in first_day..self.today {
                if !self.cal.is_workday(d) {
                    continue;
                }
                let at = time::midnight(d) + 9 * HOUR + self.rng.random_range(0..8 * HOUR);
                visits.push(Visit {
                    worker: w,
                    at,
                    kind: "patrol",
                    room: None,
                    idn: None,
                });
                for _ in 0..self.rng.random_range(3..=9) {
                    if let Some(&r) = rooms_by_grid[g].choose(&mut self.rng) {
                        let at = time::midnight(d) + 9 * HOUR + self.rng.random_range(0..8 * HOUR);
                        visits.push(Visit {
                            worker: w,
                            at,
                            kind: "household_visit",
                            room: Some(r),
                            idn: None,
                        });
                    }
                }
            }
        }
        // Verifications and care visits of people.
        for i in 0..self.people.len() {
            let p = &self.people[i];
            if !p.normal || p.status != "active" {
                continue;
            }
            let grid = self.buildings[self.rooms[p.room].building].grid;
            let w = self.visitor_for(grid);
            if let Some(v) = p.last_verified
                && v >= first_day
                && v < self.today
            {
                let at = time::midnight(v) + 9 * HOUR + self.rng.random_range(0..8 * HOUR);
                visits.push(Visit {
                    worker: w,
                    at,
                    kind: "verification",
                    room: Some(p.room),
                    idn: Some(p.idn.clone()),
                });
            }
            if p.tags.contains(&"elderly_alone") && p.care == Care::Regular {
                // Every 3–6 days, the last within the last 6 days.
                let mut d = self.today - self.rng.random_range(1..=6);
                let room = p.room;
                let idn = p.idn.clone();
                while d >= first_day {
                    let at = time::midnight(d) + 9 * HOUR + self.rng.random_range(0..8 * HOUR);
                    let kind = if self.rng.random_bool(0.8) {
                        "care_visit"
                    } else {
                        "household_visit"
                    };
                    visits.push(Visit {
                        worker: w,
                        at,
                        kind,
                        room: Some(room),
                        idn: Some(idn.clone()),
                    });
                    d -= self.rng.random_range(3..=6);
                }
            }
        }
        visits.extend(self.visits.iter().cloned());
        visits.sort_by_key(|v| v.at);
        let mut counter: HashMap<usize, u32> = HashMap::new();
        for v in &visits {
            let grid = self.workers[v.worker].grid;
            let k = counter.entry(grid).or_insert(0);
            *k += 1;
            let id = format!("V{}{:05}", self.grids[grid].code, k);
            buf.push(&[
                V::S(&id),
                V::S(&self.workers[v.worker].id),
                V::T(v.at),
                V::S(v.kind),
                v.room.map_or(V::N, |r| V::S(&self.rooms[r].id)),
                v.idn.as_deref().into(),
            ]);
        }
    }

    fn incidents(&mut self, buf: &mut TableBuf) {
        let cats = categories();
        let w = WeightedIndex::new(cats.iter().map(|c| c.3)).ok();
        for g in 0..self.grids.len() {
            let n = self.rng.random_range(90..150);
            let reporter = self.worker_for(g);
            for k in 0..n {
                let Some(w) = &w else { break };
                let cat = cats[w.sample(&mut self.rng)];
                let id = format!("E{}{:05}", self.grids[g].code, k);
                let day = self.today - self.rng.random_range(1..=INCIDENT_DAYS);
                // Reports cluster in the day; some come at night through the hotline.
                let hour = if self.rng.random_bool(0.85) {
                    self.rng.random_range(8 * HOUR..20 * HOUR)
                } else {
                    self.rng.random_range(0..24 * HOUR)
                };
                let reported = time::midnight(day) + hour + self.rng.random_range(0..60) * SECOND;
                let urgent = cat.0.starts_with("06") || self.rng.random_bool(0.03);
                let src_u: f64 = self.rng.random();
                let source = if src_u < 0.45 {
                    "patrol"
                } else if src_u < 0.70 {
                    "hotline"
                } else if src_u < 0.85 {
                    "resident_app"
                } else if src_u < 0.95 {
                    "camera"
                } else {
                    "other"
                };
                let reporter_id = if source == "patrol" {
                    reporter.map(|r| self.workers[r].id.clone())
                } else {
                    None
                };
                let add = |c: &mut Self, t: i64, median_h: f64, sigma: f64, working: bool| -> i64 {
                    let h = lognormal(&mut c.rng, median_h, sigma).min(24.0 * 90.0);
                    let d = (h * HOUR as f64) as i64 + SECOND;
                    if working && !urgent {
                        c.cal.add_working_time(t, d).unwrap_or(t + d)
                    } else {
                        t + d
                    }
                };
                let mut st: [Option<i64>; 6] = [Some(reported), None, None, None, None, None];
                let fate: f64 = self.rng.random();
                let rejected = fate < 0.03;
                let parked = (0.03..0.05).contains(&fate);
                let mut reopened = 0i64;
                if !rejected {
                    let acc = add(self, reported, if urgent { 0.3 } else { 1.5 }, 0.9, true);
                    let dis = add(self, acc, if urgent { 0.25 } else { 0.8 }, 0.9, true);
                    st[1] = Some(acc);
                    st[2] = Some(dis);
                    if !parked {
                        let mut han =
                            add(self, dis, if urgent { 2.0 } else { cat.4 * 7.0 }, 1.0, true);
                        if self.rng.random_bool(0.07) {
                            reopened = if self.rng.random_bool(0.85) { 1 } else { 2 };
                            for _ in 0..reopened {
                                han = add(self, han, cat.4 * 7.0, 0.8, true);
                            }
                        }
                        let ver = add(self, han, if urgent { 1.0 } else { 3.0 }, 0.8, true);
                        let clo = add(self, ver, if urgent { 0.5 } else { 1.0 }, 0.8, true);
                        st[3] = Some(han);
                        st[4] = Some(ver);
                        st[5] = Some(clo);
                    }
                }
                // Stages after as_of have not happened yet.
                for s in st.iter_mut() {
                    if s.is_some_and(|t| t > self.as_of) {
                        *s = None;
                    }
                }
                for i in 1..6 {
                    if st[i - 1].is_none() {
                        st[i] = None;
                    }
                }
                let last = st.iter().rposition(|s| s.is_some()).unwrap_or(0);
                let status = if rejected {
                    "rejected"
                } else if parked && st[2].is_some() {
                    "parked"
                } else {
                    [
                        "reported",
                        "accepted",
                        "dispatched",
                        "handled",
                        "verified",
                        "closed",
                    ][last]
                };
                if status != "closed" && reopened > 0 && st[3].is_none() {
                    reopened = 0;
                }
                let satisfaction = (status == "closed" && self.rng.random_bool(0.65)).then(|| {
                    let s: f64 = self.rng.random();
                    if s < 0.6 {
                        5
                    } else if s < 0.85 {
                        4
                    } else if s < 0.95 {
                        3
                    } else if s < 0.98 {
                        2
                    } else {
                        1
                    }
                });
                let ts = |t: Option<i64>| t.map_or(V::N, V::T);
                buf.push(&[
                    V::S(&id),
                    V::S(&self.grids[g].code),
                    V::S(cat.0),
                    V::S(cat.1),
                    V::S(if urgent { "urgent" } else { "normal" }),
                    V::S(source),
                    reporter_id.as_deref().into(),
                    if rejected { V::N } else { V::S(cat.2) },
                    V::T(reported),
                    ts(st[1]),
                    ts(st[2]),
                    ts(st[3]),
                    ts(st[4]),
                    ts(st[5]),
                    V::S(status),
                    V::I(reopened),
                    satisfaction.map_or(V::N, V::I),
                ]);
            }
        }
    }

    fn readings(&mut self, buf: &mut TableBuf) {
        let m = time::month_of(self.today);
        let months: Vec<String> = (1..=3).rev().map(|k| time::format_month(m - k)).collect();
        for r in 0..self.rooms.len() {
            for (k, month) in months.iter().enumerate() {
                let Some(kwh) = self.rooms[r].kwh[k] else {
                    continue;
                };
                let water = (kwh / 40.0 * self.rng.random_range(0.6..1.4) * 10.0).round() / 10.0;
                buf.push(&[V::S(&self.rooms[r].id), V::S(month), V::F(kwh), V::F(water)]);
            }
        }
    }

    /// Draws the chunk's event tables and writes every table into record batches.
    fn into_tables(mut self) -> Result<ChunkTables> {
        let mut out = BTreeMap::new();
        let mut b = TableBuf::new(&contract::GRIDS);
        for g in self.grids {
            b.push(&[
                V::S(&g.code),
                V::S(&g.name),
                V::S(&g.community.code),
                V::S(&g.community.short),
                V::S(&g.street.0),
                V::S(&g.street.1),
                V::S(&g.district.0),
                V::S(&g.district.1),
            ]);
        }
        out.insert(TableId::Grids, b.finish()?);
        let mut b = TableBuf::new(&contract::WORKERS);
        for w in &self.workers {
            b.push(&[
                V::S(&w.id),
                V::S(&w.name),
                V::S(&self.grids[w.grid].code),
                w.partner.map_or(V::N, |p| V::S(&self.grids[p].code)),
                V::S(w.employment),
                V::B(w.active),
                w.hired_on.map_or(V::N, V::D),
            ]);
        }
        out.insert(TableId::Workers, b.finish()?);
        let mut b = TableBuf::new(&contract::BUILDINGS);
        for bd in &self.buildings {
            b.push(&[
                V::S(&bd.id),
                V::S(&self.grids[bd.grid].code),
                V::S(&bd.address),
                V::I(bd.floors),
                V::B(bd.access),
                bd.since.map_or(V::N, V::D),
                V::F((bd.lon * 1e6).round() / 1e6),
                V::F((bd.lat * 1e6).round() / 1e6),
            ]);
        }
        out.insert(TableId::Buildings, b.finish()?);
        let mut b = TableBuf::new(&contract::ROOMS);
        for r in &self.rooms {
            b.push(&[
                V::S(&r.id),
                V::S(&self.buildings[r.building].id),
                V::S(&r.unit_no),
                V::I(r.floor),
                V::F(r.area),
                V::S(r.usage),
                V::S(r.tenure),
                r.rental_on.map_or(V::N, V::D),
                r.owner.as_deref().into(),
            ]);
        }
        out.insert(TableId::Rooms, b.finish()?);
        let mut b = TableBuf::new(&contract::HOUSEHOLDS);
        for h in &self.households {
            b.push(&[
                V::S(&h.id),
                V::S(&self.rooms[h.room].id),
                V::S(h.kind),
                h.head.as_deref().into(),
                h.registered_on.map_or(V::N, V::D),
            ]);
        }
        out.insert(TableId::Households, b.finish()?);
        let mut b = TableBuf::new(&contract::PEOPLE);
        for p in &self.people {
            let tags = (!p.tags.is_empty()).then(|| p.tags.join(";"));
            b.push(&[
                V::S(&p.id),
                V::S(&p.idn),
                V::S(p.doc),
                V::S(&p.name),
                V::S(if p.male { "M" } else { "F" }),
                V::D(p.birth),
                p.household.map_or(V::N, |h| V::S(&self.households[h].id)),
                V::S(&self.rooms[p.room].id),
                V::S(p.residence),
                V::D(p.registered_on),
                p.last_verified.map_or(V::N, V::D),
                V::S(p.status),
                p.phone.as_deref().into(),
                tags.as_deref().into(),
            ]);
        }
        out.insert(TableId::People, b.finish()?);
        let mut b = TableBuf::new(&contract::LEASES);
        for l in &self.leases {
            b.push(&[
                V::S(&l.id),
                V::S(&self.rooms[l.room].id),
                V::S(&l.tenant),
                V::D(l.start),
                l.end.map_or(V::N, V::D),
                l.filed.map_or(V::N, V::D),
            ]);
        }
        out.insert(TableId::Leases, b.finish()?);
        let mut b = TableBuf::new(&contract::DEATHS);
        for d in &self.deaths {
            b.push(&[V::S(&d.idn), V::D(d.died_on), V::S(d.source)]);
        }
        out.insert(TableId::Deaths, b.finish()?);
        let mut b = TableBuf::new(&contract::ACCESS_EVENTS);
        self.normal_events(&mut b);
        out.insert(TableId::AccessEvents, b.finish()?);
        let mut b = TableBuf::new(&contract::VISITS);
        self.normal_visits(&mut b);
        out.insert(TableId::Visits, b.finish()?);
        let mut b = TableBuf::new(&contract::UTILITY_READINGS);
        self.readings(&mut b);
        out.insert(TableId::UtilityReadings, b.finish()?);
        let mut b = TableBuf::new(&contract::INCIDENTS);
        self.incidents(&mut b);
        out.insert(TableId::Incidents, b.finish()?);
        Ok(ChunkTables {
            tables: out,
            truth: self.truth,
            near: self.near,
        })
    }
}

/// Where bad rows appended after `rows` data rows of a file land, and why they are rejected.
fn expected_rows(
    table: TableId,
    file: &str,
    rows: usize,
    format: OutputFormat,
    bad: &[bad_rows::BadRow],
) -> Vec<bad_rows::Expected> {
    // CSV rows are counted in lines, after the header line; Parquet rows from 1.
    let first = rows as u64 + if format == OutputFormat::Csv { 2 } else { 1 };
    bad.iter()
        .enumerate()
        .map(|(k, b)| bad_rows::Expected {
            table: table.name(),
            file: file.to_string(),
            row: first + k as u64,
            column: b.column,
            reason: b.reason,
        })
        .collect()
}

/// An incident category: code, name, department, weight, median handling days.
pub type Category = (&'static str, &'static str, &'static str, u32, f64);

/// The incident categories of the synthetic city (city-configurable in real deployments).
pub fn categories() -> &'static [Category] {
    &[
        ("0101", "暴露垃圾", "城市管理和综合执法局", 14, 0.6),
        ("0102", "积存垃圾渣土", "城市管理和综合执法局", 6, 1.0),
        ("0103", "道路不洁", "环卫所", 6, 0.5),
        ("0104", "乱堆物料", "城市管理和综合执法局", 5, 1.2),
        ("0201", "违规户外广告", "城市管理和综合执法局", 3, 2.0),
        ("0202", "非法小广告", "城市管理和综合执法局", 6, 0.8),
        ("0301", "施工扰民", "住房和城乡建设局", 3, 2.5),
        ("0302", "违规占道施工", "住房和城乡建设局", 2, 3.0),
        ("0401", "占道经营", "城市管理和综合执法局", 9, 0.7),
        ("0402", "无照经营游商", "市场监督管理局", 4, 1.5),
        ("0403", "乱停放车辆", "交警大队", 7, 0.5),
        ("0501", "井盖破损", "市政设施管理", 3, 2.0),
        ("0502", "路灯故障", "市政设施管理", 3, 2.0),
        ("0503", "道路破损", "市政设施管理", 2, 4.0),
        ("0504", "供水管道漏水", "自来水公司", 2, 1.0),
        ("0601", "火灾隐患", "消防救援站", 2, 1.0),
        ("0602", "燃气泄漏", "燃气公司", 1, 0.3),
        ("0603", "内涝积水", "水务局", 1, 1.0),
        ("0701", "邻里纠纷", "司法所", 4, 2.0),
        ("0702", "劳资纠纷", "人力资源和社会保障局", 2, 6.0),
        ("0703", "物业纠纷", "住房和城乡建设局", 3, 5.0),
        ("0801", "出租屋安全隐患", "来穗人员服务管理中心", 3, 2.0),
        ("0802", "群租", "来穗人员服务管理中心", 2, 3.0),
        ("0803", "消防通道堵塞", "消防救援站", 2, 1.0),
        ("0901", "噪音扰民", "生态环境局", 4, 1.5),
        ("0902", "油烟污染", "生态环境局", 2, 2.5),
    ]
}

fn generate_chunk<'a>(
    index: usize,
    grids: &'a [GridInfo],
    opts: &GenerateOptions,
    cal: &'a Calendar,
) -> Result<ChunkTables> {
    let mut c = Chunk::new(index, grids, opts.seed, opts.as_of, cal);
    c.workers();
    for g in 0..grids.len() {
        c.grid_buildings(g);
    }
    c.outside_deaths();
    scenarios::plant(&mut c);
    c.into_tables()
}

/// Writes a city.
pub fn generate(opts: &GenerateOptions) -> Result<Summary> {
    let started = Instant::now();
    if !(opts.scale > 0.0 && opts.scale <= 16.0) {
        return Err(GenError::Param {
            name: "scale",
            message: format!(
                "{} is out of range (expected a number in (0, 16], 1.0 ≈ Guangzhou)",
                opts.scale
            ),
        });
    }
    let out = &opts.out;
    if out.exists() {
        let data = std::fs::read_dir(out)
            .map_err(|e| GenError::io(out, e))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name() != ".");
        if data {
            // Replace an earlier city: remove only what a city consists of.
            for t in TableId::ALL {
                for ext in ["csv", "parquet"] {
                    let f = out.join(format!("{}.{ext}", t.name()));
                    if f.exists() {
                        std::fs::remove_file(&f).map_err(|e| GenError::io(&f, e))?;
                    }
                }
                let d = out.join(t.name());
                if d.is_dir() {
                    std::fs::remove_dir_all(&d).map_err(|e| GenError::io(&d, e))?;
                }
            }
            let t = out.join("truth");
            if t.is_dir() {
                std::fs::remove_dir_all(&t).map_err(|e| GenError::io(&t, e))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| GenError::io(out, e))?;
    let cal = Calendar::china();
    let grids = plan_grids(opts.scale, opts.seed);
    let n_chunks = chunk_count(grids.len());
    let per = grids.len().div_ceil(n_chunks);
    let chunks: Vec<&[GridInfo]> = grids.chunks(per).collect();
    let multi = chunks.len() > 1;
    // Small tables go to one file each; the big ones to one part file per chunk.
    let single_file = |t: TableId| {
        !multi
            || matches!(
                t,
                TableId::Grids | TableId::Workers | TableId::Buildings | TableId::Deaths
            )
    };
    let counts: std::sync::Mutex<BTreeMap<TableId, u64>> = std::sync::Mutex::new(BTreeMap::new());
    type ChunkResult = (
        BTreeMap<TableId, arrow::array::RecordBatch>,
        Vec<Truth>,
        Vec<Truth>,
        Vec<bad_rows::Expected>,
        BTreeMap<TableId, Vec<bad_rows::BadRow>>,
    );
    let results: Vec<Result<ChunkResult>> = chunks
        .par_iter()
        .enumerate()
        .map(|(i, grids)| {
            let t = generate_chunk(i, grids, opts, &cal)?;
            // Bad rows are made from the first chunk's rows; tables written as part files get
            // them in a part file of their own.
            let bad = if opts.bad_rows && i == 0 {
                bad_rows::build(&t.tables, opts.format)
            } else {
                BTreeMap::new()
            };
            let mut expected = Vec::new();
            let mut bad_single = BTreeMap::new();
            for (table, rows) in bad {
                if single_file(table) {
                    bad_single.insert(table, rows);
                    continue;
                }
                let path = table_path(out, table.name(), opts.format, Some(99_999));
                match opts.format {
                    OutputFormat::Csv => bad_rows::new_csv(&path, table, &rows)?,
                    OutputFormat::Parquet => {
                        let mut w =
                            FileWriter::create(&path, file_schema(table.def()), opts.format)?;
                        w.write(&bad_rows::to_batch(table, &rows)?)?;
                        w.close()?;
                    }
                }
                let name = format!("{}/part-99999.{}", table.name(), opts.format.ext());
                expected.extend(expected_rows(table, &name, 0, opts.format, &rows));
            }
            let mut keep = BTreeMap::new();
            let mut rows = 0u64;
            for (table, batch) in t.tables {
                rows += batch.num_rows() as u64;
                if let Ok(mut c) = counts.lock() {
                    *c.entry(table).or_insert(0) += batch.num_rows() as u64;
                }
                if single_file(table) {
                    keep.insert(table, batch);
                } else {
                    let path = table_path(out, table.name(), opts.format, Some(i));
                    let mut w = FileWriter::create(&path, file_schema(table.def()), opts.format)?;
                    w.write(&batch)?;
                    w.close()?;
                }
            }
            if let Some(p) = &opts.progress {
                p(rows);
            }
            Ok((keep, t.truth, t.near, expected, bad_single))
        })
        .collect();
    let mut writers: BTreeMap<TableId, FileWriter> = BTreeMap::new();
    let mut truth = Vec::new();
    let mut near = Vec::new();
    let mut expected = Vec::new();
    let mut bad_single: BTreeMap<TableId, Vec<bad_rows::BadRow>> = BTreeMap::new();
    for r in results {
        let (keep, t, n, e, b) = r?;
        truth.extend(t);
        near.extend(n);
        expected.extend(e);
        bad_single.extend(b);
        for (table, batch) in keep {
            let w = match writers.get_mut(&table) {
                Some(w) => w,
                None => {
                    let path = table_path(out, table.name(), opts.format, None);
                    let w = FileWriter::create(&path, file_schema(table.def()), opts.format)?;
                    writers.entry(table).or_insert(w)
                }
            };
            w.write(&batch)?;
        }
    }
    for (table, mut w) in writers {
        let rows = w.rows();
        let name = table_path(Path::new(""), table.name(), opts.format, None)
            .display()
            .to_string();
        let bad = bad_single.remove(&table).unwrap_or_default();
        if !bad.is_empty() && opts.format == OutputFormat::Parquet {
            w.write(&bad_rows::to_batch(table, &bad)?)?;
        }
        w.close()?;
        if !bad.is_empty() && opts.format == OutputFormat::Csv {
            bad_rows::append_csv(&table_path(out, table.name(), opts.format, None), &bad)?;
        }
        expected.extend(expected_rows(table, &name, rows, opts.format, &bad));
    }
    let bad = expected.len() as u64;
    if opts.bad_rows {
        bad_rows::write_expected(out, &expected)?;
    }
    truth.sort();
    near.sort();
    scenarios::write_truth(out, &truth, &near)?;
    let manifest = serde_json::json!({
        "name": format!("gridlens synthetic city (scale {}, seed {})", opts.scale, opts.seed),
        "as_of": time::format_timestamp(opts.as_of),
        "source": format!("gridlens generate --scale {} --seed {}{}", opts.scale, opts.seed, if opts.bad_rows { " --with-bad-rows" } else { "" }),
        "created_at": chrono::Utc::now().to_rfc3339(),
    });
    let mpath = out.join("manifest.json");
    std::fs::write(&mpath, serde_json::to_string_pretty(&manifest)? + "\n")
        .map_err(|e| GenError::io(&mpath, e))?;
    let counts = counts.into_inner().unwrap_or_default();
    let tally = |v: &[Truth]| -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for t in v {
            *m.entry(t.rule.to_string()).or_insert(0) += 1;
        }
        m.into_iter().collect()
    };
    Ok(Summary {
        rows: TableId::ALL
            .iter()
            .filter_map(|t| counts.get(t).map(|n| (t.name().to_string(), *n)))
            .collect(),
        anomalies: tally(&truth),
        near_misses: tally(&near),
        bad_rows: bad,
        grids: grids.len(),
        chunks: chunks.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
