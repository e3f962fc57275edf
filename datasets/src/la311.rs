//! Import of the Los Angeles 311 service-request log (MyLA311) as a gridlens dataset, so that a
//! user sees SLA figures on real incidents. The mapping is documented in `datasets/LA311.md`.
//!
//! - each neighbourhood council (`NC`, `NCName`) becomes a grid; its area planning commission
//!   (`APC`) becomes the district; codes are synthetic (`99` + APC number + `00`, then the NC
//!   number) since Los Angeles has no 国标 division codes;
//! - `RequestType` → a 4-digit category ([`CATEGORIES`]), `RequestSource` → source, `Owner` →
//!   department, `Status` → status;
//! - `CreatedDate` → `reported_at`, and also `accepted_at` and `dispatched_at`: an SR is logged
//!   and routed to its owner department when it is created; `ClosedDate` → `handled_at` and
//!   `closed_at`: the department closes the SR when the work is done;
//! - wall-clock readings are kept as they are (Los Angeles local time), and a `calendar` table of
//!   the US federal holidays replaces China's holidays for the dates the log covers.
//!
//! Rows are copied, never dropped: a row without a neighbourhood council, or one that closes
//! before it opens, is written as it is and rejected by the loader with that reason.

use crate::{GenError, Result};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Weekday};
use gridlens_engine::contract::TableId;
use std::collections::BTreeMap;
use std::path::Path;

/// Request type → (category code, category name). Major classes: 01 sanitation, 02 city
/// appearance, 03 public order, 04 street lighting, 05 water, 09 other.
pub const CATEGORIES: &[(&str, &str, &str)] = &[
    ("Bulky Items", "0101", "大件垃圾 Bulky Items"),
    (
        "Illegal Dumping Pickup",
        "0102",
        "乱倒垃圾 Illegal Dumping Pickup",
    ),
    (
        "Metal/Household Appliances",
        "0103",
        "废旧家电 Metal/Household Appliances",
    ),
    ("Electronic Waste", "0104", "电子垃圾 Electronic Waste"),
    (
        "Dead Animal Removal",
        "0105",
        "动物尸体 Dead Animal Removal",
    ),
    ("Graffiti Removal", "0201", "涂鸦清除 Graffiti Removal"),
    (
        "Homeless Encampment",
        "0301",
        "露宿聚集 Homeless Encampment",
    ),
    (
        "Single Streetlight Issue",
        "0401",
        "单灯故障 Single Streetlight Issue",
    ),
    (
        "Multiple Streetlight Issue",
        "0402",
        "多灯故障 Multiple Streetlight Issue",
    ),
    ("Report Water Waste", "0501", "浪费用水 Report Water Waste"),
    ("Feedback", "0901", "意见反馈 Feedback"),
];

/// The category of a request type (`0999` for a type not in [`CATEGORIES`]).
pub fn category(request_type: &str) -> (&'static str, String) {
    match CATEGORIES.iter().find(|c| c.0 == request_type) {
        Some(c) => (c.1, c.2.to_string()),
        None => ("0999", format!("其他 {request_type}")),
    }
}

/// `RequestSource` → `incidents.source`.
pub fn source(s: &str) -> &'static str {
    match s {
        "Call" | "Voicemail" => "hotline",
        "Mobile App" | "Self Service" => "resident_app",
        "Driver Self Report" => "patrol",
        _ => "other",
    }
}

/// `Status` → `incidents.status` (and whether the case counts as closed).
pub fn status(s: &str) -> &'static str {
    match s {
        "Closed" | "Referred Out" => "closed",
        "Cancelled" => "rejected",
        _ => "dispatched",
    }
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Requests read.
    pub read: usize,
    /// Grids (neighbourhood councils).
    pub grids: usize,
    /// Requests without a neighbourhood council (the loader rejects them).
    pub without_grid: usize,
    /// The `as_of` written to the manifest.
    pub as_of: String,
}

const COLUMNS: &[&str] = &[
    "SRNumber",
    "CreatedDate",
    "ClosedDate",
    "RequestType",
    "Status",
    "RequestSource",
    "Owner",
    "APC",
    "NC",
    "NCName",
];

fn parse_la(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s.trim(), "%m/%d/%Y %I:%M:%S %p").ok()
}

/// A LA timestamp in the contract's form, or the text as it was (for the loader to reject).
fn timestamp(s: &str) -> String {
    match parse_la(s) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => s.trim().to_string(),
    }
}

