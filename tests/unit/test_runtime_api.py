"""The Runtime API server, driven over real HTTP on 127.0.0.1 like a runtime client."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from baseimage.runtime_api import PREFIX, RuntimeApi


@pytest.fixture
def api() -> Iterator[RuntimeApi]:
    with RuntimeApi() as server:
        yield server


def call(
    api: RuntimeApi,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{api.address}{PREFIX}{path}",
        data=data,
        method=method,
        headers=headers or {},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def runtime_client(api: RuntimeApi, answer: str, payload: Any) -> threading.Thread:
    """A thread that takes one event and posts `payload` to `answer` for it."""

    def run() -> None:
        _, headers, event = call(api, "GET", "/invocation/next")
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        body = payload(json.loads(event)) if callable(payload) else payload
        call(api, "POST", f"/invocation/{request_id}/{answer}", body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_event_is_served_with_the_lambda_headers_and_answered(api):
    seen: dict[str, str] = {}

    def run() -> None:
        status, headers, event = call(api, "GET", "/invocation/next")
        seen.update(headers, status=str(status))
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        answer = {"echo": json.loads(event)["message"]}
        call(api, "POST", f"/invocation/{request_id}/response", answer)

    threading.Thread(target=run, daemon=True).start()
    invocation = api.invoke({"message": "hello"}, timeout=10)

    assert invocation.status == "ok"
    assert invocation.body == {"echo": "hello"}
    assert seen["status"] == "200"
    assert seen["Lambda-Runtime-Aws-Request-Id"] == invocation.request_id
    assert int(seen["Lambda-Runtime-Deadline-Ms"]) > time.time() * 1000
    assert seen["Lambda-Runtime-Invoked-Function-Arn"].startswith("arn:aws:lambda:")
    assert seen["Lambda-Runtime-Trace-Id"].startswith("Root=")


def test_next_blocks_until_an_event_is_queued(api):
    runtime_client(api, "response", {"ok": True})
    assert api.wait_for_first_poll(timeout=5)
    time.sleep(0.3)  # the client is now parked on GET /next

    invocation = api.invoke({}, timeout=10)

    assert invocation.status == "ok"
    assert invocation.body == {"ok": True}


def test_first_poll_time_is_recorded_once(api):
    assert api.first_poll_at is None
    runtime_client(api, "response", None)
    assert api.wait_for_first_poll(timeout=5)
    first = api.first_poll_at

    api.invoke({}, timeout=10)

    assert api.first_poll_at == first


def test_a_handler_error_comes_back_with_type_message_and_trace(api):
    error = {
        "errorMessage": "boom",
        "errorType": "RuntimeError",
        "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n'],
    }
    runtime_client(api, "error", error)

    invocation = api.invoke({}, timeout=10)

    assert invocation.status == "error"
    assert invocation.error is not None
    assert invocation.error.type == "RuntimeError"
    assert invocation.error.message == "boom"
    assert invocation.error.stack_trace == (
        '  File "/var/task/app.py", line 3, in handler',
    )
    assert "RuntimeError: boom" in invocation.error.describe()


def test_an_init_error_ends_a_waiting_invocation(api):
    def run() -> None:
        time.sleep(0.2)
        call(
            api,
            "POST",
            "/init/error",
            {"errorMessage": "no module", "errorType": "Runtime.ImportModuleError"},
            headers={"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
        )

    threading.Thread(target=run, daemon=True).start()
    started = time.monotonic()
    invocation = api.invoke({}, timeout=10)

    assert invocation.status == "init_error"
    assert time.monotonic() - started < 5
    assert api.init_error is not None
    assert api.init_error.type == "Runtime.ImportModuleError"
    assert api.init_error.message == "no module"
    assert not api.wait_for_first_poll(timeout=1)


def test_an_error_body_that_is_not_json_is_kept_as_text(api):
    status, _, _ = call(
        api,
        "POST",
        "/init/error",
        headers={"Lambda-Runtime-Function-Error-Type": "Runtime.Crash"},
    )
    assert status == 202
    request = urllib.request.Request(
        f"http://{api.address}{PREFIX}/init/error", data=b"segfault", method="POST"
    )
    urllib.request.urlopen(request, timeout=5).close()

    assert api.init_error is not None
    assert api.init_error.message == "segfault"
    assert api.init_error.type == "Unknown"


def test_no_answer_is_a_timeout(api):
    invocation = api.invoke({}, timeout=0.5)
    assert invocation.status == "timeout"
    assert invocation.body is None


def test_give_up_ends_the_wait_when_the_container_is_gone(api):
    started = time.monotonic()
    invocation = api.invoke({}, timeout=30, give_up=lambda: True)
    assert invocation.status == "gave_up"
    assert time.monotonic() - started < 2


def test_unknown_paths_and_request_ids_are_refused(api):
    assert call(api, "GET", "/invocation/other")[0] == 404
    assert call(api, "POST", "/invocation/nope/response", {})[0] == 400
    assert call(api, "POST", "/something", {})[0] == 404


def test_a_chunked_response_is_read_whole(api):
    def run() -> None:
        _, headers, _ = call(api, "GET", "/invocation/next")
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]

        def chunks() -> Iterator[bytes]:
            yield b'{"part": '
            yield b'"two"}'

        request = urllib.request.Request(
            f"http://{api.address}{PREFIX}/invocation/{request_id}/response",
            data=chunks(),
            method="POST",
            headers={"Transfer-Encoding": "chunked"},
        )
        urllib.request.urlopen(request, timeout=5).close()

    threading.Thread(target=run, daemon=True).start()
    invocation = api.invoke({}, timeout=10)

    assert invocation.body == {"part": "two"}


def test_stop_releases_a_runtime_waiting_for_an_event():
    server = RuntimeApi().start()
    result: list[int] = []

    def run() -> None:
        result.append(call(server, "GET", "/invocation/next")[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert server.wait_for_first_poll(timeout=5)
    server.stop()
    thread.join(timeout=5)

    assert result == [503]
