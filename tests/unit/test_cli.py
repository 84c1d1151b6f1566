"""What a user sees from the command line without any services: exit codes and text."""

from __future__ import annotations

import json

from tests.conftest import MINIMAL_PYTHON


def test_validate_all_specs_ok(write_spec, tmp_path, run_cli):
    write_spec()

    result = run_cli("--images-dir", str(tmp_path / "images"), "validate")

    assert result.code == 0
    assert result.out.strip() == f"ok {tmp_path / 'images/python/image.yaml'}"
    assert "is not pinned by digest" in result.err


def test_validate_reports_every_problem_and_exits_2(write_spec, tmp_path, run_cli):
    path = write_spec(
        MINIMAL_PYTHON.replace('"123456789012"', "123456789012") + "colour: 1\n"
    )

    result = run_cli("validate", str(path))

    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: {path}:9: colour: unknown key; allowed: description, runtimes, "
        "mirrors, registry, trust, python, java, files, env, scan, architecture, test",
        f"error: {path}:8: registry.account: expected a 12-digit AWS account id in "
        "quotes, but YAML reads '123456789012' as a number; write it in quotes: "
        '"123456789012"',
    ]
    assert result.out == ""


def test_validate_json_on_error(write_spec, run_cli):
    path = write_spec("runtimes: {}\n")

    result = run_cli("--json", "validate", str(path))

    document = json.loads(result.out)
    assert result.code == 2
    assert document["ok"] is False and document["error"] == "SpecInvalid"
    assert any("declares no runtime" in p for p in document["problems"])


def test_unknown_runtime_is_a_usage_error(write_spec, tmp_path, run_cli):
    write_spec()

    result = run_cli(
        "--images-dir", str(tmp_path / "images"), "build", "--runtime", "nodejs20.x"
    )

    assert result.code == 2
    assert (
        "error: unknown runtime 'nodejs20.x'; known runtimes: python3.10" in result.err
    )


def test_bad_version_is_refused_before_anything_runs(write_spec, tmp_path, run_cli):
    write_spec()

    result = run_cli(
        "--images-dir", str(tmp_path / "images"), "publish", "--version", "1.4"
    )

    assert result.code == 2
    assert (
        "error: version '1.4' is not a semantic version such as 1.4.0 or 1.4.0-rc.1"
        in result.err
    )


def test_no_docker_engine_exits_6(write_spec, tmp_path, run_cli, monkeypatch):
    write_spec()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")

    result = run_cli(
        "--images-dir", str(tmp_path / "images"), "build", "--runtime", "python3.11"
    )

    assert result.code == 6
    assert (
        "error: no Docker engine answers at unix:///nonexistent/docker.sock"
        in result.err
    )
