#!/usr/bin/python3
"""A second implementation of the site side of the Outpost sync protocol, in Python,
written from docs/protocol.md and its test vectors (docs/protocol-vectors.json) alone.

It starts a real outpost-hub on loopback, enrolls its own CURVE key through the operator
API (also spoken from Python), and checks the documented behaviour: the test vectors
decode and encode as the document says, the handshake, batches and ACKs, resume after a
reconnect, duplicates dropped and gaps refused (and counted), an old incarnation refused
with only an ERROR, impossible heads and watermarks refused, malformed frames refused,
and wrongly typed operator requests answered with 'invalid' naming the field.

Uses Debian's python3-zmq and python3-msgpack. Exit status 0 when every check holds.
    foreign_client.py HUB_BIN SOURCE_DIR
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

HELLO, WELCOME, BATCH, ACK, PING, PONG, ERROR = 1, 2, 3, 4, 5, 6, 7
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def pack(fields):
    return msgpack.packb(fields, use_bin_type=True)


def unpack(frame):
    return msgpack.unpackb(frame, raw=False)


def check_vectors(source_dir):
    with open(os.path.join(source_dir, "docs", "protocol-vectors.json")) as f:
        vectors = json.load(f)
    for v in vectors["frames"]:
        raw = bytes.fromhex(v["hex"])
        want = dict(v["fields"])
        if "entries" in want:
            want["entries"] = [bytes.fromhex(e) for e in want["entries"]]
        if "data" in want:
            want["data"] = bytes.fromhex(want["data"])
        check(unpack(raw) == want, "vector %s decodes to its documented fields" % v["name"])
        # Encoding: the fields in the documented order, entries as bin.
        check(pack(want) == raw, "vector %s encodes to its documented bytes" % v["name"])
    for v in vectors["events"] + vectors["commands"]:
        check(unpack(bytes.fromhex(v["hex"])) == v["fields"],
              "vector %s decodes to its documented fields" % v["name"])
    return vectors


class Hub:
    def __init__(self, hub_bin, workdir):
        self.dir = os.path.join(workdir, "hub")
        self.proc = subprocess.Popen(
            [hub_bin, "--data-dir", self.dir, "--sites-endpoint", "tcp://127.0.0.1:0",
             "--operators-endpoint", "tcp://127.0.0.1:0", "--log-level", "warn"])
        ep_file = os.path.join(self.dir, "hub.endpoints")
        for _ in range(200):
            if os.path.exists(ep_file):
                break
            time.sleep(0.05)
        with open(ep_file) as f:
            ep = json.load(f)
        self.sites_ep, self.ops_ep, self.key = ep["sites"], ep["operators"], ep["hub_key"]
        self.ctx = zmq.Context()
        self.op = self.ctx.socket(zmq.DEALER)
        with open(os.path.join(self.dir, "admin", "admin.key")) as f:
            secret = f.read().strip().encode()
        with open(os.path.join(self.dir, "admin", "admin.pub")) as f:
            public = f.read().strip().encode()
        self.op.curve_secretkey, self.op.curve_publickey = secret, public
        self.op.curve_serverkey = self.key.encode()
        self.op.linger = 0
        self.op.connect(self.ops_ep)
        self.rid = 0

    def request(self, req):
        self.rid += 1
        body = dict(req) if isinstance(req, dict) else req
        if isinstance(body, dict):
            body["rid"] = self.rid
        self.op.send(json.dumps(body).encode() if not isinstance(body, bytes) else body)
        if not self.op.poll(10000):
            raise RuntimeError("no operator reply to %r" % (req,))
        return json.loads(self.op.recv())

    def stop(self):
        self.op.close()
        self.ctx.term()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)


class Site:
    """One site's end of the protocol: its own event log (a list) and inbox watermark."""

    def __init__(self, hub, incarnation):
        self.hub = hub
        self.public, self.secret = zmq.curve_keypair()
        self.incarnation = incarnation
        self.log = []          # encoded events; entry n is log[n-1]
        self.down_applied = 0
        self.sock = None

    def connect(self):
        if self.sock is not None:
            self.sock.close()
        s = self.hub.ctx.socket(zmq.DEALER)
        s.curve_secretkey, s.curve_publickey = self.secret, self.public
        s.curve_serverkey = self.hub.key.encode()
        s.linger = 0
        s.connect(self.hub.sites_ep)
        self.sock = s

    def send(self, fields):
        self.sock.send(pack(fields))

    def recv(self, timeout_ms=5000):
        """Next frame that is not PING; answers PINGs and applies command batches."""
        deadline = time.time() + timeout_ms / 1000.0
        while time.time() < deadline:
            if not self.sock.poll(int((deadline - time.time()) * 1000) + 1):
                break
            m = unpack(self.sock.recv())
            if m.get("t") == PING:
                self.send({"v": 1, "t": PONG})
                continue
            if m.get("t") == BATCH:
                # Commands from the hub: apply in order, acknowledge the watermark.
                first, entries = m["first_seq"], m["entries"]
                if first <= self.down_applied + 1:
                    self.down_applied = max(self.down_applied, first + len(entries) - 1)
                self.send({"v": 1, "t": ACK, "seq": self.down_applied, "credit": 8})
                continue
            return m
        return None

    def hello(self, up_head=None, down_applied=None, incarnation=None):
        self.send({"v": 1, "t": HELLO, "site": "py",
                   "incarnation": self.incarnation if incarnation is None else incarnation,
                   "up_head": len(self.log) if up_head is None else up_head,
                   "down_applied": self.down_applied if down_applied is None else down_applied})
        return self.recv()

    def batch(self, first, n):
        self.send({"v": 1, "t": BATCH, "first_seq": first, "up_head": len(self.log),
                   "entries": self.log[first - 1:first - 1 + n]})
        return self.recv()


