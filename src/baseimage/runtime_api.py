"""A Lambda Runtime API served on 127.0.0.1, so an image can be invoked as Lambda would.

The runtime client inside the container polls `GET /invocation/next`; the server hands
it the events queued with `RuntimeApi.invoke` and records what comes back: a
response, a handler error, or an init error. Standard library only, one thread per
connection, bounded waits everywhere so a silent container cannot hang a test.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

log = logging.getLogger(__name__)

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:baseimage-test"
TRACE_ID = "Root=1-00000000-000000000000000000000000;Sampled=0"

Status = Literal["ok", "error", "init_error", "timeout", "gave_up"]
_POLL = 0.1  # seconds between checks of a waiting invocation
_NEXT_SLICE = 0.25  # a blocked GET /next wakes this often to notice a stop


@dataclass(frozen=True)
class ErrorReport:
    """An error the runtime posted: a handler error or an init error."""

    type: str
    message: str
    stack_trace: tuple[str, ...]
    raw: str

    @classmethod
    def parse(cls, body: bytes, header_type: str | None) -> ErrorReport:
        """Read the runtime's error JSON, tolerating bodies that are not JSON."""
        text = body.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls(
                type=header_type or "Unknown", message=text, stack_trace=(), raw=text
            )
        trace = data.get("stackTrace") or []
        if isinstance(trace, str):
            trace = trace.splitlines()
        return cls(
            type=str(data.get("errorType") or header_type or "Unknown"),
            message=str(data.get("errorMessage") or ""),
            stack_trace=tuple(str(line).rstrip("\n") for line in trace),
            raw=text,
        )

    def describe(self) -> str:
        """The error as a readable block: type, message, then the stack trace."""
        head = f"{self.type}: {self.message}".strip(": ")
        return "\n".join([head, *self.stack_trace])


@dataclass(frozen=True)
class Invocation:
    """What came of one event: the parsed response, or why there is none."""

    request_id: str
    status: Status
    body: Any = None
    error: ErrorReport | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class _Pending:
    request_id: str
    event: bytes
    deadline_ms: int
    done: threading.Event = field(default_factory=threading.Event)
    picked_at: float | None = None
    status: Status | None = None
    body: Any = None
    error: ErrorReport | None = None


