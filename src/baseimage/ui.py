"""Progress on stderr: rich on a terminal, plain periodic lines elsewhere (CI logs).

Results never go through here; they are printed to stdout by the command line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from baseimage.engine import LineSink, ProgressSink

log = logging.getLogger("baseimage.progress")

_PLAIN_INTERVAL = 5.0


class Ui:
    """How progress is shown for this run."""

    def __init__(self, console: Console, verbosity: int = 0) -> None:
        self.console = console
        self.verbosity = verbosity

    @property
    def live(self) -> bool:
        """True when stderr is a terminal, so bars and live lines make sense."""
        return self.console.is_terminal

    def build_lines(self) -> LineSink:
        """A sink for build output: steps always, everything else with -v."""

        def sink(line: str) -> None:
            if line.startswith("Step "):
                log.info("%s", line)
            elif self.verbosity >= 1:
                log.info("  %s", line)
            else:
                log.debug("  %s", line)

        return sink

    @contextmanager
    def push_progress(self, what: str) -> Iterator[ProgressSink]:
        """Per-layer bars on a terminal; a summary line every few seconds otherwise."""
        layers: dict[str, tuple[int, int]] = {}
        if self.live:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                console=self.console,
                transient=True,
            ) as progress:
                tasks: dict[str, Any] = {}

                def bar(chunk: dict[str, Any]) -> None:
                    layer = chunk.get("id")
                    detail = chunk.get("progressDetail") or {}
                    if not layer or not isinstance(layer, str):
                        return
                    if layer not in tasks:
                        tasks[layer] = progress.add_task(f"{what} {layer}", total=None)
                    if detail.get("total"):
                        progress.update(
                            tasks[layer],
                            completed=detail.get("current", 0),
                            total=detail["total"],
                        )
                    status = str(chunk.get("status", ""))
                    if status in ("Pushed", "Layer already exists"):
                        total = progress.tasks[tasks[layer]].total or 1
                        progress.update(
                            tasks[layer],
                            completed=total,
                            total=total,
                            description=f"{what} {layer} {status.lower()}",
                        )

                yield bar
            return

        last = [time.monotonic()]

        def plain(chunk: dict[str, Any]) -> None:
            layer = chunk.get("id")
            detail = chunk.get("progressDetail") or {}
            status = str(chunk.get("status", ""))
            if isinstance(layer, str) and detail.get("total"):
                layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
            if isinstance(layer, str) and status in ("Pushed", "Layer already exists"):
                done = layers.get(layer, (0, 0))[1]
                layers[layer] = (done, done)
                log.info("%s: layer %s %s", what, layer, status.lower())
            if time.monotonic() - last[0] >= _PLAIN_INTERVAL and layers:
                last[0] = time.monotonic()
                current = sum(c for c, _ in layers.values())
                total = sum(t for _, t in layers.values())
                log.info("%s: %s of %s", what, _size(current), _size(total))

        yield plain


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    return f"{value:.1f} GB"
