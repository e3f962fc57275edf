"""Time to a fully drawn leadership dashboard, measured in headless Chromium, and what the
browser downloads for it.

    python3 benches/compare/dashboard.py --url http://127.0.0.1:8080 --token $ADMIN \
        --code 440104003 [--repeat 5]

Signs in with the token, then opens the city dashboard (the token's scope) and the dashboard
of --code, each --repeat times after a first, cold one (the server's caches warm): prints, per
screen, the milliseconds from navigation to the last chart drawn (the page's own
`data-drawn`, which counts from the route's start, and the wall time the driver saw), and the
bytes the browser fetched (the app's files once; the API's answers every time).
"""

import argparse
import json
import os
import statistics
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--code", required=True, help="a street (or other code) to open besides the city")
p.add_argument("--repeat", type=int, default=5)
a = p.parse_args()

o = webdriver.ChromeOptions()
o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--window-size=1920,1080",
            "--user-data-dir=" + tempfile.mkdtemp(prefix="gridlens-bench-")):
    o.add_argument(arg)
d = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)
wait = WebDriverWait(d, 120)


def resources():
    return d.execute_script(
        "return performance.getEntriesByType('resource').map(r => [r.name, r.encodedBodySize, r.transferSize])")


try:
    d.get(a.url.rstrip("/") + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "token"))).send_keys(a.token)
    d.find_element(By.ID, "signin-button").click()
    wait.until(lambda _: d.execute_script("return document.body.dataset.drawn || null"))
    app_bytes = sum(r[1] for r in resources() if "/assets/" in r[0])
    out = {"app_files_bytes": app_bytes}
    for name, hash_ in (("city", "#/dash"), ("code", "#/dash/" + a.code)):
        runs = []
        for i in range(a.repeat + 1):
            d.execute_script("performance.clearResourceTimings(); delete document.body.dataset.drawn;"
                             "location.hash = '#/sql';")
            wait.until(lambda _: d.find_elements(By.ID, "sql"))
            t0 = time.perf_counter()
            d.execute_script("location.hash = arguments[0]", hash_)
            wait.until(lambda _: d.execute_script("return document.body.dataset.drawn || null"))
            wall = (time.perf_counter() - t0) * 1000
            drawn = int(d.execute_script("return document.body.dataset.drawn"))
            api = sum(r[1] for r in resources() if "/v1/" in r[0])
            runs.append({"drawn_ms": drawn, "wall_ms": round(wall, 1), "api_bytes": api})
        warm = runs[1:]
        out[name] = {
            "cold": runs[0],
            "warm_median_drawn_ms": statistics.median(r["drawn_ms"] for r in warm),
            "warm_median_wall_ms": statistics.median(r["wall_ms"] for r in warm),
            "api_bytes": warm[-1]["api_bytes"],
            "map_points": d.execute_script(
                "return echarts.getInstanceByDom(document.getElementById('map'))"
                ".getOption().series[0].data.length"),
        }
    print(json.dumps(out, indent=1))
finally:
    d.quit()
