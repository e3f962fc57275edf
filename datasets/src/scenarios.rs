//! Planted anomalies and near-misses, with their ground truth.
//!
//! Each scenario builds what it needs — a room, a household, people, leases, door events,
//! readings, visits — so that it produces exactly the findings written down for it and nothing
//! else: its people live in buildings without door access unless the scenario is about door
//! access, its rooms have room for their occupants, its people were verified recently, and so on.
//! R07 and R10 findings, which no other rule can see, are also planted by editing normal records.

// Scenario plans are written as tables of tuples, one row per variant.
#![allow(clippy::type_complexity)]

use crate::city::{Care, Chunk, Death, Event, Visit};
use crate::{GenError, Result};
use chrono::Datelike;
use gridlens_engine::idcard;
use gridlens_engine::time::{self, DAY, HOUR, MINUTE, SECOND};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use std::path::Path;

/// One planted finding (or near-miss): rule, subject, grid, and which scenario planted it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Truth {
    /// `R01` … `R12`.
    pub rule: &'static str,
    /// The subject, as in the `anomalies` table.
    pub subject_id: String,
    /// The subject's grid.
    pub grid_code: String,
    /// The scenario.
    pub variant: &'static str,
}

/// How many of a scenario a chunk gets: `rate` per grid, at least one.
fn count(c: &Chunk, rate: f64) -> usize {
    ((rate * c.grids.len() as f64).round() as usize).max(1)
}

impl Chunk<'_> {
    fn random_grid(&mut self) -> usize {
        self.rng.random_range(0..self.grids.len())
    }

    /// A building of a grid with or without door access (reporting for at least 90 days),
    /// made if the grid has none.
    fn building_of(&mut self, grid: usize, access: bool) -> usize {
        let old = self.today - 90;
        let found: Vec<usize> = self
            .buildings
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.grid == grid
                    && !b.dedicated
                    && b.events_until.is_none()
                    && b.access == access
                    && (!access || b.since.is_some_and(|s| s <= old))
            })
            .map(|(i, _)| i)
            .collect();
        if let Some(&b) = found.as_slice().choose(&mut self.rng) {
            return b;
        }
        let since = access.then_some(self.today - 400);
        self.add_building(grid, 10, access, since)
    }

    fn dedicated_room(
        &mut self,
        building: usize,
        area: f64,
        usage: &'static str,
        tenure: &'static str,
    ) -> usize {
        let r = self.add_room(building, area, usage, tenure);
        self.rooms[r].dedicated = true;
        let level: f64 = 60.0 + self.rng.random_range(0.0..120.0);
        self.rooms[r].kwh = [Some(level.round()); 3];
        r
    }

    /// A scenario person: active, verified recently, not living anywhere with door events.
    #[allow(clippy::too_many_arguments)]
    fn scenario_person(
        &mut self,
        room: usize,
        household: Option<usize>,
        residence: &'static str,
        male: bool,
        birth: i32,
        registered_on: i32,
    ) -> usize {
        let p = self.add_person(
            room,
            household,
            residence,
            male,
            birth,
            registered_on,
            residence == "hukou",
        );
        let person = &mut self.people[p];
        person.normal = false;
        person.lives_at = None;
        person.goes_out = false;
        person.care = Care::Scenario;
        person.last_verified = Some(self.today - 10);
        p
    }

    /// A room in a building without door access holding one registered adult, in their own
    /// household.
    fn home_elsewhere(&mut self, grid: usize, tenure: &'static str) -> (usize, usize) {
        let b = self.building_of(grid, false);
        let r = self.dedicated_room(b, 45.0, "residential", tenure);
        let h = self.add_household(r, "non_local", Some(self.today - 500));
        let birth = self.birth_for_age(22, 55);
        let male = self.rng.random_bool(0.5);
        let p = self.scenario_person(r, Some(h), "floating", male, birth, self.today - 500);
        self.households[h].head = Some(self.people[p].idn.clone());
        (r, p)
    }

    /// A new identity number nobody in the registry has.
    fn stranger_id(&mut self) -> String {
        let area = self.migrant_area();
        let birth = self.birth_for_age(20, 50);
        let male = self.rng.random_bool(0.5);
        self.ids.resident(&mut self.rng, &area, birth, male).0
    }

    fn event(&mut self, ts: i64, building: usize, idn: &str) {
        self.events.push(Event {
            ts,
            building,
            idn: Some(idn.to_string()),
            entering: true,
        });
    }

    /// An event on the night of day `d` (20:00 that day to 06:00 the next).
    /// The event falls before `as_of` (a night still running at `as_of` ends there).
    fn night(&mut self, d: i32, building: usize, idn: &str) {
        let start = time::midnight(d) + 20 * HOUR;
        let end = (start + 10 * HOUR).min(self.as_of);
        let t = if end > start {
            self.rng.random_range(start..end)
        } else {
            start
        };
        self.event(t, building, idn);
    }

    /// `n` distinct days among the 30 nights of the window (the last night is `today - 1`).
    fn window_days(&mut self, n: usize) -> Vec<i32> {
        let mut days: Vec<i32> = (self.today - 30..self.today).collect();
        days.shuffle(&mut self.rng);
        days.truncate(n);
        days.sort_unstable();
        days
    }

    fn truth(&mut self, rule: &'static str, subject: String, grid: String, variant: &'static str) {
        self.truth.push(Truth {
            rule,
            subject_id: subject,
            grid_code: grid,
            variant,
        });
    }

    fn near(&mut self, rule: &'static str, subject: String, grid: String, variant: &'static str) {
        self.near.push(Truth {
            rule,
            subject_id: subject,
            grid_code: grid,
            variant,
        });
    }

    fn person_grid(&self, p: usize) -> String {
        self.grid_of_room(self.people[p].room).to_string()
    }
}

