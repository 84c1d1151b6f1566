"""The Lambda smoke test on real images: the company images pass, broken ones fail.

Broken variants are small Dockerfiles built FROM the good image, each breaking one
promise a Lambda base image makes; the report must name what broke.
"""

from __future__ import annotations

import dataclasses
import io
import json
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from rich.console import Console

from baseimage import builder, engine, smoke, spec
from baseimage.builder import Built
from baseimage.smoke import CONTAINER_LABEL, TestReport
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BROKEN_REPOSITORY = "baseimage-test/broken"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return engine.connect()


def build(client: docker.DockerClient, name: str, runtime_id: str) -> Iterator[Built]:
    """Build a company image and hold it under a tag of its own for the module.

    Other runs rebuild `baseimage/<name>:<runtime>` at any time; the own tag keeps
    this build (and the images derived from it) from being left dangling.
    """
    loaded = spec.load(ROOT / "images" / name)
    built = builder.build(
        client,
        loaded,
        loaded.runtime(runtime_id),
        version="0.0.0-test",
        extra_ca=HOST_CA,
        on_line=lambda _: None,
    )
    repository, tag = f"baseimage-test/{name}", f"{runtime_id}-{uuid.uuid4().hex[:8]}"
    client.api.tag(built.image_id, repository, tag)
    yield dataclasses.replace(built, local_ref=f"{repository}:{tag}")
    client.api.remove_image(f"{repository}:{tag}", noprune=True)


@pytest.fixture(scope="module")
def python_image(client: docker.DockerClient) -> Iterator[Built]:
    yield from build(client, "python", "python3.11")


@pytest.fixture(scope="module")
def java_image(client: docker.DockerClient) -> Iterator[Built]:
    yield from build(client, "java", "java17")


@pytest.fixture
def derived(
    client: docker.DockerClient, tmp_path: Path
) -> Iterator[Callable[..., str]]:
    """Build an image FROM a good one with extra Dockerfile lines; removed after."""
    made: list[str] = []

    def make(base: Built, lines: str, files: dict[str, str] | None = None) -> str:
        context = tmp_path / uuid.uuid4().hex
        context.mkdir()
        for rel, text in (files or {}).items():
            (context / rel).write_text(text)
            (context / rel).chmod(0o644)
        dockerfile = f"FROM {base.local_ref}\n{textwrap.dedent(lines)}"
        (context / "Dockerfile").write_text(dockerfile)
        tag = f"{BROKEN_REPOSITORY}:{uuid.uuid4().hex[:12]}"
        client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
        made.append(tag)
        return tag

    yield make
    for tag in made:
        client.images.remove(tag, noprune=False)


def run(
    client: docker.DockerClient, image: Built, ref: str | None = None
) -> TestReport:
    return smoke.run_image_test(
        client, image.spec, image.runtime, ref or image.local_ref, timeout=120
    )


def check(report: TestReport, name: str) -> smoke.Check:
    [found] = [c for c in report.checks if c.name == name]
    return found


def failed(report: TestReport) -> set[str]:
    return {c.name for c in report.failures}


# --- Python ------------------------------------------------------------------------


def test_the_python_image_passes_and_keeps_nothing_of_the_probe(client, python_image):
    before = client.images.get(python_image.local_ref).id

    report = run(client, python_image)

    assert report.passed, smoke.failure_summary(report)
    for name in (
        "entrypoint",
        "task root readable",
        "no credentials",
        "company imports",
        "configuration files",
        "logging set-up",
        "structured log line",
        "dependency consistency",
        "bytecode",
        "cold start",
    ):
        assert check(report, name).status == "pass", check(report, name)
    modules = report.probe["modules"]
    assert "company_lambda.logging_setup" in modules
    assert {"jwt", "aws_lambda_powertools", "defusedxml"} <= set(modules)
    assert report.init_ms is not None and report.init_ms > 0
    assert report.import_with_bytecode_ms is not None
    assert report.import_without_bytecode_ms is not None
    assert report.import_without_bytecode_ms > report.import_with_bytecode_ms
    assert any(p["name"] == "awslambdaric" and p["version"] for p in report.sdk)
    log_line = json.loads(check(report, "structured log line").detail)
    assert log_line["service"] == "company-function"

    # The probe came in through a bind mount: the image is unchanged and no test
    # container is left behind.
    assert client.images.get(python_image.local_ref).id == before
    assert client.containers.list(all=True, filters={"label": CONTAINER_LABEL}) == []

    document = json.loads(json.dumps(smoke.report_as_dict(report)))
    assert document["passed"] is True
    assert document["cold_start"]["init_ms"] > 0
    console = Console(file=io.StringIO(), width=120)
    console.print(smoke.summary_table(report))
    assert "passed" in console.file.getvalue()


