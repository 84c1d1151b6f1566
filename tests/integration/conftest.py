"""Fixtures for integration tests on the real local stack (see `make stack`).

These tests fail, rather than skip, when the stack is not running: the README's test
command starts it, and a silently skipped integration suite proves nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import docker
import pytest
import requests

from tests.conftest import ROOT

LOCAL_STACK_ENV = {
    "AWS_ENDPOINT_URL_ECR": "http://127.0.0.1:5050",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "local-stack-dummy",
    "AWS_SECRET_ACCESS_KEY": "local-stack-dummy",
    "BASEIMAGE_REGISTRY_ENDPOINT": (
        "us-east-1=http://127.0.0.1:5000,eu-west-1=http://127.0.0.1:5002"
    ),
    "BASEIMAGE_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
}
REGISTRY = "http://127.0.0.1:5000"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def local_stack() -> Iterator[None]:
    """Point the tool at the local stack and check every service answers."""
    saved = {k: os.environ.get(k) for k in LOCAL_STACK_ENV}
    for key, value in LOCAL_STACK_ENV.items():
        os.environ.setdefault(key, value)
    problems = []
    try:
        docker.from_env().ping()
    except Exception as exc:  # any failure means the same thing here
        problems.append(f"Docker engine: {exc}")
    for name, url in (
        ("registry", f"{REGISTRY}/v2/"),
        ("ECR API", os.environ["AWS_ENDPOINT_URL_ECR"]),
    ):
        try:
            requests.get(url, timeout=5)
        except requests.RequestException as exc:
            problems.append(f"{name} at {url}: {exc.__class__.__name__}")
    if problems:
        pytest.fail(
            "the local stack is not running (start it with `make stack`): "
            + "; ".join(problems),
            pytrace=False,
        )
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env(timeout=300)


@pytest.fixture(scope="session")
def ecr() -> Any:
    return boto3.client("ecr", region_name="us-east-1")


@pytest.fixture
def images(tmp_path: Path) -> Callable[..., Path]:
    """Copy the project's specs into tmp_path with ECR repositories unique to the test.

    Returns a function taking the image names to copy; it returns the images folder.
    Each copy publishes to `it-<random>/<name>`, so tests never see each other's tags.
    """

    def copy(*names: str) -> Path:
        dest = tmp_path / "images"
        run = uuid.uuid4().hex[:10]
        for name in names:
            shutil.copytree(ROOT / "images" / name, dest / name)
            spec_file = dest / name / "image.yaml"
            text = spec_file.read_text()
            old = f'repository: "company/lambda-base-{name}"'
            assert old in text, f"{spec_file} no longer names {old}"
            spec_file.write_text(text.replace(old, f'repository: "it-{run}/{name}"'))
        return dest

    return copy


def registry_tags(repository: str) -> list[str]:
    """The tags the local registry holds for a repository (empty if it has none)."""
    response = requests.get(f"{REGISTRY}/v2/{repository}/tags/list", timeout=10)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return sorted(response.json().get("tags") or [])


def registry_manifest(repository: str, reference: str) -> tuple[str, str]:
    """(digest, media type) of a manifest in the local registry."""
    response = requests.get(
        f"{REGISTRY}/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_TYPES},
        timeout=10,
    )
    response.raise_for_status()
    return (
        response.headers["Docker-Content-Digest"],
        response.headers["Content-Type"].split(";")[0],
    )


def repository_of(folder: Path, name: str) -> str:
    """The ECR repository a copied spec publishes to."""
    found = re.search(
        r'repository: "([^"]+)"', (folder / name / "image.yaml").read_text()
    )
    assert found, f"no repository in {folder / name}"
    return found.group(1)
