"""Rendering a build context: layer order, modes, escaping and the content hash."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from baseimage import mirrors, render, spec
from baseimage.render import BaseImage
from tests.conftest import CERT, MINIMAL_PYTHON

DIGEST = "sha256:" + "b" * 64
FULL = (
    MINIMAL_PYTHON
    + """\
trust:
  ca_certificates: ["certs/ca.pem"]
python:
  requirements: "requirements.txt"
  packages: ["company"]
files:
  - source: "config/logging.json"
    target: "company/logging.json"
env:
  SERVICE: "orders"
  TRICKY: "a $HOME \\"quoted\\" back\\\\slash"
"""
)
FILES = {
    "certs/ca.pem": CERT,
    "requirements.txt": "pyjwt==2.15.1\n",
    "company/__init__.py": "VERSION = '1'\n",
    "company/log.py": "X = 1\n",
    "config/logging.json": '{"level": "INFO"}\n',
}


def base(pull_ref: str = "127.0.0.1:5000/lambda/python:3.11") -> BaseImage:
    return BaseImage(
        name="public.ecr.aws/lambda/python:3.11", pull_ref=pull_ref, digest=DIGEST
    )


@pytest.fixture
def full_spec(write_spec) -> spec.ImageSpec:
    return spec.load(write_spec(FULL, files=FILES))


def test_dockerfile_builds_on_the_pinned_mirror_reference(full_spec, tmp_path):
    ctx = render.render(
        full_spec, full_spec.runtime("python3.11"), base(), tmp_path / "c"
    )

    assert f"FROM 127.0.0.1:5000/lambda/python@{DIGEST}\n" in ctx.dockerfile
    assert "ENTRYPOINT" not in ctx.dockerfile and "CMD" not in ctx.dockerfile
    assert "WORKDIR" not in ctx.dockerfile


def test_layers_go_from_rarely_to_often_changed(full_spec, tmp_path):
    text = render.render(
        full_spec, full_spec.runtime("python3.11"), base(), tmp_path / "c"
    ).dockerfile

    order = [
        text.index(marker)
        for marker in (
            "trust-ca.sh",
            "COPY requirements.txt",
            "pip install",
            "COPY packages/",
            "COPY files/",
            'SERVICE="orders"',
        )
    ]
    assert order == sorted(order)
    assert "--target /var/task" in text and "compileall" in text


def test_env_values_are_escaped_for_the_dockerfile(full_spec, tmp_path):
    text = render.render(
        full_spec, full_spec.runtime("python3.11"), base(), tmp_path / "c"
    ).dockerfile

    assert 'TRICKY="a \\$HOME \\"quoted\\" back\\\\slash"' in text


def test_context_modes_are_fixed_whatever_the_source_modes(full_spec, tmp_path):
    (full_spec.folder / "config" / "logging.json").chmod(0o600)
    (full_spec.folder / "company").chmod(0o700)

    ctx = render.render(
        full_spec, full_spec.runtime("python3.11"), base(), tmp_path / "c"
    )

    modes = {
        p.relative_to(ctx.path).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in ctx.path.rglob("*")
    }
    assert modes["files/company/logging.json"] == 0o644
    assert modes["packages/company"] == 0o755
    assert set(modes.values()) == {0o644, 0o755}


def test_certificates_are_split_one_per_file(full_spec, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(CERT + CERT)

    ctx = render.render(
        full_spec,
        full_spec.runtime("python3.11"),
        base(),
        tmp_path / "c",
        extra_ca=bundle,
    )

    names = sorted(p.name for p in (ctx.path / "ca").iterdir())
    assert names == ["build-network-000.crt", "build-network-001.crt", "ca-000.crt"]


def test_content_hash_is_stable_and_ignores_where_the_base_came_from(
    full_spec, tmp_path
):
    rt = full_spec.runtime("python3.11")

    first = render.render(full_spec, rt, base(), tmp_path / "a").content_hash
    again = render.render(full_spec, rt, base(), tmp_path / "b").content_hash
    other_mirror = render.render(
        full_spec, rt, base("mirror.example/lambda/python:3.11"), tmp_path / "c"
    ).content_hash

    assert first == again == other_mirror
    assert first.startswith("sha256:") and len(first) == 71


def test_content_hash_changes_with_config_and_base_digest(full_spec, tmp_path):
    rt = full_spec.runtime("python3.11")
    before = render.render(full_spec, rt, base(), tmp_path / "a").content_hash

    other_base = BaseImage(
        name=base().name, pull_ref=base().pull_ref, digest="sha256:" + "c" * 64
    )
    rebased = render.render(full_spec, rt, other_base, tmp_path / "b").content_hash
    (full_spec.folder / "config" / "logging.json").write_text('{"level": "DEBUG"}\n')
    reconfigured = render.render(full_spec, rt, base(), tmp_path / "c").content_hash

    assert len({before, rebased, reconfigured}) == 3


def test_java_context_has_no_pip_and_checks_the_jvm(write_spec, tmp_path):
    path = write_spec(MINIMAL_PYTHON.replace("python3.11", "java17"), name="java")
    loaded = spec.load(path)

    text = render.render(
        loaded, loaded.runtime("java17"), base(), tmp_path / "c"
    ).dockerfile

    assert "pip" not in text
    assert "java.specification.version = 17$" in text


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        pytest.param(
            "public.ecr.aws/lambda/python:3.11",
            "127.0.0.1:5000/lambda/python:3.11",
            id="prefix",
        ),
        pytest.param(
            "public.ecr.aws/lambdax/python:3.11",
            "public.ecr.aws/lambdax/python:3.11",
            id="not-on-a-boundary",
        ),
        pytest.param(
            "https://repo.maven.apache.org/maven2",
            "http://127.0.0.1:8081/maven2",
            id="whole-url",
        ),
        pytest.param(
            "public.ecr.aws/lambda/java@sha256:" + "d" * 64,
            "127.0.0.1:5000/lambda/java@sha256:" + "d" * 64,
            id="digest",
        ),
    ],
)
def test_mirrors_rewrite_on_path_boundaries(reference, expected):
    table = {
        "public.ecr.aws/lambda": "127.0.0.1:5000/lambda",
        "public.ecr.aws": "elsewhere.example",
        "https://repo.maven.apache.org/maven2/": "http://127.0.0.1:8081/maven2",
    }
    if "lambdax" in reference:
        expected = "elsewhere.example/lambdax/python:3.11"

    assert mirrors.apply(reference, table) == expected


def test_from_ref_drops_the_tag_and_pins_the_digest():
    assert (
        base("reg:5000/lambda/python:3.11").from_ref
        == f"reg:5000/lambda/python@{DIGEST}"
    )
    assert base("reg:5000/lambda/python").from_ref == f"reg:5000/lambda/python@{DIGEST}"


def test_relative_paths_resolve_from_the_spec_folder(full_spec):
    assert all(isinstance(p, Path) and p.is_absolute() for p in full_spec.input_files())
