"""The Lambda image contract, checked on a built image without running it.

Two sources: the engine's view of the image (`docker inspect` and its history), and
its file system, streamed from `docker export` of a created (never started) container
and read on the host. Nothing is run inside the image, so the checks work on any
distribution, with or without a shell or `find`.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import docker.errors
import requests

from baseimage.errors import EngineUnavailable, EnvironmentProblem
from baseimage.spec import ImageSpec

log = logging.getLogger(__name__)

TASK_ROOT = "/var/task"
JAR_FOLDER = "/var/task/lib"
LAMBDA_ENTRYPOINT = ["/lambda-entrypoint.sh"]
# Lambda's quota is "10 GB" of uncompressed image; the decimal reading is the
# stricter one, so it is the one enforced.
LAMBDA_SIZE_LIMIT = 10 * 1000**3
DEFAULT_SIZE_WARNING = 1024**3
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"
# Lambda's architecture names and the engine's.
ENGINE_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
# Variables the Lambda base defines; a company image must leave them as they are.
BASE_ENV = ("LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "PATH", "LD_LIBRARY_PATH")
_LISTED = 8  # paths named in one message

Status = Literal["pass", "fail", "warn", "skip"]
Kind = Literal["file", "dir", "symlink", "hardlink", "other"]


@dataclass(frozen=True)
class Check:
    """One named check and its outcome; `detail` says why in a sentence."""

    name: str
    status: Status
    detail: str = ""


# --- credentials ----------------------------------------------------------------------

_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    (
        "an AWS secret access key",
        re.compile(
            r"(?i:aws_?secret_?access_?key)\s*[=:]\s*\S+"
            # 40 characters of base64 mixing cases and digits, the shape of a secret
            # key; hex digests (lower case only) do not match.
            r"|(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])"
            r"(?=[A-Za-z0-9/+]*[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
    ),
    ("a private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    (
        "a password or secret assignment",
        re.compile(
            r"(?i)\b[a-z_]*(?:password|passwd|secret|api[_-]?key|token)\s*[=:]\s*"
            r"[^\s\"'$]{4,}"
        ),
    ),
    ("credentials in a URL", re.compile(r"://[^/\s:@]+:[^/\s@]+@")),
    (
        "an auth token",
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
            r"|xox[abprs]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20,}"
            r"|npm_[A-Za-z0-9]{36})"
            r"|(?i:\b(?:bearer|basic)\s+[A-Za-z0-9._~+/-]{16,}=*)"
            r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."
        ),
    ),
)
_SECRET_ENV_NAME = re.compile(
    r"^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)$|PASSWORD|PASSWD|SECRET"
    r"|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL",
    re.IGNORECASE,
)


def credential_findings(
    attrs: dict[str, Any], history: list[dict[str, Any]]
) -> list[str]:
    """Where the image's env, labels or history look like they hold a credential.

    Each finding names the place and the kind of secret, never the value.
    """
    config = attrs.get("Config") or {}
    found: list[str] = []
    places: list[tuple[str, str]] = []
    for entry in config.get("Env") or []:
        name, _, value = str(entry).partition("=")
        if value and _SECRET_ENV_NAME.search(name):
            found.append(f"env {name} is named like a credential and has a value")
        else:
            places.append((f"env {name}", str(entry)))
    for key, value in sorted((config.get("Labels") or {}).items()):
        places.append((f"label {key}", f"{key}={value}"))
    for i, layer in enumerate(history):
        text = f"{layer.get('CreatedBy') or ''} {layer.get('Comment') or ''}"
        places.append((f"history step {len(history) - i}", text))

    for where, text in places:
        for kind, pattern in _SECRET_PATTERNS:
            if pattern.search(text):
                found.append(f"{where} holds what looks like {kind}")
                break
    return found


# --- the image configuration ----------------------------------------------------------


def config_checks(
    attrs: dict[str, Any],
    base: dict[str, Any] | None,
    spec: ImageSpec,
    *,
    architecture: str = "x86_64",
    size_warning_bytes: int = DEFAULT_SIZE_WARNING,
) -> list[Check]:
    """Checks on `docker inspect` output, compared with the base image where it helps.

    Args:
        attrs: The built image's inspect document.
        base: The base image's inspect document, or None when it is not available
            locally (the Lambda defaults are the reference then).
        spec: The spec the image was built from.
        architecture: The function architecture, `x86_64` or `arm64`.
        size_warning_bytes: Above this size the image passes with a warning.
    """
    config = attrs.get("Config") or {}
    base_config = (base or {}).get("Config") or {}
    env = _env_map(config.get("Env"))
    base_env = _env_map(base_config.get("Env"))
    reference = "the base image" if base else "the Lambda default"
    checks: list[Check] = []

    wanted_entrypoint = base_config.get("Entrypoint") if base else LAMBDA_ENTRYPOINT
    entrypoint = config.get("Entrypoint")
    if entrypoint == wanted_entrypoint:
        checks.append(Check("entrypoint", "pass", f"{entrypoint}"))
    else:
        checks.append(
            Check(
                "entrypoint",
                "fail",
                f"ENTRYPOINT is {entrypoint!r}, {reference} has {wanted_entrypoint!r}; "
                "keep the Lambda entrypoint and set the handler with CMD",
            )
        )

    wanted_workdir = base_config.get("WorkingDir") if base else TASK_ROOT
    checks.append(
        _compare(
            "working directory", config.get("WorkingDir"), wanted_workdir, reference
        )
    )
    checks.append(
        _compare("LAMBDA_TASK_ROOT", env.get("LAMBDA_TASK_ROOT"), TASK_ROOT, "Lambda")
    )

    changed = [
        name
        for name in BASE_ENV
        if name in base_env and env.get(name) != base_env[name]
    ]
    if base:
        checks.append(
            Check(
                "base environment",
                "fail" if changed else "pass",
                f"changed from the base image: {', '.join(changed)}"
                if changed
                else f"{', '.join(n for n in BASE_ENV if n in base_env)} as the base",
            )
        )

    wrong = [
        f"{name} is {env[name]!r}, the spec says {value!r}"
        if name in env
        else f"{name} is missing"
        for name, value in sorted(spec.env.items())
        if env.get(name) != value
    ]
    checks.append(
        Check(
            "spec environment",
            "fail" if wrong else "pass",
            "; ".join(wrong) or f"{len(spec.env)} variables as in the spec",
        )
    )

    want_arch = ENGINE_ARCH.get(architecture, architecture)
    arch = attrs.get("Architecture")
    if arch == want_arch:
        checks.append(Check("architecture", "pass", f"{arch}"))
    else:
        detail = f"image is {arch}; a {architecture} function needs {want_arch}"
        checks.append(Check("architecture", "fail", detail))

    size = int(attrs.get("Size") or 0)
    if size >= LAMBDA_SIZE_LIMIT:
        size_check = Check(
            "image size",
            "fail",
            f"{_gib(size)} is over Lambda's 10 GB limit for container images",
        )
    elif size > size_warning_bytes:
        size_check = Check(
            "image size",
            "warn",
            f"{_gib(size)} is over the {_gib(size_warning_bytes)} budget "
            "(Lambda's limit is 10 GB); large images start slower",
        )
    else:
        size_check = Check("image size", "pass", f"{_gib(size)}")
    checks.append(size_check)
    return checks


def _compare(name: str, got: Any, wanted: Any, reference: str) -> Check:
    if got == wanted:
        return Check(name, "pass", f"{got}")
    return Check(name, "fail", f"is {got!r}, {reference} has {wanted!r}")


def _env_map(entries: Iterable[str] | None) -> dict[str, str]:
    pairs = (str(e).partition("=") for e in entries or [])
    return {name: value for name, _, value in pairs}


def _gib(size: int) -> str:
    return (
        f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.0f} MiB"
    )


# --- the file system ------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One path of the image's file system, as the export's tar header has it."""

    path: str
    kind: Kind
    mode: int
    target: str = ""


