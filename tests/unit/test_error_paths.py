"""Error paths that the real stack cannot produce on demand, with small fakes.

Docker streams and botocore errors are reproduced as the libraries deliver them, and
each must end in the project's error with a message that names cause and fix.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber

from baseimage import engine, publish, repo_settings
from baseimage.ecr import Ecr
from baseimage.engine import Auth
from baseimage.errors import (
    BuildFailed,
    CredentialsProblem,
    EngineUnavailable,
    PushFailed,
    RegistryUnavailable,
    RepositoryDrift,
    UsageError,
)
from baseimage.registry import Registry
from baseimage.repo_spec import RegistrySpec

ARN = "arn:aws:ecr:us-east-1:123456789012:repository/company/test"
REGISTRY = RegistrySpec(
    repository="company/test", region="us-east-1", account="123456789012"
)


class FakeApi:
    """Stands in for docker's low-level APIClient, replaying recorded streams."""

    def __init__(
        self,
        build: list[dict[str, Any]] | None = None,
        push: list[dict[str, Any]] | None = None,
    ) -> None:
        self._build = build or []
        self._push = push or []
        self.push_auth: dict[str, str] | None = None

    def build(self, **_: Any) -> Any:
        return iter(self._build)

    def push(self, repository: str, tag: str, **kwargs: Any) -> Any:
        self.push_auth = kwargs.get("auth_config")
        yield from self._push
        raise_after = [c for c in self._push if c.get("raise")]
        if raise_after:
            raise ConnectionError("connection reset by peer")


class FakeClient:
    def __init__(self, api: FakeApi) -> None:
        self.api = api


def test_build_error_in_stream_carries_the_log(tmp_path):
    api = FakeApi(
        build=[
            {"stream": "Step 1/3 : FROM base\n"},
            {"stream": "Step 2/3 : RUN pip install nosuchpkg\n"},
            {"stream": "ERROR: No matching distribution found for nosuchpkg\n"},
            {
                "errorDetail": {
                    "code": 1,
                    "message": "The command '/bin/sh -c pip install "
                    "nosuchpkg' returned a non-zero code: 1",
                },
                "error": "The command returned a non-zero code: 1",
            },
        ]
    )

    with pytest.raises(BuildFailed) as info:
        engine.build(FakeClient(api), tmp_path, "t:1", {}, lambda line: None)

    assert info.value.message == (
        "build failed: The command '/bin/sh -c pip install "
        "nosuchpkg' returned a non-zero code: 1"
    )
    assert info.value.log[-1] == "ERROR: No matching distribution found for nosuchpkg"


def test_build_without_an_image_id_is_a_failure(tmp_path):
    api = FakeApi(build=[{"stream": "Step 1/1 : FROM base\n"}])

    with pytest.raises(BuildFailed, match="without producing an image"):
        engine.build(FakeClient(api), tmp_path, "t:1", {}, lambda line: None)


def test_push_error_in_stream_is_a_push_failure():
    api = FakeApi(
        push=[
            {
                "status": "Pushing",
                "id": "abc",
                "progressDetail": {"current": 1, "total": 9},
            },
            {
                "errorDetail": {"message": "blob upload unknown"},
                "error": "blob upload unknown",
            },
        ]
    )

    with pytest.raises(PushFailed, match="push of r/x:1 failed: blob upload unknown"):
        engine.push(FakeClient(api), "r/x", "1", Auth("AWS", "s3cret"), lambda c: None)


def test_push_that_ends_without_a_digest_is_not_published():
    api = FakeApi(push=[{"status": "Pushed", "id": "abc"}])

    with pytest.raises(PushFailed, match="ended without a digest"):
        engine.push(FakeClient(api), "r/x", "1", Auth("AWS", "s3cret"), lambda c: None)


def test_push_returns_the_digest_and_passes_credentials_per_call():
    api = FakeApi(
        push=[
            {
                "status": "1: digest: sha256:abc size: 1",
                "aux": {"Tag": "1", "Digest": "sha256:abc", "Size": 1},
            }
        ]
    )

    digest = engine.push(
        FakeClient(api), "r/x", "1", Auth("AWS", "s3cret"), lambda c: None
    )

    assert digest == "sha256:abc"
    assert api.push_auth == {"username": "AWS", "password": "s3cret"}


def test_auth_never_shows_its_password():
    assert "s3cret" not in repr(Auth("AWS", "s3cret"))


