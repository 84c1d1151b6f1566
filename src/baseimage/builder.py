"""Build one runtime of a spec: resolve the base, render the context, build, label."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from baseimage import engine, mirrors, render
from baseimage.engine import LineSink
from baseimage.errors import BuildFailed, UsageError
from baseimage.render import BaseImage, Context
from baseimage.spec import ImageSpec, RuntimeSpec

log = logging.getLogger(__name__)

_TLS_FAILURE = "CERTIFICATE_VERIFY_FAILED"
LABEL_PREFIX = "dev.baseimage"
CONTENT_LABEL = f"{LABEL_PREFIX}.content-hash"
RUNTIME_LABEL = f"{LABEL_PREFIX}.runtime"
TEST_LABEL = f"{LABEL_PREFIX}.test"
OCI = "org.opencontainers.image"


@dataclass(frozen=True)
class Built:
    """A built image, with what went into it."""

    spec: ImageSpec
    runtime: RuntimeSpec
    image_id: str
    local_ref: str
    content_hash: str
    base: BaseImage
    labels: dict[str, str]


def local_ref(spec: ImageSpec, runtime_id: str) -> str:
    """The local tag of a built image, e.g. `baseimage/python:python3.11`."""
    return f"baseimage/{spec.name}:{runtime_id}"


def resolve_base(client: Any, spec: ImageSpec, runtime: RuntimeSpec) -> BaseImage:
    """Pull the runtime's base image (through the mirrors) and pin it by digest.

    Raises:
        RegistryUnavailable: the base image cannot be pulled.
    """
    wanted = f"{runtime.base}@{runtime.digest}" if runtime.digest else runtime.base
    pull_ref = mirrors.apply(wanted, spec.mirrors)
    if pull_ref != wanted:
        log.info("Base %s comes through the mirror %s", wanted, pull_ref)
    if not runtime.pinned:
        log.warning(
            "%s: the %s base %s is not pinned by digest; the build uses whatever it "
            "points at today. Add 'digest:' under runtimes.%s to pin it",
            spec.path,
            runtime.runtime.id,
            runtime.base,
            runtime.runtime.id,
        )
    digest = engine.pull(client, pull_ref)
    return BaseImage(name=runtime.base, pull_ref=pull_ref, digest=digest)


def render_context(
    client: Any,
    spec: ImageSpec,
    runtime: RuntimeSpec,
    dest: Path,
    extra_ca: Path | None,
) -> Context:
    """Resolve the base image and render the build context into `dest`."""
    base = resolve_base(client, spec, runtime)
    return render.render(spec, runtime, base, dest, extra_ca=extra_ca)


def build(
    client: Any,
    spec: ImageSpec,
    runtime: RuntimeSpec,
    *,
    version: str,
    extra_ca: Path | None,
    on_line: LineSink,
    context: Context | None = None,
    extra_labels: dict[str, str] | None = None,
) -> Built:
    """Build one runtime of a spec into a labelled local image.

    A `context` rendered earlier (publish renders first to compare content) is built
    as it is; otherwise one is rendered here.

    Raises:
        RegistryUnavailable: the base image cannot be pulled.
        ArtifactFailed: a company jar cannot be fetched or verified.
        BuildFailed: the Docker build failed.
    """
    if context is None:
        with tempfile.TemporaryDirectory(prefix="baseimage-") as tmp:
            rendered = render_context(
                client, spec, runtime, Path(tmp) / "ctx", extra_ca
            )
            return build(
                client,
                spec,
                runtime,
                version=version,
                extra_ca=extra_ca,
                on_line=on_line,
                context=rendered,
                extra_labels=extra_labels,
            )

    labels = {**image_labels(spec, runtime, context, version), **(extra_labels or {})}
    tag = local_ref(spec, runtime.runtime.id)
    log.info("Building %s (content %s)", tag, context.content_hash[:19])
    try:
        image_id = engine.build(client, context.path, tag, labels, on_line)
    except BuildFailed as exc:
        if any(_TLS_FAILURE in line for line in exc.log) and extra_ca is None:
            exc.message += (
                "; TLS verification failed inside the build: if this machine's "
                "network inspects TLS, pass its CA bundle with --ca-bundle"
            )
        raise
    return Built(
        spec=spec,
        runtime=runtime,
        image_id=image_id,
        local_ref=tag,
        content_hash=context.content_hash,
        base=context.base,
        labels=labels,
    )


def image_labels(
    spec: ImageSpec, runtime: RuntimeSpec, context: Context, version: str
) -> dict[str, str]:
    """OCI labels plus baseimage's own: what the image is and what went into it."""
    revision = source_revision(spec.folder)
    return {
        f"{OCI}.title": f"{spec.name} Lambda base image ({runtime.runtime.id})",
        f"{OCI}.description": spec.description,
        f"{OCI}.version": version,
        f"{OCI}.created": created_at(spec.folder, revision),
        f"{OCI}.revision": revision,
        f"{OCI}.base.name": context.base.name,
        f"{OCI}.base.digest": context.base.digest,
        CONTENT_LABEL: context.content_hash,
        RUNTIME_LABEL: runtime.runtime.id,
    }


def created_at(folder: Path, revision: str) -> str:
    """The image's creation time: SOURCE_DATE_EPOCH, else the spec's commit time.

    A fixed time keeps rebuilds of the same sources identical (same image id), as
    reproducible builds do; uncommitted changes fall back to the current time.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds")
    if epoch:
        moment = datetime.fromtimestamp(int(epoch), timezone.utc)
    elif not revision.endswith(("-dirty", "unknown")):
        try:
            stamp = subprocess.run(
                ["git", "-C", str(folder), "log", "-1", "--format=%ct"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            moment = datetime.fromtimestamp(int(stamp), timezone.utc)
        except (OSError, subprocess.SubprocessError, ValueError):
            moment = datetime.now(timezone.utc)
    else:
        log.warning(
            "%s is not a committed git checkout, so the image's created time is now "
            "and every build gets a new image id; commit the spec or set "
            "SOURCE_DATE_EPOCH for repeatable builds",
            folder,
        )
        moment = datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def source_revision(folder: Path) -> str:
    """The commit the spec comes from (BASEIMAGE_REVISION wins), `-dirty` if changed."""
    if os.environ.get("BASEIMAGE_REVISION"):
        return os.environ["BASEIMAGE_REVISION"]
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head