@dataclass
class FileTree:
    """Every path of an image, plus the bytes of the jars under /var/task/lib."""

    entries: dict[str, Entry] = field(default_factory=dict)
    jars: dict[str, bytes] = field(default_factory=dict)


def read_tree(fileobj: IO[bytes]) -> FileTree:
    """Read a tar stream (as `docker export` writes it) into a FileTree."""
    tree = FileTree()
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            path = posixpath.normpath("/" + member.name)
            entry = Entry(
                path, _kind(member), stat.S_IMODE(member.mode), member.linkname
            )
            tree.entries[path] = entry
            is_jar = posixpath.dirname(path) == JAR_FOLDER and path.endswith(".jar")
            if is_jar and member.isfile():
                data = tar.extractfile(member)
                if data is not None:
                    tree.jars[path] = data.read()
    return tree


def _kind(member: tarfile.TarInfo) -> Kind:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "other"


def tree_checks(tree: FileTree, root: str = TASK_ROOT) -> list[Check]:
    """Checks that the Lambda user can read `root` and nobody can write the image.

    The Lambda user is neither owner nor group of the image's files, so the "other"
    permission bits decide: files need o+r, folders o+rx, and every folder above
    `root` o+x. Nothing may be writable by everyone except sticky folders like /tmp.
    """
    unreadable: list[str] = []
    dangling: list[str] = []
    count = 0

    for folder in _ancestors(root):
        entry = tree.entries.get(folder)
        if entry is not None and entry.kind == "dir" and entry.mode & 0o001 == 0:
            unreadable.append(f"{folder} ({entry.mode:04o}, not searchable)")
    if root not in tree.entries:
        return [Check("task root readable", "fail", f"the image has no {root}")]

    for path, entry in sorted(tree.entries.items()):
        if not (path == root or path.startswith(root + "/")):
            continue
        count += 1
        resolved = resolve(tree, path)
        if resolved is None:
            dangling.append(f"{path} -> {entry.target}")
            continue
        problem = _access_problem(resolved)
        if problem:
            shown = path if resolved.path == path else f"{path} -> {resolved.path}"
            unreadable.append(f"{shown} ({resolved.mode:04o}, {problem})")

    checks = [
        Check(
            "task root readable",
            "fail" if unreadable else "pass",
            f"not readable by the Lambda user: {_listing(unreadable)}; make them "
            "world-readable (chmod a+rX)"
            if unreadable
            else f"{count} entries under {root} readable by any user",
        )
    ]
    if dangling:
        checks.append(
            Check("task root symlinks", "warn", f"dangling links: {_listing(dangling)}")
        )

    writable = [
        f"{e.path} ({e.mode:04o})"
        for e in sorted(tree.entries.values(), key=lambda e: e.path)
        if e.mode & 0o002
        and (
            e.kind in ("file", "hardlink") or (e.kind == "dir" and not e.mode & 0o1000)
        )
    ]
    checks.append(
        Check(
            "nothing world-writable",
            "fail" if writable else "pass",
            f"writable by every user: {_listing(writable)}; remove o+w"
            if writable
            else f"{len(tree.entries)} paths checked; only sticky folders like /tmp",
        )
    )
    return checks


