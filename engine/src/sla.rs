//! 处置时限: the four stages of an incident, their deadlines on the working calendar, and whether
//! each was met (`kpis.md` §1).
//!
//! | stage | starts at | ends at |
//! |---|---|---|
//! | accept (立案) | reported_at | accepted_at |
//! | dispatch (派遣) | accepted_at | dispatched_at |
//! | handle (处置) | dispatched_at | handled_at |
//! | close (结案) | reported_at | closed_at |
//!
//! The limit of a stage comes from the most specific `sla_rules` row: a 4-digit category before
//! its 2-digit major class before `*`, and at equal category an exact urgency before `*`. The
//! dataset's rows are added to the rules that ship with the engine, replacing a shipped row with
//! the same (category, urgency, stage).
//!
//! Everything is evaluated **as of** an instant: a timestamp after `as_of` has not happened yet,
//! so an incident reported after `as_of` is evaluated for no stage, and a stage that ends after
//! `as_of` is still running.

use crate::calendar::Calendar;
use crate::contract::{TableId, codes};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::{self, HOUR};
use rayon::prelude::*;

/// The position of `*` in `sla_rules.urgency`.
const ANY_URGENCY: usize = 2;

/// A null instant in the columnar clocks.
pub const NO_TIME: i64 = i64::MIN;

/// A stage of the closed loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// 立案: reported → accepted.
    Accept = 0,
    /// 派遣: accepted → dispatched.
    Dispatch = 1,
    /// 处置: dispatched → handled.
    Handle = 2,
    /// 结案: reported → closed.
    Close = 3,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 4] = [Stage::Accept, Stage::Dispatch, Stage::Handle, Stage::Close];

    /// The stage's name, as in `sla_rules.stage`.
    pub fn name(self) -> &'static str {
        crate::contract::SLA_STAGE[self as usize]
    }

    /// The stage with a `sla_rules.stage` code.
    pub fn from_code(code: i8) -> Option<Stage> {
        Stage::ALL.get(usize::try_from(code).ok()?).copied()
    }
}

/// The unit of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Hours of working time.
    WorkingHours = 0,
    /// Working days: the deadline is the end of the L-th working day after the start's date.
    WorkingDays = 1,
    /// Hours on the clock.
    NaturalHours = 2,
    /// Calendar days: the deadline is the end of day `date(t0) + L`.
    NaturalDays = 3,
}

impl Unit {
    /// The unit with a `sla_rules.unit` code.
    pub fn from_code(code: i8) -> Option<Unit> {
        [
            Unit::WorkingHours,
            Unit::WorkingDays,
            Unit::NaturalHours,
            Unit::NaturalDays,
        ]
        .get(usize::try_from(code).ok()?)
        .copied()
    }

    /// The unit's name, as in `sla_rules.unit`.
    pub fn name(self) -> &'static str {
        crate::contract::SLA_UNIT[self as usize]
    }
}

/// A stage's time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// How many units.
    pub amount: i64,
    /// Which unit.
    pub unit: Unit,
}

impl Limit {
    /// The deadline of a stage that started at `t0` (`None` if the calendar has no such day).
    pub fn deadline(self, calendar: &Calendar, t0: i64) -> Option<i64> {
        let day = time::date_of(t0);
        match self.unit {
            Unit::NaturalHours => Some(t0 + self.amount * HOUR),
            Unit::NaturalDays => Some(time::midnight(day + self.amount as i32 + 1)),
            Unit::WorkingDays => calendar
                .nth_workday_after(day, self.amount as u32)
                .map(|d| time::midnight(d + 1)),
            Unit::WorkingHours => calendar.add_working_time(t0, self.amount * HOUR),
        }
    }
}

/// One row of the SLA rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaRule {
    /// A 4-digit category, a 2-digit major class, or `*`.
    pub category: String,
    /// An urgency code (`codes::urgency`), or `None` for `*`.
    pub urgency: Option<i8>,
    /// The stage.
    pub stage: Stage,
    /// The limit.
    pub limit: Limit,
}