/// Plants every scenario into a chunk.
pub fn plant(c: &mut Chunk) {
    r07_and_r10_edits(c);
    r01(c);
    r02(c);
    r03(c);
    r04(c);
    r05(c);
    r06(c);
    r07(c);
    r08(c);
    r09(c);
    r11(c);
    r12(c);
    quiet_empty_rooms(c);
}

/// A scenario room left with nobody active (only moved-out or deceased records) uses little
/// power, unless its scenario set its power on purpose: otherwise it would be an R08 finding.
fn quiet_empty_rooms(c: &mut Chunk) {
    let mut occupied = vec![false; c.rooms.len()];
    for p in &c.people {
        if p.status == "active" {
            occupied[p.room] = true;
        }
    }
    for (r, room) in c.rooms.iter_mut().enumerate() {
        if room.dedicated && !room.power_set && !occupied[r] {
            room.kwh = [Some(25.0), Some(20.0), Some(15.0)];
        }
    }
}

fn r01(c: &mut Chunk) {
    let today = c.today;
    type Setup = fn(&mut Chunk, usize) -> Option<String>;
    // Who sleeps there: a new identity, a moved-out record of the building, or someone
    // registered in a building without door access.
    let migrant: Setup = |c, _b| Some(c.stranger_id());
    let moved_out: Setup = |c, b| {
        let r = c.dedicated_room(b, 40.0, "residential", "owner_occupied");
        // Nobody registered: low power in the last month keeps R08 quiet.
        c.rooms[r].kwh = [Some(60.0), Some(55.0), Some(30.0)];
        let birth = c.birth_for_age(25, 60);
        let p = c.scenario_person(r, None, "floating", true, birth, c.today - 900);
        c.people[p].status = "moved_out";
        Some(c.people[p].idn.clone())
    };
    let elsewhere: Setup = |c, b| {
        let grid = c.buildings[b].grid;
        let (_, p) = c.home_elsewhere(grid, "owner_occupied");
        Some(c.people[p].idn.clone())
    };
    let variants: [(&'static str, Setup, f64); 3] = [
        ("unregistered_migrant", migrant, 0.25),
        ("moved_out_still_living", moved_out, 0.1),
        ("registered_elsewhere", elsewhere, 0.1),
    ];
    for (variant, setup, rate) in variants {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let b = c.building_of(g, true);
            let Some(idn) = setup(c, b) else { continue };
            let n = c.rng.random_range(5..=14);
            for d in c.window_days(n) {
                c.night(d, b, &idn);
            }
            // Older nights, outside the window, and daytime visits do not matter.
            for _ in 0..c.rng.random_range(0..4) {
                let d = today - c.rng.random_range(31..60);
                c.night(d, b, &idn);
            }
            let subject = format!("{idn}@{}", c.buildings[b].id);
            let grid = c.grid_of_building(b).to_string();
            c.truth("R01", subject, grid, variant);
        }
    }
    // Exactly 5 nights, at the edges of the night and of the window.
    for _ in 0..count(c, 0.02) {
        let g = c.random_grid();
        let b = c.building_of(g, true);
        let idn = c.stranger_id();
        let days = [today - 30, today - 20, today - 15, today - 9, today - 1];
        c.event(time::midnight(days[0]) + 20 * HOUR, b, &idn); // 20:00:00 exactly
        c.event(time::midnight(days[1] + 1) + 6 * HOUR - SECOND, b, &idn); // 05:59:59 next day
        c.night(days[2], b, &idn);
        c.night(days[3], b, &idn);
        c.event(time::midnight(days[4]) + 23 * HOUR + 59 * MINUTE, b, &idn);
        let subject = format!("{idn}@{}", c.buildings[b].id);
        let grid = c.grid_of_building(b).to_string();
        c.truth("R01", subject, grid, "five_nights_at_the_edges");
    }
    // Near-misses: never 5 distinct nights within the window.
    type Near = fn(&mut Chunk, usize, &str, &[i32]);
    let four: Near = |c, b, idn, _| {
        for _ in 0..3 {
            let d = c.today - c.rng.random_range(1..30);
            let t = time::midnight(d) + 10 * HOUR + c.rng.random_range(0..8 * HOUR);
            c.event(t, b, idn);
        }
    };
    let same_night_twice: Near = |c, b, idn, days| {
        c.event(time::midnight(days[0] + 1) + 2 * HOUR, b, idn);
    };
    let outside_the_night: Near = |c, b, idn, _| {
        let d = c.today - 3;
        c.event(time::midnight(d) + 6 * HOUR, b, idn); // 06:00:00 is morning
        c.event(time::midnight(d - 1) + 20 * HOUR - SECOND, b, idn); // 19:59:59 is evening
    };
    let before_the_window: Near = |c, b, idn, _| {
        // 03:00 on the window's first day belongs to the night before it.
        c.event(time::midnight(c.today - 30) + 3 * HOUR, b, idn);
        c.event(time::midnight(c.today - 31) + 22 * HOUR, b, idn);
    };
    let after_as_of: Near = |c, b, idn, _| {
        c.event(c.as_of + HOUR, b, idn);
        c.event(c.as_of + DAY + 21 * HOUR, b, idn);
    };
    let nears: [(&'static str, Near); 5] = [
        ("four_nights", four),
        ("five_events_four_nights", same_night_twice),
        ("outside_the_night", outside_the_night),
        ("before_the_window", before_the_window),
        ("after_as_of", after_as_of),
    ];
    for (variant, extra) in nears {
        for _ in 0..count(c, 0.02) {
            let g = c.random_grid();
            let b = c.building_of(g, true);
            let idn = c.stranger_id();
            // Four nights, none of them the window's first (the edge cases add to it).
            let mut days: Vec<i32> = (today - 25..today - 4).collect();
            days.shuffle(&mut c.rng);
            days.truncate(4);
            days.sort_unstable();
            for &d in &days {
                c.night(d, b, &idn);
            }
            extra(c, b, &idn, &days);
            let subject = format!("{idn}@{}", c.buildings[b].id);
            let grid = c.grid_of_building(b).to_string();
            c.near("R01", subject, grid, variant);
        }
    }
}

/// A filed rental room in a building without door access, with one registered tenant holding a
/// lease, and room for `extra` more occupants.
fn rental_home(c: &mut Chunk, grid: usize, extra: usize) -> usize {
    let b = c.building_of(grid, false);
    let area = 5.0 * (2 + extra) as f64 + 10.0;
    let r = c.dedicated_room(b, area, "residential", "rental");
    c.rooms[r].rental_on = Some(c.today - 300);
    let h = c.add_household(r, "non_local", Some(c.today - 300));
    let birth = c.birth_for_age(22, 45);
    let p = c.scenario_person(r, Some(h), "floating", true, birth, c.today - 300);
    let idn = c.people[p].idn.clone();
    c.households[h].head = Some(idn.clone());
    c.add_lease(r, &idn, c.today - 310, Some(c.today + 55));
    r
}

fn r02(c: &mut Chunk) {
    type Plan = (
        &'static str,
        bool,
        f64,
        fn(&mut Chunk, usize) -> (String, Vec<(i32, Option<i32>)>),
    );
    let plans: [Plan; 8] = [
        ("unregistered_tenant", true, 0.2, |c, _| {
            (
                c.stranger_id(),
                vec![(c.today - c.rng.random_range(10..200), Some(c.today + 200))],
            )
        }),
        ("tenant_registered_elsewhere", true, 0.05, |c, r| {
            let grid = c.buildings[c.rooms[r].building].grid;
            let (_, p) = c.home_elsewhere(grid, "owner_occupied");
            (c.people[p].idn.clone(), vec![(c.today - 60, None)])
        }),
        ("two_leases_one_finding", true, 0.02, |c, _| {
            (
                c.stranger_id(),
                vec![(c.today - 300, None), (c.today - 100, Some(c.today + 100))],
            )
        }),
        ("grace_just_ended", true, 0.02, |c, _| {
            let mut s = c.today;
            while c.cal.nth_workday_after(s, 3).is_none_or(|d| d > c.today) {
                s -= 1;
            }
            (c.stranger_id(), vec![(s, None)])
        }),
        ("ends_on_as_of", true, 0.02, |c, _| {
            (c.stranger_id(), vec![(c.today - 100, Some(c.today))])
        }),
        ("within_grace", false, 0.02, |c, _| {
            let mut s = c.today;
            while c.cal.nth_workday_after(s, 3).is_none_or(|d| d > c.today) {
                s -= 1;
            }
            (c.stranger_id(), vec![(s + 1, None)])
        }),
        ("ended_yesterday", false, 0.02, |c, _| {
            (c.stranger_id(), vec![(c.today - 200, Some(c.today - 1))])
        }),
        ("starts_tomorrow", false, 0.02, |c, _| {
            (c.stranger_id(), vec![(c.today + 1, Some(c.today + 365))])
        }),
    ];
    for (variant, found, rate, plan) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let r = rental_home(c, g, 1);
            let (tenant, leases) = plan(c, r);
            for (s, e) in leases {
                c.add_lease(r, &tenant, s, e);
            }
            let subject = format!("{tenant}@{}", c.rooms[r].id);
            let grid = c.grid_of_room(r).to_string();
            if found {
                c.truth("R02", subject, grid, variant);
            } else {
                c.near("R02", subject, grid, variant);
            }
        }
    }
}

