#!/usr/bin/env python3
"""Side by side: gridlens and DuckDB (the Python package) on the same Parquet files, in one run.

    python3 benches/compare/compare.py --data DIR --bench BIN [--repeat 3] [--jobs load,sweep]

For each job, both engines run `repeat` times, one after the other; the script prints each
figure (median), the ratio DuckDB / gridlens, and checks that both return the same results.

- load:  gridlens loads the dataset into its store (`gridlens-bench load`, a fresh process each
         time); DuckDB creates an in-memory table from every Parquet table (a fresh process each
         time). Peak memory of each process is reported.
- sweep: the twelve rules of rules.md. gridlens runs `gridlens-bench sweep`; DuckDB runs the
         rules as SQL (below) over its in-memory tables, loaded first and not timed. Both
         results are compared as sets of (rule, subject_id, grid_code), rule by rule.

- queries: every analyst query of benches/queries/ (`--queries DIR` for another folder).
         gridlens runs them in process (`gridlens-bench queries`, on keys) and, with `--serve
         BIN` (the `gridlens` binary), through a `gridlens serve` of the same folder started here
         (`POST /v1/sql` as an admin token, CSV answers timed to the last byte); DuckDB over its
         in-memory tables. The ratio is DuckDB's time over the API's (in-process's without
         --serve); every answer of each path is compared with DuckDB's. With --in-turn, the API
         is that of a server inside the bench's process (started as `gridlens serve` starts,
         on the city it loaded), and each query's runs alternate in process / API: the two
         paths are timed on the same memory in the same minutes.

- kpis:  incident KPIs (kpis.md) for the whole city and per grid. gridlens runs
         `gridlens-bench kpis` (SLA clocks of all four stages, then both groupings); DuckDB runs
         the same definitions as SQL (the handle and close deadlines they need, on the working
         calendar) over its in-memory tables, loaded first and not timed. Both answers are
         compared row by row, column by column.

The rules are written here from rules.md, independently of the engine's code; the working
calendar is built from the same holiday files (engine/data/holidays).
"""
import argparse
import csv
import datetime as dt
import glob
import json
import os
import resource
import statistics
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TABLES = ["grids", "workers", "buildings", "rooms", "households", "people", "leases",
          "access_events", "utility_readings", "deaths", "visits", "incidents"]


def parquet_source(data, table):
    single = os.path.join(data, f"{table}.parquet")
    if os.path.exists(single):
        return f"'{single}'"
    folder = os.path.join(data, table)
    if os.path.isdir(folder):
        return f"'{folder}/*.parquet'"
    return None


def duckdb_connect(data):
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    con.execute(f"SET threads = {os.cpu_count()}")
    return con


def duckdb_load(con, data):
    for t in TABLES:
        src = parquet_source(data, t)
        if src:
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet({src})")


def working_days(first_year=2000, last_year=2030):
    """Monday–Friday, minus statutory holidays, plus make-up working days."""
    over = {}
    for f in sorted(glob.glob(os.path.join(ROOT, "engine", "data", "holidays", "*.json"))):
        for d in json.load(open(f)).get("days", []):
            over[d["date"]] = not d["isOffDay"]
    d = dt.date(first_year, 1, 1)
    out = []
    while d.year <= last_year:
        s = d.isoformat()
        out.append((s, over.get(s, d.weekday() < 5)))
        d += dt.timedelta(days=1)
    return out