def resolve(tree: FileTree, path: str) -> Entry | None:
    """The entry a path ends at after following symlinks, or None when it dangles.

    Links are followed component by component, as the kernel does, so a link to a
    folder that is itself reached through a link resolves too.
    """
    pending = [p for p in path.split("/") if p]
    current = "/"
    hops = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            current = posixpath.dirname(current)
            continue
        candidate = posixpath.join(current, name)
        entry = tree.entries.get(candidate)
        if entry is None:
            return None
        if entry.kind != "symlink":
            current = candidate
            continue
        hops += 1
        if hops > 40:  # a loop, where the kernel would answer ELOOP
            return None
        if entry.target.startswith("/"):
            current = "/"
        pending = [p for p in entry.target.split("/") if p] + pending
    return tree.entries.get(current, Entry("/", "dir", 0o755))


def _access_problem(entry: Entry) -> str:
    if entry.kind == "dir":
        return "" if entry.mode & 0o005 == 0o005 else "folder not listable"
    if entry.kind in ("file", "hardlink"):
        return "" if entry.mode & 0o004 else "file not readable"
    return ""


def _ancestors(path: str) -> list[str]:
    found = []
    while path not in ("/", ""):
        path = posixpath.dirname(path)
        found.append(path)
    return found


def _listing(paths: list[str]) -> str:
    more = len(paths) - _LISTED
    shown = ", ".join(paths[:_LISTED])
    return f"{shown} and {more} more" if more > 0 else shown