fn r03(c: &mut Chunk) {
    let today = c.today;
    // (variant, found, rate, tenure, filed on, lease active)
    let plans: [(&'static str, bool, f64, &'static str, Option<i32>, bool); 5] = [
        (
            "let_but_owner_occupied",
            true,
            0.1,
            "owner_occupied",
            None,
            true,
        ),
        ("rental_not_filed", true, 0.15, "rental", None, true),
        (
            "filed_after_as_of",
            true,
            0.02,
            "rental",
            Some(today + 3),
            true,
        ),
        ("filed_on_as_of", false, 0.02, "rental", Some(today), true),
        (
            "only_ended_leases",
            false,
            0.02,
            "owner_occupied",
            None,
            false,
        ),
    ];
    for (variant, found, rate, tenure, filed, active) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let (r, p) = c.home_elsewhere(g, tenure);
            c.rooms[r].rental_on = filed;
            let idn = c.people[p].idn.clone();
            if active {
                let start = today - c.rng.random_range(30..400);
                c.add_lease(r, &idn, start, Some(today + 200));
            } else {
                c.add_lease(r, &idn, today - 500, Some(today - 10));
            }
            let subject = c.rooms[r].id.clone();
            let grid = c.grid_of_room(r).to_string();
            if found {
                c.truth("R03", subject, grid, variant);
            } else {
                c.near("R03", subject, grid, variant);
            }
        }
    }
}

