#!/usr/bin/env python3
"""reliability.py load|faults: load and fault runs through the local gateway, on a private
stack of their own (free loopback ports, stopped afterwards whatever happens).

    load    every function under `cargo lambda watch --concurrency 4`, the gateway in front,
            `loadgen` (tools/loadgen) for LOAD_SECS (30) with LOAD_CLIENTS (8) clients:
            login, authorized whoami, refresh. Asserts no 5xx and no lost session.
    faults  the same load (the authorizers' staleness bound set to STALENESS_SECS) while
            1. DynamoDB Local is stopped for OUTAGE_SECS, beyond the staleness bound, and
               started again (its data on disk);
            2. DynamoDB answers slowly (a delaying proxy in front of it): 300 ms, then
               2.5 s, beyond the SDK's 2 s attempt timeout;
            3. the KMS emulator is stopped (SIGSTOP: KMS hangs, as an unreachable KMS
               does from a Lambda) and continued again;
            4. kms:Sign is throttled (the emulator's switch: AWS's ThrottlingException)
               for THROTTLE_SECS;
            5. the refresh storm: STORM_SESSIONS sessions refresh at once.
            Asserts: every 5xx is a 503 and no function panicked; every session's last
            refresh token from a 200 still rotates afterwards (each one is presented);
            the authorizer's p99 until the staleness bound within P99_MARGIN_MS of its p99
            before the outage, and every token refused past the bound; parallel
            refreshes of one token rotate once; the authorizer keeps allowing valid
            tokens and denying a session revoked while KMS is down; while KMS throttles,
            every login and refresh is a 503 with a throttled Retry-After and no token,
            and every session refused meanwhile rotates afterwards; the storm rotates
            each token exactly once; recovery without restarting the functions.
            Then the attack run (also alone: `reliability.py attack`).
    attack  one address (127.0.0.2) sends logins at ATTACK_FACTOR (10) times the rate of a
            legitimate user at another address (127.0.0.1), with the deployment's default
            per-source limit; the legitimate user's logins are measured alone and during
            the attack. Asserts: every legitimate login succeeds during the attack; the
            attacker is refused with 429 + Retry-After beyond its limit; no 5xx.

Each run writes its figures and the command to docs/reliability/<run>.json and renders
docs/reliability.md from both files.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack as stacklib  # noqa: E402
import tls_proxy  # noqa: E402  (its byte relay)

ROOT = stacklib.ROOT
DOCS = ROOT / "docs"
LOADGEN = ROOT / "target" / "debug" / "loadgen"
AUTHCTL = ROOT / "target" / "debug" / "authctl"
CONCURRENCY = 4
# The functions' settings beyond the stack's: quick revocation and key reads, as in the
# end-to-end tests; the gateway caches no authorizer answer. The stated lag is the poll.
# The retry answers one rotated refresh token gets, as the rule states it.
MAX_RETRY_ANSWERS = int(re.search(r"pub const MAX_RETRY_ANSWERS: u32 = (\d+);",
                                  (ROOT / "shared/src/rules/rotation.rs").read_text()).group(1))
FUNCTION_ENV = ["REVOCATION_POLL_SECS=1", "KEY_SET_RELOAD_SECS=1"]
# API Gateway's cache of authorizer answers is off in the template (a DPoP proof is good once).
CACHE_SECS = 0
LAG_SECS = 1 + CACHE_SECS
# The fault run's authorizers serve a failed poll's state this long (REVOCATION_MAX_STALENESS_SECS):
# short, so that the DynamoDB outage outlasts it and the run sees both sides of the bound.
STALENESS_SECS = 5
# The outage: beyond the bound, the gateway's cache of an allow and one poll interval.
OUTAGE_SECS = 14
# Authorizer p99 during the outage (until the bound) against before it (the acceptance of issue 19),
# before measured from BASELINE_FROM_SECS into the load (the clients' first logins are behind).
P99_MARGIN_MS = 50
BASELINE_FROM_SECS = 3
# The Retry-After of a 503 for a throttled dependency (THROTTLED_RETRY_AFTER_SECS in shared/src/edge/http.rs).
THROTTLED_RETRY_AFTER = tuple(int(n) for n in re.search(
    r"pub const THROTTLED_RETRY_AFTER_SECS: std::ops::RangeInclusive<u64> = (\d+)..=(\d+);",
    (ROOT / "shared/src/edge/http.rs").read_text()).groups())
THROTTLE_SECS = 10
# Sessions of the refresh storm, each refreshed once, all at once.
STORM_SESSIONS = 64


def log(msg: str) -> None:
    print(f"[reliability] {msg}", file=sys.stderr, flush=True)


class Failure(AssertionError):
    pass


# Every check of this run, as "ok: ..." or "FAILED: ...", for docs/reliability.md.
CHECKS: list[str] = []


def check(condition: bool, what: str, failures: list[str]) -> None:
    line = ("ok: " if condition else "FAILED: ") + what
    CHECKS.append(line)
    log(line)
    if not condition:
        failures.append(what)


# ---------------------------------------------------------------- a delaying proxy


class DelayingProxy:
    """TCP relay to 127.0.0.1:target; each answer from the target is held `delay` seconds
    before it goes back, as a slow DynamoDB would hold it. A target that is down closes
    the client's connection, as a stopped DynamoDB would."""

    def __init__(self, target: int):
        self.target, self.delay = target, 0.0
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(128)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    def relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)

        def hold() -> None:
            if self.delay:
                time.sleep(self.delay)

        threading.Thread(target=tls_proxy.relay, args=(client, upstream), daemon=True).start()
        tls_proxy.relay(upstream, client, hold)


# ---------------------------------------------------------------- the stack