def rules_sql(as_of_local, today, months):
    """The twelve rules as one UNION ALL query. as_of_local is the CST wall clock of as_of."""
    a = f"TIMESTAMP '{as_of_local}'"
    t = f"DATE '{today}'"
    ats = f"CAST({a} AS TIMESTAMPTZ)"
    m = ", ".join(f"'{x}'" for x in months)
    return f"""
WITH
loc AS (SELECT r.room_id, r.building_id, b.grid_code FROM rooms r JOIN buildings b USING (building_id)),
act AS (SELECT p.*, loc.building_id, loc.grid_code,
               list_transform(string_split(coalesce(p.care_tags, ''), ';'), lambda x: trim(x)) AS tags
        FROM people p JOIN loc USING (room_id) WHERE p.status = 'active'),
ev AS (SELECT id_number, building_id,
              CASE WHEN hour(ts) >= 20 THEN CAST(ts AS DATE)
                   WHEN hour(ts) < 6 THEN CAST(ts AS DATE) - 1 END AS night
       FROM access_events WHERE id_number IS NOT NULL AND ts <= {ats}),
nights AS (SELECT DISTINCT id_number, building_id, night FROM ev
           WHERE night IS NOT NULL
             AND CAST(night AS TIMESTAMP) + INTERVAL 20 HOUR > {a} - INTERVAL 30 DAY
             AND CAST(night AS TIMESTAMP) + INTERVAL 20 HOUR <= {a}),
reg AS (SELECT DISTINCT id_number, building_id FROM act),
r01 AS (SELECT 'R01' AS rule, n.id_number || '@' || n.building_id AS subject_id, b.grid_code
        FROM nights n JOIN buildings b USING (building_id)
        WHERE NOT EXISTS (SELECT 1 FROM reg WHERE reg.id_number = n.id_number AND reg.building_id = n.building_id)
        GROUP BY n.id_number, n.building_id, b.grid_code HAVING count(*) >= 5),
wd AS (SELECT d, row_number() OVER (ORDER BY d) AS rn FROM cal WHERE is_workday),
starts AS (SELECT DISTINCT start_date FROM leases),
grace AS (SELECT s.start_date, w.d AS grace_end
          FROM (SELECT start_date, (SELECT count(*) FROM wd WHERE wd.d <= starts.start_date) AS before FROM starts) s
          JOIN wd w ON w.rn = s.before + 3),
live AS (SELECT * FROM leases WHERE start_date <= {t} AND (end_date IS NULL OR {t} <= end_date)),
r02 AS (SELECT DISTINCT 'R02' AS rule, l.tenant_id_number || '@' || l.room_id AS subject_id, loc.grid_code
        FROM live l JOIN grace g USING (start_date) JOIN loc USING (room_id)
        WHERE g.grace_end <= {t}
          AND NOT EXISTS (SELECT 1 FROM act WHERE act.id_number = l.tenant_id_number AND act.room_id = l.room_id)),
r03 AS (SELECT 'R03' AS rule, r.room_id AS subject_id, loc.grid_code
        FROM rooms r JOIN loc USING (room_id)
        WHERE r.room_id IN (SELECT room_id FROM live)
          AND (r.tenure <> 'rental' OR r.rental_registered_on IS NULL OR r.rental_registered_on > {t})),
alive AS (SELECT DISTINCT building_id FROM access_events WHERE ts > {ats} - INTERVAL 7 DAY AND ts <= {ats}),
seen AS (SELECT DISTINCT id_number, building_id FROM access_events
         WHERE id_number IS NOT NULL AND ts > {ats} - INTERVAL 60 DAY AND ts <= {ats}),
r04 AS (SELECT 'R04' AS rule, p.person_id AS subject_id, p.grid_code
        FROM act p JOIN buildings b USING (building_id)
        WHERE b.access_control AND b.access_control_since <= {t} - 60
          AND b.building_id IN (SELECT building_id FROM alive)
          AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.id_number = p.id_number AND s.building_id = p.building_id)
          AND age_at(p.birth_date, {t}) >= 6 AND age_at(p.birth_date, {t}) < 80
          AND NOT list_contains(p.tags, 'housebound')
          AND p.registered_on <= {t} - 60),
r05 AS (SELECT 'R05' AS rule, p.person_id AS subject_id, p.grid_code FROM act p
        WHERE p.id_number IN (SELECT id_number FROM deaths WHERE died_on <= {t})),
dup AS (SELECT person_id, grid_code,
               row_number() OVER (PARTITION BY id_number ORDER BY registered_on DESC, person_id DESC) AS rn,
               count(*) OVER (PARTITION BY id_number) AS c
        FROM act),
r06 AS (SELECT 'R06' AS rule, person_id AS subject_id, grid_code FROM dup WHERE c >= 2 AND rn > 1),
idc AS (SELECT person_id, grid_code, id_number AS id, birth_date, sex FROM act WHERE doc_type = 'resident_id'),
r07 AS (SELECT 'R07' AS rule, person_id AS subject_id, grid_code FROM idc
        WHERE length(id) <> 18
           OR NOT regexp_full_match(substr(id, 1, 17), '[0-9]{{17}}')
           OR upper(substr(id, 18, 1)) <> substr('10X98765432',
                 CAST(list_sum(list_transform(range(17), lambda i: CAST(substr(id, i + 1, 1) AS INTEGER)
                      * [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2][i + 1])) % 11 AS INTEGER) + 1, 1)
           OR try_strptime(substr(id, 7, 8), '%Y%m%d') IS NULL
           OR CAST(try_strptime(substr(id, 7, 8), '%Y%m%d') AS DATE) <> birth_date
           OR (CAST(substr(id, 17, 1) AS INTEGER) % 2 = 1) <> (sex = 'M')),
hot AS (SELECT room_id FROM utility_readings WHERE month IN ({m}) AND electricity_kwh >= 50
        GROUP BY room_id HAVING count(DISTINCT month) = {len(months)}),
r08 AS (SELECT 'R08' AS rule, r.room_id AS subject_id, loc.grid_code
        FROM rooms r JOIN loc USING (room_id) JOIN hot USING (room_id)
        WHERE r.usage = 'residential'
          AND (r.tenure = 'vacant' OR NOT EXISTS (SELECT 1 FROM act WHERE act.room_id = r.room_id))),
occ AS (SELECT room_id, id_number FROM act UNION SELECT room_id, tenant_id_number FROM live),
cnt AS (SELECT room_id, count(DISTINCT id_number) AS n FROM occ GROUP BY room_id),
r09 AS (SELECT 'R09' AS rule, r.room_id AS subject_id, loc.grid_code
        FROM rooms r JOIN cnt USING (room_id) JOIN loc USING (room_id)
        WHERE r.usage = 'residential' AND cnt.n > greatest(1, floor(r.area_m2 / 5))),
r10 AS (SELECT 'R10' AS rule, person_id AS subject_id, grid_code FROM act
        WHERE last_verified_on IS NULL
           OR last_verified_on < {t} - CASE WHEN residence_kind = 'hukou' THEN 365 ELSE 180 END),
cv AS (SELECT id_number, room_id FROM visits
       WHERE kind IN ('care_visit', 'household_visit') AND visited_at > {ats} - INTERVAL 7 DAY AND visited_at <= {ats}),
r11 AS (SELECT 'R11' AS rule, p.person_id AS subject_id, p.grid_code FROM act p
        WHERE list_contains(p.tags, 'elderly_alone')
          AND NOT EXISTS (SELECT 1 FROM cv WHERE cv.id_number = p.id_number)
          AND NOT EXISTS (SELECT 1 FROM cv WHERE cv.room_id = p.room_id)),
r12 AS (SELECT 'R12' AS rule, h.household_id AS subject_id, loc.grid_code
        FROM households h JOIN loc USING (room_id)
        WHERE NOT EXISTS (SELECT 1 FROM act WHERE act.household_id = h.household_id))
SELECT * FROM r01 UNION ALL SELECT * FROM r02 UNION ALL SELECT * FROM r03 UNION ALL
SELECT * FROM r04 UNION ALL SELECT * FROM r05 UNION ALL SELECT * FROM r06 UNION ALL
SELECT * FROM r07 UNION ALL SELECT * FROM r08 UNION ALL SELECT * FROM r09 UNION ALL
SELECT * FROM r10 UNION ALL SELECT * FROM r11 UNION ALL SELECT * FROM r12
"""


