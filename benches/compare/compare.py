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


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_set(path):
    with open(path) as f:
        return {(r["rule"], r["subject_id"], r["grid_code"]) for r in csv.DictReader(f)}


def gib(b):
    return f"{b / 2**30:.2f} GiB" if b else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--bench", default=os.path.join(ROOT, "target", "release", "gridlens-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", default="load,sweep")
    ap.add_argument("--child")
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
            print(f"  {r['rule']}  {r['found']:>9}  {r['median_seconds'] * 1000:9.1f} ms")
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
        qdir = os.path.join(ROOT, "benches", "queries")
        gdir, ddir = f"/tmp/gridlens-queries-{os.getpid()}", f"/tmp/duckdb-queries-{os.getpid()}"
        os.makedirs(gdir, exist_ok=True)
        os.makedirs(ddir, exist_ok=True)
        g = run_json([a.bench, "queries", "--data", a.data, "--queries", qdir,
                      "--repeat", str(a.repeat), "--results", gdir])
        d = run_json(me + ["--child", "duckdb-queries"], env=dict(os.environ, QUERIES=qdir, RESULTS=ddir))
        ratios = []
        for gq, dq in zip(g["queries"], d["queries"]):
            same = read_rows(os.path.join(gdir, gq["query"] + ".csv")) == read_rows(os.path.join(ddir, dq["query"] + ".csv"))
            ratio = dq["median_seconds"] / gq["median_seconds"]
            ratios.append(ratio)
            print(f"  {gq['query']:<36} gridlens {gq['median_seconds'] * 1000:9.1f} ms   duckdb {dq['median_seconds'] * 1000:9.1f} ms"
                  f"   duckdb/gridlens {ratio:6.2f}x   {gq['rows']:>6} rows  {'identical' if same else 'DIFFERENT'}")
        print(f"queries  median duckdb/gridlens {statistics.median(ratios):5.2f}x over {len(ratios)} queries")
        report["queries"] = {"gridlens": g, "duckdb": d, "median_ratio": statistics.median(ratios)}
    print(json.dumps(report), file=open(os.path.join("/tmp", "gridlens-compare-last.json"), "w"))


if __name__ == "__main__":
    main()