/// The date `years` years before `d` (29 February falls on 28 February).
fn years_before(d: i32, years: i32) -> i32 {
    let n = time::naive(d);
    let y = n.year() - years;
    time::ymd(y, n.month(), n.day())
        .or_else(|| time::ymd(y, n.month(), n.day() - 1))
        .unwrap_or(d - years * 365)
}

fn r04(c: &mut Chunk) {
    let today = c.today;
    // A registered person nobody sees: (variant, found, rate, birth, registered, tags).
    #[derive(Clone, Copy)]
    enum Where {
        Access,
        NewAccess(i32),
        DeadAccess,
        NoAccess,
    }
    struct Plan {
        variant: &'static str,
        found: bool,
        rate: f64,
        birth: Option<i32>,
        registered: Option<i32>,
        housebound: bool,
        place: Where,
        seen: Option<i64>,
    }
    let p = |variant, found, rate| Plan {
        variant,
        found,
        rate,
        birth: None,
        registered: None,
        housebound: false,
        place: Where::Access,
        seen: None,
    };
    let plans = vec![
        p("not_seen_for_60_days", true, 0.6),
        Plan {
            birth: Some(years_before(today, 80) + 1),
            ..p("aged_79_turning_80_tomorrow", true, 0.02)
        },
        Plan {
            birth: Some(years_before(today, 6)),
            ..p("aged_6_today", true, 0.02)
        },
        Plan {
            registered: Some(today - 60),
            ..p("registered_60_days_ago", true, 0.02)
        },
        Plan {
            place: Where::NewAccess(today - 60),
            ..p("door_system_60_days_old", true, 0.02)
        },
        Plan {
            seen: Some(c.as_of - 60 * DAY),
            ..p("last_seen_exactly_60_days_ago", true, 0.02)
        },
        Plan {
            birth: Some(years_before(today, 80)),
            ..p("aged_80_today", false, 0.02)
        },
        Plan {
            birth: Some(years_before(today, 6) + 1),
            ..p("aged_5", false, 0.02)
        },
        Plan {
            housebound: true,
            ..p("housebound", false, 0.02)
        },
        Plan {
            registered: Some(today - 59),
            ..p("registered_59_days_ago", false, 0.02)
        },
        Plan {
            place: Where::NewAccess(today - 59),
            ..p("door_system_59_days_old", false, 0.02)
        },
        Plan {
            place: Where::DeadAccess,
            ..p("door_system_silent_for_8_days", false, 0.02)
        },
        Plan {
            seen: Some(c.as_of - 60 * DAY + SECOND),
            ..p("seen_once_59_days_ago", false, 0.02)
        },
        Plan {
            place: Where::NoAccess,
            ..p("no_door_system", false, 0.02)
        },
    ];
    for plan in plans {
        for _ in 0..count(c, plan.rate) {
            let g = c.random_grid();
            let b = match plan.place {
                Where::Access => c.building_of(g, true),
                Where::NoAccess => c.building_of(g, false),
                Where::NewAccess(since) => c.add_building(g, 10, true, Some(since)),
                Where::DeadAccess => {
                    let b = c.add_building(g, 10, true, Some(today - 400));
                    c.buildings[b].dedicated = true;
                    c.buildings[b].events_until = Some(c.as_of - 8 * DAY);
                    let idn = c.stranger_id();
                    let t = c.as_of - 12 * DAY + 20 * HOUR;
                    c.event(t, b, &idn);
                    b
                }
            };
            let r = c.dedicated_room(b, 50.0, "residential", "owner_occupied");
            let h = c.add_household(r, "hukou", Some(today - 3000));
            let birth = plan.birth.unwrap_or_else(|| c.birth_for_age(20, 60));
            let registered = plan
                .registered
                .unwrap_or_else(|| (today - c.rng.random_range(400..4000)).max(birth));
            let male = c.rng.random_bool(0.5);
            let person = c.scenario_person(r, Some(h), "hukou", male, birth, registered);
            let birth_now = c.people[person].birth;
            debug_assert_eq!(
                birth_now, birth,
                "identity allocation moved a planted birth date"
            );
            if plan.housebound {
                c.people[person].tags.push("housebound");
            }
            let idn = c.people[person].idn.clone();
            c.households[h].head = Some(idn.clone());
            if let Some(t) = plan.seen {
                c.event(t, b, &idn);
            }
            let subject = c.people[person].id.clone();
            let grid = c.person_grid(person);
            if plan.found {
                c.truth("R04", subject, grid, plan.variant);
            } else {
                c.near("R04", subject, grid, plan.variant);
            }
        }
    }
}

