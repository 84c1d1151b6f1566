"""The command line: parse options, call one typed function, print the result.

Results go to stdout (a reference, or a JSON document with --json); progress and
diagnostics go to stderr. Only the project's own errors are caught here.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from baseimage import __version__, builder, cli_registry, engine, report, smoke
from baseimage import spec as spec_module
from baseimage.builder import Built
from baseimage.cli_common import (
    Settings,
    configure_logging,
    emit,
    image_option,
    output_options,
    runtime_option,
    stdout_console,
    targets,
)
from baseimage.ecr import client_factory
from baseimage.errors import BaseImageError, ImageTestFailed, SpecInvalid, UsageError
from baseimage.publish import Published, PublishOptions, check_version, publish_one
from baseimage.ui import Ui

log = logging.getLogger("baseimage")


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
    configure_logging(console, verbose)
    ctx.obj = Settings(
        images_dir=images_dir,
        json=as_json,
        verbosity=verbose,
        extra_ca=ca_bundle,
        registry_endpoint=registry_endpoint or None,
    )
    ctx.meta["ui"] = Ui(console, verbose)


@cli.command()
@output_options
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.pass_obj
def validate(settings: Settings, path: Path | None) -> None:
    """Check one spec (file or folder) or every spec under the images folder."""
    target = path or settings.images_dir
    if target.is_dir() and not (target / spec_module.SPEC_FILE).is_file():
        paths = list(spec_module.discover(target))
    else:
        paths = [target]
    problems: list[str] = []
    checked = []
    for one in paths:
        try:
            loaded = spec_module.load(one)
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
        raise UsageError(f"no {spec_module.SPEC_FILE} found under {target}")
    emit(
        settings, {"ok": True, "specs": checked}, "\n".join(f"ok {p}" for p in checked)
    )


@cli.command()
@output_options
@runtime_option
@image_option
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
    if runtime_id == "all":
        raise UsageError("render shows one runtime's Dockerfile; name one runtime")
    [(one, rt)] = targets(settings, runtime_id, image)
    client = engine.connect()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="baseimage-") as tmp:
        dest = output or Path(tmp) / "ctx"
        context = builder.render_context(client, one, rt, dest, settings.extra_ca)
        emit(
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
@output_options
@runtime_option
@image_option
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
    for one, rt in targets(settings, runtime_id, image):
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
    emit(
        settings,
        {"built": results},
        "\n".join(f"{r['reference']} {r['id']}" for r in results),
    )


@cli.command(name="test")
@output_options
@runtime_option
@image_option
@click.option(
    "--ref",
    metavar="IMAGE",
    help="Test this local image instead of the one `build` made.",
)
@click.pass_context
def test_image(
    ctx: click.Context, runtime_id: str | None, image: str | None, ref: str | None
) -> None:
    """Boot each built image as Lambda would and check it keeps the contract."""
    settings: Settings = ctx.obj
    client = engine.connect()
    reports = []
    for one, rt in targets(settings, runtime_id, image):
        target = ref or builder.local_ref(one, rt.runtime.id)
        if engine.inspect(client, target) is None:
            raise UsageError(
                f"no local image {target}; build it first: baseimage build "
                f"--runtime {rt.runtime.id}"
            )
        report = smoke.run_image_test(client, one, rt, target)
        reports.append(report)
        if not settings.json:
            stdout_console().print(smoke.summary_table(report))
    documents = {"tests": [smoke.report_as_dict(r) for r in reports]}
    failed = [r for r in reports if not r.passed]
    if settings.json and not failed:
        emit(settings, documents, "")
    if failed:
        first = failed[0]
        error = ImageTestFailed(
            f"{first.image} failed its Lambda test: {smoke.failure_summary(first)}",
            log=list(first.log_excerpt),
        )
        error.details = documents
        raise error


def image_gate(
    client: Any, spec: spec_module.ImageSpec, runtime: spec_module.RuntimeSpec
) -> Callable[[Built], dict[str, Any]]:
    """The publish gate: the same test as `baseimage test`, on the exact image."""

    def gate(built: Built) -> dict[str, Any]:
        report = smoke.run_image_test(client, spec, runtime, built.image_id)
        if not report.passed:
            raise ImageTestFailed(
                f"{built.local_ref} failed its Lambda test, so it is not published: "
                f"{smoke.failure_summary(report)}",
                log=list(report.log_excerpt),
            )
        log.info(
            "Lambda test passed for %s (init %.0f ms)",
            built.local_ref,
            report.init_ms or 0,
        )
        return smoke.report_as_dict(report)

    return gate


def _skipped_gate(reason: str) -> Callable[[Built], dict[str, Any]]:
    def gate(built: Built) -> dict[str, Any]:
        log.warning(
            "THE LAMBDA TEST WAS SKIPPED for %s (%s); the image is labelled "
            "%s=skipped and the report says so",
            built.local_ref,
            reason,
            builder.TEST_LABEL,
        )
        return {"skipped": True, "reason": reason}

    return gate


@cli.command()
@output_options
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
@image_option
@click.option(
    "--fix-repository",
    is_flag=True,
    help="Apply the spec's settings to an existing ECR repository that "
    "differs, instead of refusing.",
)
@click.option(
    "--skip-test",
    metavar="REASON",
    help="Publish without the Lambda test (loud; recorded in the image "
    "labels and the report). Give the reason.",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("reports"),
    show_default=True,
    help="Where publish-<version>.json and .md are written.",
)
@click.pass_context
def publish(
    ctx: click.Context,
    version: str,
    runtime_id: str,
    image: str | None,
    fix_repository: bool,
    skip_test: str | None,
    report_dir: Path,
) -> None:
    """Build, test, push, scan and tag each image in its ECR repository."""
    settings: Settings = ctx.obj
    options = PublishOptions(
        version=check_version(version),
        fix_repository=fix_repository,
        extra_ca=settings.extra_ca,
        registry_endpoint=settings.registry_endpoint,
        skip_test_reason=skip_test,
    )
    selected = targets(settings, runtime_id, image)
    client = engine.connect()
    factory = client_factory()
    results: list[Published] = []
    try:
        for one, rt in selected:
            gate = (
                _skipped_gate(skip_test) if skip_test else image_gate(client, one, rt)
            )
            try:
                result = publish_one(
                    client, factory, one, rt, options, ctx.meta["ui"], gate
                )
            except BaseImageError as exc:
                if isinstance(exc.partial, Published):
                    results.append(exc.partial)
                raise
            results.append(result)
            if not settings.json:
                for dest in result.destinations:
                    if dest.status == "unchanged":
                        log.info(
                            "%s was already published; nothing pushed", dest.reference
                        )
                    click.echo(dest.reference)
    except BaseImageError as exc:
        exc.details = report.document(results, version)
        raise
    finally:
        if results:
            selection = "-".join(filter(None, (image, runtime_id))) or "all"
            written = report.write(results, version, report_dir, selection)
            log.info("Report: %s", ", ".join(str(p) for p in written))
    if settings.json:
        emit(settings, report.document(results, version), "")


def main() -> NoReturn:
    """Entry point: run the command line and map our errors to exit codes."""
    json_mode = "--json" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _print_error(
            "interrupted; nothing more was done", "Interrupted", 130, json_mode
        )
        sys.exit(130)
    except click.ClickException as exc:
        context = getattr(exc, "ctx", None)
        where = context.command_path if context else "baseimage"
        _print_error(
            f"{exc.format_message()} (see `{where} --help`)",
            "UsageError",
            exc.exit_code,
            json_mode,
        )
        sys.exit(exc.exit_code)
    except BaseImageError as exc:
        _report(exc, json_mode)
        sys.exit(exc.exit_code)
    sys.exit(0)


def _print_error(message: str, kind: str, code: int, json_mode: bool) -> None:
    Console(stderr=True, highlight=False).print(
        f"error: {message}", style="red", markup=False, soft_wrap=True
    )
    if json_mode:
        click.echo(
            json.dumps(
                {"ok": False, "error": kind, "exit_code": code, "problems": [message]},
                indent=2,
                sort_keys=True,
            )
        )


def _report(exc: BaseImageError, json_mode: bool) -> None:
    console = Console(stderr=True, highlight=False)
    problems = exc.problems if isinstance(exc, SpecInvalid) else [exc.message]
    if exc.log:
        console.print(
            "\n".join(f"  | {line}" for line in exc.log),
            markup=False,
            style="dim",
            soft_wrap=True,
        )
    for problem in problems:
        console.print(f"error: {problem}", style="red", markup=False, soft_wrap=True)
    if json_mode:
        document = {
            **exc.details,
            "ok": False,
            "error": type(exc).__name__,
            "exit_code": exc.exit_code,
            "problems": problems,
        }
        click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))


cli.add_command(cli_registry.repo)
cli.add_command(cli_registry.versions)
cli.add_command(cli_registry.use)
