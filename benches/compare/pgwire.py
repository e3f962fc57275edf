#!/usr/bin/env python3
"""The PostgreSQL endpoint over the wire, side by side with a PostgreSQL server holding the same
tables, in one run (issue 17).

    python3 benches/compare/pgwire.py --gridlens URL --postgres URL [--clients 16] [--seconds 10]

- Copies what it compares into PostgreSQL first, through gridlens itself (`COPY (…) TO STDOUT`
  into `COPY … FROM STDIN`): `grids` whole, and the people of the district whose number is
  closest to `--rows` (991,660 at scale 1.0).
- small query: `--clients` connections each run one street's grids per community (a
  `GROUP BY` over `grids` with a filter) as fast as they can for `--seconds`; p50 / p99 of
  each query's time and queries per second.
- fetch: those people (six columns: text, dates) fetched whole, in text and in binary; rows per
  second.
Every answer of gridlens is compared with PostgreSQL's.
"""
import argparse
import statistics
import threading
import time

import psycopg

COLUMNS = "person_id, id_number, name, sex, birth_date, registered_on"


def copy_into(src, dst, query, table, ddl):
    with dst.cursor() as d:
        d.execute(f"DROP TABLE IF EXISTS {table}")
        d.execute(ddl)
        with src.cursor().copy(f"COPY ({query}) TO STDOUT") as out:
            with d.copy(f"COPY {table} FROM STDIN") as into:
                for chunk in out:
                    into.write(chunk)
        d.execute(f"ANALYZE {table}")
    dst.commit()


def small(urls, sql, clients, seconds):
    lat, lock = [], threading.Lock()
    stop = time.time() + seconds
    answers = set()

    def run(url):
        with psycopg.connect(url, autocommit=True) as c:
            mine = []
            while time.time() < stop:
                t = time.perf_counter()
                rows = c.execute(sql).fetchall()
                mine.append(time.perf_counter() - t)
            with lock:
                lat.extend(mine)
                answers.add(tuple(rows))

    threads = [threading.Thread(target=run, args=(urls[i % len(urls)],)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - start
    lat.sort()
    return {
        "p50_ms": 1e3 * lat[len(lat) // 2],
        "p99_ms": 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "qps": len(lat) / wall,
        "answers": answers,
    }


def fetch(url, sql, binary, repeat):
    times, rows = [], None
    for _ in range(repeat):
        with psycopg.connect(url) as c:
            t = time.perf_counter()
            rows = c.cursor(binary=binary).execute(sql).fetchall()
            times.append(time.perf_counter() - t)
    t = statistics.median(times)
    return {"seconds": t, "rows_per_s": len(rows) / t, "rows": rows}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gridlens", required=True, action="append",
                   help="postgresql://user:TOKEN@host:port/gridlens; once per token: the "
                        "clients take them in turn (a token runs two queries at once)")
    p.add_argument("--postgres", required=True, help="a PostgreSQL 15+ server to compare with")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()

    g = psycopg.connect(a.gridlens[0], autocommit=True)
    pg = psycopg.connect(a.postgres)
    street = g.execute(
        "SELECT street_code FROM grids GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()[0]
    # The district whose people are closest to --rows in number: a deterministic set of rows.
    district, n = min(g.execute("SELECT substr(grid_code, 1, 6), count(*) FROM people GROUP BY 1")
                      .fetchall(), key=lambda r: abs(r[1] - a.rows))
    people = f"SELECT {COLUMNS} FROM people WHERE grid_code LIKE '{district}%'"
    print(f"copying grids and the {n} people of district {district} into PostgreSQL …", flush=True)
    copy_into(g, pg, "SELECT * FROM grids", "grids",
              "CREATE TABLE grids (grid_code text PRIMARY KEY, grid_name text, community_code text, "
              "community_name text, street_code text, street_name text, district_code text, "
              "district_name text)")
    copy_into(g, pg, people, "people",
              "CREATE TABLE people (person_id text PRIMARY KEY, id_number text, name text, "
              "sex text, birth_date date, registered_on date)")
    pg.close()

    sql = (f"SELECT community_code, count(*) AS grids FROM grids WHERE street_code = '{street}' "
           "GROUP BY community_code ORDER BY community_code")
    report = {}
    for name, urls in [("gridlens", a.gridlens), ("postgres", [a.postgres])]:
        url = urls[0]
        s = small(urls, sql, a.clients, a.seconds)
        report[name] = {"small": s}
        print(f"{name}: small query at {a.clients} clients: p50 {s['p50_ms']:.2f} ms, "
              f"p99 {s['p99_ms']:.2f} ms, {s['qps']:.0f} queries/s", flush=True)
        for binary in (False, True):
            f = fetch(url, f"SELECT {COLUMNS} FROM people", binary, a.repeat) \
                if name == "postgres" else fetch(url, people, binary, a.repeat)
            report[name]["binary" if binary else "text"] = f
            print(f"{name}: {len(f['rows'])} rows in {'binary' if binary else 'text'}: "
                  f"{f['seconds']:.2f} s, {f['rows_per_s']:,.0f} rows/s", flush=True)
    same_small = report["gridlens"]["small"]["answers"] == report["postgres"]["small"]["answers"]
    same_rows = all(sorted(report["gridlens"][k]["rows"]) == sorted(report["postgres"][k]["rows"])
                    for k in ("text", "binary"))
    print(f"identical answers: small {same_small}, fetch {same_rows}")
    for k, label in [("small", "p50"), ("text", "text"), ("binary", "binary")]:
        if k == "small":
            r = report["postgres"][k]["p50_ms"] / report["gridlens"][k]["p50_ms"]
        else:
            r = report["gridlens"][k]["rows_per_s"] / report["postgres"][k]["rows_per_s"]
        print(f"gridlens / PostgreSQL, {label}: {r:.2f}x")


if __name__ == "__main__":
    main()