/// The US federal holidays of a year, with the observed weekday when one falls on a weekend.
pub fn federal_holidays(year: i32) -> Vec<NaiveDate> {
    let nth = |month: u32, weekday: Weekday, n: u8| {
        NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)
    };
    let last_monday_of_may = (25..=31)
        .rev()
        .filter_map(|d| NaiveDate::from_ymd_opt(year, 5, d))
        .find(|d| d.weekday() == Weekday::Mon);
    let observed = |m: u32, d: u32| {
        NaiveDate::from_ymd_opt(year, m, d).map(|x| match x.weekday() {
            Weekday::Sat => x.pred_opt().unwrap_or(x),
            Weekday::Sun => x.succ_opt().unwrap_or(x),
            _ => x,
        })
    };
    [
        observed(1, 1),
        nth(1, Weekday::Mon, 3),
        nth(2, Weekday::Mon, 3),
        last_monday_of_may,
        observed(7, 4),
        nth(9, Weekday::Mon, 1),
        nth(10, Weekday::Mon, 2),
        observed(11, 11),
        nth(11, Weekday::Thu, 4),
        observed(12, 25),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn header(t: TableId) -> Vec<&'static str> {
    t.def().columns.iter().map(|c| c.name).collect()
}

fn writer(out: &Path, name: &str) -> Result<csv::Writer<std::fs::File>> {
    let path = out.join(name);
    csv::Writer::from_path(&path).map_err(|e| GenError::Input(format!("{}: {e}", path.display())))
}

fn io(path: &Path) -> impl Fn(csv::Error) -> GenError + '_ {
    move |e| GenError::Input(format!("{}: {e}", path.display()))
}

