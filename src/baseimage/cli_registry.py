"""Commands about the ECR side: repository settings, published versions, FROM lines."""

from __future__ import annotations

import click
from rich.table import Table

from baseimage import catalog, repo_settings
from baseimage.cli_common import (
    Settings,
    emit,
    image_option,
    output_options,
    runtime_option,
    stdout_console,
    targets,
)
from baseimage.ecr import Ecr, client_factory
from baseimage.errors import RepositoryDrift, UsageError
from baseimage.repo_settings import RepoState
from baseimage.spec import ImageSpec


def _repositories(
    settings: Settings, runtime_id: str | None, image: str | None
) -> list[tuple[ImageSpec, Ecr]]:
    """One Ecr per destination of every selected spec (each spec once)."""
    factory = client_factory()
    seen: dict[str, ImageSpec] = {}
    for one, _ in targets(settings, runtime_id, image):
        seen.setdefault(one.name, one)
    return [
        (one, Ecr(factory(dest.region), one.registry, dest))
        for one in seen.values()
        for dest in one.registry.destinations
    ]


def _show(states: list[RepoState]) -> None:
    console = stdout_console()
    for state in states:
        table = Table(
            title=f"{state.repository} in {state.destination}", title_justify="left"
        )
        for column in ("setting", "spec", "ECR", ""):
            table.add_column(column, overflow="fold")
        if not state.exists:
            table.add_row("repository", "exists", "missing", "[red]drift[/red]")
        for s in state.settings:
            mark = (
                "ok"
                if s.ok
                else (
                    "[red]drift[/red]" if s.fixable else "[red]drift (cannot fix)[/red]"
                )
            )
            table.add_row(s.name, s.desired, s.actual, mark)
        table.caption = f"effective scanning: {state.scanning}"
        console.print(table)


@click.group()
@output_options
def repo() -> None:
    """Compare ECR repositories with their specs, and fix them."""


@repo.command()
@output_options
@runtime_option
@image_option
@click.pass_obj
def check(settings: Settings, runtime_id: str | None, image: str | None) -> None:
    """Show each setting, desired vs actual; exit 5 on drift."""
    states = [
        repo_settings.inspect(ecr)
        for _, ecr in _repositories(settings, runtime_id, image)
    ]
    document = {"repositories": [s.as_dict() for s in states]}
    drifted = [s for s in states if s.drift or not s.exists]
    if not settings.json:
        _show(states)
    elif not drifted:
        emit(settings, document, "")
    if drifted:
        parts = [
            f"{s.repository} in {s.destination}: "
            + (repo_settings.describe(s.drift) if s.exists else "missing")
            for s in drifted
        ]
        error = RepositoryDrift(
            "drift found: "
            + " | ".join(parts)
            + "; `baseimage repo apply` fixes what can be fixed"
        )
        error.details = document
        raise error


@repo.command()
@output_options
@runtime_option
@image_option
@click.pass_obj
def apply(settings: Settings, runtime_id: str | None, image: str | None) -> None:
    """Create missing repositories and fix every setting that can be fixed."""
    states = []
    for _, ecr in _repositories(settings, runtime_id, image):
        states.append(repo_settings.apply(ecr, repo_settings.inspect(ecr)))
    if settings.json:
        emit(settings, {"repositories": [s.as_dict() for s in states]}, "")
    else:
        _show(states)


@click.command()
@output_options
@runtime_option
@image_option
@click.pass_obj
def versions(settings: Settings, runtime_id: str | None, image: str | None) -> None:
    """List published versions, newest first, with digests and scan results."""
    rows = []
    for one, ecr in _repositories(settings, runtime_id, image):
        wanted = None if runtime_id in (None, "all") else runtime_id
        for release in catalog.releases(ecr, wanted):
            rows.append(
                {
                    "image": one.name,
                    "destination": str(ecr.destination),
                    **release.as_dict(),
                }
            )
    if settings.json:
        emit(settings, {"versions": rows}, "")
        return
    table = Table()
    for column in (
        "destination",
        "version",
        "runtime",
        "digest",
        "pushed",
        "MB",
        "scan",
        "findings",
        "tags",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        counts = ", ".join(
            f"{k} {v}" for k, v in sorted(row["severity_counts"].items())
        )
        table.add_row(
            row["destination"],
            row["version"],
            row["runtime"],
            row["digest"][:19],
            row["pushed_at"][:19],
            f"{row['size_bytes'] / 1e6:.1f}",
            row["scan_status"],
            counts or "none",
            ", ".join(row["tags"]),
        )
    stdout_console().print(table)


@click.command()
@output_options
@click.option("--version", "version", required=True, help="A published version.")
@runtime_option
@image_option
@click.option("--region", help="Which destination's region (default: the primary).")
@click.pass_obj
def use(
    settings: Settings,
    version: str,
    runtime_id: str | None,
    image: str | None,
    region: str | None,
) -> None:
    """Print the digest-pinned FROM line a function team should use."""
    if not runtime_id or runtime_id == "all":
        raise UsageError("use needs --runtime, e.g. --runtime python3.11")
    found = _repositories(settings, runtime_id, image)
    chosen = [(s, e) for s, e in found if region in (None, e.destination.region)]
    if not chosen:
        regions = ", ".join(e.destination.region for _, e in found)
        raise UsageError(
            f"the image is not published to {region}; it goes to {regions}"
        )
    [(one, ecr), *_] = chosen
    line = catalog.from_line(ecr, version, runtime_id)
    emit(
        settings,
        {"image": one.name, "runtime": runtime_id, "version": version, "from": line},
        line,
    )
