"""The image spec (`images/<name>/image.yaml`): loading, validation and discovery.

The YAML is validated node by node, so every problem names the file, the line, the
field and what was expected. YAML's type guessing is never allowed to change meaning:
a plain scalar that YAML reads as a number, boolean or null where a string is expected
is an error that says to quote it.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from baseimage import runtimes
from baseimage.errors import SpecInvalid, UsageError
from baseimage.repo_spec import RegistrySpec, ScanPolicy, parse_registry, parse_scan
from baseimage.runtimes import Runtime
from baseimage.yamlcheck import Checker

log = logging.getLogger(__name__)

SPEC_FILE = "image.yaml"
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COORDINATES = re.compile(r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.+-]+$")
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE_REF = re.compile(
    r"^[a-z0-9][a-z0-9.:_/-]*(?::[A-Za-z0-9_.-]+)?(?:@sha256:[0-9a-f]{64})?$"
)

# Variables the Lambda base images define and functions rely on; a base image that
# changes them breaks the runtime contract.
_FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# Variables the Lambda base images or the Lambda service set, and loader variables
# that would change every process; a base image must not change them.
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

TOP_KEYS = (
    "description",
    "runtimes",
    "mirrors",
    "registry",
    "trust",
    "python",
    "java",
    "files",
    "env",
    "scan",
    "architecture",
    "test",
)
ARCHITECTURES = ("x86_64", "arm64")
DEFAULT_SIZE_WARNING_MB = 1024


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime an image is built for, and the base image to build it on."""

    runtime: Runtime
    base: str
    digest: str | None

    @property
    def pinned(self) -> bool:
        """True when the base image is pinned by digest."""
        return self.digest is not None


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