def event(run, seq, kind=1):
    # An event as docs/protocol.md ("Events") encodes it: run.created with two tasks.
    return pack({"time": 1800000000000 + seq, "type": kind, "run": run, "task": "",
                 "attempt": 0, "state": "", "exit_code": -1, "signal": 0, "message": "",
                 "output": "", "workflow": "py-wf", "params": {}, "tasks": ["a", "b"],
                 "request": ""})


def counters(hub):
    return hub.request({"op": "status"})["status"]["counters"]


def main():
    hub_bin, source_dir = sys.argv[1], sys.argv[2]
    check_vectors(source_dir)
    workdir = tempfile.mkdtemp(prefix="outpost-pyclient-")
    hub = Hub(hub_bin, workdir)
    try:
        run_checks(hub)
    finally:
        hub.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


def run_checks(hub):
    # Wrongly typed operator requests: answered 'invalid' naming the field, hub alive.
    for req, field in [({"op": 5}, "op"), ({"op": None}, "op"),
                       ({"op": "events", "limit": "ten"}, "limit"),
                       ({"op": "run.approve", "id": "x", "task": "t", "reject": "yes"}, "reject"),
                       ({"op": "site.add", "name": ["a"], "key": "k"}, "name"),
                       ({"op": "site.label", "name": "x", "set": {"a": 1}}, "set.a")]:
        r = hub.request(req)
        check(r.get("ok") is False and r.get("code") == "invalid" and
              ("'%s'" % field) in r.get("error", ""),
              "operator request %s refused as invalid naming '%s'" % (json.dumps(req), field))
    r = hub.request(b"[1,2")
    check(r.get("ok") is False and r.get("code") == "invalid", "operator request not JSON refused")
    deep = b'{"op":"status","rid":' + b"[" * 100000 + b"]" * 100000 + b"}"
    r = hub.request(deep)
    check(r.get("ok") is False and "deeper" in r.get("error", ""),
          "a request nested 100,000 deep is refused, not a crash")
    check(hub.request({"op": "status"}).get("ok") is True, "... and the hub goes on")

    site = Site(hub, incarnation=0x1111)
    r = hub.request({"op": "site.add", "name": "py-site", "key": site.public.decode()})
    check(r.get("ok") is True, "site enrolled through the operator API")

    # Handshake.
    site.connect()
    for i in range(1, 11):
        site.log.append(event("py-site-run%d" % i, i))
    w = site.hello()
    check(w is not None and w["t"] == WELCOME and w["up_acked"] == 0,
          "HELLO answered by WELCOME with up_acked 0")
    # Batches and ACKs.
    a = site.batch(1, 6)
    check(a is not None and a["t"] == ACK and a["seq"] == 6 and a["credit"] >= 1,
          "BATCH 1..6 acknowledged with seq 6 and credit")
    # Duplicates dropped (and counted), the ACK repeats the watermark.
    before = counters(hub)
    a = site.batch(3, 2)
    check(a is not None and a["t"] == ACK and a["seq"] == 6, "duplicate batch acknowledged at 6")
    # A gap is not applied (and counted).
    a = site.batch(9, 2)
    check(a is not None and a["t"] == ACK and a["seq"] == 6, "batch past a gap not applied")
    after = counters(hub)
    check(after["duplicates_dropped"] >= before["duplicates_dropped"] + 2,
          "the hub counts the duplicates it dropped")
    check(after["gaps_refused"] >= before["gaps_refused"] + 1, "the hub counts the gap it refused")

    # Resume after a reconnect: WELCOME carries the watermark; the rest follows.
    site.connect()
    w = site.hello()
    check(w is not None and w["t"] == WELCOME and w["up_acked"] == 6,
          "after a reconnect WELCOME resumes at 6")
    a = site.batch(7, 4)
    check(a is not None and a["t"] == ACK and a["seq"] == 10, "the rest acknowledged up to 10")
    runs = hub.request({"op": "run.list", "site": "py-site"})
    check(runs.get("ok") and len(runs["runs"]) == 10, "ten runs in the hub's run view, once each")

    # Impossible heads and watermarks: refused with only an ERROR (no WELCOME).
    site.connect()
    m = site.hello(up_head=2 ** 64 - 1)
    check(m is not None and m["t"] == ERROR, "HELLO with up_head 2^64-1 refused with ERROR")
    site.connect()
    m = site.hello(down_applied=10 ** 6)
    check(m is not None and m["t"] == ERROR, "HELLO with down_applied past the hub's head: ERROR")
    extra = site.recv(500)
    check(extra is None, "... and nothing else (no WELCOME before the ERROR)")

    # Malformed frames: refused with ERROR, counted, hub alive.
    before = counters(hub)["frames_malformed"]
    for bad in [b"\xc1", pack([1, 2]), pack({"v": 1, "t": "hello"}), pack({"v": 1, "t": 99}),
                pack({"v": 1, "t": BATCH, "first_seq": 1, "entries": [1, 2]}),
                pack({"v": 1, "t": ERROR, "message": b"\xff\xfe"})]:
        site.connect()
        site.sock.send(bad)
        m = site.recv()
        check(m is not None and m["t"] == ERROR and "Traceback" not in m.get("message", "") and
              "std::" not in m.get("message", ""),
              "malformed frame %r refused with an ERROR for operators" % bad[:12])
    check(counters(hub)["frames_malformed"] >= before + 5, "malformed frames counted")

    # An ERROR whose text is not UTF-8 does not crash the hub (it is written to the audit).
    site.connect()
    site.hello()
    site.sock.send(msgpack.packb({"v": 1, "t": ERROR, "message": b"\xff\xfe bad"},
                                 use_bin_type=False))
    time.sleep(0.2)
    check(hub.request({"op": "events", "limit": 5}).get("ok") is True,
          "hub alive after an ERROR with invalid UTF-8")

    # A new incarnation starts a new stream; the old one is refused from then on.
    site.connect()
    w = site.hello(incarnation=0x2222, up_head=0)
    check(w is not None and w["t"] == WELCOME and w["up_acked"] == 0,
          "a new incarnation starts a new upstream stream at 0")
    site.connect()
    m = site.hello(incarnation=0x1111)
    check(m is not None and m["t"] == ERROR and "replaced" in m.get("message", ""),
          "the replaced incarnation is refused with ERROR")
    check(site.recv(500) is None, "... and gets no WELCOME")
    ev = hub.request({"op": "events", "limit": 50})["events"]
    check(any(e.get("event") == "site.stale_incarnation" for e in ev),
          "the refusal is in the hub's audit log")
    check(counters(hub)["stale_incarnations"] >= 1, "stale incarnations counted")
    runs = hub.request({"op": "run.list", "site": "py-site"})
    check(len(runs["runs"]) == 10, "nothing of the old history was applied again")


if __name__ == "__main__":
    sys.exit(main())
