"""Amazon ECR through boto3: repository settings, login, image lookups.

boto3 finds the endpoint the standard way (AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL or
the config file), so the local stack's ECR API needs no code path of its own. Every
botocore error is translated here; nothing above this module sees a ClientError.
"""

from __future__ import annotations

import base64
import ipaddress
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
    UsageError,
)
from baseimage.registry import Registry
from baseimage.repo_spec import Destination, RegistrySpec

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
    """A function that makes an ECR client for a region, with the standard settings.

    Raises:
        CredentialsProblem: the AWS profile or configuration cannot be loaded.
    """
    try:
        session = boto3.session.Session()
    except botocore.exceptions.BotoCoreError as exc:
        raise CredentialsProblem(
            f"the AWS configuration cannot be loaded ({type(exc).__name__}); check "
            "AWS_PROFILE and the config files"
        ) from exc

    def make(region: str) -> Any:
        try:
            return session.client("ecr", region_name=region)
        except botocore.exceptions.BotoCoreError as exc:
            raise CredentialsProblem(
                f"no ECR client for {region} ({type(exc).__name__}); check AWS_PROFILE "
                "and the config files"
            ) from exc

    return make


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class Login:
    """Where to push and read image data, with the credentials to do it."""

    registry_url: str  # for HTTP reads, e.g. https://<account>.dkr.ecr.<region>...
    push_host: str  # host[:port] as the Docker engine names it
    auth: Auth

    def registry(self) -> Registry:
        """A client for the image data behind this login."""
        return Registry(self.registry_url, self.auth.username, self.auth.password)


