"""The command line: parse options, call one typed function, print the result.

Results go to stdout (a reference, or a JSON document with --json); progress and
diagnostics go to stderr. Only the project's own errors are caught here.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.logging import RichHandler

from baseimage import __version__, builder, engine, spec
from baseimage.ecr import client_factory
from baseimage.errors import BaseImageError, SpecInvalid, UsageError
from baseimage.publish import PublishOptions, check_version, publish_one
from baseimage.ui import Ui

log = logging.getLogger("baseimage")


@dataclass(frozen=True)
class Settings:
    """Options every command shares."""

    images_dir: Path
    json: bool
    verbosity: int
    extra_ca: Path | None
    registry_endpoint: str | None


def _configure_logging(console: Console, verbosity: int) -> None:
    level = logging.DEBUG if verbosity >= 2 else logging.INFO
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(
            console=console,
            show_time=False,
            show_path=False,
            markup=False,
            rich_tracebacks=False,
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


def _emit(settings: Settings, document: dict[str, Any], text: str) -> None:
    if settings.json:
        click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text)


@click.group()
@click.version_option(__version__, prog_name="baseimage")
@click.option(
    "--images-dir",
    type=click.Path(path_type=Path),
    default=Path("images"),
    envvar="BASEIMAGE_IMAGES_DIR",
    show_default=True,
    help="Folder holding one spec folder per image.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON document on stdout."
)
@click.option("-v", "--verbose", count=True, help="More output (-vv for debug).")
@click.option(
    "--ca-bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="BASEIMAGE_CA_BUNDLE",
    help="Extra CA certificates (PEM) trusted in the image and by pip, e.g. "
    "a TLS-inspecting proxy's. Env: BASEIMAGE_CA_BUNDLE.",
)
@click.option(
    "--registry-endpoint",
    envvar="BASEIMAGE_REGISTRY_ENDPOINT",
    help="Send image data to this registry address instead of ECR's own "
    "endpoint. Env: BASEIMAGE_REGISTRY_ENDPOINT.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    images_dir: Path,
    as_json: bool,
    verbose: int,
    ca_bundle: Path | None,
    registry_endpoint: str | None,
) -> None:
    """Build, prove and publish the company's AWS Lambda base images."""
    console = Console(stderr=True, highlight=False)
    _configure_logging(console, verbose)
    ctx.obj = Settings(
        images_dir=images_dir,
        json=as_json,
        verbosity=verbose,
        extra_ca=ca_bundle,
        registry_endpoint=registry_endpoint or None,
    )
    ctx.meta["ui"] = Ui(console, verbose)


_runtime_option = click.option(
    "--runtime",
    "runtime_id",
    metavar="RUNTIME",
    help="Runtime id, e.g. python3.11 or java17.",
)
_image_option = click.option(
    "--image",
    metavar="NAME",
    help="Spec folder under the images folder (default: the "
    "one that declares the runtime).",
)


def _targets(
    settings: Settings, runtime_id: str | None, image: str | None
) -> list[tuple[spec.ImageSpec, spec.RuntimeSpec]]:
    wanted = None if runtime_id in (None, "all") else runtime_id
    specs = spec.find(settings.images_dir, wanted, image)
    return [(s, s.runtime(r)) for s in specs for r in s.runtimes if wanted in (None, r)]


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.pass_obj
def validate(settings: Settings, path: Path | None) -> None:
    """Check one spec (file or folder) or every spec under the images folder."""
    target = path or settings.images_dir
    if target.is_dir() and not (target / spec.SPEC_FILE).is_file():
        paths = list(spec.discover(target))
    else:
        paths = [target]
    problems: list[str] = []
    checked = []
    for one in paths:
        try:
            loaded = spec.load(one)
        except SpecInvalid as exc:
            problems.extend(exc.problems)
            continue
        checked.append(str(loaded.path))
        for rid, rt in loaded.runtimes.items():
            if not rt.pinned:
                log.warning(
                    "%s: runtimes.%s: base %s is not pinned by digest",
                    loaded.path,
                    rid,
                    rt.base,
                )
    if problems:
        raise SpecInvalid(problems)
    if not paths:
        raise UsageError(f"no {spec.SPEC_FILE} found under {target}")
    _emit(
        settings, {"ok": True, "specs": checked}, "\n".join(f"ok {p}" for p in checked)
    )