fn r05(c: &mut Chunk) {
    let today = c.today;
    // (variant, found, rate, deaths' dates, status)
    let plans: [(&'static str, bool, f64, &[i32], &'static str); 5] = [
        ("dead_still_registered", true, 0.05, &[-120], "active"),
        ("died_on_as_of", true, 0.01, &[0], "active"),
        ("two_death_records", true, 0.01, &[-30, -29], "active"),
        ("dies_after_as_of", false, 0.02, &[2], "active"),
        ("deregistered", false, 0.02, &[-50], "deceased"),
    ];
    for (variant, found, rate, days, status) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let b = c.building_of(g, false);
            let r = c.dedicated_room(b, 40.0, "residential", "owner_occupied");
            // A deregistered person is not the household's only member (R12 stays quiet).
            let h = (status == "active").then(|| c.add_household(r, "hukou", Some(today - 5000)));
            let birth = c.birth_for_age(70, 95);
            let male = c.rng.random_bool(0.5);
            let p = c.scenario_person(r, h, "hukou", male, birth, today - 5000);
            c.people[p].status = status;
            let idn = c.people[p].idn.clone();
            if let Some(h) = h {
                c.households[h].head = Some(idn.clone());
            }
            for (k, d) in days.iter().enumerate() {
                let source = ["civil_affairs", "hospital", "funeral"][k % 3];
                c.deaths.push(Death {
                    idn: idn.clone(),
                    died_on: today + d,
                    source,
                });
            }
            let subject = c.people[p].id.clone();
            let grid = c.person_grid(p);
            if found {
                c.truth("R05", subject, grid, variant);
            } else {
                c.near("R05", subject, grid, variant);
            }
        }
    }
}

fn r06(c: &mut Chunk) {
    let today = c.today;
    // (variant, rate, registration dates (days before as_of), statuses)
    let plans: [(&'static str, f64, &[i32], &[&'static str]); 4] = [
        ("registered_twice", 0.1, &[2000, 300], &["active", "active"]),
        (
            "same_registration_date",
            0.02,
            &[700, 700],
            &["active", "active"],
        ),
        (
            "registered_three_times",
            0.02,
            &[3000, 1500, 200],
            &["active", "active", "active"],
        ),
        (
            "old_record_moved_out",
            0.02,
            &[2000, 300],
            &["moved_out", "active"],
        ),
    ];
    for (variant, rate, dates, statuses) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let area = c.migrant_area();
            let male = c.rng.random_bool(0.5);
            let birth = c.birth_for_age(25, 60);
            let (idn, birth) = c.ids.resident(&mut c.rng, &area, birth, male);
            let name = crate::reference::names().draw(&mut c.rng, male);
            let mut records = Vec::new();
            for (k, (&d, &status)) in dates.iter().zip(statuses).enumerate() {
                let grid = if k == 0 { g } else { c.random_grid() };
                let b = c.building_of(grid, false);
                let r = c.dedicated_room(b, 40.0, "residential", "owner_occupied");
                let p = c.scenario_person(r, None, "floating", male, birth, today - d);
                let person = &mut c.people[p];
                // Every record of the person carries the same identity.
                person.idn = idn.clone();
                person.birth = birth;
                person.name = name.clone();
                person.status = status;
                records.push(p);
            }
            let active: Vec<usize> = records
                .iter()
                .copied()
                .filter(|&p| c.people[p].status == "active")
                .collect();
            // The current record: latest registration, then greatest person_id.
            let current = active
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    (c.people[a].registered_on, &c.people[a].id)
                        .cmp(&(c.people[b].registered_on, &c.people[b].id))
                })
                .unwrap_or(records[0]);
            for &p in &records {
                let subject = c.people[p].id.clone();
                let grid = c.person_grid(p);
                if c.people[p].status == "active" && p != current {
                    c.truth("R06", subject, grid, variant);
                } else if c.people[p].status != "active" {
                    c.near("R06", subject, grid, variant);
                }
            }
        }
    }
}

