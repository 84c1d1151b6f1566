"""Fetch the company's jars from a Maven repository and verify their checksums."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import IO

import requests

from baseimage import mirrors as mirror_map
from baseimage.contents import JavaLayer, MavenArtifact
from baseimage.errors import ArtifactFailed

log = logging.getLogger(__name__)

_TIMEOUT = (10, 120)


def cache_dir() -> Path:
    """Where verified jars are kept between builds (content-addressed by SHA-256)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "baseimage" / "maven"


def fetch_all(layer: JavaLayer, mirrors: dict[str, str], dest: Path) -> list[Path]:
    """Place every artifact of the layer, verified, into `dest`.

    Raises:
        ArtifactFailed: an artifact cannot be downloaded or its checksum differs.
    """
    repository = mirror_map.apply(layer.repository, mirrors)
    if repository != layer.repository:
        log.info("Maven repository %s is mirrored at %s", layer.repository, repository)
    dest.mkdir(parents=True, exist_ok=True)
    placed = []
    for artifact in layer.artifacts:
        jar = _cached(artifact) or _download(artifact, repository)
        target = dest / artifact.filename
        shutil.copyfile(jar, target)
        placed.append(target)
    return placed


def _cached(artifact: MavenArtifact) -> Path | None:
    path = cache_dir() / f"{artifact.sha256}.jar"
    if path.is_file() and _sha256(path) == artifact.sha256:
        log.debug("%s found in the local cache", artifact.coordinates)
        return path
    return None


def _download(artifact: MavenArtifact, repository: str) -> Path:
    url = artifact.path_in(repository)
    log.info("Fetching %s", artifact.coordinates)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache, suffix=".part", delete=False) as part:
        partial = Path(part.name)
        try:
            _copy_url(url, part.file)
        except (OSError, requests.RequestException) as exc:
            partial.unlink(missing_ok=True)
            raise ArtifactFailed(
                f"cannot fetch {artifact.coordinates} from {url}: {exc}; check the "
                "java.repository URL, the mirrors mapping and the network"
            ) from exc

    actual = _sha256(partial)
    if actual != artifact.sha256:
        partial.unlink(missing_ok=True)
        raise ArtifactFailed(
            f"checksum mismatch for {artifact.coordinates} from {url}: the spec pins "
            f"sha256 {artifact.sha256}, the repository served {actual}. Do not "
            "build on it: check the repository, and update the pin only if the new "
            "jar is trusted"
        )
    final = cache / f"{actual}.jar"
    partial.replace(final)
    return final


def _copy_url(url: str, out: IO[bytes]) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        with open(urllib.parse.unquote(parsed.path), "rb") as src:
            shutil.copyfileobj(src, out)
        return
    # requests honours REQUESTS_CA_BUNDLE, so a company CA on the build host is trusted.
    with requests.get(url, stream=True, timeout=_TIMEOUT) as response:
        if response.status_code != 200:
            raise requests.HTTPError(f"HTTP {response.status_code}")
        for chunk in response.iter_content(chunk_size=1 << 16):
            out.write(chunk)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
