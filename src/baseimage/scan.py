"""The scan gate: wait for ECR's scan of a pushed image and judge its findings.

A scan that gives no result within the timeout is a failure, never "0 findings".
Both result shapes are read: basic scanning's `findings` and enhanced scanning's
`enhancedFindings` (Amazon Inspector).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from baseimage.ecr import Ecr
from baseimage.repo_spec import SEVERITIES, Allowance, ScanPolicy

log = logging.getLogger(__name__)

# Severity ranks, most severe first. Enhanced scanning reports UNTRIAGED for findings
# Inspector has not rated; they rank between MEDIUM and LOW, so `fail_on: LOW` or
# lower fails on them while the usual HIGH threshold does not.
_RANK = {
    name: i
    for i, name in enumerate(
        ("CRITICAL", "HIGH", "MEDIUM", "UNTRIAGED", "UNDEFINED", "LOW", "INFORMATIONAL")
    )
}
_DONE = ("COMPLETE", "ACTIVE")
_WAITING = ("IN_PROGRESS", "PENDING")
_POLL_SECONDS = 2.0
# With scan on push ECR starts the scan itself; give it this long to appear before
# starting one explicitly.
_START_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class Finding:
    """One vulnerability finding, normalised from either result shape."""

    id: str
    severity: str
    package: str = ""
    title: str = ""


@dataclass(frozen=True)
class Verdict:
    """What the gate decided about one image."""

    passed: bool
    status: str
    reason: str
    counts: dict[str, int] = field(default_factory=dict)
    blocking: tuple[Finding, ...] = ()
    allowed: tuple[Finding, ...] = ()
    expired: tuple[Finding, ...] = ()  # blocking because their allowance expired

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Waiter:
    """Clock and sleep, replaceable in tests of the timeout path."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    today: Callable[[], date] = date.today


def wait_and_judge(
    ecr: Ecr,
    digest: str,
    policy: ScanPolicy,
    *,
    scans_on_push: bool,
    waiter: Waiter | None = None,
) -> Verdict:
    """Wait for the scan of `digest` and judge it against the policy.

    Raises:
        CredentialsProblem, RegistryUnavailable: ECR cannot be asked.
    """
    waiter = waiter or Waiter()
    start = waiter.clock()
    deadline = start + policy.timeout_seconds
    started = False
    status = "NOT_STARTED"
    while True:
        result = _findings(ecr, digest)
        if result is None:
            elapsed = waiter.clock() - start
            if not started and (not scans_on_push or elapsed >= _START_GRACE_SECONDS):
                started = _start_scan(ecr, digest)
        else:
            scan_status = result.get("imageScanStatus") or {}
            status = scan_status.get("status", "UNKNOWN")
            if status in _DONE:
                return judge(result, policy, waiter.today())
            if status not in _WAITING:
                detail = scan_status.get("description") or "no description"
                return Verdict(False, status, f"the scan ended {status}: {detail}")
        if waiter.clock() >= deadline:
            return Verdict(
                False,
                status,
                f"no scan result within "
                f"{policy.timeout_seconds}s (last status {status}); an "
                "unfinished scan is not a clean one",
            )
        waiter.sleep(_POLL_SECONDS)


def judge(result: dict[str, Any], policy: ScanPolicy, today: date) -> Verdict:
    """Judge a complete scan result against the policy."""
    findings = _normalise(result.get("imageScanFindings") or {})
    threshold = _RANK[policy.fail_on]
    allowances = {a.finding: a for a in policy.allow}
    blocking, allowed, expired = [], [], []
    for finding in findings:
        if _RANK.get(finding.severity, _RANK["UNDEFINED"]) > threshold:
            continue
        allowance: Allowance | None = allowances.get(finding.id)
        if allowance is not None and allowance.active(today):
            allowed.append(finding)
        elif allowance is not None:
            expired.append(finding)
            blocking.append(finding)
        else:
            blocking.append(finding)
    counts = dict(
        (result.get("imageScanFindings") or {}).get("findingSeverityCounts")
        or _count(findings)
    )
    if blocking:
        names = ", ".join(f"{f.id} ({f.severity})" for f in blocking[:10])
        more = f" and {len(blocking) - 10} more" if len(blocking) > 10 else ""
        note = (
            f"; allowances expired for {', '.join(f.id for f in expired)}"
            if expired
            else ""
        )
        reason = (
            f"{len(blocking)} finding(s) at or above {policy.fail_on}: "
            f"{names}{more}{note}"
        )
        return Verdict(
            False,
            "COMPLETE",
            reason,
            counts,
            tuple(blocking),
            tuple(allowed),
            tuple(expired),
        )
    reason = f"no finding at or above {policy.fail_on}"
    if allowed:
        reason += f" after {len(allowed)} allowed finding(s)"
    return Verdict(True, "COMPLETE", reason, counts, (), tuple(allowed), ())


def _findings(ecr: Ecr, digest: str) -> dict[str, Any] | None:
    """The whole scan result (all pages), or None when no scan exists yet."""
    merged = ecr.scan_findings_page(digest)
    token = merged.get("nextToken") if merged else None
    while merged is not None and token:
        page = ecr.scan_findings_page(digest, token) or {}
        found = merged.setdefault("imageScanFindings", {})
        more = page.get("imageScanFindings") or {}
        for key in ("findings", "enhancedFindings"):
            found[key] = [*(found.get(key) or []), *(more.get(key) or [])]
        token = page.get("nextToken")
    return merged


def _start_scan(ecr: Ecr, digest: str) -> bool:
    ecr.start_scan(digest)
    log.info("Started a scan of %s@%s", ecr.spec.repository, digest)
    return True


def _normalise(found: dict[str, Any]) -> list[Finding]:
    findings = [
        Finding(
            id=str(f.get("name", "")),
            severity=str(f.get("severity", "UNDEFINED")),
            package=_attribute(f, "package_name"),
            title=str(f.get("description", "")),
        )
        for f in found.get("findings") or []
    ]
    for f in found.get("enhancedFindings") or []:
        if f.get("status", "ACTIVE") != "ACTIVE":
            continue  # suppressed or closed in Inspector
        details = f.get("packageVulnerabilityDetails") or {}
        packages = details.get("vulnerablePackages") or [{}]
        findings.append(
            Finding(
                id=str(details.get("vulnerabilityId") or f.get("title", "")),
                severity=str(f.get("severity", "UNDEFINED")),
                package=str(packages[0].get("name", "")),
                title=str(f.get("title", "")),
            )
        )
    return findings


def _attribute(finding: dict[str, Any], key: str) -> str:
    for item in finding.get("attributes") or []:
        if item.get("key") == key:
            return str(item.get("value", ""))
    return ""


def _count(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    return counts


__all__ = ["SEVERITIES", "Finding", "Verdict", "Waiter", "judge", "wait_and_judge"]