def duckdb_prepare_rules(con):
    con.execute("CREATE TABLE cal (d DATE, is_workday BOOLEAN)")
    con.executemany("INSERT INTO cal VALUES (?, ?)", working_days())
    # Full years, with 29 February falling on 28 February in non-leap years.
    con.execute("""
CREATE MACRO age_at(b, t) AS
  year(t) - year(b) - CASE WHEN month(t) < month(b)
    OR (month(t) = month(b) AND day(t) < CASE WHEN month(b) = 2 AND day(b) = 29
         AND NOT (year(t) % 4 = 0 AND (year(t) % 100 <> 0 OR year(t) % 400 = 0)) THEN 28 ELSE day(b) END)
    THEN 1 ELSE 0 END""")


DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
CST_US = 8 * HOUR_US


def duckdb_prepare_calendar(con):
    """daycal(day, n): every day (days since 1970-01-01) with the number of working days up to and
    including it; wdn(n, day): the n-th working day."""
    days = working_days()
    epoch = dt.date(1970, 1, 1)
    rows, n = [], 0
    for s, work in days:
        n += work
        rows.append(((dt.date.fromisoformat(s) - epoch).days, n, work))
    con.execute("CREATE TABLE daycal (day INTEGER, n INTEGER, work BOOLEAN)")
    con.executemany("INSERT INTO daycal VALUES (?, ?, ?)", rows)
    con.execute("CREATE TABLE wdn AS SELECT n, day FROM daycal WHERE work")


def incident_flags_cte(as_of_us):
    """CTEs b, d, s, f: per incident reported by as_of, its handle and close deadlines and states
    and whether it is due, with the shipped SLA rules (the datasets have no sla_rules rows):
    handle = 4 natural hours (urgent) or 3 working days, close = 24 natural hours or 7 working
    days. Timestamps after as_of count as not yet happened."""
    a = as_of_us
    def masked(c):
        return f"CASE WHEN epoch_us({c}) <= {a} THEN epoch_us({c}) END"
    return f"""
b AS (
  SELECT grid_code, urgency, status, reopened, satisfaction,
         epoch_us(reported_at) AS rep, {masked('accepted_at')} AS acc,
         {masked('dispatched_at')} AS dis, {masked('handled_at')} AS han,
         {masked('closed_at')} AS clo
  FROM incidents WHERE epoch_us(reported_at) <= {a}
), d AS (
  SELECT b.*,
    CASE WHEN b.status = 'rejected' OR b.dis IS NULL THEN NULL
         WHEN b.urgency = 'urgent' THEN b.dis + 4 * {HOUR_US}
         ELSE (wh.day + 1)::BIGINT * {DAY_US} - {CST_US} END AS handle_dl,
    CASE WHEN b.status = 'rejected' THEN NULL
         WHEN b.urgency = 'urgent' THEN b.rep + 24 * {HOUR_US}
         ELSE (wc.day + 1)::BIGINT * {DAY_US} - {CST_US} END AS close_dl
  FROM b
  LEFT JOIN daycal ch ON ch.day = (b.dis + {CST_US}) // {DAY_US}
  LEFT JOIN wdn wh ON wh.n = ch.n + 3
  LEFT JOIN daycal cc ON cc.day = (b.rep + {CST_US}) // {DAY_US}
  LEFT JOIN wdn wc ON wc.n = cc.n + 7
), s AS (
  SELECT d.*,
    CASE WHEN handle_dl IS NULL THEN NULL WHEN han IS NOT NULL THEN (CASE WHEN han <= handle_dl THEN 'met' ELSE 'missed' END)
         WHEN {a} > handle_dl THEN 'overdue' ELSE 'pending' END AS hs,
    CASE WHEN close_dl IS NULL THEN NULL WHEN clo IS NOT NULL THEN (CASE WHEN clo <= close_dl THEN 'met' ELSE 'missed' END)
         WHEN {a} > close_dl THEN 'overdue' ELSE 'pending' END AS cs
  FROM d
), f AS (
  SELECT s.*,
    (acc IS NOT NULL AND status <> 'parked' AND cs IS NOT NULL AND (clo IS NOT NULL OR cs = 'overdue')) AS due,
    (dis IS NOT NULL AND status <> 'parked' AND hs IS NOT NULL AND (han IS NOT NULL OR hs = 'overdue')) AS hdue,
    CASE WHEN clo IS NOT NULL THEN (clo - rep) / {HOUR_US}.0 END AS hours
  FROM s
)"""


