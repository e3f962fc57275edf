"""The live city under ingest: door events posted in batches to a running server, and what each
batch costs until its version is served (anomalies and task lists updated).

    python3 benches/compare/ingest.py --url http://127.0.0.1:8080 --token $ADMIN \
        [--batches 5] [--rows 10000] [--clients 1]

Reads a few buildings and identities from the server, then posts --batches CSV batches of
--rows door events each (from --clients clients at once) to POST /v1/ingest/access_events.
Prints per batch the milliseconds from sending to the answer (the answer comes once the batch
is flushed to the log and its version of the city, with its sweep and task lists, is served)
and the server's own `milliseconds`, then the sustained rows per second over the whole run.
"""

import argparse
import concurrent.futures
import json
import statistics
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--batches", type=int, default=5)
p.add_argument("--rows", type=int, default=10000)
p.add_argument("--clients", type=int, default=1)
a = p.parse_args()


def call(path, body=None, ct="application/json"):
    req = urllib.request.Request(a.url + path, data=body, method="POST" if body else "GET")
    req.add_header("Authorization", "Bearer " + a.token)
    if body is not None:
        req.add_header("Content-Type", ct)
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.loads(r.read())


def sql(q):
    return call("/v1/sql", json.dumps({"sql": q}).encode())["rows"]


buildings = [r["building_id"] for r in sql(
    "SELECT building_id FROM buildings WHERE access_control ORDER BY building_id LIMIT 200")]
ids = [r["id_number"] for r in sql(
    "SELECT id_number FROM people WHERE status = 'active' ORDER BY person_id LIMIT 2000")]
if not buildings:
    buildings = [r["building_id"] for r in sql("SELECT building_id FROM buildings LIMIT 200")]


def batch(n):
    lines = ["ts,building_id,id_number,direction,device_id"]
    for i in range(a.rows):
        k = n * a.rows + i
        lines.append("2026-10-31 %02d:%02d:%02d,%s,%s,%s,bench-%d" % (
            (k // 3600) % 24, (k // 60) % 60, k % 60, buildings[k % len(buildings)],
            ids[k % len(ids)] if k % 5 else "", "in" if k % 2 else "out", k % 7))
    return ("\n".join(lines) + "\n").encode()


bodies = [batch(n) for n in range(a.batches)]
print("batch of %d rows: %d bytes" % (a.rows, len(bodies[0])))


def post(body):
    t = time.perf_counter()
    r = call("/v1/ingest/access_events", body, "text/csv")
    return (time.perf_counter() - t) * 1000, r


t0 = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(max_workers=a.clients) as ex:
    done = list(ex.map(post, bodies))
wall = time.perf_counter() - t0
for ms, r in done:
    print("  %8.0f ms to the answer, server %6d ms, accepted %d, version %d, anomalies %d" % (
        ms, r["milliseconds"], r["accepted"], r["version"], r["anomalies"]))
rows = sum(r["accepted"] for _, r in done)
lat = [ms for ms, _ in done]
print("median %.0f ms, max %.0f ms per batch; %d rows in %.1f s = %.0f rows/s" % (
    statistics.median(lat), max(lat), rows, wall, rows / wall))
