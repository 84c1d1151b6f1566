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
from pathlib import Path

import yaml

from baseimage import contents, runtimes
from baseimage.contents import FileCopy, JavaLayer, PythonLayer
from baseimage.errors import SpecInvalid, UsageError
from baseimage.repo_spec import RegistrySpec, ScanPolicy, parse_registry, parse_scan
from baseimage.runtimes import Runtime
from baseimage.yamlcheck import Checker

log = logging.getLogger(__name__)

SPEC_FILE = "image.yaml"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_IMAGE_REF = re.compile(
    r"^[a-z0-9][a-z0-9.:_/-]*(?::[A-Za-z0-9_.-]+)?(?:@sha256:[0-9a-f]{64})?$"
)

# Variables the Lambda base images define and functions rely on; a base image that
# changes them breaks the runtime contract.
_FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# Variables the Lambda base images or the Lambda service set, and loader variables
# that would change every process; a base image must not change them.
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
        contents.string_map(check, top["mirrors"][1], "mirrors")
        if "mirrors" in top
        else {}
    )
    cas = contents.trust(check, top["trust"][1]) if "trust" in top else ()
    python = contents.python(check, top["python"][1]) if "python" in top else None
    java = contents.java(check, top["java"][1]) if "java" in top else None
    files = contents.files(check, top["files"][1]) if "files" in top else ()
    env = contents.env(check, top["env"][1]) if "env" in top else {}
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
