"""The publish pipeline: build, compare, push by content, then tag the version.

Order matters for safety. Nothing is pushed until the version tag is known to be free
(or to hold this exact content already). The image is first pushed under its content
tag only; the version tag is pushed last, as a second manifest upload of an image whose
layers are all in place, so it can never point at a partial image.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from baseimage import builder, engine
from baseimage.builder import CONTENT_LABEL, Built
from baseimage.ecr import ClientFactory, Ecr, Login
from baseimage.errors import PushFailed, TagAlreadyPublished, UsageError
from baseimage.registry import Registry
from baseimage.spec import ImageSpec, RuntimeSpec
from baseimage.ui import Ui

log = logging.getLogger(__name__)

# Semantic Versioning 2.0.0 without build metadata: '+' is not allowed in image tags.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)

Gate = Callable[[Built], None]


@dataclass(frozen=True)
class PublishOptions:
    """What `baseimage publish` was asked to do."""

    version: str
    fix_repository: bool = False
    extra_ca: Path | None = None
    registry_endpoint: str | None = None
    ecr_wait_seconds: float = 60.0


@dataclass(frozen=True)
class Published:
    """The outcome for one runtime."""

    image: str
    runtime: str
    version: str
    repository: str
    version_tag: str
    content_tag: str
    digest: str
    reference: str
    content_hash: str
    pushed: bool
    pushed_via: str
    repository_created: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_version(version: str) -> str:
    """Return the version if it is a semantic version usable in a tag.

    Raises:
        UsageError: it is not.
    """
    if "+" in version:
        raise UsageError(
            f"version {version!r} has build metadata ('+'), which image "
            "tags cannot carry; drop it, e.g. 1.4.0"
        )
    if not _SEMVER.match(version):
        raise UsageError(
            f"version {version!r} is not a semantic version such as 1.4.0 or 1.4.0-rc.1"
        )
    return version


def version_tag(version: str, runtime_id: str) -> str:
    return f"{version}-{runtime_id}"


def content_tag(runtime_id: str, image_id: str) -> str:
    """The immutable tag naming exactly this image: runtime plus image config digest."""
    return f"{runtime_id}-sha256-{image_id.removeprefix('sha256:')[:16]}"


def publish_one(
    client: Any,
    ecr_clients: ClientFactory,
    spec: ImageSpec,
    runtime: RuntimeSpec,
    options: PublishOptions,
    ui: Ui,
    gate: Gate | None = None,
) -> Published:
    """Publish one runtime of a spec to its ECR repository.

    Raises:
        RepositoryDrift, TagAlreadyPublished: publishing would break a rule.
        CredentialsProblem, RegistryUnavailable, EngineUnavailable: environment.
        BuildFailed, ArtifactFailed, ImageTestFailed, PushFailed: as named.
    """
    check_version(options.version)
    rid = runtime.runtime.id
    tag = version_tag(options.version, rid)
    ecr = Ecr(ecr_clients(spec.registry.region), spec.registry)
    state = ecr.ensure_repository(fix=options.fix_repository)
    login = ecr.login(options.registry_endpoint)
    registry = Registry(login.registry_url, login.auth.username, login.auth.password)
    repo = spec.registry.repository

    with tempfile.TemporaryDirectory(prefix="baseimage-") as tmp:
        context = builder.render_context(
            client, spec, runtime, Path(tmp) / "ctx", options.extra_ca
        )
        existing = _existing(ecr, registry, repo, tag)
        if existing is not None:
            digest, remote_hash = existing
            if remote_hash == context.content_hash:
                log.info("%s:%s already holds this content; nothing to push", repo, tag)
                return _result(
                    spec,
                    rid,
                    options,
                    state.uri,
                    tag,
                    "",
                    digest,
                    context.content_hash,
                    pushed=False,
                    login=login,
                    created=state.created,
                )
            raise TagAlreadyPublished(
                f"{repo}:{tag} is already published at {digest} with content "
                f"{remote_hash or 'unknown'}, and this build's content is "
                f"{context.content_hash}. Tags are immutable: bump the version"
            )

        built = builder.build(
            client,
            spec,
            runtime,
            version=options.version,
            extra_ca=options.extra_ca,
            on_line=ui.build_lines(),
            context=context,
        )
    if gate is not None:
        gate(built)

    ctag = content_tag(rid, built.image_id)
    digest = _push_tag(client, ui, login, registry, built, ctag)
    log.info("Pushed %s:%s at %s", repo, ctag, digest)

    # The version tag could have been taken while we built; re-check just before.
    if _existing(ecr, registry, repo, tag) is not None:
        raise TagAlreadyPublished(
            f"{repo}:{tag} was published by someone else while "
            "this build ran; bump the version"
        )
    version_digest = _push_tag(client, ui, login, registry, built, tag)
    if version_digest != digest:
        raise PushFailed(
            f"{repo}:{tag} landed at {version_digest}, not at {digest}; "
            "inspect the repository before anyone uses this tag"
        )
    ecr.wait_for(tag, digest, timeout=options.ecr_wait_seconds)
    return _result(
        spec,
        rid,
        options,
        state.uri,
        tag,
        ctag,
        digest,
        built.content_hash,
        pushed=True,
        login=login,
        created=state.created,
    )


def _existing(
    ecr: Ecr, registry: Registry, repo: str, tag: str
) -> tuple[str, str] | None:
    """(digest, content hash) of what a tag already holds, or None when it is free."""
    listed = ecr.image(tag)
    manifest = registry.manifest(repo, tag)
    if listed is None and manifest is None:
        return None
    digest = listed.digest if listed else manifest.digest  # type: ignore[union-attr]
    if manifest is None or not manifest.single_platform:
        return digest, ""
    return digest, registry.labels(repo, manifest).get(CONTENT_LABEL, "")


def _push_tag(
    client: Any, ui: Ui, login: Login, registry: Registry, built: Built, tag: str
) -> str:
    """Push the built image under one tag and verify what the registry now holds.

    Raises:
        PushFailed: the push failed, or the registry holds something else.
    """
    repo = built.spec.registry.repository
    target = f"{login.push_host}/{repo}"
    engine.tag(client, built.image_id, target, tag)
    try:
        with ui.push_progress(f"{repo}:{tag}") as progress:
            digest = engine.push(client, target, tag, login.auth, progress)
    finally:
        engine.untag(client, f"{target}:{tag}")

    manifest = registry.manifest(repo, tag)
    if manifest is None or manifest.digest != digest:
        found = manifest.digest if manifest else "nothing"
        raise PushFailed(
            f"after pushing {repo}:{tag} the registry serves {found}, not "
            f"{digest}; the push is not confirmed"
        )
    if not manifest.single_platform:
        raise PushFailed(
            f"{repo}:{tag} was stored as {manifest.media_type}, an image "
            "index; Lambda accepts only single-platform image manifests"
        )
    if registry.labels(repo, manifest).get(CONTENT_LABEL) != built.content_hash:
        raise PushFailed(
            f"{repo}:{tag} at {digest} does not carry this build's content "
            "hash; the registry holds a different image"
        )
    return digest


def _result(
    spec: ImageSpec,
    rid: str,
    options: PublishOptions,
    uri: str,
    tag: str,
    ctag: str,
    digest: str,
    content_hash: str,
    *,
    pushed: bool,
    login: Login,
    created: bool,
) -> Published:
    return Published(
        image=spec.name,
        runtime=rid,
        version=options.version,
        repository=uri,
        version_tag=tag,
        content_tag=ctag,
        digest=digest,
        reference=f"{uri}:{tag}@{digest}",
        content_hash=content_hash,
        pushed=pushed,
        pushed_via=login.push_host,
        repository_created=created,
    )