impl SlaRule {
    /// How specific the rule is for a matching incident (higher wins), or `None` if it does not
    /// match.
    fn specificity(&self, category: &str, urgency: i8) -> Option<u8> {
        let cat = if self.category == "*" {
            0
        } else if self.category.len() == 2 && category.starts_with(&self.category) {
            1
        } else if self.category == category {
            2
        } else {
            return None;
        };
        let urg = match self.urgency {
            None => 0,
            Some(u) if u == urgency => 1,
            Some(_) => return None,
        };
        Some(cat * 2 + urg)
    }
}

/// The SLA rules in force: the shipped defaults with the dataset's rows over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaRules {
    /// Every rule.
    pub rules: Vec<SlaRule>,
}

impl Default for SlaRules {
    fn default() -> Self {
        SlaRules::shipped()
    }
}

impl SlaRules {
    /// The rules that ship with the engine: urgent cases 1 / 1 / 4 / 24 natural hours; normal
    /// cases 4 working hours to accept and to dispatch, 3 working days to handle, 7 to close.
    pub fn shipped() -> SlaRules {
        use codes::urgency::{NORMAL, URGENT};
        let rule = |urgency, stage, amount, unit| SlaRule {
            category: "*".into(),
            urgency: Some(urgency),
            stage,
            limit: Limit { amount, unit },
        };
        SlaRules {
            rules: vec![
                rule(URGENT, Stage::Accept, 1, Unit::NaturalHours),
                rule(URGENT, Stage::Dispatch, 1, Unit::NaturalHours),
                rule(URGENT, Stage::Handle, 4, Unit::NaturalHours),
                rule(URGENT, Stage::Close, 24, Unit::NaturalHours),
                rule(NORMAL, Stage::Accept, 4, Unit::WorkingHours),
                rule(NORMAL, Stage::Dispatch, 4, Unit::WorkingHours),
                rule(NORMAL, Stage::Handle, 3, Unit::WorkingDays),
                rule(NORMAL, Stage::Close, 7, Unit::WorkingDays),
            ],
        }
    }

    /// The shipped rules with the dataset's `sla_rules` rows over them.
    pub fn of_store(store: &Store) -> Result<SlaRules> {
        let mut rules = SlaRules::shipped();
        let t = store.table(TableId::SlaRules);
        if t.rows == 0 {
            return Ok(rules);
        }
        let category = t.strings("category_code")?;
        let urgency = t.codes("urgency")?;
        let stage = t.codes("stage")?;
        let limit = t.ints("limit")?;
        let unit = t.codes("unit")?;
        for i in 0..t.rows {
            let bad = || Error::Internal(format!("sla_rules row {i} has an unknown code"));
            // `sla_rules.urgency` lists urgent and normal as `incidents.urgency` does, then `*`.
            let u = urgency.value(i);
            let rule = SlaRule {
                category: category.value(i).to_string(),
                urgency: (usize::try_from(u).ok() != Some(ANY_URGENCY)).then_some(u),
                stage: Stage::from_code(stage.value(i)).ok_or_else(bad)?,
                limit: Limit {
                    amount: limit.value(i),
                    unit: Unit::from_code(unit.value(i)).ok_or_else(bad)?,
                },
            };
            rules.set(rule);
        }
        Ok(rules)
    }

    /// Adds a rule, replacing one with the same category, urgency and stage.
    pub fn set(&mut self, rule: SlaRule) {
        self.rules.retain(|r| {
            !(r.category == rule.category && r.urgency == rule.urgency && r.stage == rule.stage)
        });
        self.rules.push(rule);
    }

    /// The limit for a stage of an incident: the most specific matching rule's.
    pub fn limit(&self, category: &str, urgency: i8, stage: Stage) -> Option<Limit> {
        self.rules
            .iter()
            .filter(|r| r.stage == stage)
            .filter_map(|r| r.specificity(category, urgency).map(|s| (s, r.limit)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, l)| l)
    }
}

