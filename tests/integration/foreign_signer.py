#!/usr/bin/python3
"""A second implementation of Outpost's signed statements, written from docs/security.md
("The canonical encoding") with PyNaCl, checked against the real outpostctl and agent:

1. a policy signed by outpostctl verifies here, over "outpost-signed-v1\\n" + its body,
   and its body is byte for byte what Python's canonical JSON makes of it;
2. a policy signed here with a root made here verifies in `outpostctl trust show`, and a
   real agent configured with that root adopts it (status: trust.policy.version);
3. the same policy with one byte changed is refused by both.

usage: foreign_signer.py OUTPOSTCTL OUTPOST_AGENT
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import nacl.exceptions
import nacl.signing

DOMAIN = b"outpost-signed-v1\n"


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fail(why):
    print("FAIL: " + why, file=sys.stderr)
    sys.exit(1)


def control(sock_path, request, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    s.sendall((json.dumps(request) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)


def main():
    ctl, agent = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="outpost-foreign-signer-")

    # 1. outpostctl signs; Python verifies and re-encodes.
    subprocess.run([ctl, "trust", "keygen", work + "/root.key"], check=True, capture_output=True)
    root_pub_text = open(work + "/root.key.pub").read().strip()
    if not root_pub_text.startswith("ed25519:"):
        fail("public key file is not ed25519:BASE64: " + root_pub_text)
    secret_text = open(work + "/root.key").read().strip()
    if not secret_text.startswith("ed25519-secret:"):
        fail("secret key file is not ed25519-secret:BASE64")
    seed_and_pk = base64.b64decode(secret_text[len("ed25519-secret:"):])
    if len(seed_and_pk) != 64 or nacl.signing.SigningKey(seed_and_pk[:32]).verify_key.encode() != base64.b64decode(root_pub_text[8:]):
        fail("the secret key file is not seed + public key as documented")
    operator = nacl.signing.SigningKey.generate()
    op_pub = "ed25519:" + base64.b64encode(operator.verify_key.encode()).decode()
    policy = {"fleet": "foreign", "version": 1,
              "operators": [{"name": "zoë", "key": op_pub, "may": ["start"],
                             "workflows": ["*"], "sites": {"role": "edge"}}]}
    with open(work + "/policy.json", "w") as f:
        json.dump(policy, f)
    subprocess.run([ctl, "trust", "sign-policy", work + "/policy.json", "--root-key",
                    work + "/root.key", "--out", work + "/policy.signed"], check=True, capture_output=True)
    signed = json.load(open(work + "/policy.signed"))
    body = signed["body"].encode()
    if signed["signer"] != root_pub_text:
        fail("signer is not the root")
    try:
        nacl.signing.VerifyKey(base64.b64decode(root_pub_text[8:])).verify(
            DOMAIN + body, base64.b64decode(signed["sig"]))
    except nacl.exceptions.BadSignatureError:
        fail("outpostctl's signature does not verify with PyNaCl")
    if canonical(json.loads(body)) != body:
        fail("outpostctl's body is not canonical JSON:\n  %r\n  %r" % (body, canonical(json.loads(body))))
    print("outpostctl-signed policy verifies in PyNaCl; body is canonical (%d bytes)" % len(body))

    # 2. Python signs with its own root; outpostctl and a real agent accept it.
    py_root = nacl.signing.SigningKey.generate()
    py_root_pub = "ed25519:" + base64.b64encode(py_root.verify_key.encode()).decode()
    now = int(time.time() * 1000)
    py_policy = dict(policy, kind="policy", version=2, issued=now, expires=now + 3600 * 1000)
    py_body = canonical(py_policy)
    py_sig = py_root.sign(DOMAIN + py_body).signature
    py_signed = {"body": py_body.decode(), "signer": py_root_pub,
                 "sig": base64.b64encode(py_sig).decode()}
    with open(work + "/py.signed", "w") as f:
        json.dump(py_signed, f)
    shown = subprocess.run([ctl, "trust", "show", work + "/py.signed", "--json"], capture_output=True)
    if shown.returncode != 0 or json.loads(shown.stdout)["signature_valid"] is not True:
        fail("outpostctl does not verify a PyNaCl signature: %s %s" % (shown.stdout, shown.stderr))
    tampered = dict(py_signed, body=py_signed["body"].replace('"version":2', '"version":3'))
    with open(work + "/tampered.signed", "w") as f:
        json.dump(tampered, f)
    shown = subprocess.run([ctl, "trust", "show", work + "/tampered.signed", "--json"], capture_output=True)
    if shown.returncode == 0:
        fail("outpostctl accepted a tampered policy")
    print("PyNaCl-signed policy verifies in outpostctl; a tampered copy does not")

    for name, path, want in (("good", work + "/py.signed", 2), ("tampered", work + "/tampered.signed", None)):
        data = work + "/agent-" + name
        log = open(work + "/agent-" + name + ".log", "w")
        proc = subprocess.Popen([agent, "--data-dir", data, "--site", "foreign", "--label", "role=edge",
                                 "--trust-root", py_root_pub, "--policy-file", path,
                                 "--log-level", "warn"], stdout=log, stderr=log)
        try:
            status = None
            for _ in range(200):
                try:
                    status = control(data + "/agent.sock", {"op": "status"})
                    break
                except OSError:
                    time.sleep(0.05)
            if status is None:
                fail("agent did not start: " + open(work + "/agent-" + name + ".log").read())
            trust = status["status"]["trust"]
            got = trust["policy"]["version"] if trust.get("policy") else None
            if trust["mode"] != "signed" or got != want:
                fail("agent with the %s policy: trust=%s" % (name, json.dumps(trust)))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print("a real agent adopts the PyNaCl-signed policy v2 and refuses the tampered one")
    shutil.rmtree(work, ignore_errors=True)
    print("foreign signer: ok")


if __name__ == "__main__":
    main()