/// Resident identity numbers that fail one check each.
fn r07(c: &mut Chunk) {
    type Spoil = fn(&mut Chunk, &str, i32, bool) -> String;
    let length: Spoil = |_, id, _, _| id[..17].to_string();
    let digits: Spoil = |_, id, _, _| format!("{}A{}", &id[..10], &id[11..]);
    let checksum: Spoil = |_, id, _, _| {
        let right = id.as_bytes()[17];
        let wrong = if right == b'0' { '1' } else { '0' };
        format!("{}{wrong}", &id[..17])
    };
    let birth_date: Spoil = |c, id, birth, male| {
        let area = id[..6].to_string();
        c.ids.resident(&mut c.rng, &area, birth + 100, male).0
    };
    let sex: Spoil = |c, id, birth, male| {
        let area = id[..6].to_string();
        c.ids.resident(&mut c.rng, &area, birth, !male).0
    };
    let impossible_date: Spoil = |c, id, _, male| {
        let seq = (c.rng.random_range(0..500u32)) * 2 + u32::from(male);
        let mut s = format!("{}19900230{seq:03}", &id[..6]);
        let ch = idcard::check_char(s.as_bytes()).unwrap_or(b'0');
        s.push(ch as char);
        s
    };
    let plans: [(&'static str, Spoil, Option<i32>); 6] = [
        ("wrong_length", length, None),
        ("not_digits", digits, None),
        ("wrong_check_character", checksum, None),
        ("birth_date_differs", birth_date, None),
        ("sex_digit_differs", sex, None),
        ("impossible_date", impossible_date, time::ymd(1990, 2, 28)),
    ];
    for (variant, spoil, birth) in plans {
        for _ in 0..count(c, 0.03) {
            let g = c.random_grid();
            let (_, p) = c.home_elsewhere(g, "owner_occupied");
            if let Some(b) = birth {
                c.people[p].birth = b;
            }
            let (id, birth, male) = (c.people[p].idn.clone(), c.people[p].birth, c.people[p].male);
            let bad = spoil(c, &id, birth, male);
            c.people[p].idn = bad.clone();
            if let Some(h) = c.people[p].household {
                c.households[h].head = Some(bad);
            }
            let subject = c.people[p].id.clone();
            let grid = c.person_grid(p);
            c.truth("R07", subject, grid, variant);
        }
    }
    // Near-misses: a lower-case x, a passport, a moved-out record.
    for _ in 0..count(c, 0.02) {
        let g = c.random_grid();
        let (_, p) = c.home_elsewhere(g, "owner_occupied");
        // Draw identities until one ends in X.
        let (mut id, mut birth) = (c.people[p].idn.clone(), c.people[p].birth);
        let male = c.people[p].male;
        while !id.ends_with('X') {
            let area = id[..6].to_string();
            let b = c.birth_for_age(25, 60);
            (id, birth) = c.ids.resident(&mut c.rng, &area, b, male);
        }
        c.people[p].idn = id.to_lowercase();
        c.people[p].birth = birth;
        if let Some(h) = c.people[p].household {
            c.households[h].head = Some(c.people[p].idn.clone());
        }
        let subject = c.people[p].id.clone();
        let grid = c.person_grid(p);
        c.near("R07", subject, grid, "lower_case_x");
    }
    for _ in 0..count(c, 0.02) {
        let g = c.random_grid();
        let (_, p) = c.home_elsewhere(g, "owner_occupied");
        c.people[p].doc = "passport";
        c.people[p].residence = "overseas";
        c.people[p].idn = format!("{}-NOTCHECKED", c.ids.foreign('G'));
        if let Some(h) = c.people[p].household {
            c.households[h].head = Some(c.people[p].idn.clone());
        }
        let subject = c.people[p].id.clone();
        let grid = c.person_grid(p);
        c.near("R07", subject, grid, "passport_number");
    }
    for _ in 0..count(c, 0.02) {
        let g = c.random_grid();
        let b = c.building_of(g, false);
        let r = c.dedicated_room(b, 40.0, "residential", "owner_occupied");
        c.rooms[r].kwh = [Some(10.0); 3];
        let birth = c.birth_for_age(25, 60);
        let p = c.scenario_person(r, None, "floating", true, birth, c.today - 900);
        c.people[p].status = "moved_out";
        let id = c.people[p].idn.clone();
        c.people[p].idn = id[..17].to_string();
        let subject = c.people[p].id.clone();
        let grid = c.person_grid(p);
        c.near("R07", subject, grid, "moved_out_record");
    }
}

fn r08(c: &mut Chunk) {
    let plans: [(
        &'static str,
        bool,
        f64,
        &'static str,
        &'static str,
        [Option<f64>; 3],
    ); 7] = [
        (
            "vacant_but_consuming",
            true,
            0.1,
            "residential",
            "vacant",
            [Some(150.0), Some(120.0), Some(95.0)],
        ),
        (
            "nobody_registered",
            true,
            0.1,
            "residential",
            "owner_occupied",
            [Some(110.0), Some(130.0), Some(90.0)],
        ),
        (
            "exactly_50_kwh",
            true,
            0.02,
            "residential",
            "vacant",
            [Some(10.0), Some(50.0), Some(50.0)],
        ),
        (
            "one_month_below",
            false,
            0.02,
            "residential",
            "vacant",
            [Some(200.0), Some(120.0), Some(49.9)],
        ),
        (
            "reading_missing",
            false,
            0.02,
            "residential",
            "vacant",
            [Some(200.0), Some(120.0), None],
        ),
        (
            "high_only_before",
            false,
            0.02,
            "residential",
            "vacant",
            [Some(300.0), Some(200.0), Some(10.0)],
        ),
        (
            "commercial",
            false,
            0.02,
            "commercial",
            "vacant",
            [Some(500.0), Some(500.0), Some(500.0)],
        ),
    ];
    for (variant, found, rate, usage, tenure, kwh) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let access = c.rng.random_bool(0.3);
            let b = c.building_of(g, access);
            let r = c.dedicated_room(b, 60.0, usage, tenure);
            c.rooms[r].kwh = kwh;
            c.rooms[r].power_set = true;
            let subject = c.rooms[r].id.clone();
            let grid = c.grid_of_room(r).to_string();
            if found {
                c.truth("R08", subject, grid, variant);
            } else {
                c.near("R08", subject, grid, variant);
            }
        }
    }
}

fn r09(c: &mut Chunk) {
    let today = c.today;
    // (variant, found, rate, area (None: 18–40), usage, active occupants beyond capacity, moved-out)
    let plans: [(
        &'static str,
        bool,
        f64,
        Option<f64>,
        &'static str,
        i64,
        usize,
    ); 6] = [
        ("group_rental", true, 0.1, None, "residential", 3, 0),
        ("two_in_9_5_m2", true, 0.02, Some(9.5), "residential", 1, 0),
        ("at_capacity", false, 0.02, Some(20.0), "residential", 0, 0),
        ("one_in_4_m2", false, 0.02, Some(4.0), "residential", 0, 0),
        (
            "dormitory_not_residential",
            false,
            0.02,
            Some(30.0),
            "mixed",
            4,
            0,
        ),
        (
            "moved_out_not_counted",
            false,
            0.02,
            Some(10.0),
            "residential",
            0,
            3,
        ),
    ];
    for (variant, found, rate, area, usage, over, moved) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let b = c.building_of(g, false);
            let area =
                area.unwrap_or_else(|| (c.rng.random_range(18.0..40.0_f64) * 10.0).round() / 10.0);
            let cap = ((area / 5.0).floor() as i64).max(1);
            let extra = if over > 0 {
                c.rng.random_range(over..=over + 3)
            } else {
                0
            };
            let n = (cap + extra) as usize;
            let r = c.dedicated_room(b, area, usage, "rental");
            c.rooms[r].rental_on = Some(today - 400);
            let h = c.add_household(r, "non_local", Some(today - 400));
            for k in 0..n {
                let birth = c.birth_for_age(19, 45);
                let male = c.rng.random_bool(0.6);
                let p = c.scenario_person(r, Some(h), "floating", male, birth, today - 390);
                let idn = c.people[p].idn.clone();
                if k == 0 {
                    c.households[h].head = Some(idn.clone());
                }
                // Each of them holds a lease: occupants are counted once.
                c.add_lease(r, &idn, today - 395, Some(today + 100));
            }
            for _ in 0..moved {
                let birth = c.birth_for_age(19, 45);
                let p = c.scenario_person(r, Some(h), "floating", true, birth, today - 800);
                c.people[p].status = "moved_out";
            }
            let subject = c.rooms[r].id.clone();
            let grid = c.grid_of_room(r).to_string();
            if found {
                c.truth("R09", subject, grid, variant);
            } else {
                c.near("R09", subject, grid, variant);
            }
        }
    }
}