/// Converts a MyLA311 CSV export into a gridlens dataset folder.
pub fn import_la311(source: &Path, out: &Path) -> Result<ImportSummary> {
    let mut reader = csv::Reader::from_path(source).map_err(io(source))?;
    let headers = reader.headers().map_err(io(source))?.clone();
    let mut at = BTreeMap::new();
    for c in COLUMNS {
        let i = headers.iter().position(|h| h == *c).ok_or_else(|| {
            GenError::Input(format!(
                "{}: column {c} is missing; is this a MyLA311 service request export?",
                source.display()
            ))
        })?;
        at.insert(*c, i);
    }
    let records: Vec<csv::StringRecord> = reader
        .records()
        .collect::<std::result::Result<_, _>>()
        .map_err(io(source))?;
    let get = |r: &csv::StringRecord, c: &str| r.get(at[c]).unwrap_or("").trim().to_string();

    // Neighbourhood councils, each in the planning commission it most often appears with.
    let mut apc_of: BTreeMap<u32, BTreeMap<String, usize>> = BTreeMap::new();
    let mut nc_name: BTreeMap<u32, String> = BTreeMap::new();
    for r in &records {
        if let Ok(nc) = get(r, "NC").parse::<u32>() {
            *apc_of
                .entry(nc)
                .or_default()
                .entry(get(r, "APC"))
                .or_default() += 1;
            nc_name.entry(nc).or_insert_with(|| get(r, "NCName"));
        }
    }
    let apcs: Vec<String> = {
        let mut v: Vec<String> = apc_of.values().flat_map(|m| m.keys().cloned()).collect();
        v.sort();
        v.dedup();
        v
    };
    let grid_of = |nc: u32| -> Option<[String; 4]> {
        let m = apc_of.get(&nc)?;
        let apc = m
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(*name)))?
            .0;
        let a = apcs.iter().position(|x| x == apc)? + 1;
        let district = format!("99{a:02}00");
        let street = format!("{district}{nc:03}");
        let community = format!("{street}001");
        Some([format!("{community}001"), community, street, district])
    };

    std::fs::create_dir_all(out).map_err(|e| GenError::Input(format!("{}: {e}", out.display())))?;
    let mut w = writer(out, "grids.csv")?;
    w.write_record(header(TableId::Grids)).map_err(io(out))?;
    for (&nc, name) in &nc_name {
        let Some([grid, community, street, district]) = grid_of(nc) else {
            continue;
        };
        let apc = apc_of[&nc]
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(*name)))
            .map(|x| x.0.clone())
            .unwrap_or_default();
        w.write_record([
            grid.as_str(),
            name,
            &community,
            name,
            &street,
            name,
            &district,
            &apc,
        ])
        .map_err(io(out))?;
    }
    w.flush().map_err(|e| GenError::Input(e.to_string()))?;
    // The required tables the log has nothing for: present, with no rows.
    for t in [
        TableId::Workers,
        TableId::Buildings,
        TableId::Rooms,
        TableId::Households,
        TableId::People,
    ] {
        let mut w = writer(out, &format!("{}.csv", t.name()))?;
        w.write_record(header(t)).map_err(io(out))?;
        w.flush().map_err(|e| GenError::Input(e.to_string()))?;
    }

    let mut w = writer(out, "incidents.csv")?;
    w.write_record(header(TableId::Incidents))
        .map_err(io(out))?;
    let (mut latest, mut first) = (None::<NaiveDateTime>, None::<NaiveDateTime>);
    let mut without_grid = 0;
    for r in &records {
        let grid = get(r, "NC")
            .parse::<u32>()
            .ok()
            .and_then(grid_of)
            .map(|g| g[0].clone())
            .unwrap_or_default();
        without_grid += grid.is_empty() as usize;
        let (code, name) = category(&get(r, "RequestType"));
        let created = get(r, "CreatedDate");
        let closed = get(r, "ClosedDate");
        for t in [parse_la(&created), parse_la(&closed)]
            .into_iter()
            .flatten()
        {
            latest = latest.max(Some(t));
            first = Some(first.map_or(t, |f| f.min(t)));
        }
        let st = status(&get(r, "Status"));
        let closed_ts = if closed.is_empty() {
            String::new()
        } else {
            timestamp(&closed)
        };
        let created_ts = timestamp(&created);
        w.write_record([
            get(r, "SRNumber").as_str(),
            &grid,
            code,
            &name,
            "normal",
            self::source(&get(r, "RequestSource")),
            "",
            &get(r, "Owner"),
            &created_ts,
            &created_ts,
            &created_ts,
            &closed_ts,
            "",
            &closed_ts,
            st,
            "",
            "",
        ])
        .map_err(io(out))?;
    }
    w.flush().map_err(|e| GenError::Input(e.to_string()))?;

    // The working calendar of the years the log covers: Monday–Friday minus federal holidays.
    let (from, to) = match (first, latest) {
        (Some(f), Some(l)) => (f.year(), l.year() + 1),
        _ => (2017, 2018),
    };
    let mut w = writer(out, "calendar.csv")?;
    w.write_record(["date", "is_workday"]).map_err(io(out))?;
    for year in from..=to {
        let holidays = federal_holidays(year);
        let mut d = NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default();
        while d.year() == year {
            let work =
                !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !holidays.contains(&d);
            w.write_record([d.format("%Y-%m-%d").to_string(), work.to_string()])
                .map_err(io(out))?;
            d = match d.succ_opt() {
                Some(n) => n,
                None => break,
            };
        }
    }
    w.flush().map_err(|e| GenError::Input(e.to_string()))?;

    // Evaluated at the first midnight after the last recorded instant.
    let as_of = latest
        .map(|l| {
            (l.date() + chrono::Days::new(1))
                .format("%Y-%m-%dT00:00:00+08:00")
                .to_string()
        })
        .unwrap_or_else(|| "2018-01-01T00:00:00+08:00".into());
    let manifest = serde_json::json!({
        "name": "Los Angeles 311 (MyLA311)",
        "as_of": as_of,
        "source": format!("imported from {}", source.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default()),
        "note": "wall-clock times are Los Angeles local time; the calendar is the US federal one",
    });
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )
    .map_err(|e| GenError::Input(format!("{}: {e}", out.display())))?;
    Ok(ImportSummary {
        read: records.len(),
        grids: nc_name.len(),
        without_grid,
        as_of,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federal_holidays_2017() {
        let h = federal_holidays(2017);
        let d = |m, day| NaiveDate::from_ymd_opt(2017, m, day).unwrap();
        assert!(h.contains(&d(1, 2)), "New Year observed on Monday");
        assert!(h.contains(&d(1, 16)), "MLK day");
        assert!(h.contains(&d(11, 10)), "Veterans Day observed on Friday");
        assert!(h.contains(&d(11, 23)), "Thanksgiving");
        assert!(h.contains(&d(12, 25)));
        assert_eq!(h.len(), 10);
    }

    #[test]
    fn mappings() {
        assert_eq!(category("Graffiti Removal").0, "0201");
        assert_eq!(category("Pothole").0, "0999");
        assert_eq!(source("Driver Self Report"), "patrol");
        assert_eq!(status("Cancelled"), "rejected");
        assert_eq!(timestamp("12/31/2017 11:59:58 PM"), "2017-12-31 23:59:58");
    }
}
