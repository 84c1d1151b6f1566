"""Image data in a registry, read over the distribution (v2) HTTP API."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from baseimage.errors import RegistryUnavailable

log = logging.getLogger(__name__)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SINGLE_PLATFORM = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
_ACCEPT = ", ".join((DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_LIST, OCI_INDEX))
_TIMEOUT = (10, 60)


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry serves it."""

    digest: str
    media_type: str
    body: dict[str, Any]

    @property
    def single_platform(self) -> bool:
        """True for an image manifest; False for an index (which Lambda rejects)."""
        return self.media_type in SINGLE_PLATFORM


@dataclass
class Registry:
    """A registry endpoint, e.g. `http://127.0.0.1:5000` or an ECR registry's URL."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest for a tag or digest, or None when the registry has none.

        Raises:
            RegistryUnavailable: the registry cannot be reached or answers an error.
        """
        response = self._get(
            f"/v2/{repository}/manifests/{reference}", headers={"Accept": _ACCEPT}
        )
        if response.status_code == 404:
            return None
        self._check(response, f"manifest {repository}:{reference}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise RegistryUnavailable(
                f"{self.url} answered {repository}:{reference} with something that is "
                "not a manifest (a proxy's page?); check the registry endpoint"
            ) from exc
        digest = response.headers.get("Docker-Content-Digest", "")
        return Manifest(
            digest=digest, media_type=media_type or body.get("mediaType", ""), body=body
        )

    def config(self, repository: str, manifest: Manifest) -> dict[str, Any]:
        """The image configuration blob a single-platform manifest points at.

        Raises:
            RegistryUnavailable: the blob cannot be read.
        """
        digest = (manifest.body.get("config") or {}).get("digest")
        if not digest:
            raise RegistryUnavailable(f"manifest {manifest.digest} has no config blob")
        response = self._get(f"/v2/{repository}/blobs/{digest}")
        self._check(response, f"config blob {digest}")
        try:
            config: dict[str, Any] = json.loads(response.content)
        except ValueError as exc:
            raise RegistryUnavailable(
                f"{self.url} served no JSON for {digest}"
            ) from exc
        return config

    def labels(self, repository: str, manifest: Manifest) -> dict[str, str]:
        """The labels of the image a manifest describes."""
        config = self.config(repository, manifest)
        labels = (config.get("config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def _get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> requests.Response:
        auth = (
            (self.username, self.password) if self.username and self.password else None
        )
        try:
            return requests.get(
                f"{self.url.rstrip('/')}{path}",
                headers=headers,
                auth=auth,
                timeout=_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise RegistryUnavailable(
                f"cannot reach the registry at {self.url}: {exc.__class__.__name__}; "
                "check the endpoint (BASEIMAGE_REGISTRY_ENDPOINT) and the network"
            ) from exc

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise RegistryUnavailable(
                f"the registry at {self.url} refused to serve {what} "
                f"(HTTP {response.status_code}); the login token may have expired"
            )
        if response.status_code != 200:
            raise RegistryUnavailable(
                f"the registry at {self.url} answered HTTP {response.status_code} for "
                f"{what}"
            )