def test_no_engine_names_the_socket_and_the_fix(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")

    with pytest.raises(EngineUnavailable) as info:
        engine.connect()

    assert info.value.message == (
        "no Docker engine answers at unix:///nonexistent/docker.sock; start one "
        "(`make stack` starts the local one) or point DOCKER_HOST at a running engine"
    )


def stubbed_ecr() -> tuple[Ecr, Stubber]:
    client = boto3.client(
        "ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return Ecr(client, REGISTRY), Stubber(client)


def test_expired_credentials_say_to_refresh():
    ecr, stub = stubbed_ecr()
    stub.add_client_error(
        "get_authorization_token",
        service_error_code="ExpiredTokenException",
        service_message="The security token included in the request is expired",
    )

    with stub, pytest.raises(CredentialsProblem) as info:
        ecr.login()

    assert info.value.message.startswith(
        "AWS refused the credentials for get an authorization token "
        "(ExpiredTokenException: The security token included in the request is expired)"
        "; refresh them"
    )


def test_missing_credentials_are_an_environment_problem():
    client = boto3.client("ecr", region_name="us-east-1")
    ecr = Ecr(client, REGISTRY)

    def no_creds(*_: Any, **__: Any) -> Any:
        raise botocore.exceptions.NoCredentialsError()

    client.describe_repositories = no_creds  # type: ignore[method-assign]

    with pytest.raises(CredentialsProblem, match="no AWS credentials found"):
        ecr.describe_repository()


def test_unreachable_ecr_api_is_named():
    ecr, _ = stubbed_ecr()

    def unreachable(*_: Any, **__: Any) -> Any:
        raise botocore.exceptions.EndpointConnectionError(
            endpoint_url="http://127.0.0.1:9"
        )

    ecr.client.describe_images = unreachable

    with pytest.raises(RegistryUnavailable, match="cannot reach the ECR API"):
        ecr.image("1.0.0-python3.11")


def test_drifted_repository_is_refused_without_fix():
    ecr, stub = stubbed_ecr()
    stub.add_response(
        "describe_repositories",
        {
            "repositories": [
                {
                    "repositoryName": "company/test",
                    "repositoryUri": "u",
                    "repositoryArn": ARN,
                    "imageTagMutability": "MUTABLE",
                    "imageScanningConfiguration": {"scanOnPush": False},
                }
            ]
        },
    )
    stub.add_response(
        "get_registry_scanning_configuration",
        {"scanningConfiguration": {"scanType": "BASIC", "rules": []}},
    )
    stub.add_client_error(
        "get_lifecycle_policy", service_error_code="LifecyclePolicyNotFoundException"
    )
    stub.add_client_error(
        "get_repository_policy", service_error_code="RepositoryPolicyNotFoundException"
    )
    stub.add_response("list_tags_for_resource", {"tags": []})

    with stub, pytest.raises(RepositoryDrift) as info:
        repo_settings.ensure(ecr, fix=False)

    assert info.value.message == (
        "ECR repository company/test in 123456789012/us-east-1 has tag mutability "
        "MUTABLE (want IMMUTABLE); scan on push off (want on); effective scanning "
        "basic scanning, manual (repository setting) (want scans on push). Publishing "
        "there would break the guarantees of a base image; run `baseimage repo apply` "
        "or publish with --fix-repository"
    )


def test_login_uses_the_endpoint_override_and_decodes_the_token():
    ecr, stub = stubbed_ecr()
    stub.add_response(
        "get_authorization_token",
        {
            "authorizationData": [
                {
                    "authorizationToken": "QVdTOnMzY3JldA==",  # AWS:s3cret
                    "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
                }
            ]
        },
    )

    with stub:
        login = ecr.login("http://127.0.0.1:5000")

    assert login.push_host == "127.0.0.1:5000"
    assert login.registry_url == "http://127.0.0.1:5000"
    assert login.auth.username == "AWS" and login.auth.password == "s3cret"


def test_the_token_never_goes_over_plain_http_off_this_machine():
    ecr, stub = stubbed_ecr()
    stub.add_response(
        "get_authorization_token",
        {
            "authorizationData": [
                {
                    "authorizationToken": "QVdTOnMzY3JldA==",
                    "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
                }
            ]
        },
    )

    with stub, pytest.raises(UsageError) as info:
        ecr.login("http://registry.example.com:5000")

    assert "plain HTTP and not on this machine" in info.value.message


def test_botocore_text_is_never_echoed():
    ecr, _ = stubbed_ecr()

    def leaky(*_: Any, **__: Any) -> Any:
        raise botocore.exceptions.BotoCoreError(
            msg="Invalid header value b'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE'"
        )

    ecr.client.describe_images = leaky

    with pytest.raises(RegistryUnavailable) as info:
        ecr.image("1.0.0-python3.11")

    assert "AKIA" not in info.value.message
    assert "(BotoCoreError)" in info.value.message


def test_a_registry_page_that_is_not_a_manifest(monkeypatch):
    class Page:
        status_code = 200
        headers: ClassVar[dict[str, str]] = {"Content-Type": "text/html"}
        content = b"<html>please log in</html>"

    monkeypatch.setattr("requests.get", lambda *a, **k: Page())

    with pytest.raises(RegistryUnavailable, match="not a manifest"):
        Registry("http://127.0.0.1:9").manifest("r/x", "1")


@pytest.mark.parametrize(
    ("setting", "region", "expected"),
    [
        pytest.param(None, "us-east-1", None, id="unset"),
        pytest.param(
            "http://127.0.0.1:5000",
            "eu-west-1",
            "http://127.0.0.1:5000",
            id="one-for-all",
        ),
        pytest.param(
            "us-east-1=http://127.0.0.1:5000,eu-west-1=http://127.0.0.1:5002",
            "eu-west-1",
            "http://127.0.0.1:5002",
            id="per-region",
        ),
    ],
)
def test_registry_endpoint_setting(setting, region, expected):
    assert publish.endpoint_for(setting, region) == expected


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param("nonsense", "is not a URL like https://host[:port]", id="no-url"),
        pytest.param(
            "us-east-1=http://127.0.0.1:5000",
            "names no endpoint for eu-west-1",
            id="region-missing",
        ),
    ],
)
def test_bad_registry_endpoint_settings(setting, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        publish.endpoint_for(setting, "eu-west-1")
