"""The publish pipeline: build, prove, push by content, scan, then tag the version.

Order matters for safety. Nothing is pushed until the version tag is known to be free
(or to hold this exact content already). The image is first pushed under its content
tag only, and ECR's scan of it is judged. The version tag is pushed last, as a second
manifest upload of an image whose layers are all in place and whose scan passed, so
it can never point at a partial image or one the scan gate refused.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from baseimage import builder, engine, repo_settings, scan
from baseimage.builder import CONTENT_LABEL, Built
from baseimage.ecr import ClientFactory, Ecr, Login
from baseimage.errors import (
    BaseImageError,
    PublishIncomplete,
    PublishRefused,
    PushFailed,
    RegistryUnavailable,
    RepositoryDrift,
    ScanGateFailed,
    TagAlreadyPublished,
    UsageError,
)
from baseimage.registry import Registry
from baseimage.render import Context
from baseimage.repo_spec import Destination
from baseimage.spec import ImageSpec, RuntimeSpec
from baseimage.ui import Ui

log = logging.getLogger(__name__)

# Semantic Versioning 2.0.0 without build metadata: '+' is not allowed in image tags.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)

# The image test gate: raises ImageTestFailed, or returns a summary for the report.
Gate = Callable[[Built], dict[str, Any]]


@dataclass(frozen=True)
class PublishOptions:
    """What `baseimage publish` was asked to do."""

    version: str
    fix_repository: bool = False
    extra_ca: Path | None = None
    registry_endpoint: str | None = None
    ecr_wait_seconds: float = 60.0
    skip_test_reason: str | None = None  # the loud opt-out of the Lambda test


@dataclass
class DestinationResult:
    """The outcome in one account and region."""

    destination: str
    status: str = "pending"  # published, unchanged, failed, not attempted
    repository: str = ""
    version_tag: str = ""
    content_tag: str = ""
    digest: str = ""
    reference: str = ""
    pushed_via: str = ""
    scanning: str = ""
    scan: dict[str, Any] | None = None
    error: str = ""


@dataclass
class Published:
    """The outcome for one runtime of one spec, across its destinations."""

    image: str
    runtime: str
    version: str
    content_hash: str = ""
    test: dict[str, Any] | None = None
    destinations: list[DestinationResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.status in ("published", "unchanged") for d in self.destinations)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


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


def endpoint_for(setting: str | None, region: str) -> str | None:
    """The registry endpoint override for a region.

    The setting is one URL for every region, or `region=url,region=url`.

    Raises:
        UsageError: a per-region setting has no entry for the region.
    """
    if not setting:
        return None
    if "=" not in setting:
        return _url(setting)
    table = dict(
        item.strip().split("=", 1) for item in setting.split(",") if item.strip()
    )
    if region not in table:
        raise UsageError(
            f"the registry endpoint setting names no endpoint for {region} "
            f"(it has {', '.join(table)}); add '{region}=URL'"
        )
    return _url(table[region])


def _url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(
            f"registry endpoint {value!r} is not a URL like https://host[:port]"
        )
    return value


@dataclass
class _Run:
    """What one runtime's publish shares across destinations."""

    client: Any
    spec: ImageSpec
    runtime: RuntimeSpec
    options: PublishOptions
    ui: Ui
    context: Context
    gate: Gate | None
    result: Published
    built: Built | None = None
    image_error: BaseImageError | None = None

    @property
    def tag(self) -> str:
        return version_tag(self.options.version, self.runtime.runtime.id)

    def ensure_built(self) -> Built:
        """Build and prove the image once, the first time a destination needs it."""
        if self.built is None:
            skipped = self.options.skip_test_reason
            # "gated": this image is published only if the Lambda test passes.
            labels = {builder.TEST_LABEL: "skipped" if skipped else "gated"}
            try:
                built = self._build_and_test(labels)
            except BaseImageError as exc:
                self.image_error = exc
                raise
            self.built = built
        return self.built

    def _build_and_test(self, labels: dict[str, str]) -> Built:
        built = builder.build(
            self.client,
            self.spec,
            self.runtime,
            version=self.options.version,
            extra_ca=self.options.extra_ca,
            on_line=self.ui.build_lines(),
            context=self.context,
            extra_labels=labels,
        )
        if self.gate is not None:
            self.result.test = self.gate(built)  # raises when the test fails
        return built


