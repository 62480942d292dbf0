#!/usr/bin/env python3
"""An HTTP relay in front of DynamoDB Local that can answer as a throttled DynamoDB does.

    dynamodb_throttle_proxy.py SWITCH_FILE PORT TARGET_PORT

DynamoDB Local never throttles. This relay accepts HTTP on 127.0.0.1:PORT and forwards
each request to 127.0.0.1:TARGET_PORT (DynamoDB Local), except while SWITCH_FILE holds
`{"throttle": ["GetItem", "TransactWriteItems", ...], "code": "..."}`: then a request for a
named operation (its `X-Amz-Target`) is answered as DynamoDB answers a request over its
throughput, HTTP 400 with `{"__type": "com.amazonaws.dynamodb.v20120810#<code>",
"message": ...}`; `code` is `ProvisionedThroughputExceededException` unless the file says
`ThrottlingException` or `RequestLimitExceeded`. The file is read per request; without it
everything goes through. Only whoever writes the file flips it (the test that started the
relay); nothing a client sends can. Writes PORT's readiness by listening; runs until killed.
"""

import http.client
import http.server
import json
import sys
import threading
import uuid

MESSAGES = {
    "ProvisionedThroughputExceededException": "The level of configured provisioned throughput for the table was "
    "exceeded. Consider increasing your provisioning level with the UpdateTable API.",
    "ThrottlingException": "Throughput exceeds the current capacity for one or more global secondary indexes.",
    "RequestLimitExceeded": "Throughput exceeds the current throughput limit for your account.",
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def throttling(switch_file: str) -> tuple[frozenset, str]:
    """The operations to throttle now, and the error code to answer them with."""
    try:
        with open(switch_file) as f:
            switch = json.load(f)
        code = switch.get("code", "ProvisionedThroughputExceededException")
        return frozenset(switch.get("throttle", [])), code if code in MESSAGES else "ProvisionedThroughputExceededException"
    except (OSError, ValueError, AttributeError):
        return frozenset(), ""


def handler(switch_file: str, target_port: int):
    upstream = threading.local()

    class Relay(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 - the http.server convention
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            operation = (self.headers.get("x-amz-target") or "").rsplit(".", 1)[-1]
            operations, code = throttling(switch_file)
            if operation in operations:
                answer = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": MESSAGES[code]})
                self.reply(400, [("Content-Type", "application/x-amz-json-1.0"),
                                 ("x-amzn-RequestId", str(uuid.uuid4()))], answer.encode())
                return
            for attempt in range(2):  # a kept-alive upstream connection may have been closed
                try:
                    conn = getattr(upstream, "conn", None) or http.client.HTTPConnection("127.0.0.1", target_port,
                                                                                         timeout=30)
                    upstream.conn = conn
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    conn.request("POST", self.path, body, headers)
                    response = conn.getresponse()
                    data = response.read()
                    break
                except (OSError, http.client.HTTPException):
                    upstream.conn = None
                    if attempt == 1:
                        self.close_connection = True
                        self.connection.close()
                        return
            self.reply(response.status,
                       [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}],
                       data)

        def reply(self, status: int, headers: list, body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Relay


def main() -> None:
    switch_file, port, target_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler(switch_file, target_port))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
