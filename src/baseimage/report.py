"""Publish reports: JSON for machines, Markdown for people and CI job summaries."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from baseimage.publish import Published


def document(results: list[Published], version: str) -> dict[str, Any]:
    """The JSON report of one publish run."""
    return {
        "version": version,
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ok": all(r.ok for r in results),
        "published": [r.as_dict() for r in results],
    }


def markdown(results: list[Published], version: str) -> str:
    """A Markdown summary, one row per runtime and destination."""
    lines = [
        f"## baseimage publish {version}",
        "",
        "| image | runtime | destination | status | image test | scan | reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        test = _test_cell(result.test)
        for dest in result.destinations:
            lines.append(
                f"| {result.image} | {result.runtime} | {dest.destination} | "
                f"{_status(dest.status)} | {test} | {_scan_cell(dest.scan)} | "
                f"`{dest.reference or dest.error or '-'}` |"
            )
    failed = [(r, d) for r in results for d in r.destinations if d.status == "failed"]
    if failed:
        lines += ["", "### Failures", ""]
        lines += [f"- **{r.runtime} in {d.destination}**: {d.error}" for r, d in failed]
    return "\n".join(lines) + "\n"


def write(
    results: list[Published], version: str, directory: Path, selection: str = "all"
) -> list[Path]:
    """Write publish-<version>[-<runtime>].json and .md; append the Markdown to a CI
    job summary."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = (
        f"publish-{version}" if selection == "all" else f"publish-{version}-{selection}"
    )
    json_path = directory / f"{stem}.json"
    md_path = directory / f"{stem}.md"
    json_path.write_text(
        json.dumps(document(results, version), indent=2, default=str) + "\n"
    )
    text = markdown(results, version)
    md_path.write_text(text)
    written = [json_path, md_path]
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
        written.append(Path(summary))
    return written


def _status(status: str) -> str:
    return {
        "published": "published",
        "unchanged": "already published",
        "failed": "**FAILED**",
    }.get(status, status)


def _test_cell(test: dict[str, Any] | None) -> str:
    if test is None:
        return "-"
    if test.get("skipped"):
        return "**SKIPPED**"
    return "passed" if test.get("passed") else "**failed**"


def _scan_cell(scan: dict[str, Any] | None) -> str:
    if not scan:
        return "-"
    counts = scan.get("counts") or {}
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no findings"
    verdict = "passed" if scan.get("passed") else "**refused**"
    allowed = len(scan.get("allowed") or ())
    extra = f", {allowed} allowed" if allowed else ""
    return f"{verdict} ({summary}{extra})"