def publish_one(
    client: Any,
    ecr_clients: ClientFactory,
    spec: ImageSpec,
    runtime: RuntimeSpec,
    options: PublishOptions,
    ui: Ui,
    gate: Gate | None = None,
) -> Published:
    """Publish one runtime of a spec to every destination of its repository.

    Destinations are done one after another; a failure in one does not stop the
    others, and the error names which were published and which were not.

    Raises:
        PublishIncomplete: some destinations failed (carries every result).
        The failure's own error when there is only one destination.
    """
    check_version(options.version)
    rid = runtime.runtime.id
    tag = version_tag(options.version, rid)
    if spec.registry.tag_is_mutable(tag):
        raise PublishRefused(
            f"{tag} matches a mutable_tags filter of "
            f"{spec.registry.repository}; release tags must be immutable"
        )
    for destination in spec.registry.destinations:  # settings checked up front
        endpoint_for(options.registry_endpoint, destination.region)
    result = Published(image=spec.name, runtime=rid, version=options.version)

    with tempfile.TemporaryDirectory(prefix="baseimage-") as tmp:
        context = builder.render_context(
            client, spec, runtime, Path(tmp) / "ctx", options.extra_ca
        )
        result.content_hash = context.content_hash
        run = _Run(client, spec, runtime, options, ui, context, gate, result)
        errors: list[BaseImageError] = []
        several = len(spec.registry.destinations) > 1
        for destination in spec.registry.destinations:
            outcome = DestinationResult(
                str(destination), repository=spec.registry.repository
            )
            result.destinations.append(outcome)
            if run.image_error is not None:
                # The image itself failed (build or test): no destination gets it.
                outcome.status, outcome.error = "not attempted", run.image_error.message
                continue
            try:
                _publish_to(run, ecr_clients, destination, outcome)
            except BaseImageError as exc:
                outcome.status, outcome.error = "failed", exc.message
                errors.append(exc)
                if several:
                    log.error("%s: %s", destination, exc.message)

    if not errors:
        return result
    if len(result.destinations) == 1:
        errors[0].partial = result
        raise errors[0]
    if run.image_error is not None:
        run.image_error.partial = result
        raise run.image_error
    done = [
        d.destination
        for d in result.destinations
        if d.status == "published" or d.status == "unchanged"
    ]
    failed = [d.destination for d in result.destinations if d.status == "failed"]
    incomplete = PublishIncomplete(
        f"{spec.registry.repository}:{tag} published to "
        f"{', '.join(done) or 'nowhere'}; FAILED in {', '.join(failed)} "
        f"({errors[0].message}). Fix the cause and run the same publish again: "
        "finished destinations are left as they are",
        errors[0],
    )
    incomplete.partial = result
    raise incomplete


def _publish_to(
    run: _Run,
    ecr_clients: ClientFactory,
    destination: Destination,
    outcome: DestinationResult,
) -> None:
    spec, options, tag = run.spec, run.options, run.tag
    repo = spec.registry.repository
    ecr = Ecr(ecr_clients(destination.region), spec.registry, destination)
    try:
        state = repo_settings.ensure(ecr, fix=options.fix_repository)
    except RepositoryDrift as exc:
        exc.message += _also_taken(ecr, run, destination)
        raise
    outcome.scanning = state.scanning
    login = ecr.login(endpoint_for(options.registry_endpoint, destination.region))
    outcome.pushed_via = login.push_host
    registry = login.registry()
    uri = f"{destination.host}/{repo}"

    existing = _existing(ecr, registry, repo, tag)
    if existing is not None:
        digest, labels = existing.digest, existing.labels
        remote_hash = labels.get(CONTENT_LABEL, "")
        if remote_hash != run.context.content_hash:
            raise TagAlreadyPublished(
                f"{repo}:{tag} is already published at {digest} with content "
                f"{remote_hash or 'unknown'}, and this build's content is "
                f"{run.context.content_hash}{_why_different(labels, run.context)}. "
                "Tags are immutable: bump the version"
            )
        log.info(
            "%s:%s in %s already holds this content; nothing to push",
            repo,
            tag,
            destination,
        )
        outcome.status, outcome.digest, outcome.version_tag = "unchanged", digest, tag
        outcome.reference = f"{uri}:{tag}@{digest}"
        outcome.content_tag = next((t for t in existing.tags if "-sha256-" in t), "")
        return

    built = run.ensure_built()
    ctag = content_tag(run.runtime.runtime.id, built.image_id)
    outcome.content_tag = ctag
    try:
        _push_and_gate(run, ecr, state, login, registry, built, outcome)
    finally:
        for pushed in (ctag, tag):
            engine.untag(run.client, f"{login.push_host}/{repo}:{pushed}")


