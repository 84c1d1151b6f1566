"""The Docker engine: connect, pull, build, tag, push; failures become our errors.

Docker reports build and push failures inside its JSON streams rather than as
exceptions, so every chunk is read and an `error` or `errorDetail` key is a failure.
The lines that explain it travel with the error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
import urllib3.exceptions

from baseimage.errors import (
    BuildFailed,
    EngineUnavailable,
    PushFailed,
    RegistryUnavailable,
)

log = logging.getLogger(__name__)

LineSink = Callable[[str], None]
ProgressSink = Callable[[dict[str, Any]], None]
_TAIL = 25
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Auth:
    """Registry credentials handed to the engine per call; never stored or printed."""

    username: str
    password: str = field(repr=False)

    def as_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def connect() -> docker.DockerClient:
    """A client for the Docker engine named by DOCKER_HOST (or the default socket).

    Raises:
        EngineUnavailable: no engine answers.
    """
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineUnavailable(
            f"no Docker engine answers at {where}; start one (`make stack` starts the "
            "local one) or point DOCKER_HOST at a running engine"
        ) from exc
    return client


def pull(client: docker.DockerClient, reference: str, auth: Auth | None = None) -> str:
    """Pull an image and return its repository digest (`sha256:...`).

    Raises:
        RegistryUnavailable: the pull failed (unknown image, registry unreachable).
    """
    repository, tag_or_digest = split_reference(reference)
    log.info("Pulling %s", reference)
    try:
        stream = client.api.pull(
            repository,
            tag=tag_or_digest,
            stream=True,
            decode=True,
            auth_config=auth.as_config() if auth else None,
        )
        _drain(stream, None, what=f"pull of {reference}", error=RegistryUnavailable)
        attrs = client.api.inspect_image(reference)
    except docker.errors.APIError as exc:
        raise RegistryUnavailable(
            f"cannot pull {reference}: {exc.explanation or exc}; check the image name, "
            "the mirrors mapping and that the registry is reachable"
        ) from exc
    if tag_or_digest.startswith("sha256:"):
        return tag_or_digest
    for repo_digest in attrs.get("RepoDigests") or []:
        name, _, digest = repo_digest.partition("@")
        if name == repository:
            return str(digest)
    raise RegistryUnavailable(
        f"the engine pulled {reference} but reports no digest for it"
    )


def build(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    labels: dict[str, str],
    on_line: LineSink,
) -> str:
    """Build a context with the engine and return the image id.

    Raises:
        BuildFailed: the build stream reported an error or produced no image.
        EngineUnavailable: the engine went away during the build.
    """
    try:
        stream = client.api.build(
            path=str(context),
            tag=tag,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        lines = _drain(stream, on_line, what="build", error=BuildFailed)
    except docker.errors.APIError as exc:
        raise BuildFailed(
            f"the engine refused the build: {exc.explanation or exc}"
        ) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise EngineUnavailable(
            f"lost the Docker engine during the build: {exc}"
        ) from exc
    image_id = lines.aux.get("ID")
    if not image_id:
        raise BuildFailed(
            "the build finished without producing an image", log=lines.tail
        )
    return str(image_id)


def push(
    client: docker.DockerClient,
    repository: str,
    tag: str,
    auth: Auth,
    on_progress: ProgressSink,
) -> str:
    """Push one tag and return the manifest digest the registry accepted.

    Raises:
        PushFailed: the stream reported an error or ended without a digest.
    """
    try:
        stream = client.api.push(
            repository, tag=tag, stream=True, decode=True, auth_config=auth.as_config()
        )
        lines = _drain(
            stream,
            None,
            what=f"push of {repository}:{tag}",
            error=PushFailed,
            on_chunk=on_progress,
        )
    except (
        docker.errors.APIError,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
    ) as exc:
        raise PushFailed(
            f"push of {repository}:{tag} failed: {exc}; nothing was tagged, run the "
            "publish again once the registry is reachable"
        ) from exc
    digest = lines.aux.get("Digest")
    if not digest:
        raise PushFailed(
            f"push of {repository}:{tag} ended without a digest; the registry did not "
            "confirm the image, so it is treated as not published",
            log=lines.tail,
        )
    return str(digest)


def tag(
    client: docker.DockerClient, image_id: str, repository: str, tag_name: str
) -> None:
    """Tag a local image."""
    client.api.tag(image_id, repository, tag_name)


def untag(client: docker.DockerClient, reference: str) -> None:
    """Remove one local tag, keeping the image and its layers."""
    try:
        client.api.remove_image(reference, noprune=True)
    except docker.errors.APIError as exc:
        log.debug("could not untag %s: %s", reference, exc)


def inspect(client: docker.DockerClient, reference: str) -> dict[str, Any] | None:
    """The engine's view of a local image, or None when it has no such image."""
    try:
        attrs: dict[str, Any] = client.api.inspect_image(reference)
    except docker.errors.ImageNotFound:
        return None
    return attrs


def split_reference(reference: str) -> tuple[str, str]:
    """Split `repo:tag` or `repo@sha256:...` into repository and tag or digest."""
    if "@" in reference:
        repository, digest = reference.split("@", 1)
        return repository, digest
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag_name = reference.rsplit(":", 1)
        return repository, tag_name
    return reference, "latest"


@dataclass
class _Drained:
    aux: dict[str, Any] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)


def _drain(
    stream: Iterable[dict[str, Any]],
    on_line: LineSink | None,
    *,
    what: str,
    error: type[BuildFailed] | type[PushFailed] | type[RegistryUnavailable],
    on_chunk: ProgressSink | None = None,
) -> _Drained:
    """Read a whole JSON stream; raise `error` with the last lines if it reports one."""
    drained = _Drained()
    for chunk in _chunks(stream):
        if on_chunk is not None:
            on_chunk(chunk)
        if "aux" in chunk and isinstance(chunk["aux"], dict):
            drained.aux.update(chunk["aux"])
        if "errorDetail" in chunk or "error" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = str(
                detail.get("message") or chunk.get("error") or "unknown error"
            )
            raise error(f"{what} failed: {message.strip()}", log=drained.tail)
        text = chunk.get("stream") or chunk.get("status")
        if not text:
            continue
        for line in _ANSI.sub("", str(text)).splitlines():
            if not line.strip():
                continue
            drained.tail = [*drained.tail[-(_TAIL - 1) :], line]
            if on_line is not None:
                on_line(line)
    return drained


def _chunks(stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for chunk in stream:
        if isinstance(chunk, dict):
            yield chunk
