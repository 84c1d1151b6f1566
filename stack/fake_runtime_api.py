#!/usr/bin/env python3
"""A throwaway Lambda Runtime API that serves one event and records the answer.

Used by stack/standins.sh to check a stand-in image: the container's runtime
client polls ``/invocation/next`` here, gets one event, and posts a response or
an error. The first answer is written as JSON to ``--result-file``
({"kind": "response" | "error" | "init-error", "body": <text>}) and the server
exits: 0 for a response, 1 for an error, 2 when nothing arrived in time.

Standard library only; listens on 127.0.0.1 on a free port written to
``--port-file``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:standin-check"
TRACE_ID = "Root=1-00000000-000000000000000000000000;Sampled=0"


class State:
    def __init__(self, event: bytes) -> None:
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.served = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None

    def record(self, kind: str, body: bytes) -> None:
        with self.lock:
            if self.result is None:
                self.result = {"kind": kind, "body": body.decode("utf-8", "replace")}
        self.done.set()


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path != PREFIX + "/invocation/next":
                self._answer(404, b'{"errorMessage":"unknown path"}')
                return
            with state.lock:
                first = not state.served
                state.served = True
            if not first:
                # One event only: hold the runtime here until the check is over.
                state.done.wait()
                time.sleep(60)
                return
            deadline_ms = int((time.time() + 30) * 1000)
            self._answer(
                200,
                state.event,
                {
                    "Lambda-Runtime-Aws-Request-Id": state.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": TRACE_ID,
                },
            )

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            invocation = f"{PREFIX}/invocation/{state.request_id}"
            if self.path == invocation + "/response":
                kind = "response"
            elif self.path == invocation + "/error":
                kind = "error"
            elif self.path == PREFIX + "/init/error":
                kind = "init-error"
            else:
                self._answer(404, b'{"errorMessage":"unknown path"}')
                return
            self._answer(202, b'{"status":"OK"}')
            state.record(kind, body)

        def _answer(
            self, status: int, body: bytes, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            sys.stderr.write("[fake-runtime-api] %s\n" % (format % args))

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event", default='{"message": "hello"}', help="event JSON")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--result-file", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    state = State(args.event.encode("utf-8"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Write then rename, so a reader polling for the file never sees half of it.
    with open(args.port_file + ".tmp", "w") as fh:
        fh.write(str(server.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)

    if not state.done.wait(args.timeout):
        result: dict[str, Any] = {"kind": "timeout", "body": ""}
    else:
        result = state.result or {"kind": "timeout", "body": ""}
    with open(args.result_file, "w") as fh:
        json.dump(result, fh)
    return {"response": 0, "timeout": 2}.get(result["kind"], 1)


if __name__ == "__main__":
    sys.exit(main())
