"""The Lambda runtimes baseimage knows, and the official base image of each."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from baseimage.errors import UsageError

UPSTREAM_PREFIX = "public.ecr.aws/lambda"


@dataclass(frozen=True)
class Runtime:
    """One Lambda runtime: its id, language family and official base image."""

    id: str
    family: str  # "python" or "java"
    version: str  # language version, e.g. "3.11" or "17"
    os: str  # the operating system of the official image

    @property
    def default_base(self) -> str:
        """The official AWS base image reference for this runtime."""
        return f"{UPSTREAM_PREFIX}/{self.family}:{self.version}"


KNOWN: dict[str, Runtime] = {
    r.id: r
    for r in (
        Runtime("python3.10", "python", "3.10", "Amazon Linux 2"),
        Runtime("python3.11", "python", "3.11", "Amazon Linux 2"),
        Runtime("python3.12", "python", "3.12", "Amazon Linux 2023"),
        Runtime("python3.13", "python", "3.13", "Amazon Linux 2023"),
        Runtime("java11", "java", "11", "Amazon Linux 2"),
        Runtime("java17", "java", "17", "Amazon Linux 2"),
        Runtime("java21", "java", "21", "Amazon Linux 2023"),
    )
}


def known_ids() -> str:
    """The known runtime ids as one comma-separated string, for messages."""
    return ", ".join(KNOWN)


def get(runtime_id: str) -> Runtime:
    """Look a runtime up by id.

    Raises:
        UsageError: the runtime is not one baseimage knows.
    """
    try:
        return KNOWN[runtime_id]
    except KeyError:
        hint = difflib.get_close_matches(runtime_id, list(KNOWN), n=1)
        guess = f"did you mean {hint[0]!r}? " if hint else ""
        raise UsageError(
            f"unknown runtime {runtime_id!r}; {guess}known runtimes: {known_ids()}"
        ) from None
