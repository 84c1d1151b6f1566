"""The Lambda smoke test: run a built image as Lambda would, with a probe handler.

baseimage serves the Runtime API itself (`runtime_api`) and starts the image with its
own entrypoint, as a uid the image does not know, on a read-only root with only /tmp
writable and no credentials in its environment. The probe (`probes`) is bind-mounted
at test time, so nothing of it can reach a published image. The contract checks
(`contract`) come first; everything ends up in one `TestReport`.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import requests
from rich.table import Table
from rich.text import Text

from baseimage import contract, probes
from baseimage.builder import LABEL_PREFIX
from baseimage.contract import Check
from baseimage.errors import EngineUnavailable, EnvironmentProblem
from baseimage.probes import Probe
from baseimage.runtime_api import ErrorReport, Invocation, RuntimeApi
from baseimage.spec import ImageSpec, RuntimeSpec

log = logging.getLogger(__name__)

LAMBDA_USER = "993:993"  # like Lambda's sandbox user: not root, unknown to the image
FUNCTION_NAME = "baseimage-test"
MEMORY_MB = 1024
CONTAINER_LABEL = f"{LABEL_PREFIX}.smoke-test"
_EXCERPT_LINES = 40
_TAIL_LINES = 15
_TABLE_DETAIL_LINES = 12
_NOISE_FRAMES = ('"<frozen importlib', '/importlib/__init__.py"', "/baseimage_probe.py")
_STYLES = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


@dataclass(frozen=True)
class TestReport:
    """The outcome of the smoke test of one image."""

    __test__ = False  # a report, not a pytest test class

    image: str
    runtime: str
    passed: bool
    checks: tuple[Check, ...]
    duration_s: float
    init_ms: float | None = None
    import_ms: float | None = None
    import_with_bytecode_ms: float | None = None
    import_without_bytecode_ms: float | None = None
    sdk: tuple[dict[str, Any], ...] = ()
    log_excerpt: tuple[str, ...] = ()
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        """The checks that failed, in the order they ran."""
        return [c for c in self.checks if c.status == "fail"]


@dataclass(frozen=True)
class _Run:
    invocation: Invocation
    init_ms: float | None
    exit_code: int | None
    stdout: list[str]
    combined: list[str]


def run_image_test(
    client: Any,
    spec: ImageSpec,
    runtime_spec: RuntimeSpec,
    image_ref: str,
    *,
    size_warning_bytes: int | None = None,
    timeout: float = 180.0,
) -> TestReport:
    """Check a local image's Lambda contract, then invoke a probe in it as Lambda would.

    Args:
        client: A Docker client.
        spec: The spec the image was built from.
        runtime_spec: The spec's runtime the image is for.
        image_ref: A local image reference or id.
        size_warning_bytes: Image size above which the size check warns (default:
            the spec's test.size_warning_mb).
        timeout: Seconds the invocation, init included, may take.

    Returns:
        The report; `passed` is False when any check failed.

    Raises:
        EngineUnavailable: the Docker engine does not answer.
        EnvironmentProblem: the image is missing, the engine refuses the test
            container, or the host lacks a JDK to compile the Java probe.
    """
    started = time.monotonic()
    runtime = runtime_spec.runtime
    if size_warning_bytes is None:
        size_warning_bytes = spec.size_warning_mb * 1024 * 1024
    result = contract.check_image(
        client,
        spec,
        image_ref,
        architecture=spec.architecture,
        size_warning_bytes=size_warning_bytes,
    )
    checks = list(result.checks)

    with tempfile.TemporaryDirectory(prefix="baseimage-probe-") as tmp:
        if runtime.family == "python":
            probe = probes.python_probe(spec, Path(tmp))
        else:
            probe = probes.java_probe(spec, result.tree, runtime.version, Path(tmp))
        if probe.problem is not None:
            checks.append(probe.problem)
            return _report(image_ref, runtime.id, checks, started)
        log.info("Invoking %s as Lambda would (handler %s)", image_ref, probe.handler)
        run = _run(client, image_ref, spec, runtime.id, probe, timeout)

    checks.extend(_runtime_checks(run, timeout))
    body = _probe_body(run.invocation)
    if body is not None:
        judge = probes.judge_python if runtime.family == "python" else probes.judge_java
        checks.extend(judge(body, spec, run.stdout, probe.marker))
    if run.init_ms is not None:
        checks.append(probes.cold_start_check(run.init_ms, body))
    body = body or {}
    cold = body.get("cold_import") or {}
    return _report(
        image_ref,
        runtime.id,
        checks,
        started,
        init_ms=run.init_ms,
        import_ms=body.get("import_ms"),
        import_with_bytecode_ms=cold.get("with_bytecode_ms"),
        import_without_bytecode_ms=cold.get("without_bytecode_ms"),
        sdk=tuple(body.get("sdk") or ()),
        log_excerpt=tuple(run.combined[-_EXCERPT_LINES:]),
        probe=body,
    )


def _report(
    image: str, runtime: str, checks: list[Check], started: float, **facts: Any
) -> TestReport:
    return TestReport(
        image=image,
        runtime=runtime,
        passed=not any(c.status == "fail" for c in checks),
        checks=tuple(checks),
        duration_s=round(time.monotonic() - started, 2),
        **facts,
    )


# --- the container -----------------------------------------------------------------


def _run(
    client: Any,
    image_ref: str,
    spec: ImageSpec,
    runtime_id: str,
    probe: Probe,
    timeout: float,
) -> _Run:
    """Start the image against our Runtime API, send one event, collect the logs.

    Raises:
        EngineUnavailable: the engine does not answer.
        EnvironmentProblem: the engine refuses to create or run the container.
    """
    with RuntimeApi() as api:
        environment = lambda_environment(spec, runtime_id, api.address)
        environment[probes.PROBE_ENV] = probe.settings
        try:
            container = client.containers.create(
                image_ref,
                command=[probe.handler],  # the image's own ENTRYPOINT stays
                user=LAMBDA_USER,
                read_only=True,
                tmpfs={"/tmp": "rw,size=64m"},
                # Host networking, so the runtime reaches our server on 127.0.0.1.
                # Shortcoming: the function can reach whatever the host reaches,
                # including an EC2 instance metadata service on a CI runner, which
                # Lambda never offers. Block 169.254.169.254 on such runners.
                network_mode="host",
                environment=environment,
                volumes=probe.mounts,
                mem_limit=f"{MEMORY_MB}m",
                labels={CONTAINER_LABEL: "1"},
            )
        except docker.errors.APIError as exc:
            raise EnvironmentProblem(
                f"the engine refused a test container from {image_ref}: "
                f"{exc.explanation or exc}"
            ) from exc
        except requests.RequestException as exc:
            raise EngineUnavailable(f"lost the Docker engine: {exc}") from exc

        try:
            started = time.monotonic()
            container.start()
            invocation = api.invoke(
                event(probe.marker), timeout, give_up=_exited(container)
            )
            first = api.first_poll_at
            # Shortcoming: this includes the engine's container start (tens of ms),
            # which Lambda's reported Init Duration does not.
            init_ms = (first - started) * 1000 if first is not None else None
            exit_code = _exit_code(container)
            stdout = _logs(container, stdout=True, stderr=False)
            combined = _logs(container, stdout=True, stderr=True)
        except docker.errors.APIError as exc:
            raise EnvironmentProblem(
                f"the test container of {image_ref} failed: {exc.explanation or exc}"
            ) from exc
        except requests.RequestException as exc:
            raise EngineUnavailable(f"lost the Docker engine: {exc}") from exc
        finally:
            _remove(container)
    return _Run(invocation, init_ms, exit_code, stdout, combined)


def lambda_environment(spec: ImageSpec, runtime_id: str, api: str) -> dict[str, str]:
    """What Lambda sets for a function, AWS credentials deliberately left out."""
    return {
        "AWS_LAMBDA_RUNTIME_API": api,
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "baseimage/test",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime_id}",
        "AWS_REGION": spec.registry.region,
        "AWS_DEFAULT_REGION": spec.registry.region,
    }


def event(marker: str) -> dict[str, Any]:
    """An HTTP API (payload 2.0) request, the most common event a function sees."""
    return {
        "version": "2.0",
        "routeKey": "GET /baseimage/probe",
        "rawPath": "/baseimage/probe",
        "rawQueryString": "",
        "headers": {"x-correlation-id": marker, "user-agent": "baseimage-test"},
        "requestContext": {
            "requestId": marker,
            "http": {"method": "GET", "path": "/baseimage/probe"},
        },
        "isBase64Encoded": False,
    }


def _exited(container: Any, every: float = 0.5) -> Callable[[], bool]:
    """A `has the container exited?` cheap enough for the invocation's wait loop."""
    last_check = 0.0
    exited = False

    def check() -> bool:
        nonlocal last_check, exited
        if time.monotonic() - last_check >= every:
            container.reload()
            last_check = time.monotonic()
            exited = container.status in ("exited", "dead")
        return exited

    return check


def _exit_code(container: Any) -> int | None:
    container.reload()
    if container.status not in ("exited", "dead"):
        return None
    return int((container.attrs.get("State") or {}).get("ExitCode", 0))


def _logs(container: Any, *, stdout: bool, stderr: bool) -> list[str]:
    data: bytes = container.logs(stdout=stdout, stderr=stderr)
    return data.decode("utf-8", "replace").splitlines()


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except (docker.errors.APIError, requests.RequestException) as exc:
        log.warning("could not remove test container %s: %s", container.id[:12], exc)


# --- judging the run ---------------------------------------------------------------


def _runtime_checks(run: _Run, timeout: float) -> list[Check]:
    invocation = run.invocation
    tail = run.combined[-_TAIL_LINES:] or ["(no output)"]
    shown_tail = f"\nlast lines:\n{chr(10).join(tail)}" if len(tail) > 1 else ""
    if invocation.status == "init_error" and invocation.error is not None:
        detail = _describe(invocation.error)
        return [Check("init", "fail", f"the function failed to initialise: {detail}")]
    if run.init_ms is None:
        what = (
            f"exited with status {run.exit_code}: {tail[-1]}"
            if run.exit_code is not None
            else f"did not ask for an event within {timeout:.0f} s"
        )
        detail = f"the runtime never started: the container {what}{shown_tail}"
        return [Check("init", "fail", detail)]

    init = Check("init", "pass", f"{run.init_ms:.0f} ms to the first event request")
    if invocation.status == "ok":
        detail = f"answered in {invocation.duration_ms:.0f} ms"
        return [init, Check("invocation", "pass", detail)]
    if invocation.status == "error" and invocation.error is not None:
        detail = f"the handler failed: {_describe(invocation.error)}"
    elif invocation.status == "timeout":
        detail = f"no answer within {timeout:.0f} s{shown_tail}"
    else:
        detail = (
            f"the container exited with status {run.exit_code} before answering: "
            f"{tail[-1]}{shown_tail}"
        )
    return [init, Check("invocation", "fail", detail)]


def _describe(error: ErrorReport) -> str:
    """The runtime's error report without the frames of importlib and the probe."""
    frames = [
        frame
        for frame in error.stack_trace
        if not any(noise in frame for noise in _NOISE_FRAMES)
    ]
    head = f"{error.type}: {error.message}" if error.message else error.type
    return "\n".join([head, *frames])


def _probe_body(invocation: Invocation) -> dict[str, Any] | None:
    body = invocation.body
    if isinstance(body, str):  # the AWS Java client sends a String result as a string
        try:
            body = json.loads(body)
        except ValueError:
            return None
    return body if isinstance(body, dict) and "probe" in body else None


# --- presenting the report ---------------------------------------------------------


def report_as_dict(report: TestReport) -> dict[str, Any]:
    """The report as a JSON-ready document, for --json."""
    return {
        "image": report.image,
        "runtime": report.runtime,
        "passed": report.passed,
        "duration_s": report.duration_s,
        "failures": [f"{c.name}: {c.detail}" for c in report.failures],
        "checks": [asdict(c) for c in report.checks],
        "cold_start": {
            "init_ms": _rounded(report.init_ms),
            "import_ms": _rounded(report.import_ms),
            "import_with_bytecode_ms": _rounded(report.import_with_bytecode_ms),
            "import_without_bytecode_ms": _rounded(report.import_without_bytecode_ms),
        },
        "sdk": list(report.sdk),
        "log_excerpt": list(report.log_excerpt),
        "probe": report.probe,
    }


def failure_summary(report: TestReport, limit: int = 3) -> str:
    """One line naming the first failed checks and why, for ImageTestFailed."""
    failed = report.failures
    if not failed:
        return f"{report.image} passed"
    shown = "; ".join(f"{c.name}: {_headline(c.detail)}" for c in failed[:limit])
    more = f" (and {len(failed) - limit} more)" if len(failed) > limit else ""
    return f"{report.image} failed the Lambda smoke test: {shown}{more}"


def _headline(detail: str) -> str:
    """The line that says what went wrong: a traceback's last line, else the first."""
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    if not lines:
        return "failed"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def summary_table(report: TestReport) -> Table:
    """A readable table of the checks, for a terminal."""
    verdict = "passed" if report.passed else "FAILED"
    title = f"{report.image} ({report.runtime}): {verdict} in {report.duration_s:.1f} s"
    table = Table(
        title=title,
        title_justify="left",
        show_lines=False,
    )
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        lines = check.detail.splitlines()
        if len(lines) > _TABLE_DETAIL_LINES:
            # Keep the summary line and the end, where a traceback says what broke.
            tail = lines[-(_TABLE_DETAIL_LINES - 2) :]
            hidden = len(lines) - 1 - len(tail)
            lines = [lines[0], f"... {hidden} lines left out (all in --json)", *tail]
        table.add_row(
            check.name,
            Text(check.status, style=_STYLES.get(check.status, "")),
            Text("\n".join(lines)),
        )
    return table


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
