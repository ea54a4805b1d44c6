#!/usr/bin/python3
"""The hub's dashboard in a real headless browser (Debian's chromium, driven by Selenium).

A real outpost-hub with --http-listen and two real outpost-agents on loopback, a third
site enrolled that never connects. The sites run a workflow that succeeds, one that
fails and one with an approval gate. Checked, with outpostctl's JSON as the reference:
  - without a login every page, script and query gets 401 and no fleet data;
  - a login link works once; the browser lands on the fleet page, which shows the
    three sites in the states outpostctl reports;
  - the failed run's graph shows the failed task as failed;
  - the Approve button on the gate approves it as the logged-in operator, and the run
    finishes;
  - an action without the session's CSRF token, or from another origin, is refused;
  - after Log out, the session is gone.
Screenshots of every page are written to --artifacts.

usage: dashboard_test.py --hub BIN --agent BIN --ctl BIN --artifacts DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_test import Fleet, wait_for  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def request(url, method="GET", body=None, headers=None):
    """(status, body) of one HTTP request; errors are answers too."""
    req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-component-update"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hub", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--artifacts", required=True)
    args = ap.parse_args()
    for tool in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.path.exists(tool):
            print(f"dashboard_test: {tool} is missing (scripts/setup.sh installs chromium and "
                  "chromium-driver)", file=sys.stderr)
            return 1
    os.makedirs(args.artifacts, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="outpost-dashboard-")
    fleet = Fleet(args, tmp)
    driver = None
    ok = False
    try:
        driver = browser()
        run(fleet, args, tmp, driver)
        ok = True
    finally:
        if driver is not None:
            if not ok:
                try:
                    driver.save_screenshot(os.path.join(args.artifacts, "failure.png"))
                    with open(os.path.join(args.artifacts, "failure.html"), "w") as f:
                        f.write(driver.page_source)
                except Exception:
                    pass
            driver.quit()
        fleet.stop()
        if not ok:
            fleet.dump_logs()
            print(f"dashboard_test: FAILED; files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"dashboard_test: ok; screenshots in {args.artifacts}")
    return 0


def shot(driver, args, name):
    time.sleep(0.3)  # let the last redraw paint
    driver.save_screenshot(os.path.join(args.artifacts, name + ".png"))


def wait_css(driver, what, css, pred=None):
    def look():
        els = driver.find_elements(By.CSS_SELECTOR, css)
        return els if els and (pred is None or pred(els)) else None
    return wait_for(what, look)


def run(fleet, args, tmp, driver):
    hub_dir = os.path.join(tmp, "hub")
    fleet.spawn("hub", [args.hub, "--data-dir", hub_dir, "--sites-endpoint", "tcp://127.0.0.1:0",
                        "--operators-endpoint", "tcp://127.0.0.1:0",
                        "--http-listen", "127.0.0.1:0", "--log-level", "warn"])
    endpoints = wait_for("hub.endpoints", lambda: json.load(open(os.path.join(hub_dir, "hub.endpoints"))))
    base = "http://" + endpoints["http"]

    for site in ("site-a", "site-b", "site-c"):
        data = os.path.join(tmp, site)
        key = subprocess.run([args.agent, "--data-dir", data, "--show-key"],
                             capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        fleet.ctl("site", "add", site, "--key", key, "--label", "role=gw", "--label", "zone=" + site[-1])
        if site == "site-c":
            continue  # enrolled, never connects: offline
        fleet.spawn(site, [args.agent, "--data-dir", data, "--site", site,
                           "--hub", endpoints["sites"], "--hub-key", os.path.join(hub_dir, "keys", "hub.pub"),
                           "--health-every", "10s", "--log-level", "warn"])
    wait_for("two sites online",
             lambda: json.loads(fleet.ctl("status", "--json").stdout)["sites"]["online"] == 2)

    wf = os.path.join(tmp, "wf")
    os.makedirs(wf)
    files = {
        "probe.yaml": "name: probe\ntasks:\n  - id: look\n    run: [true]\n  - id: tell\n"
                      "    needs: [look]\n    shell: echo probed\n",
        "broken.yaml": "name: broken\ntasks:\n  - id: prepare\n    shell: echo preparing\n"
                       "  - id: fail\n    needs: [prepare]\n    shell: echo about to fail; exit 3\n"
                       "  - id: after\n    needs: [fail]\n    run: [true]\n",
        "gated.yaml": "name: gated\ntasks:\n  - id: build\n    run: [true]\n  - id: ok\n"
                      "    type: approval\n    needs: [build]\n  - id: ship\n    needs: [ok]\n"
                      "    shell: echo shipped\n",
        "saga.yaml": "name: saga\ntasks:\n  - id: reserve\n    run: [true]\n    compensate: echo released\n"
                     "  - id: push\n    needs: [reserve]\n    for_each: [a, b, c]\n    shell: echo pushed {{ item }}\n"
                     "  - id: verify\n    needs: [push]\n    shell: exit 1\n",
        "nightly.yaml": "name: nightly\nschedule:\n  cron: \"0 3 * * *\"\n  timezone: Europe/Berlin\n"
                        "tasks:\n  - id: t\n    run: [true]\n",
    }
    for name, text in files.items():
        with open(os.path.join(wf, name), "w") as f:
            f.write(text)
        fleet.ctl("workflow", "apply", os.path.join(wf, name), "--target", "role=gw")
    fleet.ctl("run", "start", "probe", "--site", "site-a", "--wait", "--timeout", "60")
    fleet.ctl("run", "start", "broken", "--site", "site-a", "--wait", "--timeout", "60", check=False)
    fleet.ctl("run", "start", "saga", "--site", "site-b", "--wait", "--timeout", "60", check=False)
    fleet.ctl("run", "start", "gated", "--site", "site-b")
    runs = json.loads(fleet.ctl("run", "list", "--json").stdout)
    runs = runs["runs"] if isinstance(runs, dict) else runs
    failed = [r for r in runs if r["workflow"] == "broken"][0]
    assert failed["state"] == "failed", failed
    gated = [r for r in runs if r["workflow"] == "gated"][0]
    wait_for("the gate waits", lambda: any(
        t["state"] == "awaiting_approval"
        for t in json.loads(fleet.ctl("run", "show", gated["id"], "--json").stdout)["tasks"]))

    # 1. Nothing without a login.
    for path in ("/ui/", "/ui/app.js", "/ui/app.css", "/api/session", "/api/fleet",
                 "/api/site?name=site-a", "/api/run?id=" + failed["id"], "/api/audit"):
        status, body = request(base + path)
        assert status == 401, (path, status)
        assert "site-a" not in body and failed["id"] not in body, (path, body[:200])
    status, _ = request(base + "/api/cancel", "POST", json.dumps({"id": gated["id"]}).encode(),
                        {"Content-Type": "application/json"})
    assert status == 401, status
    driver.get(base + "/ui/")
    assert "log in first" in driver.page_source, driver.page_source[:300]
    assert "site-a" not in driver.page_source
    shot(driver, args, "0-no-login")

    # 2. A login link works once.
    login = json.loads(fleet.ctl("dashboard", "login", "--json").stdout)
    assert login["ok"] and login["url"].startswith(base + "/login?token="), login
    driver.get(login["url"])
    status, _ = request(login["url"])
    assert status == 403, f"a used login link answered {status}"
    status, _ = request(base + "/login?token=" + "0" * 64)
    assert status == 403, status

    # 3. The fleet page shows the sites in the states outpostctl reports.
    listed = json.loads(fleet.ctl("site", "list", "--json").stdout)
    reference = {s["name"]: s for s in (listed["sites"] if isinstance(listed, dict) else listed)}
    expect = {name: ("online" if s["online"] else "offline") for name, s in reference.items()}
    assert expect == {"site-a": "online", "site-b": "online", "site-c": "offline"}, expect

    def fleet_rows(els):
        got = {}
        for tr in els:
            cells = tr.find_elements(By.TAG_NAME, "td")
            got[tr.get_attribute("data-site")] = cells[1].text
        return got == expect
    wait_css(driver, "the fleet table", "#fleet tbody tr", fleet_rows)
    assert driver.find_element(By.CSS_SELECTOR, "#total-online b").text == "2"
    assert driver.find_element(By.CSS_SELECTOR, "#total-offline b").text == "1"
    assert "admin (admin)" in driver.find_element(By.ID, "who").text
    shot(driver, args, "1-fleet")
    # Server-side filtering: the offline ones only.
    driver.get(base + "/ui/#/fleet?state=offline")
    wait_css(driver, "the offline filter", "#fleet tbody tr",
             lambda els: [e.get_attribute("data-site") for e in els] == ["site-c"])

    # 4. The failed run's graph shows the failed task failed.
    driver.get(base + "/ui/#/run/" + failed["id"])
    wait_css(driver, "the failed task in the graph", "#graph g.node[data-task='fail']",
             lambda els: els[0].get_attribute("data-state") == "failed")
    states = {g.get_attribute("data-task"): g.get_attribute("data-state")
              for g in driver.find_elements(By.CSS_SELECTOR, "#graph g.node")}
    shown = {t["id"]: t["state"] for t in json.loads(fleet.ctl("run", "show", failed["id"], "--json").stdout)["tasks"]}
    for task, state in shown.items():
        assert states.get(task) == state, (task, state, states)
    driver.find_element(By.CSS_SELECTOR, "#tasks tr[data-task='fail'] button").click()
    wait_css(driver, "the failed task's output", "#output", lambda els: "about to fail" in els[0].text)

    assert "null" not in driver.find_element(By.ID, "view").text
    shot(driver, args, "2-run-failed")

    # Fan-out instances and compensations are drawn on the graph.
    saga = [r for r in runs if r["workflow"] == "saga"][0]
    assert saga["state"] == "compensated", saga
    driver.get(base + "/ui/#/run/" + saga["id"])
    wait_css(driver, "the compensation in the graph", "#graph g.node[data-task='compensate:reserve']",
             lambda els: els[0].get_attribute("data-state") == "succeeded")
    push = driver.find_element(By.CSS_SELECTOR, "#graph g.node[data-task='push']").text
    assert "3/3 instances" in push, push
    assert driver.find_element(By.CSS_SELECTOR, "#graph g.node[data-task='verify']").get_attribute(
        "data-state") == "failed"
    shot(driver, args, "2b-run-compensated")

    # 5. The site page: its runs, and its schedule's next ticks as outpostctl computes them.
    ticks = json.loads(fleet.ctl("workflow", "schedule", os.path.join(wf, "nightly.yaml"), "--json").stdout)["next"]
    driver.get(base + "/ui/#/site/site-a")
    wait_css(driver, "site-a's runs", "#runs tbody tr", lambda els: len(els) == 2)
    row = wait_css(driver, "the schedule", "#schedules tbody tr")[0].text
    assert "Europe/Berlin" in row and ticks[0] in row and ticks[1] in row, (row, ticks)
    assert "null" not in driver.find_element(By.ID, "view").text
    shot(driver, args, "3-site")

    # 6. CSRF: the browser's session cookie alone does not make an action.
    cookie = driver.get_cookie("outpost_session")
    assert cookie and cookie.get("httpOnly") and cookie.get("sameSite") == "Strict", cookie
    jar = {"Cookie": "outpost_session=" + cookie["value"], "Content-Type": "application/json"}
    body = json.dumps({"id": gated["id"], "task": "ok"}).encode()
    status, _ = request(base + "/api/approve", "POST", body, jar)
    assert status == 403, f"an approval without the CSRF token answered {status}"
    status, sess = request(base + "/api/session", headers=jar)
    csrf = json.loads(sess)["csrf"]
    status, _ = request(base + "/api/approve", "POST", body,
                        {**jar, "X-Outpost-CSRF": csrf, "Origin": "http://attacker.example"})
    assert status == 403, f"an approval from another origin answered {status}"
    assert json.loads(fleet.ctl("run", "show", gated["id"], "--json").stdout)["state"] != "succeeded"

    # 7. Approve from the page.
    driver.get(base + "/ui/#/run/" + gated["id"])
    button = wait_css(driver, "the Approve button", "button[data-approve='ok']")[0]
    shot(driver, args, "4-run-approval")
    button.click()
    wait_for("the confirmation", lambda: driver.switch_to.alert).accept()
    wait_for("the approved run to succeed",
             lambda: json.loads(fleet.ctl("run", "show", gated["id"], "--json").stdout)["state"] == "succeeded")
    wait_css(driver, "the graph to show ship succeeded", "#graph g.node[data-task='ship']",
             lambda els: els[0].get_attribute("data-state") == "succeeded")
    shot(driver, args, "5-run-approved")
    events = json.loads(fleet.ctl("events", "--json", "--limit", "100").stdout)
    assert any(isinstance(e, dict) and e.get("author") == "admin" and "approve" in json.dumps(e)
               for e in events), events

    # 8. The audit log.
    driver.get(base + "/ui/#/audit")
    wait_css(driver, "the audit log", "#audit tbody tr", lambda els: len(els) >= 3)
    shot(driver, args, "6-audit")

    # 9. Log out: the session is gone.
    driver.find_element(By.ID, "logout").click()
    wait_for("the logged-out notice", lambda: "session has ended" in driver.page_source)
    status, _ = request(base + "/api/session", headers=jar)
    assert status == 401, f"after logging out the session answered {status}"


if __name__ == "__main__":
    sys.exit(main())