class Run:
    def __init__(self, name: str, persistent: bool, function_env: list[str] = ()):
        self.stack = stacklib.Stack((ROOT / ".local" / f"{name}-stack").resolve())
        self.persistent = persistent
        self.function_env = list(function_env)
        self.proxy: DelayingProxy | None = None

    def __enter__(self) -> "Run":
        stacklib.down(self.stack)  # a run starts from nothing, whatever an earlier one left
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def start(self) -> "Run":
        stacklib.up(self.stack, persistent=self.persistent)
        self.env = stacklib.read_env(self.stack.env_file)
        ddb_port = int(self.env["AWS_ENDPOINT_URL_DYNAMODB"].rsplit(":", 1)[1])
        # The functions reach DynamoDB through the proxy; the checks here go direct.
        self.proxy = DelayingProxy(ddb_port)
        env = FUNCTION_ENV + self.function_env + [f"AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:{self.proxy.port}"]
        stacklib.functions(self.stack, 0, CONCURRENCY, env, reload=False)
        stacklib.gateway(self.stack, None, [])  # on the issuer's port
        self.url = (self.stack.dir / "gateway.url").read_text().strip()
        self.users_file = self.stack.dir / "users.txt"
        self.make_users(8)
        return self

    def __exit__(self, *exc) -> None:
        for name in stacklib.SERVICES:
            pid = self.stack.running_pid(name)
            if pid:
                os.killpg(pid, signal.SIGCONT)
        stacklib.down(self.stack)

    def make_users(self, count: int) -> None:
        lines = []
        env = dict(os.environ, **self.env)
        for n in range(count):
            username, password = f"load{n}-{os.getpid()}", f"load-password-{n}-{time.time_ns()}"
            subprocess.run([str(AUTHCTL), "user", "add", username, "--scope", "read"], input=password + "\n",
                           text=True, env=env, check=True, capture_output=True)
            lines.append(f"{username} {password}")
        self.users_file.write_text("\n".join(lines) + "\n")

    def loadgen(self, secs: int, clients: int, verify_secs: int | None = None, timeline: bool = False) -> subprocess.Popen:
        """Starts the load; with `timeline`, the report has every call, timed from
        `self.load_started` (the moment of the launch, a few ms before loadgen's zero)."""
        argv = [str(LOADGEN), "--url", self.url, "--secs", str(secs), "--clients", str(clients),
                "--users", str(self.users_file)]
        if verify_secs is not None:
            argv += ["--verify-secs", str(verify_secs)]
        if timeline:
            argv.append("--timeline")
        self.load_started = time.time()
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    @staticmethod
    def report(proc: subprocess.Popen) -> dict:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise Failure(f"loadgen failed ({proc.returncode})")
        return json.loads(out)

    def http(self, method: str, path: str, body: dict | str | None = None, bearer: str | None = None) -> tuple[int, dict]:
        status, _, answer = self.request(method, path, body, bearer)
        return status, answer

    def refresh(self, token: str) -> tuple[int, dict, dict]:
        """One refresh of `token`: status, headers (lower-case names), body."""
        return self.request("POST", "/auth/refresh", f"grant_type=refresh_token&refresh_token={token}")

    def request(self, method: str, path: str, body: dict | str | None = None,
                bearer: str | None = None) -> tuple[int, dict, dict]:
        headers = {}
        data = None
        if isinstance(body, dict):
            data, headers["content-type"] = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            data, headers["content-type"] = body.encode(), "application/x-www-form-urlencoded"
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer_headers = {k.lower(): v for k, v in response.headers.items()}
                return response.status, answer_headers, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            answer_headers = {k.lower(): v for k, v in e.headers.items()}
            try:
                return e.code, answer_headers, json.loads(e.read() or b"null")
            except ValueError:
                return e.code, answer_headers, {}

    def login(self, n: int = 0) -> dict:
        username, password = self.users_file.read_text().splitlines()[n].split(" ", 1)
        status, body = self.http("POST", "/auth/login", {"username": username, "password": password})
        if status != 200:
            raise Failure(f"login answered {status}: {body}")
        return body

    def functions_log_has_panics(self) -> bool:
        return "panicked" in (self.stack.dir / "functions.log").read_text(errors="replace")

    def service_pid(self, name: str) -> int:
        pid = self.stack.running_pid(name)
        if pid is None:
            raise Failure(f"{name} is not running")
        return pid


def only_503s(report: dict) -> list[str]:
    """Every status >= 500 (or no answer) that is not a 503, as 'route status'."""
    return [f"{route} {status}" for route, figures in report["routes"].items()
            for status in figures["statuses"] if status == "0" or (int(status) >= 500 and status != "503")]


def statuses(report: dict, route: str) -> dict:
    return report["routes"].get(route, {}).get("statuses", {})


# ---------------------------------------------------------------- runs


def load_run() -> dict:
    secs, clients = int(os.environ.get("LOAD_SECS", 30)), int(os.environ.get("LOAD_CLIENTS", 8))
    failures: list[str] = []
    with Run("load", persistent=False) as run:
        log(f"load: {clients} clients for {secs} s through {run.url}")
        report = run.report(run.loadgen(secs, clients, verify_secs=10))
        non_2xx = {route: {s: n for s, n in f["statuses"].items() if not s.startswith("2")}
                   for route, f in report["routes"].items()}
        check(all(not v for v in non_2xx.values()), f"every answer is 2xx (non-2xx: {non_2xx})", failures)
        check(report["lost_sessions_during_load"] == 0, "no refresh token from a 200 was refused", failures)
        verified = report["verified_afterwards"]
        check(verified["usable"] == verified["sessions"], f"every session's last token rotates ({verified})", failures)
        # Under load the gateway's p99 also holds its waits for a CPU on a machine that runs
        # the load, the gateway, every function, DynamoDB and KMS at once; one client alone
        # shows the gateway's own work.
        overhead = report["gateway_overhead_us"]
        check(overhead["p50"] < 1000, f"under load the gateway adds under 1 ms per request at the median "
              f"(p50 {overhead['p50']} µs, p99 {overhead['p99']} µs)", failures)
        quiet = run.report(run.loadgen(10, 1))
        overhead = quiet["gateway_overhead_us"]
        check(overhead["p99"] < 1000, f"one client alone: the gateway adds under 1 ms per request at p99 "
              f"(p50 {overhead['p50']} µs, p99 {overhead['p99']} µs)", failures)
        check(not run.functions_log_has_panics(), "no function panicked", failures)
    return {"load": report, "one_client": quiet, "failures": failures}