@dataclass(frozen=True)
class EcrImage:
    """One image as ECR describes it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime | None
    size: int | None


class Ecr:
    """One ECR repository in one account and region."""

    def __init__(
        self, client: Any, spec: RegistrySpec, destination: Destination | None = None
    ) -> None:
        self.client = client
        self.spec = spec
        self.destination = destination or spec.primary

    @property
    def destination_name(self) -> str:
        return str(self.destination)

    @property
    def _ids(self) -> dict[str, str]:
        return {
            "registryId": self.destination.account,
            "repositoryName": self.spec.repository,
        }

    @contextmanager
    def calling(self, action: str) -> Iterator[None]:
        """Translate botocore errors raised inside into the project's errors."""
        try:
            yield
        except botocore.exceptions.NoCredentialsError as exc:
            raise CredentialsProblem(
                f"no AWS credentials found for {action}; configure a profile, "
                "environment variables or an instance role"
            ) from exc
        except (
            botocore.exceptions.PartialCredentialsError,
            botocore.exceptions.CredentialRetrievalError,
            botocore.exceptions.ProfileNotFound,
        ) as exc:
            raise CredentialsProblem(
                f"the AWS credentials for {action} are incomplete or cannot be loaded "
                f"({type(exc).__name__}); check AWS_PROFILE and the credential settings"
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
            # Only the class name: botocore's text can quote request headers, which
            # carry the access key id and a signature.
            raise RegistryUnavailable(
                f"ECR {action} failed ({type(exc).__name__}); check the region, the "
                "endpoint settings and the network"
            ) from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise RegistryUnavailable(
                f"the ECR API answered {action} with something that is not ECR's "
                "answer; check AWS_ENDPOINT_URL_ECR points at ECR"
            ) from exc

    def _missing(self, exc: Exception, *codes: str) -> bool:
        return isinstance(exc, botocore.exceptions.ClientError) and (
            exc.response.get("Error", {}).get("Code") in codes
        )

    def describe_repository(self) -> dict[str, Any] | None:
        """The repository as ECR describes it, or None when it does not exist."""
        name = self.spec.repository
        with self.calling(f"describe repository {name}"):
            try:
                found = self.client.describe_repositories(
                    registryId=self.destination.account, repositoryNames=[name]
                )
            except botocore.exceptions.ClientError as exc:
                if self._missing(exc, "RepositoryNotFoundException"):
                    return None
                raise
        repository: dict[str, Any] = found["repositories"][0]
        return repository

    def create_repository(self) -> None:
        """Create the repository with the spec's settings."""
        spec = self.spec
        encryption: dict[str, str] = {"encryptionType": spec.encryption}
        if spec.kms_key:
            encryption["kmsKey"] = spec.kms_key
        extra: dict[str, Any] = {}
        if spec.mutable_tags:
            extra["imageTagMutabilityExclusionFilters"] = self._filters()
        if spec.tags:
            extra["tags"] = [{"Key": k, "Value": v} for k, v in spec.tags.items()]
        with self.calling(f"create repository {spec.repository}"):
            self.client.create_repository(
                **self._ids,
                imageTagMutability=spec.tag_mutability,
                imageScanningConfiguration={"scanOnPush": spec.scan_on_push},
                encryptionConfiguration=encryption,
                **extra,
            )
        log.info(
            "Created ECR repository %s in %s (%s tags, scan on push %s)",
            spec.repository,
            self.destination,
            spec.tag_mutability.lower(),
            "on" if spec.scan_on_push else "off",
        )

    def _filters(self) -> list[dict[str, str]]:
        return [{"filterType": "WILDCARD", "filter": f} for f in self.spec.mutable_tags]

    def put_tag_mutability(self) -> None:
        extra: dict[str, Any] = {}
        if self.spec.mutable_tags:
            extra["imageTagMutabilityExclusionFilters"] = self._filters()
        with self.calling("set tag mutability"):
            self.client.put_image_tag_mutability(
                **self._ids, imageTagMutability=self.spec.tag_mutability, **extra
            )

    def put_scan_on_push(self, on: bool) -> None:
        with self.calling("set scan on push"):
            self.client.put_image_scanning_configuration(
                **self._ids, imageScanningConfiguration={"scanOnPush": on}
            )

    def lifecycle_policy(self) -> str | None:
        with self.calling("get the lifecycle policy"):
            try:
                text: str = self.client.get_lifecycle_policy(**self._ids)[
                    "lifecyclePolicyText"
                ]
            except botocore.exceptions.ClientError as exc:
                if self._missing(exc, "LifecyclePolicyNotFoundException"):
                    return None
                raise
        return text

    def put_lifecycle_policy(self, text: str | None) -> None:
        """Set the lifecycle policy, or delete it when `text` is None."""
        with self.calling("set the lifecycle policy"):
            if text is None:
                self.client.delete_lifecycle_policy(**self._ids)
            else:
                self.client.put_lifecycle_policy(**self._ids, lifecyclePolicyText=text)

    def repository_policy(self) -> str | None:
        with self.calling("get the repository policy"):
            try:
                text: str = self.client.get_repository_policy(**self._ids)["policyText"]
            except botocore.exceptions.ClientError as exc:
                if self._missing(exc, "RepositoryPolicyNotFoundException"):
                    return None
                raise
        return text

    def put_repository_policy(self, text: str) -> None:
        with self.calling("set the repository policy"):
            self.client.set_repository_policy(**self._ids, policyText=text)

    def tags(self, arn: str) -> dict[str, str]:
        with self.calling("list the repository's tags"):
            found = self.client.list_tags_for_resource(resourceArn=arn).get("tags", [])
        return {t["Key"]: t["Value"] for t in found}

    def put_tags(self, tags: dict[str, str]) -> None:
        found = self.describe_repository()
        if found is None:
            return
        with self.calling("tag the repository"):
            self.client.tag_resource(
                resourceArn=found["repositoryArn"],
                tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )

    def registry_scanning(self) -> dict[str, Any]:
        """The registry-level scanning configuration (scan type and rules)."""
        with self.calling("get the registry scanning configuration"):
            config: dict[str, Any] = (
                self.client.get_registry_scanning_configuration().get(
                    "scanningConfiguration", {}
                )
            )
        return config

    def login(self, endpoint_override: str | None = None) -> Login:
        """Get a registry login from ECR; the token stays in memory only.

        `endpoint_override` (e.g. `http://127.0.0.1:5000`) sends image data to another
        address, as for a registry reached through a proxy or the local stack.

        Raises:
            CredentialsProblem, RegistryUnavailable: no token could be had.
        """
        with self.calling("get an authorization token"):
            data = self.client.get_authorization_token(
                registryIds=[self.destination.account]
            )
        entry = data["authorizationData"][0]
        username, _, password = (
            base64.b64decode(entry["authorizationToken"]).decode().partition(":")
        )
        url = endpoint_override or entry["proxyEndpoint"]
        if "://" not in url:
            url = f"https://{url}"
        host = urlparse(url).hostname or ""
        if url.startswith("http://") and not _loopback(host):
            raise UsageError(
                f"the registry endpoint {url} is plain HTTP and not on this machine; "
                "the ECR token would cross the network in clear text. Use https://"
            )
        return Login(
            registry_url=url.rstrip("/"),
            push_host=urlparse(url).netloc,
            auth=Auth(username=username, password=password),
        )

    def image(self, tag: str) -> EcrImage | None:
        """The image a tag points at, or None when the tag does not exist."""
        name = self.spec.repository
        with self.calling(f"describe image {name}:{tag}"):
            try:
                details = self.client.describe_images(
                    registryId=self.destination.account,
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

    def scan_findings_page(
        self, digest: str, token: str | None = None, max_results: int = 1000
    ) -> dict[str, Any] | None:
        """One page of an image's scan findings, or None when it has no scan yet."""
        extra: dict[str, str] = {"nextToken": token} if token else {}
        with self.calling("read the image scan findings"):
            try:
                page: dict[str, Any] = self.client.describe_image_scan_findings(
                    **self._ids,
                    imageId={"imageDigest": digest},
                    maxResults=max_results,
                    **extra,
                )
            except botocore.exceptions.ClientError as exc:
                if self._missing(exc, "ScanNotFoundException"):
                    return None
                raise
        return page

    def start_scan(self, digest: str) -> None:
        """Start a scan of an image; one already run today counts as started."""
        with self.calling("start an image scan"):
            try:
                self.client.start_image_scan(
                    **self._ids, imageId={"imageDigest": digest}
                )
            except botocore.exceptions.ClientError as exc:
                # Basic scanning allows one scan of an image a day.
                if not self._missing(exc, "LimitExceededException"):
                    raise

    def images(self) -> list[dict[str, Any]]:
        """Every image in the repository as ECR describes it (all pages)."""
        name = self.spec.repository
        found: list[dict[str, Any]] = []
        with self.calling(f"list the images of {name}"):
            pages = self.client.get_paginator("describe_images").paginate(**self._ids)
            for page in pages:
                found.extend(page.get("imageDetails") or [])
        return found

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
