"""What every command shares: settings, output, option declarations, targets."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler

from baseimage import spec as spec_module


@dataclass(frozen=True)
class Settings:
    """Options every command shares."""

    images_dir: Path
    json: bool
    verbosity: int
    extra_ca: Path | None
    registry_endpoint: str | None


def configure_logging(console: Console, verbosity: int) -> None:
    level = logging.DEBUG if verbosity >= 2 else logging.INFO
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(
            console=console,
            show_time=False,
            show_path=False,
            markup=False,
            rich_tracebacks=False,
            highlighter=NullHighlighter(),
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("baseimage").setLevel(level)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def emit(settings: Settings, document: dict[str, Any], text: str) -> None:
    if settings.json:
        click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text)


runtime_option = click.option(
    "--runtime",
    "runtime_id",
    metavar="RUNTIME",
    help="Runtime id, e.g. python3.11 or java17.",
)
image_option = click.option(
    "--image",
    metavar="NAME",
    help="Spec folder under the images folder (default: the "
    "one that declares the runtime).",
)


def targets(
    settings: Settings, runtime_id: str | None, image: str | None
) -> list[tuple[spec_module.ImageSpec, spec_module.RuntimeSpec]]:
    wanted = None if runtime_id in (None, "all") else runtime_id
    specs = spec_module.find(settings.images_dir, wanted, image)
    return [(s, s.runtime(r)) for s in specs for r in s.runtimes if wanted in (None, r)]


def _late_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value and isinstance(ctx.obj, Settings):
        ctx.obj = replace(ctx.obj, json=True)


def _late_verbose(ctx: click.Context, _: click.Parameter, value: int) -> None:
    if value and isinstance(ctx.obj, Settings):
        ctx.obj = replace(ctx.obj, verbosity=ctx.obj.verbosity + value)
        ui = ctx.meta.get("ui")
        if ui is not None:
            ui.verbosity = ctx.obj.verbosity
            configure_logging(ui.console, ctx.obj.verbosity)


def output_options(command: Any) -> Any:
    """`--json` and `-v` after the command name too (`baseimage build --json`)."""
    command = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_late_json,
        help="Print a JSON document on stdout.",
    )(command)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=_late_verbose,
        help="More output (-vv for debug).",
    )(command)


def stdout_console() -> Console:
    """Where result tables go: stdout, wide enough not to fold lines when piped."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)