def incident_kpis_sql(as_of_us, group):
    """Incident KPIs of kpis.md, for the city (group None) or per `group`."""
    key = f"{group}, " if group else ""
    return f"""
WITH {incident_flags_cte(as_of_us)}, k AS (
  SELECT {key}
    count(*) AS reported, count(acc) AS accepted,
    count(*) FILTER (WHERE due) AS due, count(clo) AS closed,
    count(*) FILTER (WHERE due AND clo IS NOT NULL) AS closed_due,
    count(*) FILTER (WHERE due AND cs = 'met') AS close_met,
    count(*) FILTER (WHERE hdue) AS handle_due,
    count(*) FILTER (WHERE hdue AND hs = 'met') AS handle_met,
    count(*) FILTER (WHERE due AND reopened > 0) AS rework,
    count(*) FILTER (WHERE cs = 'overdue' AND status <> 'parked') AS overdue_open,
    list_sort(list(hours) FILTER (WHERE hours IS NOT NULL)) AS hl,
    avg(satisfaction) AS satisfaction_avg
  FROM f {"GROUP BY " + group if group else ""}
), r AS (
  SELECT k.*,
    accepted / nullif(reported, 0) AS acceptance_rate,
    closed_due / nullif(due, 0) AS closure_rate,
    close_met / nullif(due, 0) AS on_time_closure_rate,
    handle_met / nullif(handle_due, 0) AS on_time_handling_rate,
    rework / nullif(due, 0) AS rework_rate
  FROM k
), sc AS (
  SELECT r.*, 100.0 * (0.3 * closure_rate + 0.3 * on_time_closure_rate + 0.2 * on_time_handling_rate
                       + 0.2 * (1.0 - rework_rate)) AS score
  FROM r
)
SELECT {key}reported, accepted, acceptance_rate, due, closed, closure_rate, on_time_closure_rate,
  handle_due, on_time_handling_rate, rework_rate, overdue_open,
  CASE WHEN len(hl) > 0 THEN hl[greatest(1, least(len(hl), ceil(0.5 * len(hl))::INTEGER))] END AS median_close_hours,
  CASE WHEN len(hl) > 0 THEN hl[greatest(1, least(len(hl), ceil(0.9 * len(hl))::INTEGER))] END AS p90_close_hours,
  satisfaction_avg, score,
  CASE WHEN score IS NULL THEN NULL WHEN score >= 90 THEN 'A' WHEN score >= 75 THEN 'B'
       WHEN score >= 60 THEN 'C' WHEN score >= 40 THEN 'D' ELSE 'E' END AS grade
FROM sc {("ORDER BY " + group) if group else ""}
"""


def grid_kpis_sql(as_of_us, level):
    """Grid KPIs of kpis.md at a level, from the per-grid counts in `gc`."""
    col = {"grid": "grid_code", "community": "community_code", "street": "street_code",
           "district": "district_code", "city": "city_code"}[level]
    rank = ("RANK() OVER (PARTITION BY street_code ORDER BY grid_score DESC)"
            if level in ("grid", "community") else "NULL")
    street = "any_value(street_code) AS street_code," if level in ("grid", "community") else ""
    return f"""
WITH t AS (
  SELECT {col} AS code, {street}
    sum(buildings) AS buildings, sum(rooms) AS rooms, sum(residential_rooms) AS residential_rooms,
    sum(rental_rooms) AS rental_rooms, sum(vacant_rooms) AS vacant_rooms,
    sum(households) AS households, sum(visited) AS visited, sum(residents) AS residents,
    sum(floating_residents) AS floating_residents, sum(elderly_alone) AS elderly_alone,
    sum(elderly_cared) AS elderly_cared, sum(verified) AS verified, sum(workers) AS workers,
    sum(anomalies) AS anomalies, sum(incidents_30d) AS incidents_30d, sum(due) AS due,
    sum(closed_due) AS closed_due, sum(close_met) AS close_met, sum(handle_due) AS handle_due,
    sum(handle_met) AS handle_met, sum(rework) AS rework, sum(overdue_open) AS overdue_open
  FROM gc GROUP BY {col}
), r AS (
  SELECT t.*,
    floating_residents / nullif(residents, 0) AS floating_share,
    households / nullif(workers, 0) AS households_per_worker,
    visited / nullif(households, 0) AS visit_coverage_30d,
    elderly_cared / nullif(elderly_alone, 0) AS care_compliance_7d,
    verified / nullif(residents, 0) AS verified_share,
    CASE WHEN residents > 0 THEN anomalies * 1000.0 / residents END AS anomalies_per_1000,
    closed_due / nullif(due, 0) AS closure_rate_30d,
    close_met / nullif(due, 0) AS on_time_closure_rate_30d,
    100.0 * (0.3 * (closed_due / nullif(due, 0)) + 0.3 * (close_met / nullif(due, 0))
             + 0.2 * (handle_met / nullif(handle_due, 0)) + 0.2 * (1.0 - rework / nullif(due, 0))) AS incident_score_30d
  FROM t
), sc AS (
  SELECT r.*, 100.0 * (0.25 * coalesce(visit_coverage_30d, 1.0) + 0.15 * coalesce(care_compliance_7d, 1.0)
      + 0.15 * coalesce(verified_share, 1.0) + 0.25 * coalesce(incident_score_30d / 100.0, 1.0)
      + 0.20 * coalesce(greatest(1.0 - anomalies_per_1000 / 50.0, 0.0), 1.0)) AS grid_score
  FROM r
)
SELECT code, buildings, rooms, residential_rooms, rental_rooms, vacant_rooms, households, residents,
  floating_residents, floating_share, elderly_alone, workers, households_per_worker,
  visit_coverage_30d, care_compliance_7d, verified_share, anomalies, anomalies_per_1000,
  incidents_30d, closure_rate_30d, on_time_closure_rate_30d, overdue_open, incident_score_30d,
  grid_score, {rank} AS rank_in_street
FROM sc ORDER BY code
"""


