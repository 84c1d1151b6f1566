"""Publishing to the local stack: registry and ECR agree, tags stay immutable."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    registry_manifest,
    registry_tags,
    repository_of,
)

ACCOUNT_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def publish(run_cli, folder: Path, runtime: str, *extra: str):
    return run_cli(
        "--images-dir",
        str(folder),
        "--json",
        "publish",
        "--version",
        "1.4.0",
        "--runtime",
        runtime,
        *extra,
    )


def test_publish_then_republish_same_and_changed_content(run_cli, images, ecr):
    folder = images("python")
    repo = repository_of(folder, "python")

    first = publish(run_cli, folder, "python3.11")

    assert first.code == 0, first.err
    [published] = json.loads(first.out)["published"]
    [result] = published["destinations"]
    digest = result["digest"]
    assert result["status"] == "published"
    assert published["test"]["passed"] is True
    assert result["reference"] == f"{ACCOUNT_HOST}/{repo}:1.4.0-python3.11@{digest}"
    assert registry_manifest(repo, "1.4.0-python3.11") == (digest, DOCKER_MANIFEST)
    assert registry_manifest(repo, result["content_tag"])[0] == digest
    listed = ecr.describe_images(
        repositoryName=repo, imageIds=[{"imageTag": "1.4.0-python3.11"}]
    )
    assert listed["imageDetails"][0]["imageDigest"] == digest
    settings = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert settings["imageTagMutability"] == "IMMUTABLE"
    assert settings["imageScanningConfiguration"]["scanOnPush"] is True
    tags_after_first = registry_tags(repo)
    assert tags_after_first == sorted(["1.4.0-python3.11", result["content_tag"]])

    again = run_cli(
        "--images-dir",
        str(folder),
        "publish",
        "--version",
        "1.4.0",
        "--runtime",
        "python3.11",
    )

    assert again.code == 0, again.err
    assert again.out.strip() == f"{ACCOUNT_HOST}/{repo}:1.4.0-python3.11@{digest}"
    assert "was already published; nothing pushed" in again.err
    assert registry_tags(repo) == tags_after_first

    config = folder / "python/config/logging.json"
    config.write_text(config.read_text().replace('"INFO"', '"WARNING"'))
    changed = publish(run_cli, folder, "python3.11")

    assert changed.code == 5
    assert (
        f"error: {repo}:1.4.0-python3.11 is already published at {digest}"
        in changed.err
    )
    assert "Tags are immutable: bump the version" in changed.err
    assert registry_tags(repo) == tags_after_first
    assert len(ecr.describe_images(repositoryName=repo)["imageDetails"]) == 1


def test_java_image_publishes(run_cli, images, ecr):
    folder = images("java")
    repo = repository_of(folder, "java")

    published = publish(run_cli, folder, "java17")

    assert published.code == 0, published.err
    [result] = json.loads(published.out)["published"][0]["destinations"]
    listed = ecr.describe_images(
        repositoryName=repo, imageIds=[{"imageTag": "1.4.0-java17"}]
    )
    assert listed["imageDetails"][0]["imageDigest"] == result["digest"]
    assert registry_manifest(repo, "1.4.0-java17") == (
        result["digest"],
        DOCKER_MANIFEST,
    )


def test_drifted_repository_is_refused_until_fixed(run_cli, images, ecr):
    folder = images("python")
    repo = repository_of(folder, "python")
    ecr.create_repository(repositoryName=repo, imageTagMutability="MUTABLE")

    refused = publish(run_cli, folder, "python3.11")

    assert refused.code == 5
    assert (
        f"error: ECR repository {repo} in 123456789012/us-east-1 has tag mutability "
        "MUTABLE (want IMMUTABLE); scan on push off (want on)"
    ) in refused.err
    assert registry_tags(repo) == []

    fixed = publish(run_cli, folder, "python3.11", "--fix-repository")

    assert fixed.code == 0, fixed.err
    settings = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert settings["imageTagMutability"] == "IMMUTABLE"
    assert settings["imageScanningConfiguration"]["scanOnPush"] is True


def test_missing_credentials_stop_before_anything_is_built(
    run_cli, images, monkeypatch, tmp_path
):
    folder = images("python")
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    # Never ask an instance metadata service: there is none here to ask.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    result = publish(run_cli, folder, "python3.11")

    assert result.code == 6
    assert "error: no AWS credentials found for describe repository" in result.err
    assert "Building" not in result.err


def test_unreachable_ecr_api_is_an_environment_error(run_cli, images, monkeypatch):
    folder = images("python")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")

    result = publish(run_cli, folder, "python3.11")

    assert result.code == 6
    assert "error: cannot reach the ECR API for describe repository" in result.err


class DroppingProxy:
    """Forwards to the local registry but drops any connection that uploads a manifest.

    So blobs arrive and the push then fails as when a registry goes away mid-push.
    """

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.dropped = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by close()
                return
            upstream = socket.create_connection(("127.0.0.1", 5000))
            threading.Thread(
                target=self._pipe, args=(client, upstream, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, False), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, dest: socket.socket, inspect: bool) -> None:
        try:
            while data := source.recv(65536):
                if inspect and b"PUT /v2/" in data and b"/manifests/" in data:
                    self.dropped += 1
                    break
                dest.sendall(data)
        except OSError:
            pass
        for sock in (source, dest):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self.server.close()


@pytest.fixture
def dropping_registry() -> Iterator[DroppingProxy]:
    proxy = DroppingProxy()
    yield proxy
    proxy.close()


def test_registry_dropping_mid_push_publishes_nothing(
    run_cli, images, ecr, monkeypatch, dropping_registry
):
    folder = images("python")
    repo = repository_of(folder, "python")
    monkeypatch.setenv(
        "BASEIMAGE_REGISTRY_ENDPOINT", f"http://127.0.0.1:{dropping_registry.port}"
    )

    failed = publish(run_cli, folder, "python3.11")

    assert failed.code == 7, failed.err
    assert dropping_registry.dropped >= 1
    assert f"error: push of 127.0.0.1:{dropping_registry.port}/{repo}:" in failed.err
    assert registry_tags(repo) == []
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []

    monkeypatch.setenv("BASEIMAGE_REGISTRY_ENDPOINT", "http://127.0.0.1:5000")
    recovered = publish(run_cli, folder, "python3.11")

    assert recovered.code == 0, recovered.err
    assert "1.4.0-python3.11" in registry_tags(repo)
