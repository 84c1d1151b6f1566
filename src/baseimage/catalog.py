"""What has been published: versions per runtime, and the FROM line to use."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from baseimage.ecr import Ecr
from baseimage.errors import UsageError
from baseimage.publish import version_tag

_VERSION_TAG = re.compile(
    r"^(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+?)?)-"
    r"(?P<runtime>(?:python|java)[0-9.]+)$"
)


@dataclass(frozen=True)
class Release:
    """One published version of one runtime."""

    version: str
    runtime: str
    tags: tuple[str, ...]
    digest: str
    pushed_at: str
    size_bytes: int
    scan_status: str
    severity_counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def releases(ecr: Ecr, runtime: str | None = None) -> list[Release]:
    """Published versions, newest first; images without a version tag are left out."""
    found = []
    for detail in ecr.images():
        tags = tuple(sorted(detail.get("imageTags") or ()))
        pushed = detail.get("imagePushedAt")
        scan = detail.get("imageScanStatus") or {}
        summary = detail.get("imageScanFindingsSummary") or {}
        if not scan and any(_VERSION_TAG.match(t) for t in tags):
            # Not every ECR API answer carries the scan summary; ask for it.
            scan, summary = _scan_of(ecr, detail["imageDigest"])
        for tag in tags:
            match = _VERSION_TAG.match(tag)
            if not match or (runtime and match["runtime"] != runtime):
                continue
            found.append(
                Release(
                    version=match["version"],
                    runtime=match["runtime"],
                    tags=tags,
                    digest=detail["imageDigest"],
                    pushed_at=pushed.isoformat()
                    if isinstance(pushed, datetime)
                    else str(pushed or ""),
                    size_bytes=int(detail.get("imageSizeInBytes") or 0),
                    scan_status=scan.get("status", "NONE"),
                    severity_counts=dict(summary.get("findingSeverityCounts") or {}),
                )
            )
    return sorted(found, key=lambda r: (r.pushed_at, r.version), reverse=True)


def _scan_of(ecr: Ecr, digest: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = ecr.scan_findings_page(digest, max_results=1)
    if found is None:
        return {"status": "NONE"}, {}
    return found.get("imageScanStatus") or {}, found.get("imageScanFindings") or {}


def from_line(ecr: Ecr, version: str, runtime: str) -> str:
    """The digest-pinned FROM line a function team should use.

    Raises:
        UsageError: that version was never published for the runtime.
    """
    tag = version_tag(version, runtime)
    image = ecr.image(tag)
    if image is None:
        raise UsageError(
            f"{ecr.spec.repository}:{tag} is not published in "
            f"{ecr.destination}; `baseimage versions --runtime {runtime}` "
            "lists what is"
        )
    return f"FROM {ecr.destination.host}/{ecr.spec.repository}:{tag}@{image.digest}"
