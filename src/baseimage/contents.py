"""The parts of an image spec that put content into the image: CAs, Python and Java
layers, configuration files and environment variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from baseimage.yamlcheck import Checker

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COORDINATES = re.compile(r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.+-]+$")
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

RESERVED_ENV = frozenset(
    {
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "PATH",
        "LD_LIBRARY_PATH",
        "_HANDLER",
        "LD_PRELOAD",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "_X_AMZN_TRACE_ID",
        "TZ",
    }
)
_RESERVED_PREFIXES = ("AWS_LAMBDA_",)
# Set from the trust section; a spec value would silently undo it.
TRUST_ENV = frozenset(
    {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "PIP_CERT"}
)
# Names that would put a credential into an image layer.
_CREDENTIAL_ENV = re.compile(
    r"(^AWS_(ACCESS_KEY_ID|ACCESS_KEY|SECRET_ACCESS_KEY|SECRET_KEY|SESSION_TOKEN)$)"
    r"|PASSWORD|PASSWD|_PWD$|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|PRIVKEY"
    r"|API_?KEY|SIGNING_KEY|CLIENT_KEY|BEARER|(^|_)AUTH$|_PAT$|DATABASE_URL|DSN$",
    re.IGNORECASE,
)
# Values that are credentials whatever the name: AWS access key ids, PEM keys.
_CREDENTIAL_VALUE = re.compile(
    r"\b(AKIA|ASIA)[A-Z0-9]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY"
)


@dataclass(frozen=True)
class FileCopy:
    """A configuration file copied from the spec folder to a path under /var/task."""

    source: Path
    target: str


@dataclass(frozen=True)
class MavenArtifact:
    """A jar named by Maven coordinates and pinned by its SHA-256."""

    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def path_in(self, repository: str) -> str:
        """The artifact's URL in a repository laid out the Maven way."""
        group_path = self.group.replace(".", "/")
        folder = f"{group_path}/{self.artifact}/{self.version}"
        return f"{repository.rstrip('/')}/{folder}/{self.filename}"


@dataclass(frozen=True)
class PythonLayer:
    """The company's Python libraries (a pip requirements file) and own packages."""

    requirements: Path | None
    packages: tuple[Path, ...]


@dataclass(frozen=True)
class JavaLayer:
    """The company's jars, resolved from a Maven repository."""

    repository: str
    artifacts: tuple[MavenArtifact, ...]