/// Whether a stage met its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Ended at or before its deadline.
    Met = 0,
    /// Ended after its deadline.
    Missed = 1,
    /// Not ended, and `as_of` is past the deadline.
    Overdue = 2,
    /// Not ended, deadline not yet passed.
    Pending = 3,
}

impl State {
    /// The state's name.
    pub fn name(self) -> &'static str {
        STATE_NAMES[self as usize]
    }
}

/// The names of the states, by code.
pub const STATE_NAMES: &[&str] = &["met", "missed", "overdue", "pending"];

/// One stage of every incident, as columns (`NO_TIME` for null; state `-1` when not evaluated).
#[derive(Debug, Clone, Default)]
pub struct StageColumn {
    /// When the stage started.
    pub start: Vec<i64>,
    /// When it ended.
    pub end: Vec<i64>,
    /// Its deadline.
    pub deadline: Vec<i64>,
    /// Its state code (`State as i8`), or -1.
    pub state: Vec<i8>,
}

/// The clocks of every incident, evaluated at `as_of`.
#[derive(Debug, Clone)]
pub struct Clocks {
    /// The instant they are evaluated at.
    pub as_of: i64,
    /// By stage (`Stage as usize`).
    pub stages: [StageColumn; 4],
    /// `reported_at`, or `NO_TIME` when reported after `as_of`.
    pub reported: Vec<i64>,
    /// `closed_at` as of `as_of`.
    pub closed: Vec<i64>,
}

impl Clocks {
    /// The state of a stage of an incident.
    pub fn state(&self, stage: Stage, row: usize) -> Option<State> {
        match self.stages[stage as usize].state[row] {
            0 => Some(State::Met),
            1 => Some(State::Missed),
            2 => Some(State::Overdue),
            3 => Some(State::Pending),
            _ => None,
        }
    }
}

/// Evaluates one stage.
pub fn evaluate(start: i64, end: i64, deadline: Option<i64>, as_of: i64) -> Option<State> {
    if start == NO_TIME {
        return None;
    }
    let deadline = deadline?;
    Some(if end != NO_TIME {
        if end <= deadline {
            State::Met
        } else {
            State::Missed
        }
    } else if as_of > deadline {
        State::Overdue
    } else {
        State::Pending
    })
}

/// Computes the clocks of every incident of the store at `as_of`, with the store's calendar and
/// SLA rules.
pub fn clocks(store: &Store, as_of: i64) -> Result<Clocks> {
    let rules = SlaRules::of_store(store)?;
    clocks_with(store, as_of, &rules, &store.calendar)
}