@cli.command()
@_runtime_option
@_image_option
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the whole build context into this folder.",
)
@click.pass_obj
def render(
    settings: Settings, runtime_id: str | None, image: str | None, output: Path | None
) -> None:
    """Print the Dockerfile a runtime's image is built from."""
    if not runtime_id:
        raise UsageError("render needs --runtime, e.g. --runtime python3.11")
    [(one, rt)] = _targets(settings, runtime_id, image)
    client = engine.connect()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="baseimage-") as tmp:
        dest = output or Path(tmp) / "ctx"
        context = builder.render_context(client, one, rt, dest, settings.extra_ca)
        _emit(
            settings,
            {
                "dockerfile": context.dockerfile,
                "content_hash": context.content_hash,
                "base": context.base.from_ref,
                "context": str(output) if output else None,
            },
            context.dockerfile.rstrip("\n"),
        )


@cli.command()
@_runtime_option
@_image_option
@click.option(
    "--version",
    "version",
    default="0.0.0-dev",
    show_default=True,
    help="Version recorded in the image's labels.",
)
@click.pass_context
def build(
    ctx: click.Context, runtime_id: str | None, image: str | None, version: str
) -> None:
    """Build the image for a runtime (or every runtime) into the local engine."""
    settings: Settings = ctx.obj
    check_version(version)
    client = engine.connect()
    results = []
    for one, rt in _targets(settings, runtime_id, image):
        built = builder.build(
            client,
            one,
            rt,
            version=version,
            extra_ca=settings.extra_ca,
            on_line=ctx.meta["ui"].build_lines(),
        )
        results.append(
            {
                "image": one.name,
                "runtime": rt.runtime.id,
                "reference": built.local_ref,
                "id": built.image_id,
                "content_hash": built.content_hash,
                "base": f"{built.base.name}@{built.base.digest}",
            }
        )
    _emit(
        settings,
        {"built": results},
        "\n".join(f"{r['reference']} {r['id']}" for r in results),
    )


@cli.command()
@click.option(
    "--version", "version", required=True, help="Semantic version, e.g. 1.4.0."
)
@click.option(
    "--runtime",
    "runtime_id",
    default="all",
    show_default=True,
    metavar="RUNTIME|all",
    help="One runtime, or every runtime of every spec.",
)
@_image_option
@click.option(
    "--fix-repository",
    is_flag=True,
    help="Apply the spec's settings to an existing ECR repository that "
    "differs, instead of refusing.",
)
@click.pass_context
def publish(
    ctx: click.Context,
    version: str,
    runtime_id: str,
    image: str | None,
    fix_repository: bool,
) -> None:
    """Build, push and tag each image in its ECR repository."""
    settings: Settings = ctx.obj
    options = PublishOptions(
        version=check_version(version),
        fix_repository=fix_repository,
        extra_ca=settings.extra_ca,
        registry_endpoint=settings.registry_endpoint,
    )
    targets = _targets(settings, runtime_id, image)
    client = engine.connect()
    factory = client_factory()
    results = []
    for one, rt in targets:
        result = publish_one(client, factory, one, rt, options, ctx.meta["ui"])
        results.append(result.as_dict())
        if not settings.json:
            note = "" if result.pushed else "  (already published, nothing pushed)"
            click.echo(f"{result.reference}{note}")
    if settings.json:
        _emit(settings, {"published": results}, "")


def main() -> NoReturn:
    """Entry point: run the command line and map our errors to exit codes."""
    json_mode = "--json" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BaseImageError as exc:
        _report(exc, json_mode)
        sys.exit(exc.exit_code)
    sys.exit(0)


def _report(exc: BaseImageError, json_mode: bool) -> None:
    console = Console(stderr=True, highlight=False)
    problems = exc.problems if isinstance(exc, SpecInvalid) else [exc.message]
    if exc.log:
        console.print(
            "\n".join(f"  | {line}" for line in exc.log), markup=False, style="dim"
        )
    for problem in problems:
        console.print(f"error: {problem}", style="red", markup=False, soft_wrap=True)
    if json_mode:
        click.echo(
            json.dumps(
                {
                    "ok": False,
                    "error": type(exc).__name__,
                    "exit_code": exc.exit_code,
                    "problems": problems,
                },
                indent=2,
            )
        )