def parallel_refreshes(run: Run, token: str) -> tuple[set[str], list[int]]:
    """Four refreshes of one token at once: the successors they were given, the other statuses."""
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: run.http("POST", "/auth/refresh",
                                                   f"grant_type=refresh_token&refresh_token={token}"), range(4)))
    return ({body["refresh_token"] for status, body in answers if status == 200},
            [status for status, _ in answers if status != 200])


WHOAMI, LOGIN, REFRESH = "GET /api/whoami", "POST /auth/login", "POST /auth/refresh"


def calls_between(report: dict, route: str, start: float, end: float) -> list[tuple[int, float, int | None]]:
    """The calls of `route` that started in [start, end) seconds of the load (its timeline):
    (status, latency ms, Retry-After)."""
    return [(status, ms, retry_after) for r, at_ms, status, ms, retry_after in report.get("timeline", [])
            if r == route and start * 1000 <= at_ms < end * 1000]


def p99_ms(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return round(ordered[max(0, -(-99 * len(ordered) // 100) - 1)], 1) if ordered else 0.0


def status_counts(calls: list[tuple]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        counts[str(call[0])] = counts.get(str(call[0]), 0) + 1
    return counts


def throttled_refusal(status: int, retry_after: int | None, body: dict | None = None) -> bool:
    """A 503 with a Retry-After from the throttled range and no token in its body."""
    low, high = THROTTLED_RETRY_AFTER
    no_token = not body or not any(k in body for k in ("access_token", "refresh_token", "device_token"))
    return status == 503 and retry_after is not None and low <= retry_after <= high and no_token


def faults_run() -> dict:
    failures: list[str] = []
    phases = {}
    staleness = [f"REVOCATION_MAX_STALENESS_SECS={STALENESS_SECS}"]
    with Run("faults", persistent=True, function_env=staleness) as run:
        functions_pid = run.service_pid(stacklib.FUNCTIONS)

        # Every instance of every function started and warm (as a deployment in steady
        # state), so that the authorizer's figures before the outage are not its cold starts.
        log("warm-up: 6 s of load")
        run.report(run.loadgen(6, 8))

        # 1. DynamoDB Local stopped during the load, beyond the staleness bound, then started again.
        log(f"phase 1: DynamoDB Local stopped for {OUTAGE_SECS} s during 36 s of load")
        load = run.loadgen(36, 8, verify_secs=30, timeline=True)
        time.sleep(10)
        run.stack.stop("dynamodb")
        stopped_at = time.time()
        time.sleep(OUTAGE_SECS)
        port = int(run.env["AWS_ENDPOINT_URL_DYNAMODB"].rsplit(":", 1)[1])
        restarted_at = time.time()
        run.stack.spawn("dynamodb", stacklib.dynamodb_argv(port, run.stack.dir / "dynamodb-data"), "DynamoDBLocal.jar")
        log(f"DynamoDB Local started again after {time.time() - stopped_at:.1f} s")
        report = run.report(load)
        phases[f"dynamodb_stopped_{OUTAGE_SECS}s"] = report
        # The authorizer (whoami) before the outage, during it until the staleness bound, and
        # past the bound (plus the gateway's cache of an allow and one poll): served as
        # quickly as before, then every token refused.
        stop, restart = stopped_at - run.load_started, restarted_at - run.load_started
        # Before: from 3 s on, once every client's first login (argon2, CPU-bound) is done.
        before = calls_between(report, WHOAMI, BASELINE_FROM_SECS, stop)
        during = calls_between(report, WHOAMI, stop, stop + STALENESS_SECS)
        refused_from = stop + STALENESS_SECS + CACHE_SECS + 1
        past = calls_between(report, WHOAMI, refused_from, restart)
        outage = {
            "staleness_secs": STALENESS_SECS,
            "before": {"calls": len(before), "p99_ms": p99_ms([c[1] for c in before]),
                       "max_ms": max((c[1] for c in before), default=0.0), "statuses": status_counts(before)},
            "until_the_bound": {"calls": len(during), "p99_ms": p99_ms([c[1] for c in during]),
                                "max_ms": max((c[1] for c in during), default=0.0), "statuses": status_counts(during)},
            "past_the_bound": {"from_secs": round(refused_from - stop, 1), "to_secs": round(restart - stop, 1),
                               "calls": len(past), "statuses": status_counts(past)},
        }
        report["authorizer_outage"] = outage
        report.pop("timeline", None)
        b, d = outage["before"], outage["until_the_bound"]
        check(bool(before) and bool(during) and d["p99_ms"] <= b["p99_ms"] + P99_MARGIN_MS,
              f"DynamoDB down: authorizer p99 until the staleness bound ({STALENESS_SECS} s) stays within "
              f"{P99_MARGIN_MS} ms of before the outage (before {b['p99_ms']} ms over {b['calls']} calls; "
              f"until the bound {d['p99_ms']} ms over {d['calls']} calls, max {d['max_ms']} ms)", failures)
        check(bool(past) and all(c[0] in (401, 403) for c in past),
              f"DynamoDB down: past the staleness bound every token is refused ({len(past)} calls from "
              f"{outage['past_the_bound']['from_secs']} s to {outage['past_the_bound']['to_secs']} s into the "
              f"outage: {outage['past_the_bound']['statuses']})", failures)
        check(not only_503s(report), f"DynamoDB down: every 5xx is a 503 (others: {only_503s(report)})", failures)
        check(any(int(s) == 503 for f in report["routes"].values() for s in f["statuses"]),
              "DynamoDB down: the outage was seen (503s)", failures)
        check(report["lost_sessions_during_load"] == 0, "DynamoDB down: no refresh token from a 200 was refused", failures)
        v = report["verified_afterwards"]
        check(v["usable"] == v["sessions"], f"DynamoDB down: every session's last token rotates afterwards ({v})", failures)
        status, _ = run.http("GET", "/api/whoami", bearer=run.login(6)["access_token"])
        check(status == 200, "DynamoDB back: login and whoami work without restarting the functions", failures)

        # 2. A slow DynamoDB: 300 ms per answer, then 2.5 s (beyond the 2 s attempt timeout).
        for delay, secs in ((0.3, 15), (2.5, 12)):
            log(f"phase 2: DynamoDB answers {delay} s late for {secs} s of load")
            token = run.login(7)["refresh_token"]
            run.proxy.delay = delay
            load = run.loadgen(secs, 8, verify_secs=None)
            successors, others = parallel_refreshes(run, token)
            report = run.report(load)
            run.proxy.delay = 0.0
            time.sleep(1)
            # Once DynamoDB is quick again the token is presented once more: a rotation
            # whose answer was lost is served again (the retry leeway), so across all the
            # answers there is exactly one successor. Two would be a double rotation. The
            # retry answers are bounded (MAX_RETRY_ANSWERS in rules/rotation.rs): once the
            # parallel ones may have spent them (answered, or timed out after counting),
            # the last presentation is refused instead.
            status, body = run.http("POST", "/auth/refresh", f"grant_type=refresh_token&refresh_token={token}")
            if status == 200:
                successors.add(body["refresh_token"])
            may_have_counted = 4 - others.count(401) - 1
            afterwards_ok = status == 200 or (status == 401 and may_have_counted >= MAX_RETRY_ANSWERS)
            check(afterwards_ok and len(successors) == 1 and all(s in (401, 503) for s in others),
                  f"DynamoDB {delay} s slow: 4 parallel refreshes of one token and one after rotate it once "
                  f"({len(successors)} successor(s); others {others}; afterwards {status})", failures)
            phases[f"dynamodb_slow_{int(delay * 1000)}ms"] = report
            check(not only_503s(report), f"DynamoDB {delay} s slow: every 5xx is a 503 (others: {only_503s(report)})",
                  failures)
            check(report["lost_sessions_during_load"] == 0,
                  f"DynamoDB {delay} s slow: no refresh token from a 200 was refused (no double rotation)", failures)
            if delay < 2.0:
                bad = {r: {s: n for s, n in f["statuses"].items() if s != "200"} for r, f in report["routes"].items()}
                check(all(not b for b in bad.values()), f"DynamoDB {delay} s slow: every answer within the SDK "
                      f"timeouts is a 200 ({bad})", failures)
        # Every session of the slow runs still rotates.
        report = run.report(run.loadgen(3, 8, verify_secs=20))
        v = report["verified_afterwards"]
        check(v["usable"] == v["sessions"], f"after the slow DynamoDB every session's last token rotates ({v})", failures)

        # 3. KMS stopped: logins and refreshes 503; the authorizer keeps answering.
        log("phase 3: the KMS emulator stopped for 15 s of load")
        valid = run.login(5)
        doomed = run.login(4)
        # Sessions made before the outage, used during it: whoami with their access tokens,
        # refresh with their refresh tokens (each must still rotate afterwards).
        held = [run.login(n) for n in range(4)]
        held_statuses: dict[str, dict[str, int]] = {"GET /api/whoami": {}, "POST /auth/refresh": {}}

        def use_held_sessions(route: str, until: float) -> None:
            while time.time() < until:
                for session in held:
                    if route == "GET /api/whoami":
                        status, _ = run.http("GET", "/api/whoami", bearer=session["access_token"])
                    else:
                        status, _ = run.http("POST", "/auth/refresh",
                                             f"grant_type=refresh_token&refresh_token={session['refresh_token']}")
                    held_statuses[route][str(status)] = held_statuses[route].get(str(status), 0) + 1
                time.sleep(0.1)

        kms_pid = run.service_pid("kms")
        os.killpg(kms_pid, signal.SIGSTOP)
        try:
            load = run.loadgen(15, 8, verify_secs=None)
            users = [threading.Thread(target=use_held_sessions, args=(route, time.time() + 15)) for route in held_statuses]
            for user in users:
                user.start()
            revoke_status, _ = run.http("POST", "/auth/revoke",
                                        f"token={doomed['refresh_token']}&token_type_hint=refresh_token")
            revoked_at = time.time()
            denied_after = None
            while time.time() - revoked_at < LAG_SECS * 3:
                status, _ = run.http("GET", "/api/whoami", bearer=doomed["access_token"])
                if status == 403:
                    denied_after = time.time() - revoked_at
                    break
                time.sleep(0.2)
            valid_status, _ = run.http("GET", "/api/whoami", bearer=valid["access_token"])
            login_status, _ = run.http("POST", "/auth/login", {"username": "nobody", "password": "x"})
            report = run.report(load)
            for user in users:
                user.join()
        finally:
            os.killpg(kms_pid, signal.SIGCONT)
        report["sessions_made_before"] = held_statuses
        phases["kms_stopped_15s"] = report
        logins, refreshes = statuses(report, "POST /auth/login"), held_statuses["POST /auth/refresh"]
        check(logins.keys() == {"503"} and refreshes.keys() == {"503"},
              f"KMS down: logins and refreshes answer 503 (logins {logins}, refreshes {refreshes})", failures)
        whoami = held_statuses["GET /api/whoami"]
        check(whoami.keys() == {"200"}, f"KMS down: the authorizer allows every valid token ({whoami})", failures)
        check(revoke_status == 200 and denied_after is not None and denied_after <= LAG_SECS + 1,
              f"KMS down: a session revoked meanwhile is denied within the {LAG_SECS} s lag "
              f"(revoke {revoke_status}, denied after {denied_after})", failures)
        check(valid_status == 200, "KMS down: a valid token is still allowed after the revocation", failures)
        check(login_status in (401, 503), f"KMS down: an unknown user's login answers {login_status}", failures)
        rotated = [run.http("POST", "/auth/refresh", f"grant_type=refresh_token&refresh_token={s['refresh_token']}")[0]
                   for s in held]
        check(rotated == [200] * len(held), f"KMS back: each session refused during the outage rotates ({rotated})",
              failures)
        report = run.report(run.loadgen(3, 8, verify_secs=30))
        v = report["verified_afterwards"]
        check(v["usable"] == v["sessions"], f"KMS back: every session's last token rotates ({v})", failures)
        phases["kms_stopped_15s"]["verified_after_kms_returned"] = v

        # 4. KMS throttled (ThrottlingException on kms:Sign, as AWS answers over the quota).
        phases[f"kms_throttled_{THROTTLE_SECS}s"] = kms_throttling_phase(run, failures)

        # 5. The refresh storm: every session refreshes at once, as after an outage.
        storm = refresh_storm(run, failures)

        check(run.service_pid(stacklib.FUNCTIONS) == functions_pid, "the functions were never restarted", failures)
        check(not run.functions_log_has_panics(), "no function panicked", failures)
    return {"faults": phases, "storm": storm, "failures": failures}


def kms_throttling_phase(run: Run, failures: list[str]) -> dict:
    """KMS throttles kms:Sign for THROTTLE_SECS in the middle of the load. Sessions made
    before keep presenting their refresh tokens during it. Every login and refresh that
    started and ended inside the throttling is a 503 with a throttled Retry-After and no
    token; nothing else fails (the authorizer needs no KMS); afterwards each held token
    rotates once, and every session of the load rotates."""
    log(f"phase 4: KMS throttles kms:Sign for {THROTTLE_SECS} s of load")
    held = [run.login(n % 8) for n in range(8)]
    held_answers: list[tuple[int, int | None, bool]] = []
    lock = threading.Lock()

    def present(token: str, until: float) -> None:
        while time.time() < until:
            status, headers, body = run.refresh(token)
            retry_after = int(headers["retry-after"]) if headers.get("retry-after", "").isdigit() else None
            with lock:
                held_answers.append((status, retry_after, throttled_refusal(status, retry_after, body)))
            time.sleep(0.5)

    load = run.loadgen(THROTTLE_SECS + 10, 8, verify_secs=30, timeline=True)
    time.sleep(4)
    stacklib.throttle_kms(run.stack, ["Sign"])
    on_at = time.time()
    try:
        users = [threading.Thread(target=present, args=(s["refresh_token"], on_at + THROTTLE_SECS - 1)) for s in held]
        for user in users:
            user.start()
        for user in users:
            user.join()
        time.sleep(max(0.0, on_at + THROTTLE_SECS - time.time()))
    finally:
        stacklib.throttle_kms(run.stack, [])
    off_at = time.time()
    report = run.report(load)

    # Calls that started after the switch went on and ended before it went off (loadgen's
    # zero is a few ms after `load_started`: 50 ms spare at the end).
    start, end = on_at - run.load_started, off_at - run.load_started
    inside = [(route, status, retry_after) for route, at_ms, status, ms, retry_after in report["timeline"]
              if route in (LOGIN, REFRESH) and at_ms >= start * 1000 and at_ms + ms <= end * 1000 - 50]
    refused = [c for c in inside if throttled_refusal(c[1], c[2])]
    retry_afters = sorted(c[2] for c in refused)
    report.pop("timeline", None)

    # Afterwards each held token rotates once, and its successor rotates in turn.
    after = []
    for session in held:
        status, _, body = run.refresh(session["refresh_token"])
        successor = body.get("refresh_token") if status == 200 else None
        after.append((status, run.refresh(successor)[0] if successor else None))
    report["throttling"] = {
        "operations": ["Sign"], "seconds": round(off_at - on_at, 1),
        "load_calls_inside": len(inside), "load_refused_503": len(refused),
        "retry_after_secs": {"min": min(retry_afters, default=None), "max": max(retry_afters, default=None),
                             "mean": round(sum(retry_afters) / len(retry_afters), 1) if retry_afters else None},
        "held_sessions": len(held), "held_presentations": len(held_answers),
        "held_refused_503": sum(1 for a in held_answers if a[2]),
        "held_statuses": status_counts(held_answers),
        "after": {"rotated": sum(1 for a in after if a[0] == 200), "successor_rotated": sum(1 for a in after if a[1] == 200)},
    }
    t = report["throttling"]
    check(inside and len(refused) == len(inside),
          f"KMS throttled: every login and refresh inside the throttling is a 503 with a Retry-After of "
          f"{THROTTLED_RETRY_AFTER[0]}..{THROTTLED_RETRY_AFTER[1]} s and no token ({len(refused)} of {len(inside)}; "
          f"Retry-After {t['retry_after_secs']})", failures)
    check(held_answers and all(a[2] for a in held_answers),
          f"KMS throttled: every presentation of a session made before is refused the same way "
          f"({t['held_refused_503']} of {len(held_answers)}: {t['held_statuses']})", failures)
    others = {route: {st: n for st, n in f["statuses"].items() if st not in ("200", "503")}
              for route, f in report["routes"].items()}
    whoami = statuses(report, WHOAMI)
    check(all(not o for o in others.values()) and set(whoami) <= {"200"} and not report["refusals_without_retry_after"],
          f"KMS throttled: no other answer (besides 200 and 503: {others}; whoami {whoami}; 503s without "
          f"Retry-After {report['refusals_without_retry_after']})", failures)
    check(report["lost_sessions_during_load"] == 0, "KMS throttled: no refresh token from a 200 was refused", failures)
    check(all(a == (200, 200) for a in after),
          f"KMS back: each session refused during the throttling rotates once, and its successor in turn ({after})",
          failures)
    v = report["verified_afterwards"]
    check(v["usable"] == v["sessions"], f"KMS back: every session's last token rotates ({v})", failures)
    return report


def family_id_of(refresh_token: str) -> str:
    """The family id inside a refresh token: `tkrt_` + base64url(family id (16 bytes) ‖
    generation ‖ secret), as shared/src/rules/token.rs lays it out."""
    body = refresh_token.removeprefix("tkrt_")
    family = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:16]
    return base64.urlsafe_b64encode(family).decode().rstrip("=")


def refresh_storm(run: Run, failures: list[str]) -> dict:
    """STORM_SESSIONS sessions, each refreshed once, all at once (a barrier releases every
    request together, as clients coming back after an outage): each token rotates exactly
    once (a 200 each, one generation each, every family alive: no reuse detected)."""
    log(f"phase 5: the refresh storm, {STORM_SESSIONS} sessions refreshing at once")
    with ThreadPoolExecutor(8) as pool:
        sessions = list(pool.map(lambda n: run.login(n % 8), range(STORM_SESSIONS)))
    gate = threading.Barrier(STORM_SESSIONS)

    def refresh_at_once(token: str) -> tuple[float, float, int, dict]:
        gate.wait()
        started = time.monotonic()
        status, _, body = run.refresh(token)
        return started, time.monotonic(), status, body

    with ThreadPoolExecutor(STORM_SESSIONS) as pool:
        answers = list(pool.map(refresh_at_once, [s["refresh_token"] for s in sessions]))
    first, last = min(a[0] for a in answers), max(a[1] for a in answers)
    latencies = sorted((a[1] - a[0]) * 1000 for a in answers)
    ddb = stacklib.client("dynamodb", run.env["AWS_ENDPOINT_URL_DYNAMODB"])
    families = []
    for session in sessions:
        family_id = family_id_of(session["refresh_token"])
        item = ddb.get_item(TableName=run.env["FAMILIES_TABLE"], Key={"family_id": {"S": family_id}},
                            ConsistentRead=True).get("Item", {})
        families.append((int(item.get("generation", {}).get("N", -1)), item.get("status", {}).get("S")))
    storm = {
        "sessions": STORM_SESSIONS, "function_instances": CONCURRENCY,
        "drain_secs": round(last - first, 2), "per_sec": round(STORM_SESSIONS / (last - first), 1),
        "p50_ms": round(latencies[len(latencies) // 2], 1), "p99_ms": p99_ms(latencies),
        "max_ms": round(latencies[-1], 1), "statuses": status_counts([(a[2],) for a in answers]),
        "generations": {str(g): sum(1 for f in families if f[0] == g) for g in sorted({f[0] for f in families})},
        "families_alive": sum(1 for f in families if f[1] == "active"),
    }
    successors = {a[3].get("refresh_token") for a in answers if a[2] == 200}
    check(storm["statuses"] == {"200": STORM_SESSIONS} and len(successors) == STORM_SESSIONS,
          f"refresh storm: each of {STORM_SESSIONS} tokens presented at once rotates, one 200 and one successor "
          f"each ({storm['statuses']}, {len(successors)} successors)", failures)
    check(storm["generations"] == {"1": STORM_SESSIONS} and storm["families_alive"] == STORM_SESSIONS,
          f"refresh storm: each family rotated exactly once and lives (no reuse detected: generations "
          f"{storm['generations']}, {storm['families_alive']} alive)", failures)
    log(f"refresh storm drained in {storm['drain_secs']} s ({storm['per_sec']} refreshes/s)")
    return storm


# The attack run: the deployment's default per-source limit (shared/src/platform/config.rs),
# set explicitly because the local stack's own is far above any test's rate.
ATTACK_LIMIT, ATTACK_WINDOW_SECS = 60, 60
LEGIT_SOURCE, ATTACK_SOURCE = "127.0.0.1", "127.0.0.2"
LEGIT_PER_SEC = 1.0


def paced_logins(url: str, source: str, per_sec: float, secs: float, credentials) -> list[dict]:
    """Logins from `source` at `per_sec` for `secs`, open loop (each at its scheduled time,
    however slow the earlier ones are); each answer's status, Retry-After and latency."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)

    def one(n: int) -> dict:
        username, password = credentials(n)
        body = json.dumps({"username": username, "password": password})
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0))
            conn.request("POST", "/auth/login", body, {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            status, retry_after = response.status, response.getheader("retry-after")
            conn.close()
        except OSError:
            status, retry_after = 0, None
        return {"status": status, "retry_after": retry_after, "ms": (time.monotonic() - started) * 1000}

    count = int(per_sec * secs)
    start = time.monotonic()
    with ThreadPoolExecutor(max(4, int(per_sec * 4))) as pool:
        futures = []
        for n in range(count):
            delay = start + n / per_sec - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, n))
        return [f.result() for f in futures]


def summary(answers: list[dict], source: str, per_sec: float) -> dict:
    latencies = sorted(a["ms"] for a in answers)
    codes: dict[str, int] = {}
    for a in answers:
        codes[str(a["status"])] = codes.get(str(a["status"]), 0) + 1

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1) if latencies else 0.0

    return {"source": source, "per_sec": per_sec, "requests": len(answers), "statuses": codes,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(latencies[-1], 1) if latencies else 0.0}


def attack_run() -> dict:
    secs = int(os.environ.get("ATTACK_SECS", 30))
    factor = int(os.environ.get("ATTACK_FACTOR", 10))
    failures: list[str] = []
    limits = [f"LOGIN_LIMIT_PER_SOURCE={ATTACK_LIMIT}", f"SOURCE_LIMIT_WINDOW_SECS={ATTACK_WINDOW_SECS}"]
    with Run("attack", persistent=False, function_env=limits) as run:
        username, password = run.users_file.read_text().splitlines()[0].split(" ", 1)

        def legit(_: int) -> tuple[str, str]:
            return username, password

        def stuffing(n: int) -> tuple[str, str]:
            return f"stuffed{n}-{os.getpid()}", f"guess-{n}"

        log(f"attack: the legitimate user alone, {LEGIT_PER_SEC}/s for 10 s from {LEGIT_SOURCE}")
        alone = summary(paced_logins(run.url, LEGIT_SOURCE, LEGIT_PER_SEC, 10, legit), LEGIT_SOURCE, LEGIT_PER_SEC)
        attack_rate = factor * LEGIT_PER_SEC
        log(f"attack: {ATTACK_SOURCE} at {attack_rate}/s and the user at {LEGIT_PER_SEC}/s for {secs} s")
        with ThreadPoolExecutor(2) as pool:
            attacking = pool.submit(paced_logins, run.url, ATTACK_SOURCE, attack_rate, secs, stuffing)
            during = pool.submit(paced_logins, run.url, LEGIT_SOURCE, LEGIT_PER_SEC, secs, legit)
            attacker_answers, legit_answers = attacking.result(), during.result()
        attacker = summary(attacker_answers, ATTACK_SOURCE, attack_rate)
        legit_during = summary(legit_answers, LEGIT_SOURCE, LEGIT_PER_SEC)

        check(alone["statuses"] == {"200": alone["requests"]}, f"alone: every legitimate login succeeds ({alone['statuses']})",
              failures)
        ok = legit_during["statuses"].get("200", 0)
        check(ok == legit_during["requests"], f"one address at {factor}x the login rate does not stop another "
              f"address's logins: {ok} of {legit_during['requests']} succeeded ({legit_during['statuses']})", failures)
        windows = secs // ATTACK_WINDOW_SECS + 2
        through = attacker["statuses"].get("401", 0)
        throttled = [a for a in attacker_answers if a["status"] == 429]
        check(throttled and through <= ATTACK_LIMIT * windows,
              f"the attacker is refused beyond its limit: {len(throttled)} answered 429, {through} reached the "
              f"password check (at most {ATTACK_LIMIT} per {ATTACK_WINDOW_SECS} s window)", failures)
        retry = [int(a["retry_after"] or 0) for a in throttled]
        check(all(1 <= r <= ATTACK_WINDOW_SECS for r in retry),
              f"every 429 carries a Retry-After within the window ({min(retry, default=0)}..{max(retry, default=0)} s)",
              failures)
        fives = {s: n for s, n in {**attacker["statuses"], **legit_during["statuses"]}.items()
                 if s == "0" or int(s) >= 500}
        check(not fives, f"no 5xx and no unanswered request ({fives})", failures)
        check(not run.functions_log_has_panics(), "no function panicked", failures)
    return {"attack": {"limit": ATTACK_LIMIT, "window_secs": ATTACK_WINDOW_SECS, "seconds": secs,
                       "legitimate_alone": alone, "legitimate_during_attack": legit_during, "attacker": attacker},
            "failures": failures}


# ---------------------------------------------------------------- docs/reliability.md


def render_attack(a: dict) -> list[str]:
    out = [f"Per-source limit {a['limit']} logins per {a['window_secs']} s (the defaults); {a['seconds']} s of attack.",
           "", "| who | source | logins/s | requests | p50 ms | p99 ms | max ms | statuses |",
           "|---|---|---:|---:|---:|---:|---:|---|"]
    for who, key in (("legitimate user, alone", "legitimate_alone"),
                     ("legitimate user, during the attack", "legitimate_during_attack"),
                     ("attacker", "attacker")):
        r = a[key]
        st = ", ".join(f"{s}: {n}" for s, n in sorted(r["statuses"].items()))
        out.append(f"| {who} | {r['source']} | {r['per_sec']:g} | {r['requests']} | {r['p50_ms']} | {r['p99_ms']} | "
                   f"{r['max_ms']} | {st} |")
    return out + [""]


def render_outage(o: dict | None) -> list[str]:
    if not o:
        return []
    b, d, p = o["before"], o["until_the_bound"], o["past_the_bound"]
    return ["", f"The authorizer (`GET /api/whoami`) before the outage: p99 {b['p99_ms']} ms, max {b['max_ms']} ms "
            f"over {b['calls']} calls; from the stop until the staleness bound ({o['staleness_secs']} s): p99 "
            f"{d['p99_ms']} ms, max {d['max_ms']} ms over {d['calls']} calls ({d['statuses']}); from {p['from_secs']} s "
            f"to {p['to_secs']} s into the outage: {p['calls']} calls, {p['statuses']}."]


def render_throttling(t: dict | None) -> list[str]:
    if not t:
        return []
    r = t["retry_after_secs"]
    return ["", f"`kms:{'`, `kms:'.join(t['operations'])}` answered ThrottlingException for {t['seconds']} s: "
            f"{t['load_refused_503']} of the {t['load_calls_inside']} logins and refreshes of the load inside it "
            f"answered 503 (Retry-After {r['min']}..{r['max']} s, mean {r['mean']}); {t['held_sessions']} sessions made "
            f"before presented their refresh tokens {t['held_presentations']} times ({t['held_statuses']}); afterwards "
            f"{t['after']['rotated']} of them rotated once and {t['after']['successor_rotated']} successors in turn."]


def render_storm(st: dict | None) -> list[str]:
    if not st:
        return []
    return ["### refresh_storm", "",
            f"{st['sessions']} sessions, each refresh token presented once, all at once (a barrier), through the gateway "
            f"to {st['function_instances']} instances of the refresh function: drained in {st['drain_secs']} s "
            f"({st['per_sec']} refreshes/s); latency p50 {st['p50_ms']} ms, p99 {st['p99_ms']} ms, max {st['max_ms']} ms; "
            f"statuses {st['statuses']}; family generations afterwards {st['generations']}, "
            f"{st['families_alive']} alive.", ""]


def render() -> None:
    out = ["# Reliability: the last load and fault runs", "",
           "Written by `infra/local/reliability.py` (`make load`, `make faults`, which ends with the attack",
           "run); do not edit by hand.",
           "Everything runs on this machine through the local gateway (tools/gateway) in front of",
           "`cargo lambda watch` (debug builds, 4 instances per function), against DynamoDB Local",
           "and the KMS emulator. Figures are the gateway's clients' view (loopback HTTP).", "",
           "The phases of `make faults`, and what each checks:", "",
           f"- **DynamoDB stopped** for {OUTAGE_SECS} s under load, the authorizers' staleness bound set to "
           f"{STALENESS_SECS} s: every 5xx is a 503, no refresh token from a 200 is refused later, every "
           "session's last token rotates afterwards; the authorizer's (`GET /api/whoami`) p99 from the stop "
           f"until the bound stays within {P99_MARGIN_MS} ms of its p99 before the outage in the same run "
           f"(from {BASELINE_FROM_SECS} s into the load, after a warm-up load, so neither cold starts nor the "
           "clients' first logins count), and "
           "past the bound (plus the gateway's cache and one poll) every token is refused.",
           "- **DynamoDB slow** (a delaying proxy: 300 ms, then 2.5 s, past the SDK's attempt timeout): every "
           "5xx is a 503, parallel refreshes of one token rotate it once, no double rotation.",
           "- **KMS stopped** (the emulator frozen): logins and refreshes 503, the authorizer keeps allowing "
           "valid tokens and denies a session revoked meanwhile within the stated lag; afterwards each "
           "session refused during it rotates.",
           f"- **KMS throttled**: the emulator's switch answers `kms:Sign` with AWS's `ThrottlingException` "
           f"for {THROTTLE_SECS} s under load. Every login and refresh that started and ended inside it is a "
           f"503 with a `Retry-After` of {THROTTLED_RETRY_AFTER[0]}..{THROTTLED_RETRY_AFTER[1]} s and no "
           "token; sessions made before present their refresh tokens throughout and are refused the same way; "
           "no other answer at all (whoami 200: the authorizer needs no KMS); afterwards each of those tokens "
           "rotates once and its successor in turn, and every session of the load rotates.",
           f"- **Refresh storm**: {STORM_SESSIONS} sessions, each refresh token presented once, all released "
           "together by a barrier (as clients coming back after an outage): one 200 and one successor per "
           "token, each family one generation further and alive (no reuse detected); the drain time and "
           "throughput are reported.", ""]
    for name in ("load", "faults", "attack"):
        path = DOCS / "reliability" / f"{name}.json"
        if not path.exists():
            out += [f"## {name}", "", "Not run yet.", ""]
            continue
        data = json.loads(path.read_text())
        out += [f"## {name}", "", f"`{data['command']}` on {data['date']} ({data['machine']}): "
                f"**{'passed' if not data['failures'] else 'FAILED: ' + '; '.join(data['failures'])}**", ""]
        if name == "attack":
            out += render_attack(data["attack"])
        reports = {"load": {k: data[k] for k in ("load", "one_client") if k in data},
                   "faults": data.get("faults", {})}.get(name, {})
        for phase, report in reports.items():
            out += [f"### {phase}", "",
                    f"{report['clients']} clients, {report['seconds']} s, {report['requests']} requests, "
                    f"{report['per_sec']} requests/s; gateway overhead p50 {report['gateway_overhead_us']['p50']} µs, "
                    f"p99 {report['gateway_overhead_us']['p99']} µs; refresh tokens from a 200 refused later: "
                    f"{report['lost_sessions_during_load']}.", "",
                    "| route | requests | per s | p50 ms | p99 ms | max ms | statuses |",
                    "|---|---:|---:|---:|---:|---:|---|"]
            for route, f in report["routes"].items():
                st = ", ".join(f"{s}: {n}" for s, n in sorted(f["statuses"].items()))
                out.append(f"| `{route}` | {f['requests']} | {f['per_sec']} | {f['p50_ms']} | {f['p99_ms']} | "
                           f"{f['max_ms']} | {st} |")
            held = report.get("sessions_made_before")
            if held:
                out += ["", "Sessions made before the outage, used during it: " + "; ".join(
                    f"`{route}` " + ", ".join(f"{s}: {n}" for s, n in sorted(st.items())) for route, st in held.items())
                    + " (the load's own clients could not log in)."]
            out += render_outage(report.get("authorizer_outage")) + render_throttling(report.get("throttling"))
            verified = report.get("verified_after_kms_returned") or report.get("verified_afterwards")
            if verified:
                out += ["", f"Afterwards: {verified['usable']} of {verified['sessions']} sessions' last refresh "
                        f"tokens rotated (others: {verified['unusable_statuses']})."]
            out.append("")
        out += render_storm(data.get("storm"))
        out += ["Checks:", ""] + [f"- {c}" for c in data["checks"]] + [""]
    (DOCS / "reliability.md").write_text("\n".join(out))


def record(run: str, command: str, result: dict, started: float) -> int:
    """Writes docs/reliability/<run>.json with this run's checks and renders the page."""
    result.update({
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "checks": list(CHECKS),
    })
    CHECKS.clear()
    (DOCS / "reliability").mkdir(exist_ok=True)
    (DOCS / "reliability" / f"{run}.json").write_text(json.dumps(result, indent=2) + "\n")
    render()
    log(f"wrote docs/reliability/{run}.json and docs/reliability.md")
    if result["failures"]:
        log(f"{len(result['failures'])} check(s) failed")
        return 1
    return 0


def main() -> int:
    run = sys.argv[1]
    runs = {"load": load_run, "faults": faults_run, "attack": attack_run}
    # `make faults` is the fault runs and the attack.
    order = ["faults", "attack"] if run == "faults" else [run]
    status = 0
    for name in order:
        started = time.time()
        command = "make faults" if run == "faults" else f"make {run}" if run == "load" else f"reliability.py {run}"
        status |= record(name, command, runs[name](), started)
    return status


if __name__ == "__main__":
    sys.exit(main())