/// Computes the clocks with the given rules and calendar.
pub fn clocks_with(
    store: &Store,
    as_of: i64,
    rules: &SlaRules,
    calendar: &Calendar,
) -> Result<Clocks> {
    let t = store.table(TableId::Incidents);
    let n = t.rows;
    let category = t.strings("category_code")?;
    let urgency = t.codes("urgency")?;
    let status = t.codes("status")?;
    let col = |name: &str| -> Result<Vec<i64>> {
        let a = t.timestamps(name)?;
        Ok((0..n)
            .map(|i| {
                if a.is_null(i) || a.value(i) > as_of {
                    NO_TIME
                } else {
                    a.value(i)
                }
            })
            .collect())
    };
    use arrow::array::Array;
    let reported = col("reported_at")?;
    let accepted = col("accepted_at")?;
    let dispatched = col("dispatched_at")?;
    let handled = col("handled_at")?;
    let closed = col("closed_at")?;
    let bounds: [(&[i64], &[i64]); 4] = [
        (&reported, &accepted),
        (&accepted, &dispatched),
        (&dispatched, &handled),
        (&reported, &closed),
    ];

    // The limits depend only on (category, urgency): resolve them once per distinct pair, and
    // give every incident the position of its pair.
    let mut pairs: hashbrown::HashMap<(&str, i8), u32> = hashbrown::HashMap::new();
    let mut limits: Vec<[Option<Limit>; 4]> = Vec::new();
    let pair_of: Vec<u32> = (0..n)
        .map(|i| {
            let key = (category.value(i), urgency.value(i));
            *pairs.entry(key).or_insert_with(|| {
                limits.push(Stage::ALL.map(|s| rules.limit(key.0, key.1, s)));
                limits.len() as u32 - 1
            })
        })
        .collect();

    let stages = Stage::ALL.map(|stage| {
        let (start, end) = bounds[stage as usize];
        let (deadline, (ends, state)): (Vec<i64>, (Vec<i64>, Vec<i8>)) = (0..n)
            .into_par_iter()
            .map(|i| {
                let s = start[i];
                if s == NO_TIME || status.value(i) == codes::incident_status::REJECTED {
                    return (NO_TIME, (NO_TIME, -1));
                }
                let limit = limits[pair_of[i] as usize][stage as usize];
                let deadline = limit.and_then(|l| l.deadline(calendar, s));
                let state = evaluate(s, end[i], deadline, as_of).map_or(-1, |s| s as i8);
                (deadline.unwrap_or(NO_TIME), (end[i], state))
            })
            .unzip();
        StageColumn {
            start: start.to_vec(),
            end: ends,
            deadline,
            state,
        }
    });
    Ok(Clocks {
        as_of,
        stages,
        reported,
        closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{at, ymd};

    fn d(y: i32, m: u32, day: u32) -> i32 {
        ymd(y, m, day).unwrap()
    }

    #[test]
    fn most_specific_rule_wins() {
        let mut r = SlaRules::shipped();
        let wd = |amount| Limit {
            amount,
            unit: Unit::WorkingDays,
        };
        r.set(SlaRule {
            category: "01".into(),
            urgency: None,
            stage: Stage::Close,
            limit: wd(5),
        });
        r.set(SlaRule {
            category: "0102".into(),
            urgency: None,
            stage: Stage::Close,
            limit: wd(2),
        });
        r.set(SlaRule {
            category: "01".into(),
            urgency: Some(codes::urgency::NORMAL),
            stage: Stage::Close,
            limit: wd(4),
        });
        let n = codes::urgency::NORMAL;
        assert_eq!(r.limit("0102", n, Stage::Close), Some(wd(2)));
        assert_eq!(r.limit("0103", n, Stage::Close), Some(wd(4)));
        assert_eq!(
            r.limit("0103", codes::urgency::URGENT, Stage::Close),
            Some(wd(5))
        );
        assert_eq!(r.limit("0201", n, Stage::Close), Some(wd(7)));
        assert_eq!(r.limit("0201", n, Stage::Handle), Some(wd(3)));
    }

    #[test]
    fn deadlines_by_unit() {
        let c = Calendar::china();
        let t0 = at(d(2026, 11, 6), 23, 0, 0); // a Friday night
        let l = |amount, unit| Limit { amount, unit };
        assert_eq!(
            l(4, Unit::WorkingHours).deadline(&c, t0),
            Some(at(d(2026, 11, 9), 15, 0, 0))
        );
        assert_eq!(
            l(1, Unit::WorkingDays).deadline(&c, t0),
            Some(time::midnight(d(2026, 11, 10)))
        );
        assert_eq!(
            l(2, Unit::NaturalDays).deadline(&c, t0),
            Some(time::midnight(d(2026, 11, 9)))
        );
        assert_eq!(
            l(24, Unit::NaturalHours).deadline(&c, t0),
            Some(t0 + 24 * HOUR)
        );
    }

    #[test]
    fn states() {
        assert_eq!(evaluate(NO_TIME, 5, Some(10), 20), None);
        assert_eq!(evaluate(0, 10, Some(10), 20), Some(State::Met));
        assert_eq!(evaluate(0, 11, Some(10), 20), Some(State::Missed));
        assert_eq!(evaluate(0, NO_TIME, Some(10), 20), Some(State::Overdue));
        assert_eq!(evaluate(0, NO_TIME, Some(10), 10), Some(State::Pending));
    }
}