/// R07 and R10 by editing normal records: no other rule reads `last_verified_on`.
fn r07_and_r10_edits(c: &mut Chunk) {
    let today = c.today;
    let mut candidates: Vec<usize> = (0..c.people.len())
        .filter(|&p| c.people[p].normal && c.people[p].status == "active")
        .collect();
    candidates.shuffle(&mut c.rng);
    let mut pick = |c: &Chunk, kind: Option<&str>| -> Option<usize> {
        let i = candidates
            .iter()
            .position(|&p| kind.is_none_or(|k| c.people[p].residence == k))?;
        Some(candidates.swap_remove(i))
    };
    // (variant, found, rate, residence, days before as_of (None: never))
    let plans: [(&'static str, bool, f64, Option<&'static str>, Option<i32>); 8] = [
        ("never_verified", true, 0.5, None, None),
        ("hukou_400_days", true, 1.0, Some("hukou"), Some(400)),
        ("floating_200_days", true, 1.5, Some("floating"), Some(200)),
        ("floating_181_days", true, 0.05, Some("floating"), Some(181)),
        ("hukou_366_days", true, 0.05, Some("hukou"), Some(366)),
        ("overseas_181_days", true, 0.02, Some("overseas"), Some(181)),
        (
            "floating_180_days",
            false,
            0.05,
            Some("floating"),
            Some(180),
        ),
        ("hukou_365_days", false, 0.05, Some("hukou"), Some(365)),
    ];
    for (variant, found, rate, residence, days) in plans {
        for _ in 0..count(c, rate) {
            let Some(p) = pick(c, residence) else { break };
            c.people[p].last_verified = days.map(|d| today - d);
            let subject = c.people[p].id.clone();
            let grid = c.person_grid(p);
            if found {
                c.truth("R10", subject, grid, variant);
            } else {
                c.near("R10", subject, grid, variant);
            }
        }
    }
    // A moved-out record never verified is not overdue.
    let moved: Vec<usize> = (0..c.people.len())
        .filter(|&p| c.people[p].normal && c.people[p].status == "moved_out")
        .take(count(c, 0.02))
        .collect();
    for p in moved {
        c.people[p].last_verified = None;
        let subject = c.people[p].id.clone();
        let grid = c.person_grid(p);
        c.near("R10", subject, grid, "moved_out_never_verified");
    }
}