# --- the engine -----------------------------------------------------------------------


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def export_tree(client: Any, image_ref: str) -> FileTree:
    """Stream the image's file system from a created, never started container.

    Raises:
        EngineUnavailable: the engine went away.
        EnvironmentProblem: the engine refused to create or export the container.
    """
    container = None
    try:
        container = client.containers.create(
            image_ref, command=["baseimage-contract"], network_disabled=True
        )
        stream = container.export(chunk_size=1 << 20)
        return read_tree(io.BufferedReader(_ChunkReader(iter(stream)), 1 << 20))
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(
            f"cannot read the file system of {image_ref}: {exc.explanation or exc}"
        ) from exc
    except requests.RequestException as exc:
        raise EngineUnavailable(
            f"lost the Docker engine exporting {image_ref}: {exc}"
        ) from exc
    finally:
        if container is not None:
            _remove(container)


def find_base(client: Any, attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The inspect document of the image's base, found locally by its digest label."""
    digest = ((attrs.get("Config") or {}).get("Labels") or {}).get(BASE_DIGEST_LABEL)
    if not digest:
        return None
    try:
        for image in client.images.list():
            if any(
                d.endswith("@" + digest) for d in image.attrs.get("RepoDigests") or []
            ):
                found: dict[str, Any] = image.attrs
                return found
    except (docker.errors.APIError, requests.RequestException) as exc:
        log.debug("could not list local images: %s", exc)
    return None


def inspect_image(
    client: Any, image_ref: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The image's inspect document and its history.

    Raises:
        EnvironmentProblem: the engine has no such image.
        EngineUnavailable: the engine does not answer.
    """
    try:
        attrs: dict[str, Any] = client.api.inspect_image(image_ref)
        history: list[dict[str, Any]] = client.api.history(image_ref)
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentProblem(
            f"the engine has no image {image_ref}; build it first "
            "(`baseimage build --runtime ...`)"
        ) from exc
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(
            f"cannot inspect {image_ref}: {exc.explanation or exc}"
        ) from exc
    except requests.RequestException as exc:
        raise EngineUnavailable(f"lost the Docker engine: {exc}") from exc
    return attrs, history


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except (docker.errors.APIError, requests.RequestException) as exc:
        log.warning("could not remove container %s: %s", container.id[:12], exc)


@dataclass(frozen=True)
class ContractResult:
    """The contract checks, plus what the smoke test reuses from the walk."""

    checks: list[Check]
    tree: FileTree
    attrs: dict[str, Any]


def check_image(
    client: Any,
    spec: ImageSpec,
    image_ref: str,
    *,
    architecture: str = "x86_64",
    size_warning_bytes: int = DEFAULT_SIZE_WARNING,
) -> ContractResult:
    """Every contract check on one local image.

    Raises:
        EnvironmentProblem: the image is missing or the engine refuses to read it.
        EngineUnavailable: the engine does not answer.
    """
    attrs, history = inspect_image(client, image_ref)
    base = find_base(client, attrs)
    checks = config_checks(
        attrs,
        base,
        spec,
        architecture=architecture,
        size_warning_bytes=size_warning_bytes,
    )
    if base is None:
        checks.append(
            Check(
                "base image",
                "warn",
                "the base image is not in the local engine; compared with the Lambda "
                "defaults instead",
            )
        )

    findings = credential_findings(attrs, history)
    checks.append(
        Check(
            "no credentials",
            "fail" if findings else "pass",
            "; ".join(findings) or "env, labels and history hold nothing like a secret",
        )
    )

    tree = export_tree(client, image_ref)
    checks.extend(tree_checks(tree))
    return ContractResult(checks=checks, tree=tree, attrs=attrs)
