"""The project's errors: one root, one subclass per condition, one exit code each.

The command line catches `BaseImageError` only; anything else is a bug and keeps its
traceback. Exit codes are documented in README ("Exit codes").
"""

from __future__ import annotations

from typing import Any

EXIT_SPEC = 2
EXIT_BUILD = 3
EXIT_TEST = 4
EXIT_REFUSED = 5
EXIT_ENVIRONMENT = 6
EXIT_PUSH = 7


class BaseImageError(Exception):
    """Root of every error a user can cause or fix."""

    exit_code = 1

    def __init__(self, message: str, *, log: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log = log or []
        # What was done before the failure (e.g. a publish result), for reports.
        self.partial: object | None = None
        # Extra fields for the --json error document (e.g. the drift found).
        self.details: dict[str, Any] = {}


class SpecInvalid(BaseImageError):
    """Raised when an image spec has one or more problems; each names file and line."""

    exit_code = EXIT_SPEC

    def __init__(self, problems: list[str]) -> None:
        count = len(problems)
        head = problems[0] if count == 1 else f"{count} problems in the image spec"
        super().__init__(head)
        self.problems = problems


class UsageError(BaseImageError):
    """Raised when options name something that does not exist or is malformed."""

    exit_code = EXIT_SPEC


class BuildFailed(BaseImageError):
    """Raised when the Docker build reports an error in its stream."""

    exit_code = EXIT_BUILD


class ArtifactFailed(BaseImageError):
    """Raised when a Maven artifact cannot be fetched or its checksum does not match."""

    exit_code = EXIT_BUILD


class ImageTestFailed(BaseImageError):
    """Raised when an image fails the Lambda smoke test or a contract check."""

    exit_code = EXIT_TEST


class PublishRefused(BaseImageError):
    """Raised when publishing would break a rule (immutability, repository settings)."""

    exit_code = EXIT_REFUSED


class TagAlreadyPublished(PublishRefused):
    """Raised when the version tag already exists with different content."""


class RepositoryDrift(PublishRefused):
    """Raised when the ECR repository's settings differ from the spec's."""


class EnvironmentProblem(BaseImageError):
    """Raised when something outside the spec is missing or broken."""

    exit_code = EXIT_ENVIRONMENT


class EngineUnavailable(EnvironmentProblem):
    """Raised when no Docker engine answers."""


class CredentialsProblem(EnvironmentProblem):
    """Raised when AWS credentials are missing, expired or refused."""


class RegistryUnavailable(EnvironmentProblem):
    """Raised when the registry or the ECR API cannot be reached or answers wrongly."""


class PushFailed(BaseImageError):
    """Raised when a push stream reports an error or ends without a digest."""

    exit_code = EXIT_PUSH


class ScanGateFailed(PublishRefused):
    """Raised when a pushed image's scan finds what the spec forbids, or never ends."""


class PublishIncomplete(BaseImageError):
    """Raised when some destinations were published and others failed."""

    def __init__(self, message: str, first: BaseImageError) -> None:
        super().__init__(message, log=first.log)
        self.exit_code = first.exit_code
