#!/usr/bin/env python3
"""Cold start of a function binary: process start -> first answered invocation.

    coldstart.py [--empty-dynamodb] BINARY EVENT_FILE [RUNS]

A minimal Lambda Runtime API stub on a free loopback port hands the binary one event and
times the moment its answer (or error) arrives. The binary gets the environment of the
caller (so the stack's variables, for its start-up calls) plus AWS_LAMBDA_RUNTIME_API.
With --empty-dynamodb the stub also stands in for DynamoDB and answers every call with
an empty result at once, which takes DynamoDB Local's own latency out of the figure.
Prints each run and the median, in milliseconds.
"""

import http.server
import os
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(binary: str, event: bytes, empty_dynamodb: bool) -> float:
    answered = threading.Event()
    served = {"next": False}

    class Stub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            if self.path.endswith("/invocation/next") and not served["next"]:
                served["next"] = True
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "coldstart-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:f")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(event)))
                self.end_headers()
                self.wfile.write(event)
            else:
                time.sleep(5)  # the next invocation never comes
                self.send_response(503)
                self.end_headers()

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            if self.path == "/" and self.headers.get("X-Amz-Target", "").startswith("DynamoDB_"):
                # --empty-dynamodb: every DynamoDB call finds nothing, at once.
                body = b'{"Count":0,"Items":[],"ScannedCount":0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            answered.set()
            self.send_response(202)
            self.end_headers()

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
        AWS_LAMBDA_FUNCTION_NAME="coldstart",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/coldstart",
        AWS_LAMBDA_LOG_STREAM_NAME="local",
    )
    if empty_dynamodb:
        env["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = answered.wait(30)
    elapsed = (time.perf_counter() - start) * 1000
    proc.kill()
    proc.wait()
    server.shutdown()
    if not ok:
        raise SystemExit("the function never answered")
    return elapsed


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--empty-dynamodb"]
    empty_dynamodb = len(args) < len(sys.argv) - 1
    binary, event_file = args[0], args[1]
    runs = int(args[2]) if len(args) > 2 else 10
    event = open(event_file, "rb").read()
    times = [run_once(binary, event, empty_dynamodb) for _ in range(runs)]
    print("runs (ms):", " ".join(f"{t:.1f}" for t in times))
    print(f"median process start -> first answered invocation: {statistics.median(times):.1f} ms")


if __name__ == "__main__":
    main()
