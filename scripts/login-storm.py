#!/usr/bin/env python3
"""Login storm: RSS of a real `atelier serve` before, during and after N concurrent
signups and then N concurrent password logins (argon2id, 19 MiB per hash).

    scripts/login-storm.py target/release/atelier [N]

Prints one JSON line; run it with the binary built before and after a change.
"""
import json, os, subprocess, sys, tempfile, time, urllib.request, concurrent.futures, socket
binary = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
d = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = dict(os.environ, ATELIER_SERVER_BIND=f"127.0.0.1:{port}", ATELIER_DATA_DIR=d, ATELIER_LOG_LEVEL="warn", ATELIER_AUTH_RATE_LIMIT_PER_MINUTE="100000")
p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(200):
    try: urllib.request.urlopen(base + "/healthz"); break
    except Exception: time.sleep(0.05)
def rss():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try: return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e: return e.code
idle = rss()
with concurrent.futures.ThreadPoolExecutor(n) as ex:
    st = list(ex.map(lambda i: post("/auth/v1/signup", {"email": f"u{i}@example.com", "password": "correct-horse-battery"}), range(n)))
after_signup = rss()
with concurrent.futures.ThreadPoolExecutor(n) as ex:
    st2 = list(ex.map(lambda i: post("/auth/v1/token?grant_type=password", {"email": f"u{i}@example.com", "password": "correct-horse-battery"}), range(n)))
after_login = rss(); time.sleep(2); settled = rss()
print(json.dumps({"n": n, "idle_mib": idle, "after_signups_mib": after_signup, "after_logins_mib": after_login, "2s_later_mib": settled, "statuses": sorted(set(st + st2))}))
p.terminate(); p.wait()