@dataclass(frozen=True)
class ImageSpec:
    """A validated image spec."""

    name: str
    path: Path
    description: str
    runtimes: dict[str, RuntimeSpec]
    registry: RegistrySpec
    mirrors: dict[str, str] = field(default_factory=dict)
    ca_certificates: tuple[Path, ...] = ()
    python: PythonLayer | None = None
    java: JavaLayer | None = None
    files: tuple[FileCopy, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    scan: ScanPolicy = field(default_factory=ScanPolicy)
    architecture: str = "x86_64"
    size_warning_mb: int = DEFAULT_SIZE_WARNING_MB

    @property
    def folder(self) -> Path:
        return self.path.parent

    def runtime(self, runtime_id: str) -> RuntimeSpec:
        """The spec's entry for one runtime.

        Raises:
            UsageError: the runtime is unknown or this spec does not declare it.
        """
        runtimes.get(runtime_id)
        if runtime_id not in self.runtimes:
            raise UsageError(
                f"{self.path} does not declare runtime {runtime_id}; it declares "
                f"{', '.join(self.runtimes)}. Add it under 'runtimes:' or pick another."
            )
        return self.runtimes[runtime_id]

    def input_files(self) -> list[Path]:
        """Every file from the spec folder that goes into the image, spec included."""
        found = [self.path, *self.ca_certificates, *(f.source for f in self.files)]
        if self.python:
            if self.python.requirements:
                found.append(self.python.requirements)
            for package in self.python.packages:
                found.extend(
                    p
                    for p in sorted(package.rglob("*"))
                    if p.is_file() and "__pycache__" not in p.parts
                )
        return found


def load(path: Path) -> ImageSpec:
    """Load and validate one image spec (a file, or a folder holding image.yaml).

    Raises:
        SpecInvalid: the file is missing, is not YAML, or breaks any rule.
    """
    path = path / SPEC_FILE if path.is_dir() else path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecInvalid([f"{path}: cannot read the spec: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise SpecInvalid(
            [f"{path}: not UTF-8 text (byte {exc.start}); save the spec as UTF-8"]
        ) from exc
    if not _FOLDER_NAME.fullmatch(path.parent.name):
        raise SpecInvalid(
            [
                f"{path.parent}: the folder name {path.parent.name!r} "
                "names the image, so it must be lowercase letters, digits, "
                "'.', '_' or '-'; rename the folder"
            ]
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError as exc:
        raise SpecInvalid([f"{path}: nested too deeply to be a spec"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecInvalid([f"{where}: not valid YAML: {reason}"]) from exc
    if root is None:
        raise SpecInvalid([f"{path}: the spec is empty; see README 'Image spec'"])

    check = Checker(path)
    spec = _build(check, root, path)
    if check.problems or spec is None:
        raise SpecInvalid(check.problems)
    return spec


def _build(check: Checker, root: yaml.Node, path: Path) -> ImageSpec | None:
    top = check.mapping(root, "", TOP_KEYS)
    for required in ("runtimes", "registry"):
        misspelt = required in check.suggested
        if required not in top and not misspelt and isinstance(root, yaml.MappingNode):
            check.problem(root, required, "missing; see README 'Image spec'")

    description = ""
    if "description" in top:
        description = check.string(top["description"][1], "description") or ""
    specs_by_runtime = _runtimes(check, top["runtimes"][1]) if "runtimes" in top else {}
    registry = parse_registry(check, top["registry"][1]) if "registry" in top else None
    mirrors = (
        _string_map(check, top["mirrors"][1], "mirrors") if "mirrors" in top else {}
    )
    cas = _trust(check, top["trust"][1]) if "trust" in top else ()
    python = _python(check, top["python"][1]) if "python" in top else None
    java = _java(check, top["java"][1]) if "java" in top else None
    files = _files(check, top["files"][1]) if "files" in top else ()
    env = _env(check, top["env"][1]) if "env" in top else {}
    scan = parse_scan(check, top["scan"][1]) if "scan" in top else ScanPolicy()
    architecture = "x86_64"
    if "architecture" in top:
        node = top["architecture"][1]
        value = check.string(node, "architecture", expected="x86_64 or arm64")
        if value == "arm64":
            check.problem(
                node,
                "architecture",
                "arm64 images are not built yet; only x86_64 is supported today",
            )
        elif value is not None and value not in ARCHITECTURES:
            check.problem(
                node, "architecture", f"expected x86_64 or arm64, got {value!r}"
            )
        elif value is not None:
            architecture = value
    size_warning_mb = DEFAULT_SIZE_WARNING_MB
    if "test" in top:
        fields = check.mapping(top["test"][1], "test", ("size_warning_mb",))
        if "size_warning_mb" in fields:
            size_warning_mb = (
                check.integer(
                    fields["size_warning_mb"][1], "test.size_warning_mb", 1, 10_000
                )
                or 0
            )

    families = {r.runtime.family for r in specs_by_runtime.values()}
    if len(families) > 1:
        check.problem(
            top["runtimes"][1],
            "runtimes",
            "mixes python and java runtimes; keep one language per spec folder",
        )
    for family, layer in (("python", python), ("java", java)):
        if layer is not None and families and family not in families:
            node = top[family][0]
            check.problem(
                node, family, f"has a {family} section but no {family} runtime"
            )

    if registry is None or check.problems:
        return None
    return ImageSpec(
        name=path.parent.name,
        path=path,
        description=description,
        runtimes=specs_by_runtime,
        registry=registry,
        mirrors=mirrors,
        ca_certificates=cas,
        python=python,
        java=java,
        files=files,
        env=env,
        scan=scan,
        architecture=architecture,
        size_warning_mb=size_warning_mb,
    )


def _runtimes(check: Checker, node: yaml.Node) -> dict[str, RuntimeSpec]:
    found: dict[str, RuntimeSpec] = {}
    pairs = check.mapping(node, "runtimes")
    if isinstance(node, yaml.MappingNode) and not node.value:
        check.problem(node, "runtimes", "declares no runtime; add one, e.g. python3.11")
    for runtime_id, (key_node, value_node) in pairs.items():
        where = f"runtimes.{runtime_id}"
        if runtime_id not in runtimes.KNOWN:
            hint = difflib.get_close_matches(runtime_id, list(runtimes.KNOWN), n=1)
            fix = f"did you mean {hint[0]!r}? " if hint else ""
            check.problem(
                key_node,
                where,
                f"unknown runtime; {fix}known runtimes: {runtimes.known_ids()}",
            )
            continue
        runtime = runtimes.KNOWN[runtime_id]
        base, digest = runtime.default_base, None
        if not (
            isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith("null")
        ):
            fields = check.mapping(value_node, where, ("base", "digest"))
            if "base" in fields:
                base = (
                    check.string(
                        fields["base"][1],
                        f"{where}.base",
                        _IMAGE_REF,
                        "an image reference like public.ecr.aws/lambda/python:3.11",
                    )
                    or base
                )
            if "digest" in fields:
                digest = check.string(
                    fields["digest"][1],
                    f"{where}.digest",
                    _DIGEST,
                    "a digest like sha256:<64 hex digits>",
                )
        if "@" in base:
            base, _, pinned = base.partition("@")
            digest = digest or pinned
        found[runtime_id] = RuntimeSpec(runtime=runtime, base=base, digest=digest)
    return found


def _string_map(check: Checker, node: yaml.Node, where: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, (_, value_node) in check.mapping(node, where).items():
        value = check.string(value_node, f"{where}.{key}")
        if value is not None:
            result[key] = value
    return result


def _trust(check: Checker, node: yaml.Node) -> tuple[Path, ...]:
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


def _python(check: Checker, node: yaml.Node) -> PythonLayer:
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


def _java(check: Checker, node: yaml.Node) -> JavaLayer:
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


def _files(check: Checker, node: yaml.Node) -> tuple[FileCopy, ...]:
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


def _env(check: Checker, node: yaml.Node) -> dict[str, str]:
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


def discover(images_dir: Path) -> Iterator[Path]:
    """Every spec file under an images folder, sorted by folder name."""
    if not images_dir.is_dir():
        raise UsageError(
            f"images folder {images_dir} not found; run from the project "
            "root or pass --images-dir"
        )
    yield from sorted(images_dir.glob(f"*/{SPEC_FILE}"))


def find(
    images_dir: Path, runtime_id: str | None, image: str | None
) -> list[ImageSpec]:
    """The specs selected by --image and --runtime (all of them when both are None).

    Raises:
        UsageError: the image folder does not exist or no spec declares the runtime.
        SpecInvalid: a selected spec is invalid.
    """
    if runtime_id is not None:
        runtimes.get(runtime_id)
    if image is not None:
        if not _FOLDER_NAME.fullmatch(image):
            raise UsageError(
                f"--image takes a spec folder name under {images_dir}, not {image!r}"
            )
        folder = images_dir / image
        if not (folder / SPEC_FILE).is_file():
            names = ", ".join(p.parent.name for p in discover(images_dir)) or "none"
            raise UsageError(f"no spec at {folder / SPEC_FILE}; images here: {names}")
        spec = load(folder)
        if runtime_id is not None:
            spec.runtime(runtime_id)
        return [spec]

    paths = list(discover(images_dir))
    if runtime_id is None:
        return [load(p) for p in paths]
    matching = [p for p in paths if runtime_id in _declared_runtimes(p)]
    if not matching:
        raise UsageError(
            f"no spec in {images_dir} declares runtime {runtime_id}; add it "
            "to a spec's 'runtimes:' or pass --image"
        )
    if len(matching) > 1:
        names = ", ".join(p.parent.name for p in matching)
        raise UsageError(
            f"several specs declare {runtime_id} ({names}); pick one with --image"
        )
    return [load(matching[0])]


def _declared_runtimes(path: Path) -> list[str]:
    """The runtime ids a spec declares, read leniently (full validation comes later)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    found = data.get("runtimes") if isinstance(data, dict) else None
    return [str(k) for k in found] if isinstance(found, dict) else []