fn r11(c: &mut Chunk) {
    type Visits = fn(&mut Chunk, usize, usize, &str) -> ();
    let stale: Visits = |c, w, r, idn| {
        for d in [c.rng.random_range(9..20), 25, 33] {
            let at = c.as_of - d * DAY + 10 * HOUR;
            c.visits.push(Visit {
                worker: w,
                at,
                kind: "care_visit",
                room: Some(r),
                idn: Some(idn.into()),
            });
        }
    };
    let never: Visits = |_, _, _, _| {};
    let exactly_7: Visits = |c, w, r, idn| {
        c.visits.push(Visit {
            worker: w,
            at: c.as_of - 7 * DAY,
            kind: "care_visit",
            room: Some(r),
            idn: Some(idn.into()),
        });
    };
    let only_patrol: Visits = |c, w, r, idn| {
        c.visits.push(Visit {
            worker: w,
            at: c.as_of - 2 * DAY + 9 * HOUR,
            kind: "patrol",
            room: Some(r),
            idn: Some(idn.into()),
        });
        c.visits.push(Visit {
            worker: w,
            at: c.as_of - 3 * DAY + 9 * HOUR,
            kind: "verification",
            room: Some(r),
            idn: Some(idn.into()),
        });
        c.visits.push(Visit {
            worker: w,
            at: c.as_of - 12 * DAY + 9 * HOUR,
            kind: "care_visit",
            room: Some(r),
            idn: Some(idn.into()),
        });
    };
    let just_within: Visits = |c, w, r, idn| {
        c.visits.push(Visit {
            worker: w,
            at: c.as_of - 7 * DAY + SECOND,
            kind: "care_visit",
            room: Some(r),
            idn: Some(idn.into()),
        });
    };
    let by_room: Visits = |c, w, r, _| {
        c.visits.push(Visit {
            worker: w,
            at: c.as_of - 2 * DAY + 15 * HOUR,
            kind: "household_visit",
            room: Some(r),
            idn: None,
        });
    };
    let by_person: Visits = |c, w, _, idn| {
        c.visits.push(Visit {
            worker: w,
            at: c.as_of - 3 * DAY + 15 * HOUR,
            kind: "care_visit",
            room: None,
            idn: Some(idn.into()),
        });
    };
    let plans: [(&'static str, bool, f64, bool, Visits); 8] = [
        ("last_care_visit_weeks_ago", true, 0.1, true, stale),
        ("never_visited", true, 0.05, true, never),
        ("visited_exactly_7_days_ago", true, 0.02, true, exactly_7),
        (
            "only_patrols_and_verifications",
            true,
            0.02,
            true,
            only_patrol,
        ),
        (
            "visited_7_days_less_a_second_ago",
            false,
            0.02,
            true,
            just_within,
        ),
        ("household_visit_by_room", false, 0.02, true, by_room),
        (
            "care_visit_by_person_elsewhere",
            false,
            0.02,
            true,
            by_person,
        ),
        ("alone_but_not_tagged", false, 0.02, false, never),
    ];
    for (variant, found, rate, tagged, visits) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let b = c.building_of(g, false);
            let r = c.dedicated_room(b, 40.0, "residential", "owner_occupied");
            let h = c.add_household(r, "hukou", Some(c.today - 8000));
            let birth = c.birth_for_age(70, 79);
            let male = c.rng.random_bool(0.4);
            let p = c.scenario_person(r, Some(h), "hukou", male, birth, c.today - 8000);
            if tagged {
                c.people[p].tags.push("elderly_alone");
            }
            let idn = c.people[p].idn.clone();
            c.households[h].head = Some(idn.clone());
            let w = c.visitor_for(g);
            visits(c, w, r, &idn);
            let subject = c.people[p].id.clone();
            let grid = c.person_grid(p);
            if found {
                c.truth("R11", subject, grid, variant);
            } else {
                c.near("R11", subject, grid, variant);
            }
        }
    }
}

fn r12(c: &mut Chunk) {
    let today = c.today;
    // (variant, found, rate, active members, moved-out members, deceased members)
    let plans: [(&'static str, bool, f64, usize, usize, usize); 4] = [
        ("everyone_moved_out", true, 0.1, 0, 2, 0),
        ("no_members", true, 0.05, 0, 0, 0),
        ("only_member_deceased", true, 0.02, 0, 0, 1),
        ("one_member_left", false, 0.02, 1, 2, 0),
    ];
    for (variant, found, rate, active, moved, dead) in plans {
        for _ in 0..count(c, rate) {
            let g = c.random_grid();
            let b = c.building_of(g, false);
            let r = c.dedicated_room(b, 60.0, "residential", "owner_occupied");
            // Nobody lives there any more: little power (R08 stays quiet).
            c.rooms[r].kwh = [Some(40.0), Some(30.0), Some(12.0)];
            let h = c.add_household(r, "hukou", Some(today - 6000));
            for k in 0..active + moved + dead {
                let birth = c.birth_for_age(30, 90);
                let male = c.rng.random_bool(0.5);
                let p = c.scenario_person(r, Some(h), "hukou", male, birth, today - 5000);
                if k == 0 {
                    c.households[h].head = Some(c.people[p].idn.clone());
                }
                if k >= active + moved {
                    c.people[p].status = "deceased";
                    let idn = c.people[p].idn.clone();
                    c.deaths.push(Death {
                        idn,
                        died_on: today - 200,
                        source: "civil_affairs",
                    });
                } else if k >= active {
                    c.people[p].status = "moved_out";
                }
            }
            let subject = c.households[h].id.clone();
            let grid = c.grid_of_room(r).to_string();
            if found {
                c.truth("R12", subject, grid, variant);
            } else {
                c.near("R12", subject, grid, variant);
            }
        }
    }
}

/// The rule names, by code.
pub fn rule_name(rule: &str) -> &'static str {
    match rule {
        "R01" => "UNREGISTERED_OCCUPANT",
        "R02" => "UNREGISTERED_TENANT",
        "R03" => "UNFILED_RENTAL",
        "R04" => "ABSENT_RESIDENT",
        "R05" => "DECEASED_ACTIVE",
        "R06" => "DUPLICATE_REGISTRATION",
        "R07" => "INVALID_ID_NUMBER",
        "R08" => "VACANT_BUT_CONSUMING",
        "R09" => "OVERCROWDED",
        "R10" => "VERIFICATION_OVERDUE",
        "R11" => "CARE_VISIT_OVERDUE",
        "R12" => "EMPTY_HOUSEHOLD",
        _ => "",
    }
}

fn write_list(path: &Path, rows: &[Truth]) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["rule", "rule_name", "subject_id", "grid_code", "scenario"])?;
    for t in rows {
        w.write_record([
            t.rule,
            rule_name(t.rule),
            &t.subject_id,
            &t.grid_code,
            t.variant,
        ])?;
    }
    w.flush().map_err(|e| GenError::io(path, e))?;
    Ok(())
}

/// Writes `truth/anomalies.csv` and `truth/near_misses.csv`.
pub fn write_truth(out: &Path, truth: &[Truth], near: &[Truth]) -> Result<()> {
    let dir = out.join("truth");
    std::fs::create_dir_all(&dir).map_err(|e| GenError::io(&dir, e))?;
    write_list(&dir.join("anomalies.csv"), truth)?;
    write_list(&dir.join("near_misses.csv"), near)?;
    Ok(())
}
