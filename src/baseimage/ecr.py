"""Amazon ECR through boto3: repository settings, login, image lookups.

boto3 finds the endpoint the standard way (AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL or
the config file), so the local stack's ECR API needs no code path of its own. Every
botocore error is translated here; nothing above this module sees a ClientError.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.exceptions

from baseimage.engine import Auth
from baseimage.errors import (
    CredentialsProblem,
    RegistryUnavailable,
    RepositoryDrift,
)
from baseimage.repo_spec import RegistrySpec

log = logging.getLogger(__name__)

ClientFactory = Callable[[str], Any]

_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
        "RequestExpired",
    }
)


def client_factory() -> ClientFactory:
    """A function that makes an ECR client for a region, with the standard settings."""
    session = boto3.session.Session()
    return lambda region: session.client("ecr", region_name=region)


@dataclass(frozen=True)
class Login:
    """Where to push and read image data, with the credentials to do it."""

    registry_url: str  # for HTTP reads, e.g. https://<account>.dkr.ecr.<region>...
    push_host: str  # host[:port] as the Docker engine names it
    auth: Auth


@dataclass(frozen=True)
class EcrImage:
    """One image as ECR describes it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime | None
    size: int | None


@dataclass(frozen=True)
class RepositoryState:
    """What publish found, and did, about the repository's settings."""

    uri: str
    created: bool
    fixed: tuple[str, ...] = ()


class Ecr:
    """One ECR repository in one account and region."""

    def __init__(self, client: Any, spec: RegistrySpec) -> None:
        self.client = client
        self.spec = spec

    @contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        try:
            yield
        except botocore.exceptions.NoCredentialsError as exc:
            raise CredentialsProblem(
                f"no AWS credentials found for {action}; configure a profile, "
                "environment variables or an instance role"
            ) from exc
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            if code in _CREDENTIAL_CODES:
                raise CredentialsProblem(
                    f"AWS refused the credentials for {action} ({code}: {message}); "
                    "refresh them (e.g. `aws sso login`) and try again"
                ) from exc
            raise RegistryUnavailable(
                f"ECR {action} failed: {code}: {message}"
            ) from exc
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
        ) as exc:
            raise RegistryUnavailable(
                f"cannot reach the ECR API for {action}: {exc}; check the region, "
                "AWS_ENDPOINT_URL_ECR and the network"
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise RegistryUnavailable(f"ECR {action} failed: {exc}") from exc

    def ensure_repository(self, fix: bool = False) -> RepositoryState:
        """Create the repository (immutable tags, scan on push) or check its settings.

        Raises:
            RepositoryDrift: it exists with other settings and `fix` is False.
            CredentialsProblem, RegistryUnavailable: ECR cannot be used.
        """
        name = self.spec.repository
        with self._calling(f"describe repository {name}"):
            try:
                found = self.client.describe_repositories(
                    registryId=self.spec.account, repositoryNames=[name]
                )["repositories"][0]
            except self.client.exceptions.RepositoryNotFoundException:
                found = None
        if found is None:
            with self._calling(f"create repository {name}"):
                created = self.client.create_repository(
                    registryId=self.spec.account,
                    repositoryName=name,
                    imageTagMutability="IMMUTABLE",
                    imageScanningConfiguration={"scanOnPush": True},
                )["repository"]
            log.info("Created ECR repository %s (immutable tags, scan on push)", name)
            return RepositoryState(uri=created["repositoryUri"], created=True)

        drift = self.drift(found)
        if drift and not fix:
            raise RepositoryDrift(
                f"ECR repository {name} has {'; '.join(drift)}. Publishing there would "
                "break the guarantees of a base image; rerun with --fix-repository to "
                "apply the spec's settings"
            )
        if drift:
            self._fix(found)
            log.warning("Fixed ECR repository %s: %s", name, "; ".join(drift))
        return RepositoryState(
            uri=found["repositoryUri"], created=False, fixed=tuple(drift)
        )

    @staticmethod
    def drift(repository: dict[str, Any]) -> list[str]:
        """The settings of a described repository that differ from the required ones."""
        found = []
        mutability = repository.get("imageTagMutability", "MUTABLE")
        if mutability != "IMMUTABLE":
            found.append(f"tag mutability {mutability} (want IMMUTABLE)")
        scan = (repository.get("imageScanningConfiguration") or {}).get(
            "scanOnPush", False
        )
        if not scan:
            found.append("scan on push off (want on)")
        return found

    def _fix(self, repository: dict[str, Any]) -> None:
        name = self.spec.repository
        with self._calling(f"update repository {name}"):
            if repository.get("imageTagMutability") != "IMMUTABLE":
                self.client.put_image_tag_mutability(
                    registryId=self.spec.account,
                    repositoryName=name,
                    imageTagMutability="IMMUTABLE",
                )
            if not (repository.get("imageScanningConfiguration") or {}).get(
                "scanOnPush"
            ):
                self.client.put_image_scanning_configuration(
                    registryId=self.spec.account,
                    repositoryName=name,
                    imageScanningConfiguration={"scanOnPush": True},
                )

    def login(self, endpoint_override: str | None = None) -> Login:
        """Get a registry login from ECR; the token stays in memory only.

        `endpoint_override` (e.g. `http://127.0.0.1:5000`) sends image data to another
        address, as for a registry reached through a proxy or the local stack.

        Raises:
            CredentialsProblem, RegistryUnavailable: no token could be had.
        """
        with self._calling("get an authorization token"):
            data = self.client.get_authorization_token(registryIds=[self.spec.account])
        entry = data["authorizationData"][0]
        username, _, password = (
            base64.b64decode(entry["authorizationToken"]).decode().partition(":")
        )
        url = endpoint_override or entry["proxyEndpoint"]
        if "://" not in url:
            url = f"https://{url}"
        return Login(
            registry_url=url.rstrip("/"),
            push_host=urlparse(url).netloc,
            auth=Auth(username=username, password=password),
        )

    def image(self, tag: str) -> EcrImage | None:
        """The image a tag points at, or None when the tag does not exist."""
        name = self.spec.repository
        with self._calling(f"describe image {name}:{tag}"):
            try:
                details = self.client.describe_images(
                    registryId=self.spec.account,
                    repositoryName=name,
                    imageIds=[{"imageTag": tag}],
                )["imageDetails"]
            except self.client.exceptions.ImageNotFoundException:
                return None
        if not details:
            return None
        item = details[0]
        return EcrImage(
            digest=item["imageDigest"],
            tags=tuple(item.get("imageTags") or ()),
            pushed_at=item.get("imagePushedAt"),
            size=item.get("imageSizeInBytes"),
        )

    def wait_for(self, tag: str, digest: str, timeout: float = 60.0) -> EcrImage:
        """Wait until ECR lists `tag` at `digest` (its view of a push can lag a little).

        Raises:
            RegistryUnavailable: ECR and the registry disagree after the timeout.
        """
        deadline = time.monotonic() + timeout
        seen: EcrImage | None = None
        while True:
            seen = self.image(tag)
            if seen is not None and seen.digest == digest:
                return seen
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        found = f"at {seen.digest}" if seen else "nowhere"
        raise RegistryUnavailable(
            f"the registry accepted {self.spec.repository}:{tag} at {digest} but ECR "
            f"lists it {found} after {timeout:.0f}s; check the registry and ECR agree "
            "before using the image"
        )