def test_a_file_the_lambda_user_cannot_read_fails_naming_it(
    client, python_image, derived
):
    ref = derived(python_image, "RUN chmod 600 /var/task/company/logging.json\n")

    report = run(client, python_image, ref)

    assert not report.passed
    assert "task root readable" in failed(report)
    assert (
        "/var/task/company/logging.json (0600"
        in check(report, "task root readable").detail
    )
    assert "Permission denied" in check(report, "configuration files").detail


def test_a_company_library_that_cannot_import_fails_with_its_traceback(
    client, python_image, derived
):
    broken = "import company_missing_dependency  # not in the image\n"
    ref = derived(
        python_image,
        """\
        COPY __init__.py /var/task/company_lambda/__init__.py
        RUN python3 -m compileall -q /var/task/company_lambda
        """,
        {"__init__.py": broken},
    )

    report = run(client, python_image, ref)

    assert not report.passed
    assert "company imports" in failed(report)
    detail = check(report, "company imports").detail
    assert detail.startswith(
        "cannot load company_lambda, company_lambda.logging_setup, "
        "company_lambda.security: ModuleNotFoundError: "
        "No module named 'company_missing_dependency'"
    )
    assert 'File "/var/task/company_lambda/__init__.py", line 1, in <module>' in detail
    assert "import company_missing_dependency" in detail
    assert smoke.failure_summary(report).startswith(f"{ref} failed")


def test_an_overridden_entrypoint_fails_naming_it(client, python_image, derived):
    ref = derived(python_image, 'ENTRYPOINT ["/bin/sh"]\n')

    report = run(client, python_image, ref)

    assert not report.passed
    assert {"entrypoint", "init"} <= failed(report)
    detail = check(report, "entrypoint").detail
    assert "['/bin/sh']" in detail
    assert "['/lambda-entrypoint.sh']" in detail


def test_an_exception_during_init_is_reported_with_its_traceback(
    client, python_image, derived
):
    ref = derived(
        python_image,
        """\
        COPY __init__.py /var/task/company_lambda/__init__.py
        RUN python3 -m compileall -q /var/task/company_lambda
        """,
        {"__init__.py": 'raise RuntimeError("company settings are missing")\n'},
    )

    report = run(client, python_image, ref)

    assert not report.passed
    assert "init" in failed(report)
    detail = check(report, "init").detail
    assert "RuntimeError: company settings are missing" in detail
    assert "/var/task/company_lambda/__init__.py" in detail
    assert "line 1" in detail


# --- Java --------------------------------------------------------------------------


def test_the_java_image_passes(client, java_image):
    report = run(client, java_image)

    assert report.passed, smoke.failure_summary(report)
    assert check(report, "logging configuration").detail == (
        "Log4j reads /var/task/log4j2.xml"
    )
    loaded = {c["name"] for c in report.probe["classes"]}
    assert {
        "org.apache.logging.log4j.LogManager",
        "org.apache.logging.log4j.core.LoggerContext",
        "org.slf4j.LoggerFactory",
    } <= loaded
    log_line = json.loads(check(report, "structured log line").detail)
    assert log_line["logger"] == "baseimage.probe"
    assert log_line["function"] == smoke.FUNCTION_NAME
    assert report.init_ms is not None


def test_a_jar_the_lambda_user_cannot_read_fails(client, java_image, derived):
    jar = "/var/task/lib/log4j-core-2.19.0.jar"
    ref = derived(java_image, f"RUN chmod 600 {jar}\n")

    report = run(client, java_image, ref)

    assert not report.passed
    assert f"{jar} (0600" in check(report, "task root readable").detail
    # Without log4j-core on the class path, Log4j falls back to its simple logger.
    assert "company imports" in failed(report)
    assert (
        "org.apache.logging.log4j.core.LoggerContext"
        in check(report, "company imports").detail
    )