class RuntimeApi:
    """The Runtime API of one function instance, on an ephemeral port of 127.0.0.1.

    Use it as a context manager, start the container with `address` as its
    `AWS_LAMBDA_RUNTIME_API`, then call `invoke`.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", function_arn: str = FUNCTION_ARN
    ) -> None:
        self.host = host
        self.function_arn = function_arn
        self.first_poll_at: float | None = None  # time.monotonic() of the first /next
        self.init_error: ErrorReport | None = None
        self._events: queue.Queue[_Pending] = queue.Queue()
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """`host:port` for AWS_LAMBDA_RUNTIME_API."""
        if self._server is None:
            raise RuntimeError("the Runtime API is not started")
        return f"{self.host}:{self._server.server_address[1]}"

    def start(self) -> RuntimeApi:
        """Bind an ephemeral port and serve in a background thread."""
        server = ThreadingHTTPServer((self.host, 0), _handler_class(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="runtime-api",
            daemon=True,
        )
        self._thread.start()
        log.debug("Runtime API listening on %s", self.address)
        return self

    def stop(self) -> None:
        """Stop serving; runtime clients still waiting for an event are released."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RuntimeApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_for_first_poll(
        self, timeout: float, give_up: Callable[[], bool] | None = None
    ) -> bool:
        """Wait until the runtime asks for its first event (its init is over).

        Returns True when it did, False on an init error, a timeout or `give_up`.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.first_poll_at is not None:
                return True
            if self.init_error is not None or (give_up is not None and give_up()):
                return False
            time.sleep(_POLL)
        return self.first_poll_at is not None

    def invoke(
        self,
        event: Any,
        timeout: float,
        give_up: Callable[[], bool] | None = None,
    ) -> Invocation:
        """Queue one event and wait for the runtime's answer.

        Args:
            event: Any JSON-serialisable value; Lambda events are usually objects.
            timeout: Seconds to wait for an answer, also announced as the deadline.
            give_up: Called while waiting; True ends the wait (the container died).

        Returns:
            The invocation; its status says whether an answer came and of what kind.
        """
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        pending = _Pending(
            request_id=request_id,
            event=json.dumps(event).encode(),
            deadline_ms=int((time.time() + timeout) * 1000),
        )
        with self._lock:
            self._pending[request_id] = pending
        self._events.put(pending)

        status: Status = "timeout"
        while time.monotonic() - started < timeout:
            if pending.done.wait(_POLL):
                status = pending.status or "error"
                break
            if self.init_error is not None:
                status = "init_error"
                break
            if give_up is not None and give_up():
                # The answer may have landed just before the runtime exited.
                answered = pending.done.wait(_POLL)
                status = (pending.status or "error") if answered else "gave_up"
                if self.init_error is not None and not answered:
                    status = "init_error"
                break
        with self._lock:
            self._pending.pop(request_id, None)
        return Invocation(
            request_id=request_id,
            status=status,
            body=pending.body,
            error=self.init_error if status == "init_error" else pending.error,
            duration_ms=(time.monotonic() - started) * 1000,
        )

    # --- called from the HTTP handler threads ------------------------------------

    def _next_event(self) -> _Pending | None:
        if self.first_poll_at is None:
            self.first_poll_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                pending = self._events.get(timeout=_NEXT_SLICE)
            except queue.Empty:
                continue
            pending.picked_at = time.monotonic()
            return pending
        return None

    def _finish(
        self, request_id: str, status: Status, body: bytes, kind: str | None
    ) -> bool:
        with self._lock:
            pending = self._pending.get(request_id)
        if pending is None:
            return False
        if status == "ok":
            text = body.decode("utf-8", "replace")
            try:
                pending.body = json.loads(text) if text.strip() else None
            except ValueError:
                pending.body = text
        else:
            pending.error = ErrorReport.parse(body, kind)
        pending.status = status
        pending.done.set()
        return True

    def _record_init_error(self, body: bytes, kind: str | None) -> None:
        self.init_error = ErrorReport.parse(body, kind)


def _handler_class(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self._answer(404, {"errorMessage": f"unknown path {self.path}"})
                return
            pending = api._next_event()
            if pending is None:
                self._answer(503, {"errorMessage": "the test harness is shutting down"})
                return
            headers = {
                "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                "Lambda-Runtime-Trace-Id": TRACE_ID,
            }
            self._answer(200, raw=pending.event, headers=headers)

        def do_POST(self) -> None:
            body = self._body()
            kind = self.headers.get("Lambda-Runtime-Function-Error-Type")
            parts = self.path[len(PREFIX) :].strip("/").split("/")
            if self.path == f"{PREFIX}/init/error":
                api._record_init_error(body, kind)
                self._answer(202, {"status": "OK"})
                return
            if (
                self.path.startswith(PREFIX + "/")
                and len(parts) == 3
                and parts[0] == "invocation"
                and parts[2] in ("response", "error")
            ):
                status: Status = "ok" if parts[2] == "response" else "error"
                if api._finish(parts[1], status, body, kind):
                    self._answer(202, {"status": "OK"})
                else:
                    self._answer(400, {"errorMessage": f"unknown request {parts[1]}"})
                return
            self._answer(404, {"errorMessage": f"unknown path {self.path}"})

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()  # the blank line after the last chunk
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _answer(
            self,
            code: int,
            document: dict[str, Any] | None = None,
            *,
            raw: bytes | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            payload = raw if raw is not None else json.dumps(document).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                # The container went away mid-answer; nothing is waiting for it.
                log.debug("runtime client hung up during %s", self.path)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("runtime API: " + format, *args)

    return Handler
