"""Drives the web app in headless Chromium (Debian's chromium and chromium-driver, through
Selenium's WebDriver), as its users would: a street leader signs in, reads the KPI cards,
drills down two levels and back, is refused a neighbouring street; a worker closes a task (and another with its record corrected); an
analyst runs a query in the SQL console. Prints one JSON object of what the pages showed, for
tests/web.rs to check against the API; writes a screenshot of every screen.

Arguments come in the environment: GRIDLENS_URL, LEADER, WORKER, ANALYST (tokens), NEIGHBOUR
(a street outside the leader's), SHOTS (the screenshot folder).
"""

import json
import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["GRIDLENS_URL"].rstrip("/")
SHOTS = os.environ["SHOTS"]
os.makedirs(SHOTS, exist_ok=True)
TOKENS = [os.environ[k] for k in ("LEADER", "WORKER", "ANALYST")]


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1440,1000",
        "--user-data-dir=" + tempfile.mkdtemp(prefix="gridlens-chromium-"),
    ):
        o.add_argument(a)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=o)


d = browser()
wait = WebDriverWait(d, 60)
out = {"urls": []}


def shot(name):
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def visit(hash_=""):
    d.get(URL + "/" + hash_)
    out["urls"].append(d.current_url)


def sign_in(token):
    visit()
    wait.until(EC.visibility_of_element_located((By.ID, "token")))
    field = d.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    d.find_element(By.ID, "signin-button").click()
    wait.until(EC.visibility_of_element_located((By.ID, "who")))
    out["urls"].append(d.current_url)


def sign_out():
    d.find_element(By.ID, "logout").click()
    wait.until(EC.visibility_of_element_located((By.ID, "token")))


def drawn():
    """Waits for the dashboard to be fully drawn; returns the milliseconds it took."""
    wait.until(lambda _: d.execute_script("return document.body.dataset.drawn || null"))
    return int(d.execute_script("return document.body.dataset.drawn"))


def reset_drawn():
    d.execute_script("delete document.body.dataset.drawn")


def cards():
    return {
        c.get_attribute("data-kpi"): c.get_attribute("data-value")
        for c in d.find_elements(By.CSS_SELECTOR, "#cards .card")
    }


def title():
    return d.find_element(By.ID, "title").text


try:
    # 1. The street leader: sign-in, the cards, the ranking, the map, two levels down and back.
    sign_in(os.environ["LEADER"])
    out["leader_ms"] = drawn()
    out["leader_cards"] = cards()
    out["leader_title"] = title()
    out["map_points"] = d.execute_script(
        "const c = echarts.getInstanceByDom(document.getElementById('map'));"
        "return c.getOption().series[0].data.length;")
    shot("1-street-dashboard")
    levels = []
    for step in range(2):
        rows = d.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")
        code = rows[0].get_attribute("data-code")
        reset_drawn()
        rows[0].click()
        drawn()
        wait.until(lambda _: d.execute_script("return location.hash").startswith("#/dash/" + code))
        levels.append({"code": code, "cards": cards(), "title": title(),
                       "crumbs": len(d.find_elements(By.CSS_SELECTOR, "#crumbs a"))})
        shot("%d-drill-%s" % (step + 2, code))
    out["drill"] = levels
    # Back up through the breadcrumb to the street.
    reset_drawn()
    d.find_elements(By.CSS_SELECTOR, "#crumbs a")[0].click()
    drawn()
    out["back_title"] = title()
    # A neighbouring street: refused.
    visit("#/dash/" + os.environ["NEIGHBOUR"])
    wait.until(EC.visibility_of_element_located((By.ID, "error")))
    e = d.find_element(By.ID, "error")
    out["neighbour"] = {"status": e.get_attribute("data-status"), "message": e.text}
    shot("4-neighbour-refused")
    # Nothing of the session is readable by the page's scripts or kept in storage.
    out["storage"] = d.execute_script(
        "return [document.cookie, localStorage.length, sessionStorage.length]")
    sign_out()

    # 2. The worker: today's tasks, and closing the first with an outcome and a note.
    d.set_window_size(412, 915)
    sign_in(os.environ["WORKER"])
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#tasks article.task")))
    tasks = d.find_elements(By.CSS_SELECTOR, "#tasks article.task")
    out["worker_tasks"] = [t.get_attribute("data-task") for t in tasks]
    out["worker_b_role"] = len(d.find_elements(By.CSS_SELECTOR, "#tasks .tag.b"))
    shot("5-worker-tasks")
    first = tasks[0]
    Select(first.find_element(By.NAME, "outcome")).select_by_value("fixed")
    first.find_element(By.NAME, "note").send_keys("已上门核实并更新登记")
    first.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda _: first.get_attribute("data-closed") == "fixed")
    out["closed_task"] = out["worker_tasks"][0]
    shot("6-worker-task-closed")
    # The closed loop: a person's task closed as fixed with the record corrected (moved out).
    rest = [t for t in d.find_elements(By.CSS_SELECTOR, "#tasks article.task")
            if not t.get_attribute("data-closed") and t.find_elements(By.NAME, "correction")]
    out["corrected_task"] = None
    if rest:
        c = rest[0]
        out["corrected_task"] = c.get_attribute("data-task")
        Select(c.find_element(By.NAME, "outcome")).select_by_value("fixed")
        Select(c.find_element(By.NAME, "correction")).select_by_value("moved_out")
        c.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda _: c.get_attribute("data-closed") == "fixed")
        shot("6b-worker-record-corrected")
    sign_out()

    # 3. The analyst: the SQL console.
    d.set_window_size(1440, 1000)
    sign_in(os.environ["ANALYST"])
    drawn()
    visit("#/sql")
    wait.until(EC.visibility_of_element_located((By.ID, "sql")))
    box = d.find_element(By.ID, "sql")
    box.clear()
    box.send_keys("SELECT grid_code, count(*) AS residents FROM people GROUP BY 1 ORDER BY 1")
    d.find_element(By.ID, "sql-run").click()
    wait.until(EC.presence_of_element_located((By.ID, "sql-table")))
    out["sql_rows"] = [
        [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        for r in d.find_elements(By.CSS_SELECTOR, "#sql-table tbody tr")
    ]
    shot("7-sql-console")
    out["urls"].append(d.current_url)
    out["page_source_has_token"] = any(t in d.page_source for t in TOKENS)
    sign_out()
finally:
    d.quit()

json.dump(out, sys.stdout, ensure_ascii=False)
