"""Shared fixtures: spec folders written to tmp_path, and running the CLI in-process."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from baseimage import cli

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

MINIMAL_PYTHON = """\
description: "test image"
runtimes:
  python3.11:
    base: "public.ecr.aws/lambda/python:3.11"
registry:
  repository: "company/test-base"
  region: "us-east-1"
  account: "123456789012"
"""

CERT = """\
-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUZmFrZWZha2VmYWtlZmFrZWZha2UwCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----
"""


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec folder (image.yaml plus files) and return the image.yaml path."""

    def write(
        text: str = MINIMAL_PYTHON,
        name: str = "python",
        files: dict[str, str] | None = None,
        root: Path | None = None,
    ) -> Path:
        folder = (root or tmp_path / "images") / name
        folder.mkdir(parents=True, exist_ok=True)
        for rel, content in (files or {}).items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        path = folder / "image.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    """Run `baseimage ARGS` in-process and return its exit code, stdout and stderr."""

    def run(*args: str) -> Run:
        monkeypatch.setattr(sys, "argv", ["baseimage", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        captured = capsys.readouterr()
        code = exit_info.value.code
        return Run(
            code=code if isinstance(code, int) else 1,
            out=captured.out,
            err=captured.err,
        )

    return run