def grid_counts_sql(as_of_us):
    """Per grid: the counts every grid KPI is made of (from `anomalies` of the rules above)."""
    a = as_of_us
    window = 30 * DAY_US
    return f"""
CREATE OR REPLACE TABLE gc AS
WITH {incident_flags_cte(as_of_us)},
g AS (SELECT grid_code, community_code, street_code, district_code,
             substr(district_code, 1, 4) || '00' AS city_code FROM grids),
rb AS (SELECT r.room_id, r.usage, r.tenure, b.grid_code FROM rooms r JOIN buildings b USING (building_id)),
rooms_g AS (SELECT grid_code, count(*) AS rooms,
    count(*) FILTER (WHERE usage = 'residential') AS residential_rooms,
    count(*) FILTER (WHERE tenure = 'rental') AS rental_rooms,
    count(*) FILTER (WHERE tenure = 'vacant') AS vacant_rooms FROM rb GROUP BY grid_code),
bld AS (SELECT grid_code, count(*) AS buildings FROM buildings GROUP BY grid_code),
visited AS (SELECT DISTINCT room_id FROM visits
    WHERE kind IN ('household_visit', 'verification') AND room_id IS NOT NULL
      AND epoch_us(visited_at) >= {a - window} AND epoch_us(visited_at) <= {a}),
hh AS (SELECT rb.grid_code, count(*) AS households, count(v.room_id) AS visited
    FROM households h JOIN rb ON rb.room_id = h.room_id
    LEFT JOIN visited v ON v.room_id = h.room_id
    WHERE EXISTS (SELECT 1 FROM people p WHERE p.household_id = h.household_id AND p.status = 'active')
    GROUP BY rb.grid_code),
flag AS (SELECT subject_id AS person_id, bool_or(rule = 'R10') AS r10, bool_or(rule = 'R11') AS r11
    FROM anomalies WHERE rule IN ('R10', 'R11') GROUP BY subject_id),
res AS (SELECT rb.grid_code, count(*) AS residents,
    count(*) FILTER (WHERE p.residence_kind = 'floating') AS floating_residents,
    count(*) FILTER (WHERE NOT coalesce(f.r10, false)) AS verified,
    count(*) FILTER (WHERE list_contains(list_transform(string_split(coalesce(p.care_tags, ''), ';'), lambda x: trim(x)), 'elderly_alone')) AS elderly_alone,
    count(*) FILTER (WHERE list_contains(list_transform(string_split(coalesce(p.care_tags, ''), ';'), lambda x: trim(x)), 'elderly_alone')
                       AND NOT coalesce(f.r11, false)) AS elderly_cared
    FROM people p JOIN rb ON rb.room_id = p.room_id LEFT JOIN flag f ON f.person_id = p.person_id
    WHERE p.status = 'active' GROUP BY rb.grid_code),
wk AS (SELECT grid_code, count(*) AS workers FROM workers WHERE active GROUP BY grid_code),
an AS (SELECT grid_code, count(*) AS anomalies FROM anomalies GROUP BY grid_code),
inc AS (SELECT grid_code, count(*) AS incidents_30d,
    count(*) FILTER (WHERE due) AS due, count(*) FILTER (WHERE due AND clo IS NOT NULL) AS closed_due,
    count(*) FILTER (WHERE due AND cs = 'met') AS close_met, count(*) FILTER (WHERE hdue) AS handle_due,
    count(*) FILTER (WHERE hdue AND hs = 'met') AS handle_met,
    count(*) FILTER (WHERE due AND reopened > 0) AS rework,
    count(*) FILTER (WHERE cs = 'overdue' AND status <> 'parked') AS overdue_open
    FROM f WHERE rep >= {a - window} AND rep < {a} GROUP BY grid_code)
SELECT g.*, coalesce(bld.buildings, 0) AS buildings, coalesce(rooms_g.rooms, 0) AS rooms,
  coalesce(residential_rooms, 0) AS residential_rooms, coalesce(rental_rooms, 0) AS rental_rooms,
  coalesce(vacant_rooms, 0) AS vacant_rooms, coalesce(households, 0) AS households,
  coalesce(visited, 0) AS visited, coalesce(residents, 0) AS residents,
  coalesce(floating_residents, 0) AS floating_residents, coalesce(verified, 0) AS verified,
  coalesce(elderly_alone, 0) AS elderly_alone, coalesce(elderly_cared, 0) AS elderly_cared,
  coalesce(workers, 0) AS workers, coalesce(anomalies, 0) AS anomalies,
  coalesce(incidents_30d, 0) AS incidents_30d, coalesce(due, 0) AS due,
  coalesce(closed_due, 0) AS closed_due, coalesce(close_met, 0) AS close_met,
  coalesce(handle_due, 0) AS handle_due, coalesce(handle_met, 0) AS handle_met,
  coalesce(rework, 0) AS rework, coalesce(overdue_open, 0) AS overdue_open
FROM g LEFT JOIN bld USING (grid_code) LEFT JOIN rooms_g USING (grid_code) LEFT JOIN hh USING (grid_code)
  LEFT JOIN res USING (grid_code) LEFT JOIN wk USING (grid_code) LEFT JOIN an USING (grid_code)
  LEFT JOIN inc USING (grid_code)
"""


