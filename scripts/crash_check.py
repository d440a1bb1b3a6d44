#!/usr/bin/env python3
"""Helper of scripts/crash-test.sh (Python 3.11, standard library only).

Subcommands (all take --base URL and/or --work DIR):
  health    exit 0 when GET /healthz answers 200
  login     password grant; writes <work>/token
  submit    submits the jobs (paced, in threads), retrying every failed creation with the
            same body and client_job_id until it is answered; writes <work>/submitted.json
  drain     waits until no job is processing, then checks every job over HTTP, /v1/me,
            and replays every client_job_id (must return the same job); <work>/http.json
  db        read-only checks of <work>/data/atelier.db against the ledger rules
"""

import argparse
import base64
import http.client
import json
import os
import random
import socket
import sqlite3
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor

EMAIL = "crash@example.com"
PASSWORD = "crash-test-password"


def tiny_png() -> str:
    """An 8x8 red PNG as a data URI (the seller's product photo)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + b"\xc8\x1e\x1e" * 8 for _ in range(8))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_count(i: int) -> int:
    """Mostly single images, some 2 and 3 (deterministic in the job's index)."""
    return 3 if i % 10 == 0 else 2 if i % 10 == 5 else 1


class Api:
    def __init__(self, base: str, token: str | None = None, timeout: float = 10.0):
        u = urllib.parse.urlparse(base)
        self.host, self.port = u.hostname, u.port
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body=None):
        """(status, parsed JSON or None); raises OSError/HTTPException on transport errors."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            headers = {"accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["content-type"] = "application/json"
            if self.token:
                headers["authorization"] = f"Bearer {self.token}"
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            raw = res.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = {"raw": raw[:200].decode(errors="replace")}
            return res.status, parsed
        finally:
            conn.close()


TRANSPORT_ERRORS = (OSError, http.client.HTTPException, socket.timeout)


def login(base: str) -> str:
    status, body = Api(base).request(
        "POST", "/auth/v1/token?grant_type=password", {"email": EMAIL, "password": PASSWORD}
    )
    if status != 200 or not body or "access_token" not in body:
        raise SystemExit(f"login failed: {status} {body}")
    return body["access_token"]


def cmd_health(args) -> int:
    try:
        status, _ = Api(args.base, timeout=1.0).request("GET", "/healthz")
        return 0 if status == 200 else 1
    except TRANSPORT_ERRORS:
        return 1


def cmd_login(args) -> int:
    token = login(args.base)
    with open(os.path.join(args.work, "token"), "w") as f:
        f.write(token)
    return 0


def job_body(run: str, i: int, png: str) -> dict:
    return {
        "model": "local",
        "prompt": f"a red box on white, crash test job {i}",
        "productImage": png,
        "imageCount": image_count(i),
        "aspectRatio": "1:1",
        "client_job_id": f"crash-{run}-{i:04d}",
    }


def cmd_submit(args) -> int:
    token = open(os.path.join(args.work, "token")).read().strip()
    png = tiny_png()
    token_lock = threading.Lock()
    state = {"token": token, "relogins": 0}
    start = time.monotonic()
    deadline = start + args.deadline
    results: dict[str, dict] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        body = job_body(args.run, i, png)
        cid = body["client_job_id"]
        # A steady flow paced over --spread seconds, so that kills land while submitting:
        # some hit creations in flight, others come while the server is down.
        wait = start + args.spread * i / args.jobs - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        rec = {"i": i, "units": body["imageCount"], "tries": 0, "errors": [], "job_id": None,
               "fatal": None, "seen_job_ids": [], "last_try_ms": 0}
        while True:
            if time.monotonic() > deadline:
                rec["fatal"] = "gave up: deadline reached"
                break
            rec["tries"] += 1
            rec["last_try_ms"] = int(time.time() * 1000)
            try:
                status, resp = Api(args.base, state["token"]).request(
                    "POST", "/functions/v1/generate-image", body)
            except TRANSPORT_ERRORS as e:
                rec["errors"].append(type(e).__name__)
                time.sleep(0.2 + random.random() * 0.2)
                continue
            if status == 200 and resp and resp.get("job_id"):
                rec["seen_job_ids"].append(resp["job_id"])
                rec["job_id"] = resp["job_id"]
                break
            if status == 401:
                # Would mean the session did not survive a restart: log in again, count it.
                rec["errors"].append("401")
                with token_lock:
                    try:
                        state["token"] = login(args.base)
                        state["relogins"] += 1
                    except (SystemExit, *TRANSPORT_ERRORS):
                        pass
                time.sleep(0.2)
                continue
            if status in (429, 500, 502, 503, 504):
                rec["errors"].append(str(status))
                time.sleep(0.3 + random.random() * 0.3)
                continue
            rec["fatal"] = f"HTTP {status}: {json.dumps(resp)[:300]}"
            break
        with lock:
            results[cid] = rec

    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(one, range(args.jobs)))
    elapsed = time.monotonic() - start
    out = {"run": args.run, "jobs": args.jobs, "elapsed_s": round(elapsed, 2),
           "relogins": state["relogins"], "results": results}
    with open(os.path.join(args.work, "submitted.json"), "w") as f:
        json.dump(out, f)
    accepted = sum(1 for r in results.values() if r["job_id"])
    retried = sum(1 for r in results.values() if r["errors"])
    fatal = [(cid, r["fatal"]) for cid, r in results.items() if r["fatal"]]
    print(f"submit: {accepted}/{args.jobs} accepted in {elapsed:.1f} s; "
          f"{retried} needed retries ({sum(len(r['errors']) for r in results.values())} failed tries); "
          f"{state['relogins']} re-logins")
    for cid, why in fatal[:10]:
        print(f"submit: FATAL {cid}: {why}")
    return 1 if fatal else 0


def all_jobs(api: Api) -> list[dict]:
    jobs, before = [], None
    while True:
        q = "/v1/jobs?limit=100" + (f"&before={before}" if before else "")
        status, body = api.request("GET", q)
        if status != 200:
            raise RuntimeError(f"GET {q}: {status} {body}")
        jobs.extend(body["jobs"])
        before = body.get("next")
        if not before:
            return jobs


def cmd_drain(args) -> int:
    token = open(os.path.join(args.work, "token")).read().strip()
    sub = json.load(open(os.path.join(args.work, "submitted.json")))
    api = Api(args.base, token)
    problems: list[str] = []
    t0 = time.monotonic()
    while True:
        try:
            status, body = api.request("GET", "/v1/jobs?status=processing&limit=100")
        except TRANSPORT_ERRORS as e:
            status, body = 0, str(e)
        if status == 200 and not body["jobs"]:
            break
        if time.monotonic() - t0 > args.timeout:
            n = len(body["jobs"]) if status == 200 else "?"
            problems.append(f"jobs still processing after {args.timeout} s (first page: {n})")
            break
        time.sleep(0.5)
    drain_s = time.monotonic() - t0
    jobs = all_jobs(api)
    by_id = {j["id"]: j for j in jobs}
    accepted = {cid: r["job_id"] for cid, r in sub["results"].items() if r["job_id"]}
    statuses: dict[str, int] = {}
    for j in jobs:
        statuses[j["status"]] = statuses.get(j["status"], 0) + 1
        if j["status"] not in ("success", "failed"):
            problems.append(f"job {j['id']} is {j['status']} (units {j['units']})")
    if set(by_id) != set(accepted.values()):
        extra = set(by_id) - set(accepted.values())
        missing = set(accepted.values()) - set(by_id)
        problems.append(f"listed jobs differ from accepted ones: {len(extra)} extra, {len(missing)} missing")
    for cid, r in sub["results"].items():
        if len(set(r["seen_job_ids"])) > 1:
            problems.append(f"{cid} answered with different job ids {r['seen_job_ids']}")
    status, me = api.request("GET", "/v1/me")
    credits = me.get("credits", {}) if status == 200 else {}
    if credits.get("held") != 0:
        problems.append(f"/v1/me held is {credits.get('held')} (want 0): {me}")
    # Every client_job_id again, after all the restarts: the same job, no new hold.
    png = tiny_png()
    replay_bad = 0
    for cid, job_id in accepted.items():
        i = sub["results"][cid]["i"]
        status, body = api.request("POST", "/functions/v1/generate-image", job_body(sub["run"], i, png))
        if status != 200 or body.get("job_id") != job_id:
            replay_bad += 1
            if replay_bad <= 5:
                problems.append(f"replay of {cid}: {status} {body} (want job {job_id})")
    status, me2 = api.request("GET", "/v1/me")
    if status != 200 or me2.get("credits") != credits:
        problems.append(f"replays changed the credits: {credits} -> {me2.get('credits')}")
    out = {"drain_s": round(drain_s, 1), "jobs_listed": len(jobs), "statuses": statuses,
           "credits": credits, "replayed": len(accepted), "replay_mismatches": replay_bad,
           "problems": problems}
    with open(os.path.join(args.work, "http.json"), "w") as f:
        json.dump(out, f)
    print(f"drain: all terminal {drain_s:.1f} s after the last restart; {len(jobs)} jobs listed "
          f"{statuses}; /v1/me credits {credits}; {len(accepted)} client_job_ids replayed, "
          f"{replay_bad} mismatches")
    for p in problems:
        print(f"drain: PROBLEM {p}")
    return 1 if problems else 0


def cmd_db(args) -> int:
    sub = json.load(open(os.path.join(args.work, "submitted.json")))
    path = os.path.join(args.work, "data", "atelier.db")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    q = lambda sql, *p: db.execute(sql, p).fetchall()  # noqa: E731
    problems: list[str] = []

    def expect_none(what: str, rows: list) -> None:
        if rows:
            problems.append(f"{what}: {len(rows)} e.g. {rows[:3]}")

    users = q("SELECT id FROM users WHERE email = ?", EMAIL)
    if len(users) != 1:
        raise SystemExit(f"db: user {EMAIL} not found")
    uid = users[0][0]
    expect_none("tasks with more than one capture", q(
        "SELECT task_id, count(*) FROM credit_ledger WHERE kind = 'capture' "
        "GROUP BY task_id HAVING count(*) > 1"))
    expect_none("tasks with more than one release", q(
        "SELECT task_id, count(*) FROM credit_ledger WHERE kind = 'release' "
        "GROUP BY task_id HAVING count(*) > 1"))
    expect_none("tasks with both capture and release", q(
        "SELECT task_id FROM credit_ledger WHERE kind IN ('capture', 'release') "
        "GROUP BY task_id HAVING count(DISTINCT kind) > 1"))
    expect_none("capture/release rows without a task", q(
        "SELECT id, kind FROM credit_ledger WHERE kind IN ('capture', 'release') AND task_id IS NULL"))
    expect_none("successful tasks without exactly one capture of their cost", q(
        "SELECT t.id FROM generation_tasks t WHERE t.status = 'success' AND "
        "(SELECT count(*) FROM credit_ledger l WHERE l.task_id = t.id AND l.kind = 'capture' "
        " AND l.amount = t.cost) != 1"))
    expect_none("failed/cancelled tasks without exactly one release", q(
        "SELECT t.id, t.status FROM generation_tasks t WHERE t.status IN ('failed', 'cancelled') AND "
        "(SELECT count(*) FROM credit_ledger l WHERE l.task_id = t.id AND l.kind = 'release') != 1"))
    expect_none("tasks not terminal", q(
        "SELECT id, status FROM generation_tasks WHERE status NOT IN ('success', 'failed', 'cancelled')"))
    expect_none("jobs not terminal", q(
        "SELECT id, status FROM generation_jobs WHERE status NOT IN ('success', 'failed')"))
    expect_none("jobs still holding credits", q(
        "SELECT id, held_amount FROM generation_jobs WHERE held_amount != 0"))
    expect_none("jobs without exactly one hold of units x cost", q(
        "SELECT j.id FROM generation_jobs j WHERE (SELECT count(*) FROM credit_ledger l "
        "WHERE l.job_id = j.id AND l.kind = 'hold' AND l.amount = j.units_total * j.unit_cost) != 1"))
    expect_none("hold rows without a job", q(
        "SELECT l.id FROM credit_ledger l WHERE l.kind = 'hold' AND NOT EXISTS "
        "(SELECT 1 FROM generation_jobs j WHERE j.id = l.job_id)"))
    expect_none("unexpected ledger kinds", q(
        "SELECT kind, count(*) FROM credit_ledger WHERE kind NOT IN "
        "('grant', 'adjust', 'hold', 'capture', 'release') GROUP BY kind"))

    sub_, purchased, held, debt = q(
        "SELECT subscription, purchased, held, debt FROM credit_accounts WHERE user_id = ?", uid)[0]
    captured = q("SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE user_id = ? "
                 "AND kind = 'capture'", uid)[0][0]
    granted = q("SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE user_id = ? "
                "AND kind IN ('grant', 'adjust')", uid)[0][0]
    balance = sub_ + purchased
    if granted != args.grant:
        problems.append(f"granted {granted}, expected {args.grant}")
    if held != 0:
        problems.append(f"account held {held} (want 0)")
    if debt != 0:
        problems.append(f"account debt {debt} (want 0)")
    if balance != args.grant - captured:
        problems.append(f"balance {balance} != grant {args.grant} - captures {captured} "
                        f"= {args.grant - captured}")

    submitted = {cid for cid in sub["results"]}
    jobs = q("SELECT client_job_id FROM generation_jobs WHERE user_id = ?", uid)
    keys = [k for (k,) in jobs]
    if len(jobs) != len(submitted):
        problems.append(f"{len(jobs)} jobs in the database for {len(submitted)} distinct client_job_ids")
    if set(keys) != submitted or len(set(keys)) != len(keys):
        problems.append("job client_job_ids do not match the submitted ones one to one")
    units_sub = sum(r["units"] for r in sub["results"].values())
    (units_db,) = q("SELECT count(*) FROM generation_tasks WHERE user_id = ?", uid)[0]
    if units_db != units_sub:
        problems.append(f"{units_db} tasks in the database for {units_sub} units submitted")

    # Creations whose first tries failed: was the job created by an earlier try whose answer
    # was lost (the retry then replayed it) or by the try that was answered?
    replayed_after_loss = created_by_last = 0
    for cid, r in sub["results"].items():
        if not r["errors"] or not r["job_id"]:
            continue
        created = q("SELECT created_at FROM generation_jobs WHERE id = ?", r["job_id"])
        if created and created[0][0] < r["last_try_ms"]:
            replayed_after_loss += 1
        else:
            created_by_last += 1

    task_status = dict(q("SELECT status, count(*) FROM generation_tasks GROUP BY status"))
    job_status = dict(q("SELECT status, count(*) FROM generation_jobs GROUP BY status"))
    attempts = dict(q("SELECT attempts, count(*) FROM generation_tasks GROUP BY attempts"))
    (interrupted,) = q("SELECT count(*) FROM generation_tasks WHERE attempts > 1")[0]
    fail_codes = q("SELECT error_code, last_error, count(*) FROM generation_tasks "
                   "WHERE status = 'failed' GROUP BY 1, 2")
    print(f"db: jobs {job_status}; tasks {task_status}; attempts per task {attempts} "
          f"({interrupted} tasks needed more than one attempt)")
    if fail_codes:
        print(f"db: failed tasks by error: {fail_codes}")
    print(f"db: of the creations that had to be retried, {replayed_after_loss} had been committed "
          f"by a try whose answer was lost (answered by an idempotent replay), "
          f"{created_by_last} were created by the retry")
    print(f"db: granted {granted}, captured {captured}, balance {balance}, held {held}; "
          f"{len(jobs)} jobs for {len(submitted)} client_job_ids, {units_db} tasks")
    for p in problems:
        print(f"db: PROBLEM {p}")
    return 1 if problems else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["health", "login", "submit", "drain", "db"])
    p.add_argument("--base", default="http://127.0.0.1:8787")
    p.add_argument("--work", default=".")
    p.add_argument("--run", default="0", help="suffix making client_job_ids unique per run")
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--spread", type=float, default=8.0, help="seconds over which to pace submissions")
    p.add_argument("--deadline", type=float, default=90.0, help="give up submitting after this")
    p.add_argument("--timeout", type=float, default=180.0, help="drain timeout in seconds")
    p.add_argument("--grant", type=int, default=1000)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    if args.seed is not None:
        random.seed(args.seed)
    return {"health": cmd_health, "login": cmd_login, "submit": cmd_submit,
            "drain": cmd_drain, "db": cmd_db}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
