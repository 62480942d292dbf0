#!/usr/bin/env python3
"""reliability.py load|faults: load and fault runs through the local gateway, on a private
stack of their own (free loopback ports, stopped afterwards whatever happens).

    load    every function under `cargo lambda watch --concurrency 4`, the gateway in front,
            `loadgen` (tools/loadgen) for LOAD_SECS (30) with LOAD_CLIENTS (8) clients:
            login, authorized whoami, refresh. Asserts no 5xx and no lost session.
    faults  the same load while
            1. DynamoDB Local is stopped for 10 s and started again (its data on disk);
            2. DynamoDB answers slowly (a delaying proxy in front of it): 300 ms, then
               2.5 s, beyond the SDK's 2 s attempt timeout;
            3. the KMS emulator is stopped (SIGSTOP: KMS hangs, as an unreachable KMS
               does from a Lambda) and continued again.
            Asserts: every 5xx is a 503 and no function panicked; every session's last
            refresh token from a 200 still rotates afterwards (each one is presented);
            parallel refreshes of one token rotate once; the authorizer keeps allowing
            valid tokens and denying a session revoked while KMS is down; recovery
            without restarting the functions.
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
# end-to-end tests; the gateway's cache at 2 s. The stated lag is their sum.
# The retry answers one rotated refresh token gets, as the rule states it.
MAX_RETRY_ANSWERS = int(re.search(r"pub const MAX_RETRY_ANSWERS: u32 = (\d+);",
                                  (ROOT / "shared/src/rules/rotation.rs").read_text()).group(1))
FUNCTION_ENV = ["REVOCATION_POLL_SECS=1", "KEY_SET_RELOAD_SECS=1"]
CACHE_SECS = 2
LAG_SECS = 1 + CACHE_SECS


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
        stacklib.gateway(self.stack, 0, [f"AuthorizerCacheSecs={CACHE_SECS}"])
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

    def loadgen(self, secs: int, clients: int, verify_secs: int | None = None) -> subprocess.Popen:
        argv = [str(LOADGEN), "--url", self.url, "--secs", str(secs), "--clients", str(clients),
                "--users", str(self.users_file)]
        if verify_secs is not None:
            argv += ["--verify-secs", str(verify_secs)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    @staticmethod
    def report(proc: subprocess.Popen) -> dict:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise Failure(f"loadgen failed ({proc.returncode})")
        return json.loads(out)

    def http(self, method: str, path: str, body: dict | str | None = None, bearer: str | None = None) -> tuple[int, dict]:
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
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except ValueError:
                return e.code, {}

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


def faults_run() -> dict:
    failures: list[str] = []
    phases = {}
    with Run("faults", persistent=True) as run:
        functions_pid = run.service_pid(stacklib.FUNCTIONS)

        # 1. DynamoDB Local stopped for 10 s during the load, then started again.
        log("phase 1: DynamoDB Local stopped for 10 s during 30 s of load")
        load = run.loadgen(30, 8, verify_secs=30)
        time.sleep(8)
        run.stack.stop("dynamodb")
        stopped_at = time.time()
        time.sleep(10)
        port = int(run.env["AWS_ENDPOINT_URL_DYNAMODB"].rsplit(":", 1)[1])
        run.stack.spawn("dynamodb", stacklib.dynamodb_argv(port, run.stack.dir / "dynamodb-data"), "DynamoDBLocal.jar")
        log(f"DynamoDB Local started again after {time.time() - stopped_at:.1f} s")
        report = run.report(load)
        phases["dynamodb_stopped_10s"] = report
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

        check(run.service_pid(stacklib.FUNCTIONS) == functions_pid, "the functions were never restarted", failures)
        check(not run.functions_log_has_panics(), "no function panicked", failures)
    return {"faults": phases, "failures": failures}


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


def render() -> None:
    out = ["# Reliability: the last load and fault runs", "",
           "Written by `infra/local/reliability.py` (`make load`, `make faults`, which ends with the attack",
           "run); do not edit by hand.",
           "Everything runs on this machine through the local gateway (tools/gateway) in front of",
           "`cargo lambda watch` (debug builds, 4 instances per function), against DynamoDB Local",
           "and the KMS emulator. Figures are the gateway's clients' view (loopback HTTP).", ""]
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
            verified = report.get("verified_after_kms_returned") or report.get("verified_afterwards")
            if verified:
                out += ["", f"Afterwards: {verified['usable']} of {verified['sessions']} sessions' last refresh "
                        f"tokens rotated (others: {verified['unusable_statuses']})."]
            out.append("")
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