def _push_and_gate(
    run: _Run,
    ecr: Ecr,
    state: repo_settings.RepoState,
    login: Login,
    registry: Registry,
    built: Built,
    outcome: DestinationResult,
) -> None:
    """Push by content, gate on the scan, then push the version tag."""
    spec, options, tag, ctag = run.spec, run.options, run.tag, outcome.content_tag
    repo, destination = spec.registry.repository, ecr.destination
    uri = f"{destination.host}/{repo}"
    digest = _content_digest(ecr, registry, built, ctag) or _push_tag(
        run.client, run.ui, login, registry, built, ctag
    )
    log.info("%s:%s is at %s in %s", repo, ctag, digest, destination)
    # ECR must know the image before its scan can be asked about.
    ecr.wait_for(ctag, digest, timeout=options.ecr_wait_seconds)

    verdict = scan.wait_and_judge(
        ecr, digest, spec.scan, scans_on_push=state.scans_on_push
    )
    outcome.scan = verdict.as_dict()
    if not verdict.passed:
        raise ScanGateFailed(
            f"{repo}@{digest} failed the scan gate in {destination}: {verdict.reason}. "
            f"The version tag {tag} was not created; the image stays under {ctag} for "
            "inspection. Fix the findings, or allow each in scan.allow with a reason "
            "and an expiry date"
        )
    log.info("Scan passed in %s: %s", destination, verdict.reason)

    # The version tag could have been taken while we built; re-check just before.
    if _existing(ecr, registry, repo, tag) is not None:
        raise TagAlreadyPublished(
            f"{repo}:{tag} was published by someone else while "
            "this build ran; bump the version"
        )
    if spec.registry.tag_is_mutable(ctag):
        raise PublishRefused(
            f"{ctag} matches a mutable_tags filter; content tags must be immutable"
        )
    version_digest = _push_tag(run.client, run.ui, login, registry, built, tag)
    if version_digest != digest:
        raise PushFailed(
            f"{repo}:{tag} landed at {version_digest}, not at {digest}; "
            "inspect the repository before anyone uses this tag"
        )
    try:
        ecr.wait_for(tag, digest, timeout=options.ecr_wait_seconds)
    except RegistryUnavailable as exc:
        raise RegistryUnavailable(
            f"{repo}:{tag} was pushed at {digest}, but ECR could not confirm it: "
            f"{exc.message}. Run the same publish again to confirm"
        ) from exc
    outcome.status, outcome.digest, outcome.version_tag = "published", digest, tag
    outcome.reference = f"{uri}:{tag}@{digest}"


@dataclass(frozen=True)
class _Taken:
    """What a tag already holds: its digest, the image's labels, the image's tags."""

    digest: str
    labels: dict[str, str]
    tags: tuple[str, ...]


def _existing(ecr: Ecr, registry: Registry, repo: str, tag: str) -> _Taken | None:
    """What a tag already holds, or None when it is free."""
    listed = ecr.image(tag)
    manifest = registry.manifest(repo, tag)
    if listed is None and manifest is None:
        return None
    if listed is not None and manifest is not None and listed.digest != manifest.digest:
        raise RegistryUnavailable(
            f"ECR lists {repo}:{tag} at {listed.digest} but the registry serves "
            f"{manifest.digest}; they must agree before anything is published. "
            "Inspect the repository"
        )
    digest = listed.digest if listed else manifest.digest  # type: ignore[union-attr]
    tags = listed.tags if listed else ()
    if manifest is None or not manifest.single_platform:
        return _Taken(digest, {}, tags)
    return _Taken(digest, registry.labels(repo, manifest), tags)


def _also_taken(ecr: Ecr, run: _Run, destination: Destination) -> str:
    """A note, for a refusal, when the version tag also holds other content."""
    try:
        login = ecr.login(
            endpoint_for(run.options.registry_endpoint, destination.region)
        )
        existing = _existing(
            ecr, login.registry(), run.spec.registry.repository, run.tag
        )
    except BaseImageError:
        return ""
    if (
        existing is None
        or existing.labels.get(CONTENT_LABEL) == run.context.content_hash
    ):
        return ""
    return (
        f". Note that {run.tag} also already holds other content "
        f"({existing.digest}): this build needs a new version as well"
    )


def _why_different(labels: dict[str, str], context: Context) -> str:
    """A hint when the difference comes from the base image rather than the spec."""
    then = labels.get("org.opencontainers.image.base.digest")
    if then and then != context.base.digest:
        return (
            f" (the base image moved: {then} then, {context.base.digest} now; "
            "pin it with 'digest:' to keep builds identical)"
        )
    return ""


def _content_digest(
    ecr: Ecr, registry: Registry, built: Built, ctag: str
) -> str | None:
    """The digest of an earlier push of this very image (e.g. a gated one), if any.

    Raises:
        PushFailed: the content tag holds another image.
    """
    listed = ecr.image(ctag)
    if listed is None:
        return None
    repo = built.spec.registry.repository
    manifest = registry.manifest(repo, ctag)
    labels = registry.labels(repo, manifest) if manifest else {}
    if labels.get(CONTENT_LABEL) != built.content_hash:
        raise PushFailed(
            f"{repo}:{ctag} exists but holds other content; the registry "
            "and this build disagree about the image id, inspect it"
        )
    log.info("%s:%s was pushed before; reusing it", repo, ctag)
    return listed.digest


def _push_tag(
    client: Any, ui: Ui, login: Login, registry: Registry, built: Built, tag: str
) -> str:
    """Push the built image under one tag and verify what the registry now holds.

    Raises:
        PushFailed: the push failed, or the registry holds something else.
    """
    repo = built.spec.registry.repository
    target = f"{login.push_host}/{repo}"
    # The push tag also keeps the image alive should a concurrent build move the
    # local tag; the caller removes push tags when the destination is done.
    engine.tag(client, built.image_id, target, tag)
    with ui.push_progress(f"{repo}:{tag}") as progress:
        digest = engine.push(client, target, tag, login.auth, progress)

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
