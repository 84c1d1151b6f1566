"""Benchmark: how long builds and publishes take on the local stack, and image sizes.

Prints figures; never fails on a timing. Run with `make bench` (the stack must be up).

Measured, for the Python image:
- a build after a configuration-only change (the library layers come from cache),
- a warm rebuild with nothing changed,
- a first publish to a fresh repository, and a republish of the same content,
- the image's size and the company layer's share of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASEIMAGE = [sys.executable, "-m", "baseimage"]


def timed(args: list[str], images: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [*BASEIMAGE, "--images-dir", str(images), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"bench: {' '.join(args)} failed ({result.returncode})")
    return elapsed, result.stdout.strip()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="baseimage-bench-") as tmp:
        images = Path(tmp) / "images"
        shutil.copytree(ROOT / "images" / "python", images / "python")
        spec_file = images / "python" / "image.yaml"
        repository = f"bench-{uuid.uuid4().hex[:8]}/python"
        spec_file.write_text(
            spec_file.read_text().replace("company/lambda-base-python", repository)
        )
        config = images / "python" / "config" / "logging.json"
        config.write_text(config.read_text() + "\n")

        figures = {}
        figures["build after a config change"], _ = timed(
            ["build", "--runtime", "python3.11"], images
        )
        figures["warm rebuild"], out = timed(
            ["build", "--runtime", "python3.11"], images
        )
        image_id = out.split()[-1]
        figures["first publish"], _ = timed(
            ["publish", "--version", "1.0.0", "--runtime", "python3.11"], images
        )
        figures["republish, same content"], _ = timed(
            ["publish", "--version", "1.0.0", "--runtime", "python3.11"], images
        )

    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image_id],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    base = subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "-f",
            '{{index .Config.Labels "org.opencontainers.image.base.digest"}}',
            image_id,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    base_ref = f"127.0.0.1:5000/lambda/python@{base}"
    base_size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", base_ref],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        or 0
    )

    print(f"{'step':32} seconds")
    for name, seconds in figures.items():
        print(f"{name:32} {seconds:7.1f}")
    print(f"{'image size (MB)':32} {size / 1e6:7.1f}")
    if base_size:
        print(f"{'company layers (MB)':32} {(size - base_size) / 1e6:7.1f}")
    print(f"{'cores':32} {os.cpu_count():7d}")


if __name__ == "__main__":
    main()