LEVELS = ["grid", "community", "street", "district", "city"]


def manifest_as_of(data):
    m = json.load(open(os.path.join(data, "manifest.json")))
    return dt.datetime.fromisoformat(m["as_of"]).astimezone(dt.timezone(dt.timedelta(hours=8)))


def months_before(as_of, k=2):
    y, mo = as_of.year, as_of.month
    out = []
    for _ in range(k):
        mo -= 1
        if mo == 0:
            y, mo = y - 1, 12
        out.append(f"{y:04d}-{mo:02d}")
    return sorted(out)


def child(job, data, reps):
    """Runs a DuckDB job in this (child) process and prints JSON."""
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if job == "duckdb-load":
        con = duckdb_connect(data)
        t = time.perf_counter()
        duckdb_load(con, data)
        print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_bytes": peak()}))
    elif job == "duckdb-queries":
        res = duckdb_queries(data, reps, os.environ["QUERIES"], os.environ["RESULTS"])
        print(json.dumps({"queries": res, "peak_rss_bytes": peak()}))
    elif job == "duckdb-kpis":
        con = duckdb_connect(data)
        duckdb_load(con, data)
        duckdb_prepare_calendar(con)
        as_of = manifest_as_of(data)
        as_of_us = int(as_of.timestamp()) * 1_000_000
        outdir = os.environ["RESULTS"]
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            answers = {}
            for name, group in (("incident_city", None), ("incident_grid", "grid_code")):
                cur = con.execute(incident_kpis_sql(as_of_us, group))
                answers[name] = ([d[0] for d in cur.description], cur.fetchall())
            times.append(time.perf_counter() - t)
        # Grid KPIs need the sweep's anomalies: the rules above, run once and not timed.
        duckdb_prepare_rules(con)
        local = as_of.strftime("%Y-%m-%d %H:%M:%S")
        con.execute("CREATE TABLE anomalies AS " + rules_sql(local, as_of.date().isoformat(), months_before(as_of)))
        grid_times = []
        for _ in range(reps):
            t = time.perf_counter()
            con.execute(grid_counts_sql(as_of_us))
            for level in LEVELS:
                cur = con.execute(grid_kpis_sql(as_of_us, level))
                answers[f"grid_kpis_{level}"] = ([d[0] for d in cur.description], cur.fetchall())
            grid_times.append(time.perf_counter() - t)
        for name, (cols, rows) in answers.items():
            with open(os.path.join(outdir, f"{name}.csv"), "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(cols)
                w.writerows(rows)
        print(json.dumps({"median_seconds": statistics.median(times), "times": times,
                          "grid_median_seconds": statistics.median(grid_times),
                          "peak_rss_bytes": peak()}))
    elif job == "duckdb-sweep":
        con = duckdb_connect(data)
        duckdb_load(con, data)
        duckdb_prepare_rules(con)
        as_of = manifest_as_of(data)
        sql = rules_sql(as_of.strftime("%Y-%m-%d %H:%M:%S"), as_of.date().isoformat(), months_before(as_of))
        times, rows = [], None
        for _ in range(reps):
            t = time.perf_counter()
            rows = con.execute(sql).fetchall()
            times.append(time.perf_counter() - t)
        out = os.environ.get("DUCKDB_ANOMALIES")
        if out:
            with open(out, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["rule", "subject_id", "grid_code"])
                w.writerows(rows)
        print(json.dumps({"median_seconds": statistics.median(times), "times": times,
                          "anomalies": len(rows), "peak_rss_bytes": peak()}))


def duckdb_queries(data, reps, qdir, outdir):
    con = duckdb_connect(data)
    duckdb_load(con, data)
    res = []
    for f in sorted(glob.glob(os.path.join(qdir, "*.sql"))):
        name = os.path.splitext(os.path.basename(f))[0]
        sql = open(f).read()
        times, rows, cols = [], None, None
        for _ in range(reps):
            t = time.perf_counter()
            cur = con.execute(sql)
            rows = cur.fetchall()
            times.append(time.perf_counter() - t)
            cols = [d[0] for d in cur.description]
        with open(os.path.join(outdir, f"{name}.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerows(rows)
        res.append({"query": name, "rows": len(rows), "median_seconds": statistics.median(times)})
    return res


def normalize(v):
    """A cell as both engines can agree on: numbers rounded, timestamps as wall-clock text."""
    if v in ("", "None"):
        return None
    try:
        x = float(v)
        return round(x, 6) if abs(x) < 1e12 else x
    except ValueError:
        pass
    if len(v) >= 19 and v[4] == "-" and v[10] in "T ":
        return v[:10] + " " + v[11:19]
    return v


def read_rows(path):
    with open(path) as f:
        r = list(csv.reader(f))
    return [tuple(normalize(x) for x in row) for row in r[1:]]


def read_dicts(path):
    """Rows as {column: normalized value}, for comparing answers column by column."""
    with open(path) as f:
        return [{k: normalize(v) for k, v in r.items()} for r in csv.DictReader(f)]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_set(path):
    with open(path) as f:
        return {(r["rule"], r["subject_id"], r["grid_code"]) for r in csv.DictReader(f)}


def gib(b):
    return f"{b / 2**30:.2f} GiB" if b else "?"


def serve_and_run(a, outdir):
    """Starts `gridlens serve` on the dataset with an admin token, runs the queries through its
    API, stops it; returns the bench's JSON."""
    import socket
    import tempfile
    import urllib.request
    state = tempfile.mkdtemp(prefix="gridlens-bench-state-")
    token = subprocess.run([a.serve, "token", "add", "--state", state, "--name", "bench", "--role", "admin",
                            "--scope", "city", "--pii", "--data", a.data],
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = os.path.join(state, "serve.log")
    with open(log, "w") as out:
        server = subprocess.Popen([a.serve, "serve", "--data", a.data, "--state", state, "--listen", f"127.0.0.1:{port}"],
                                  stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, GRIDLENS_LOG="info"))
    try:
        deadline = time.time() + 600
        while True:
            try:
                urllib.request.urlopen(f"{url}/v1/health", timeout=2)
                break
            except Exception:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("gridlens serve did not start")
                time.sleep(0.5)
        # A first start writes a snapshot of the city in the background (10 GB at scale 1.0):
        # queries are timed once it is written, in the server's steady state.
        deadline = time.time() + 900
        while time.time() < deadline:
            with open(log) as f:
                text = f.read()
            if "snapshot written" in text or "snapshot was not written" in text:
                break
            time.sleep(1)
        return run_json([a.bench, "queries", "--url", url, "--token", token, "--queries", a.queries,
                         "--repeat", str(a.repeat), "--results", outdir])
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(state, ignore_errors=True)


def compare_queries(a, me):
    """The analyst queries in process, through the API (with --serve) and in DuckDB."""
    pid = os.getpid()
    dirs = {k: f"/tmp/{k}-queries-{pid}" for k in ("inproc", "http", "duckdb")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    cmd = [a.bench, "queries", "--data", a.data, "--queries", a.queries,
           "--repeat", str(a.repeat), "--results", dirs["inproc"]]
    if a.in_turn:
        # The API of a server in the bench's process, each query's runs in turn with the
        # in-process ones: both paths on the same memory in the same minutes.
        g = run_json(cmd + ["--api-in-turn", "--api-results", dirs["http"]])
        h = {"queries": [q["api"] for q in g["queries"]]}
    else:
        g = run_json(cmd)
        h = serve_and_run(a, dirs["http"]) if a.serve else None
    d = run_json(me + ["--child", "duckdb-queries"], env=dict(os.environ, QUERIES=a.queries, RESULTS=dirs["duckdb"]))
    ratios, inproc_ratios, api_tax, api_best, same_all = [], [], [], [], True
    for i, dq in enumerate(d["queries"]):
        name = dq["query"]
        duck = read_rows(os.path.join(dirs["duckdb"], name + ".csv"))
        gq = g["queries"][i]
        same = read_rows(os.path.join(dirs["inproc"], name + ".csv")) == duck
        line = f"  {name:<40} in process {gq['median_seconds'] * 1000:8.1f} ms"
        inproc_ratios.append(dq["median_seconds"] / gq["median_seconds"])
        best = gq
        if h:
            hq = h["queries"][i]
            same = same and read_rows(os.path.join(dirs["http"], name + ".csv")) == duck
            api_tax.append(hq["median_seconds"] / gq["median_seconds"])
            # The best runs of each path: the least disturbed by the machine.
            api_best.append(min(hq["times"]) / min(gq["times"]))
            line += f"   API {hq['median_seconds'] * 1000:8.1f} ms ({api_tax[-1]:4.2f}x in process)"
            best = hq
        ratio = dq["median_seconds"] / best["median_seconds"]
        ratios.append(ratio)
        same_all &= same
        print(line + f"   duckdb {dq['median_seconds'] * 1000:8.1f} ms   duckdb/gridlens {ratio:6.2f}x"
              f"   {gq['rows']:>6} rows  {'identical' if same else 'DIFFERENT'}")
    via = "API" if h else "in process"
    print(f"queries  {len(ratios)} queries, {via}: median duckdb/gridlens {statistics.median(ratios):5.2f}x, "
          f"lowest {min(ratios):5.2f}x, below 0.8x: {sum(r < 0.8 for r in ratios)}; "
          f"in process: median {statistics.median(inproc_ratios):5.2f}x"
          + (f"; API/in-process median {statistics.median(api_tax):4.2f}x, highest {max(api_tax):4.2f}x, "
             f"within 10 %: {sum(0.9 <= t <= 1.1 for t in api_tax)}; best run to best run: median "
             f"{statistics.median(api_best):4.2f}x, highest {max(api_best):4.2f}x, "
             f"within 10 %: {sum(0.9 <= t <= 1.1 for t in api_best)}" if h else "")
          + f"; answers {'all identical' if same_all else 'DIFFERENT'}")
    return {"gridlens": g, "http": h, "duckdb": d, "median_ratio": statistics.median(ratios),
            "identical": same_all}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--bench", default=os.path.join(ROOT, "target", "release", "gridlens-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", default="load,sweep")
    ap.add_argument("--child")
    ap.add_argument("--queries", default=os.path.join(ROOT, "benches", "queries"))
    ap.add_argument("--serve", help="the gridlens binary: also run the queries through its HTTP API")
    ap.add_argument("--in-turn", action="store_true",
                    help="time the queries through the API of a server inside the bench's process, "
                         "in turn with the in-process runs (instead of a `gridlens serve` run after them)")
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.data, a.repeat)
    jobs = a.jobs.split(",")
    me = [sys.executable, os.path.abspath(__file__), "--data", a.data, "--repeat", str(a.repeat)]
    report = {}
    if "load" in jobs:
        g = [run_json([a.bench, "load", "--data", a.data]) for _ in range(a.repeat)]
        d = [run_json(me + ["--child", "duckdb-load"]) for _ in range(a.repeat)]
        gs = statistics.median(x["seconds"] for x in g)
        ds = statistics.median(x["seconds"] for x in d)
        print(f"load     gridlens {gs:8.3f} s (peak {gib(max(x['peak_rss_bytes'] for x in g))}, "
              f"{g[0]['rows']} rows, {g[0]['rejected']} rejected)   "
              f"duckdb {ds:8.3f} s (peak {gib(max(x['peak_rss_bytes'] for x in d))})   "
              f"duckdb/gridlens {ds / gs:5.2f}x")
        report["load"] = {"gridlens": g, "duckdb": d}
    if "sweep" in jobs:
        ga = os.path.join("/tmp", f"gridlens-anomalies-{os.getpid()}.csv")
        da = os.path.join("/tmp", f"duckdb-anomalies-{os.getpid()}.csv")
        g = run_json([a.bench, "sweep", "--data", a.data, "--repeat", str(max(a.repeat, 3)), "--anomalies", ga])
        env = dict(os.environ, DUCKDB_ANOMALIES=da)
        d = run_json(me + ["--child", "duckdb-sweep"], env=env)
        gs, ds = g["median_seconds"], d["median_seconds"]
        print(f"sweep    gridlens {gs:8.3f} s (peak during sweep {gib(g['peak_rss_during_sweep_bytes'])})   "
              f"duckdb {ds:8.3f} s   duckdb/gridlens {ds / gs:5.2f}x")
        for r in g["rules"]:
            print(f"  {r['rule']}  {r['found']:>9}  alone {r['median_seconds_alone'] * 1000:9.1f} ms"
                  f"   in the sweep {r['median_seconds_in_sweep'] * 1000:9.1f} ms")
        gset, dset = read_set(ga), read_set(da)
        same = gset == dset
        print(f"  results: gridlens {len(gset)} anomalies, duckdb {len(dset)}: {'identical' if same else 'DIFFERENT'}")
        if not same:
            for rule in sorted({x[0] for x in gset | dset}):
                gr = {x for x in gset if x[0] == rule}
                dr = {x for x in dset if x[0] == rule}
                if gr != dr:
                    print(f"    {rule}: only gridlens {sorted(gr - dr)[:3]} …, only duckdb {sorted(dr - gr)[:3]} …")
        report["sweep"] = {"gridlens": g, "duckdb": d, "identical": same}
    if "queries" in jobs:
        report["queries"] = compare_queries(a, me)
    if "kpis" in jobs:
        gdir, ddir = f"/tmp/gridlens-kpis-{os.getpid()}", f"/tmp/duckdb-kpis-{os.getpid()}"
        os.makedirs(gdir, exist_ok=True)
        os.makedirs(ddir, exist_ok=True)
        g = run_json([a.bench, "kpis", "--data", a.data, "--repeat", str(max(a.repeat, 3)), "--out", gdir])
        d = run_json(me + ["--child", "duckdb-kpis"], env=dict(os.environ, RESULTS=ddir))
        gs, ds = g["incident_kpis_total_median_seconds"], d["median_seconds"]
        print(f"kpis     incident KPIs, city and per grid: gridlens {gs:8.3f} s (SLA clocks included)   "
              f"duckdb {ds:8.3f} s   duckdb/gridlens {ds / gs:5.2f}x")
        gg = g["sla_clocks_median_seconds"] + g["grid_kpis_all_levels_median_seconds"]
        dg = d["grid_median_seconds"]
        print(f"kpis     grid KPIs, all five levels: gridlens {gg:8.3f} s (SLA clocks included, sweep not)   "
              f"duckdb {dg:8.3f} s (sweep not included)   duckdb/gridlens {dg / gg:5.2f}x")
        same_all = True
        for name in ["incident_city", "incident_grid"] + [f"grid_kpis_{lv}" for lv in LEVELS]:
            gr, dr = read_dicts(os.path.join(gdir, name + ".csv")), read_dicts(os.path.join(ddir, name + ".csv"))
            # Compare the columns both answers have.
            gr = [{k: v for k, v in x.items() if k in y} for x, y in zip(gr, dr)] + gr[len(dr):]
            dr = [{k: v for k, v in y.items() if k in x} for x, y in zip(gr, dr)] + dr[len(gr):]
            diff = [(x, y) for x, y in zip(gr, dr) if x != y]
            same = len(gr) == len(dr) and not diff
            same_all &= same
            print(f"  {name:<14} {len(gr):>6} rows   {'identical' if same else 'DIFFERENT'}")
            for x, y in diff[:3]:
                print(f"    gridlens {x}\n    duckdb   {y}")
        report["kpis"] = {"gridlens": g, "duckdb": d, "identical": same_all,
                          "incident_ratio": ds / gs, "grid_ratio": dg / gg}
    print(json.dumps(report), file=open(os.path.join("/tmp", "gridlens-compare-last.json"), "w"))


if __name__ == "__main__":
    main()