def string_map(check: Checker, node: yaml.Node, where: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, (_, value_node) in check.mapping(node, where).items():
        value = check.string(value_node, f"{where}.{key}")
        if value is not None:
            result[key] = value
    return result


def trust(check: Checker, node: yaml.Node) -> tuple[Path, ...]:
    fields = check.mapping(node, "trust", ("ca_certificates",))
    found: list[Path] = []
    if "ca_certificates" in fields:
        for i, item in enumerate(
            check.sequence(fields["ca_certificates"][1], "trust.ca_certificates")
        ):
            where = f"trust.ca_certificates[{i}]"
            cert = check.inside(item, where)
            if cert is None:
                continue
            if b"-----BEGIN CERTIFICATE-----" not in cert.read_bytes():
                check.problem(item, where, f"{cert.name} holds no PEM certificate")
                continue
            found.append(cert)
    return tuple(found)


def python(check: Checker, node: yaml.Node) -> PythonLayer:
    fields = check.mapping(node, "python", ("requirements", "packages"))
    requirements = None
    if "requirements" in fields:
        requirements = check.inside(fields["requirements"][1], "python.requirements")
    packages: list[Path] = []
    if "packages" in fields:
        for i, item in enumerate(
            check.sequence(fields["packages"][1], "python.packages")
        ):
            where = f"python.packages[{i}]"
            folder = check.inside(item, where, kind="folder")
            if folder is None:
                continue
            if (
                not _PACKAGE.fullmatch(folder.name)
                or not (folder / "__init__.py").is_file()
            ):
                check.problem(
                    item,
                    where,
                    f"{folder.name!r} is not an importable package "
                    "(a folder with __init__.py and a valid module name)",
                )
                continue
            links = [p for p in sorted(folder.rglob("*")) if p.is_symlink()]
            if links:
                check.problem(
                    item,
                    where,
                    f"{links[0].relative_to(folder.parent)} is a "
                    "symlink; package folders must hold plain files only",
                )
                continue
            packages.append(folder)
    return PythonLayer(requirements=requirements, packages=tuple(packages))


def java(check: Checker, node: yaml.Node) -> JavaLayer:
    fields = check.mapping(node, "java", ("repository", "artifacts"))
    repository = MAVEN_CENTRAL
    if "repository" in fields:
        url = re.compile(r"^(https?|file)://\S+$")
        repository = (
            check.string(
                fields["repository"][1],
                "java.repository",
                url,
                "an http(s):// or file:// URL",
            )
            or repository
        )
    artifacts: list[MavenArtifact] = []
    items = (
        check.sequence(fields["artifacts"][1], "java.artifacts")
        if "artifacts" in fields
        else []
    )
    for i, item in enumerate(items):
        where = f"java.artifacts[{i}]"
        entry = check.mapping(item, where, ("coordinates", "sha256"))
        missing = [k for k in ("coordinates", "sha256") if k not in entry]
        for key in missing:
            check.problem(item, f"{where}.{key}", "missing")
        if missing:
            continue
        coordinates = check.string(
            entry["coordinates"][1],
            f"{where}.coordinates",
            _COORDINATES,
            "group:artifact:version",
        )
        sha256 = check.string(
            entry["sha256"][1], f"{where}.sha256", _SHA256, "64 lowercase hex digits"
        )
        if coordinates and sha256:
            group, artifact, version = coordinates.split(":")
            artifacts.append(MavenArtifact(group, artifact, version, sha256))
    return JavaLayer(repository=repository, artifacts=tuple(artifacts))


def files(check: Checker, node: yaml.Node) -> tuple[FileCopy, ...]:
    found: list[FileCopy] = []
    for i, item in enumerate(check.sequence(node, "files")):
        where = f"files[{i}]"
        entry = check.mapping(item, where, ("source", "target"))
        for key in ("source", "target"):
            if key not in entry:
                check.problem(item, f"{where}.{key}", "missing")
        if "source" not in entry or "target" not in entry:
            continue
        source = check.inside(entry["source"][1], f"{where}.source")
        target = check.string(entry["target"][1], f"{where}.target")
        clean = PurePosixPath(target).as_posix() if target else ""
        if target is not None and (
            target.startswith("/")
            or ".." in PurePosixPath(target).parts
            or target.endswith("/")
            or clean in ("", ".")
            or "\n" in target
        ):
            check.problem(
                entry["target"][1],
                f"{where}.target",
                f"{target!r} must name a file under /var/task: a relative path, "
                "without '..', not ending in '/'",
            )
            continue
        if target is not None:
            target = clean
            taken = {f.target for f in found}
            parents = {p.as_posix() for p in PurePosixPath(target).parents}
            clash = [
                t
                for t in taken
                if t == target
                or t in parents
                or target in {p.as_posix() for p in PurePosixPath(t).parents}
            ]
            if clash:
                check.problem(
                    entry["target"][1],
                    f"{where}.target",
                    f"{target!r} clashes with the target {clash[0]!r}",
                )
                continue
        if source is not None and target is not None:
            found.append(FileCopy(source=source, target=target))
    return tuple(found)


def env(check: Checker, node: yaml.Node) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, (key_node, value_node) in check.mapping(node, "env").items():
        where = f"env.{name}"
        if not _ENV_NAME.fullmatch(name):
            check.problem(key_node, where, "not a valid environment variable name")
        elif name in TRUST_ENV:
            check.problem(
                key_node,
                where,
                "is set from the trust section; list the "
                "CA under trust.ca_certificates instead",
            )
        elif name in RESERVED_ENV or name.startswith(_RESERVED_PREFIXES):
            check.problem(
                key_node,
                where,
                "is set by Lambda or its base image and must not be changed; remove it",
            )
        elif _CREDENTIAL_ENV.search(name):
            check.problem(
                key_node,
                where,
                "looks like a credential; never bake secrets "
                "into an image. Read them at run time (e.g. Secrets Manager)",
            )
        else:
            value = check.string(value_node, where)
            if value is None:
                continue
            if "\n" in value or "\r" in value or "\0" in value:
                check.problem(
                    value_node,
                    where,
                    "holds a line break or NUL; environment values are one line",
                )
            elif _CREDENTIAL_VALUE.search(value):
                check.problem(
                    value_node,
                    where,
                    "holds what looks like a credential; "
                    "never bake secrets into an image",
                )
            else:
                env[name] = value
    return env
