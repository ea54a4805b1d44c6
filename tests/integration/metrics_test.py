#!/usr/bin/env python3
"""Monitoring against the reference tools (docs/operations.md, "Monitoring").

A real outpost-hub with --http-listen and two real outpost-agents with --metrics-listen,
--metrics-file and a short --health-every, on loopback. The sites run workflows (two
succeed, one fails). Then:
  - promtool (Prometheus's own parser and linter) checks every /metrics text;
  - node_exporter's textfile collector reads the agents' --metrics-file;
  - a real Prometheus scrapes the hub, both agents and node_exporter, and PromQL queries
    must return the numbers that outpostctl's JSON and the agents' status report.
Every process gets its own port on 127.0.0.1 and its own temporary directory.

usage: metrics_test.py --hub BIN --agent BIN --ctl BIN
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

DEADLINE_S = 90  # for each wait below


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def wait_for(what, fn, deadline_s=DEADLINE_S):
    end = time.time() + deadline_s
    last = None
    while time.time() < end:
        try:
            got = fn()
            if got:
                return got
            last = "not yet"
        except Exception as e:  # the thing is not up yet
            last = repr(e)
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


class Fleet:
    def __init__(self, args, tmp):
        self.args, self.tmp, self.procs = args, tmp, []

    def spawn(self, name, argv):
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, p))
        return p

    def ctl(self, *argv, check=True):
        r = subprocess.run([self.args.ctl, "--hub-dir", os.path.join(self.tmp, "hub"), *argv],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"outpostctl {' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def dump_logs(self):
        for name, _ in self.procs:
            path = os.path.join(self.tmp, name + ".log")
            with open(path, errors="replace") as f:
                text = f.read()[-3000:]
            print(f"--- {name}.log (tail)\n{text}", file=sys.stderr)


def promtool_check(text, what):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"promtool check metrics refused {what}:\n{r.stdout}{r.stderr}")


def promql(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    _, _, body = http_get(url)
    reply = json.loads(body)
    if reply.get("status") != "success":
        raise AssertionError(f"PromQL {query}: {body}")
    return reply["data"]["result"]


def scalar(port, query):
    """The single value of an instant vector query, or None while there is none."""
    result = promql(port, query)
    if len(result) != 1:
        return None
    return float(result[0]["value"][1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hub", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--ctl", required=True)
    args = ap.parse_args()
    for tool in ("promtool", "prometheus", "prometheus-node-exporter"):
        if not shutil.which(tool):
            print(f"metrics_test: {tool} is not installed (scripts/setup.sh installs it)", file=sys.stderr)
            return 1
    tmp = tempfile.mkdtemp(prefix="outpost-metrics-")
    fleet = Fleet(args, tmp)
    ok = False
    try:
        run(fleet, args, tmp)
        ok = True
    finally:
        fleet.stop()
        if not ok:
            fleet.dump_logs()
            print(f"metrics_test: FAILED; files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("metrics_test: ok")
    return 0


def run(fleet, args, tmp):
    hub_dir = os.path.join(tmp, "hub")
    fleet.spawn("hub", [args.hub, "--data-dir", hub_dir, "--sites-endpoint", "tcp://127.0.0.1:0",
                        "--operators-endpoint", "tcp://127.0.0.1:0",
                        "--http-listen", "127.0.0.1:0", "--log-level", "warn"])
    endpoints = wait_for("hub.endpoints", lambda: json.load(open(os.path.join(hub_dir, "hub.endpoints"))))
    hub_http = endpoints["http"]

    # A wrong method, an unknown path: refused, not served.
    try:
        urllib.request.urlopen(urllib.request.Request(f"http://{hub_http}/metrics", data=b"x"), timeout=5)
        raise AssertionError("POST /metrics was served")
    except urllib.error.HTTPError as e:
        assert e.code == 405, e.code
    try:
        http_get(f"http://{hub_http}/nothing-here")
        raise AssertionError("an unknown path was served")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e.code

    textfile_dir = os.path.join(tmp, "textfile")
    os.makedirs(textfile_dir)
    agents = {}
    for site in ("site-a", "site-b"):
        data = os.path.join(tmp, site)
        key = subprocess.run([args.agent, "--data-dir", data, "--show-key"], capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
        fleet.ctl("site", "add", site, "--key", key, "--label", "role=gw")
        port = free_port()
        agents[site] = port
        fleet.spawn(site, [args.agent, "--data-dir", data, "--site", site,
                           "--hub", endpoints["sites"], "--hub-key", os.path.join(hub_dir, "keys", "hub.pub"),
                           "--metrics-listen", f"127.0.0.1:{port}",
                           "--metrics-file", os.path.join(textfile_dir, site + ".prom"),
                           "--metrics-every", "1s", "--health-every", "10s", "--log-level", "warn"])
    wait_for("both sites online",
             lambda: json.loads(fleet.ctl("status", "--json").stdout)["sites"]["online"] == 2)

    wf_dir = os.path.join(tmp, "wf")
    os.makedirs(wf_dir)
    with open(os.path.join(wf_dir, "probe.yaml"), "w") as f:
        f.write("name: probe\ntasks:\n  - id: look\n    run: [true]\n  - id: tell\n"
                "    needs: [look]\n    shell: echo probed\n")
    with open(os.path.join(wf_dir, "broken.yaml"), "w") as f:
        f.write("name: broken\ntasks:\n  - id: fail\n    shell: exit 3\n")
    fleet.ctl("workflow", "apply", os.path.join(wf_dir, "probe.yaml"), "--target", "role=gw")
    fleet.ctl("workflow", "apply", os.path.join(wf_dir, "broken.yaml"), "--target", "role=gw")
    fleet.ctl("run", "start", "probe", "--wait", "--timeout", "60")  # one run on each site
    fleet.ctl("run", "start", "broken", "--site", "site-a", "--wait", "--timeout", "60", check=False)

    # The reference numbers: what outpostctl says the hub holds.
    runs = json.loads(fleet.ctl("run", "list", "--json").stdout)
    runs = runs["runs"] if isinstance(runs, dict) else runs
    by_state = {}
    for r in runs:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    assert by_state == {"succeeded": 2, "failed": 1}, by_state

    # Every /metrics text passes Prometheus's own parser and linter.
    status, ctype, hub_text = http_get(f"http://{hub_http}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
    promtool_check(hub_text, "the hub's /metrics")
    for site, port in agents.items():
        _, _, text = http_get(f"http://127.0.0.1:{port}/metrics")
        promtool_check(text, f"{site}'s /metrics")
        wait_for(f"{site}'s metrics file", lambda: os.path.exists(os.path.join(textfile_dir, site + ".prom")))
        promtool_check(open(os.path.join(textfile_dir, site + ".prom")).read(), f"{site}'s --metrics-file")

    # node_exporter's textfile collector reads the files.
    ne_port = free_port()
    fleet.spawn("node-exporter", ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}",
                                  "--collector.disable-defaults", "--collector.textfile",
                                  f"--collector.textfile.directory={textfile_dir}"])
    ne_text = wait_for("node_exporter", lambda: http_get(f"http://127.0.0.1:{ne_port}/metrics")[2])
    for site in agents:
        assert f'outpost_agent_info{{site="{site}"}} 1' in ne_text, f"node_exporter lacks {site}"
    assert "node_textfile_scrape_error 0" in ne_text, "node_exporter could not read a metrics file"

    # A real Prometheus scrapes them all.
    prom_port = free_port()
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
                f"  - job_name: outpost-hub\n    static_configs: [{{targets: ['{hub_http}']}}]\n"
                "  - job_name: outpost-agent\n    static_configs: [{targets: ["
                + ", ".join(f"'127.0.0.1:{p}'" for p in agents.values()) + "]}]\n"
                f"  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{ne_port}']}}]\n")
    fleet.spawn("prometheus", ["prometheus", f"--config.file={cfg}",
                               f"--storage.tsdb.path={os.path.join(tmp, 'prom-data')}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"])
    wait_for("every target up", lambda: scalar(prom_port, "sum(up)") == 4.0)

    def expect(query, want):
        wait_for(f"PromQL {query} == {want}", lambda: scalar(prom_port, query) == float(want) or None, 30)

    expect('outpost_hub_sites{state="online"}', 2.0)
    expect('outpost_hub_sites{state="offline"}', 0)
    expect("sum(outpost_hub_site_up)", 2.0)
    expect('outpost_hub_runs{state="succeeded"}', float(by_state["succeeded"]))
    expect('outpost_hub_runs{state="failed"}', float(by_state["failed"]))
    # (The agents' series come twice: scraped from each agent, and from node_exporter.)
    expect('sum(outpost_agent_tasks_finished_total{job="outpost-agent",state="failed"})', 1.0)
    expect('sum(outpost_agent_runs_finished_total{job="outpost-agent",state="succeeded"})', 2.0)
    expect('sum(outpost_agent_runs_finished_total{job="node",state="failed"})', 1.0)
    expect('outpost_hub_operator_requests_total{op="run.start"}', 2.0)
    expect('count(outpost_agent_log_head{job="node"})', 2.0)
    # Every event each site logged reached the hub, once: the hub's count of applied
    # events equals the sum of the sites' log heads (as each agent reports its own).
    heads = {}
    for site in agents:
        data = os.path.join(tmp, site)
        st = json.loads(subprocess.run([args.ctl, "--local", "--data-dir", data, "status", "--json"],
                                       capture_output=True, text=True, check=True, timeout=30).stdout)
        heads[site] = st["status"]["log_head"] if "status" in st else st["log_head"]
    wait_for("the hub's events_applied to equal the sites' log heads",
             lambda: scalar(prom_port, "outpost_hub_events_applied_total")
             == scalar(prom_port, "sum(outpost_agent_log_head{job=\"outpost-agent\"})") or None, 60)
    expect("sum(outpost_hub_site_events_behind)", 0)
    expect("sum(outpost_hub_site_commands_pending)", 0)
    # The sites' health summaries arrived up their event streams.
    wait_for("both sites' health at the hub",
             lambda: scalar(prom_port, "count(outpost_site_health_timestamp_seconds)") == 2.0, 60)
    expect('outpost_site_tasks_failed{site="site-a"}', 1.0)
    expect('outpost_site_tasks_failed{site="site-b"}', 0)
    expect('outpost_site_disk_full{site="site-b"}', 0)
    assert scalar(prom_port, 'outpost_site_disk_free_bytes{site="site-a"}') > 0
    assert scalar(prom_port, "outpost_hub_store_commit_seconds_count") > 0
    assert scalar(prom_port, 'sum(outpost_agent_commit_seconds_count{job="outpost-agent"})') > 0
    assert scalar(prom_port, "outpost_hub_scrape_errors") == 0.0
    print(f"metrics_test: heads {heads}, runs {by_state}")


if __name__ == "__main__":
    sys.exit(main())
