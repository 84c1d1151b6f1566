"""The probe handlers: readied on the host for a test run, and their answers judged.

The handlers themselves live beside this file and run only inside a test container:
`python_probe.py` is mounted as /var/task/baseimage_probe.py; `LambdaProbe.java` is
compiled here for the runtime's Java version and its classes are mounted at
/var/task/baseimage_probe. Neither module is imported on the host.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import re
import shutil
import subprocess
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baseimage.contract import TASK_ROOT, Check, FileTree, Status
from baseimage.errors import EnvironmentProblem
from baseimage.spec import ImageSpec

PROBE_ENV = "BASEIMAGE_PROBE"
LAMBDA_INIT_LIMIT_MS = 10_000  # Lambda ends an on-demand init phase after 10 s
JAVA_WELL_KNOWN = (
    "org.apache.logging.log4j.LogManager",
    "org.apache.logging.log4j.core.LoggerContext",
    "org.slf4j.LoggerFactory",
)
_CLASSES_PER_JAR = 3
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_TRACE_LINES = 25


@dataclass(frozen=True)
class Probe:
    """A probe ready to run: its handler, its bind mounts and its settings."""

    handler: str
    mounts: dict[str, dict[str, str]]
    settings: str
    marker: str
    problem: Check | None = None  # set when the probe could not be made ready


def _source(name: str) -> bytes:
    return (importlib.resources.files("baseimage") / "probes" / name).read_bytes()


# --- Python ------------------------------------------------------------------------


def python_probe(spec: ImageSpec, tmp: Path) -> Probe:
    """Ready the Python probe in `tmp`, with the company layer the spec declares."""
    probe_file = tmp / "baseimage_probe.py"
    probe_file.write_bytes(_source("python_probe.py"))
    probe_file.chmod(0o644)  # read by the Lambda user through the bind mount
    marker = uuid.uuid4().hex
    layer = spec.python
    requirements = layer.requirements if layer else None
    settings = {
        "modules": python_modules(layer.packages) if layer else [],
        "packages": [p.name for p in layer.packages] if layer else [],
        "requirements": requirement_names(requirements) if requirements else [],
        "files": [f"{TASK_ROOT}/{f.target}" for f in spec.files],
        "marker": marker,
    }
    target = f"{TASK_ROOT}/baseimage_probe.py"
    return Probe(
        handler="baseimage_probe.handler",
        mounts={str(probe_file): {"bind": target, "mode": "ro"}},
        settings=json.dumps(settings),
        marker=marker,
    )


def python_modules(packages: tuple[Path, ...]) -> list[str]:
    """Every module of the company's own packages, from their source folders."""
    names: list[str] = []
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = [package.name, *path.relative_to(package).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


def requirement_names(requirements: Path) -> list[str]:
    """The distribution names a pip requirements file pins (options are skipped)."""
    names = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = _REQUIREMENT_NAME.match(line)
        if line and not line.startswith("-") and match:
            names.append(match.group(1))
    return names


def judge_python(
    body: dict[str, Any], spec: ImageSpec, stdout: list[str], marker: str
) -> list[Check]:
    """Checks from the Python probe's answer and the container's stdout."""
    checks = [_imports(body), _files(body)]

    logging = body.get("logging") or {}
    packages = ", ".join(p.name for p in spec.python.packages) if spec.python else ""
    if logging.get("ok") is None and "error" not in logging:
        checks.append(
            Check(
                "logging set-up",
                "warn",
                f"no configure_logging() in the packages: {packages or 'none'}",
            )
        )
    elif not logging.get("ok"):
        checks.append(Check("logging set-up", "fail", _trace(logging.get("error"))))
    else:
        checks.append(Check("logging set-up", "pass", f"{logging['function']}()"))
        checks.append(structured_log_check(stdout, marker))

    checks.append(_sdk(body.get("sdk") or []))
    checks.append(_dependencies(body.get("dependencies") or {}))
    checks.append(_bytecode(body.get("bytecode") or {}))
    return checks


def _imports(body: dict[str, Any]) -> Check:
    imports = body.get("imports") or body.get("classes") or []
    what = "modules" if "imports" in body else "classes"
    failed = [i for i in imports if not i.get("ok")]
    if failed:
        # Submodules of a broken package fail with the same traceback: show it once.
        by_trace: dict[str, list[str]] = {}
        for item in failed:
            name = str(item.get("module") or item.get("name"))
            by_trace.setdefault(_trace(item.get("error")), []).append(name)
        names = [name for group in by_trace.values() for name in group]
        first = next(iter(by_trace)).splitlines() or ["unknown error"]
        traces = "\n".join(f"{', '.join(n)}: {t}" for t, n in by_trace.items())
        return Check(
            "company imports",
            "fail",
            f"cannot load {', '.join(names)}: {first[-1]}\n{traces}",
        )
    if not imports:
        return Check("company imports", "skip", f"the spec declares no company {what}")
    ms = body.get("import_ms") or 0.0
    return Check("company imports", "pass", f"{len(imports)} {what} in {ms:.0f} ms")


def _files(body: dict[str, Any]) -> Check:
    files = body.get("files") or []
    failed = [f"{f['path']}: {f.get('error')}" for f in files if not f.get("ok")]
    if failed:
        return Check("configuration files", "fail", "; ".join(failed))
    if not files:
        return Check("configuration files", "skip", "the spec copies no files")
    return Check("configuration files", "pass", f"{len(files)} loaded")


def _sdk(packages: list[dict[str, Any]]) -> Check:
    shown, absent, shadowing = [], [], []
    for package in packages:
        name = package["name"]
        module = package.get("module") or package.get("metadata")
        if package.get("version") is None and module is None:
            absent.append(name)
            continue
        shown.append(f"{name} {package.get('version') or '?'} ({module or '?'})")
        if str(module).startswith(TASK_ROOT + "/"):
            shadowing.append(name)
    notes = []
    if absent:
        notes.append(f"not in the image: {', '.join(absent)}")
    if shadowing:
        notes.append(f"in {TASK_ROOT}, shadowing the runtime's: {', '.join(shadowing)}")
    # The AWS base images ship boto3 and botocore; functions count on them.
    missing_sdk = {"boto3", "botocore"} & set(absent)
    status: Status = "warn" if missing_sdk or shadowing else "pass"
    return Check("AWS SDK", status, "; ".join(shown + notes))


def _dependencies(result: dict[str, Any]) -> Check:
    if "error" in result:
        return Check("dependency consistency", "fail", _trace(result["error"]))
    if result.get("ok") is None:
        return Check("dependency consistency", "skip", str(result.get("reason")))
    if result["problems"]:
        return Check("dependency consistency", "fail", "; ".join(result["problems"]))
    return Check(
        "dependency consistency", "pass", f"{result['checked']} requirements met"
    )


def _bytecode(result: dict[str, Any]) -> Check:
    if "error" in result:
        return Check("bytecode", "fail", _trace(result["error"]))
    bad = [
        f"{result[key + '_count']} {key}: {', '.join(result[key])}"
        for key in ("missing", "stale")
        if result.get(key + "_count")
    ]
    if bad:
        return Check(
            "bytecode",
            "fail",
            f"{TASK_ROOT} is read-only in Lambda, so these compile at every cold "
            f"start: {'; '.join(bad)}. Run `python -m compileall` in the image",
        )
    return Check(
        "bytecode", "pass", f"{result.get('sources', 0)} .py files precompiled"
    )


def cold_start_check(init_ms: float | None, body: dict[str, Any] | None) -> Check:
    """Init time and the company layer's import time, with and without bytecode."""
    body = body or {}
    parts = [f"init {init_ms:.0f} ms" if init_ms is not None else "init unknown"]
    if body.get("import_ms") is not None:
        what = "imports" if body.get("probe") == "python" else "class loading"
        parts.append(f"company {what} {body['import_ms']:.0f} ms")
    if body.get("jvm_start_to_probe_ms") is not None:
        parts.append(f"JVM start to probe {body['jvm_start_to_probe_ms']} ms")
    cold = body.get("cold_import") or {}
    with_pyc, without = cold.get("with_bytecode_ms"), cold.get("without_bytecode_ms")
    if with_pyc is not None and without is not None:
        parts.append(
            f"fresh interpreter: {with_pyc:.0f} ms with bytecode, {without:.0f} ms "
            f"without ({without / max(with_pyc, 0.001):.1f}x)"
        )
    elif "error" in cold:
        parts.append("import timing failed: " + _trace(cold["error"]).splitlines()[-1])
    slow = init_ms is not None and init_ms > LAMBDA_INIT_LIMIT_MS
    if slow:
        parts.append("over Lambda's 10 s init limit")
    return Check("cold start", "warn" if slow else "pass", "; ".join(parts))


# --- Java --------------------------------------------------------------------------


def java_probe(spec: ImageSpec, tree: FileTree, version: str, tmp: Path) -> Probe:
    """Compile the Java probe in `tmp` against the image's jars, for its Java version.

    Raises:
        EnvironmentProblem: the host has no javac, or one too old for the runtime.
    """
    classes, broken = java_classes(tree.jars)
    jars = tmp / "jars"
    jars.mkdir()
    for path, data in tree.jars.items():
        (jars / Path(path).name).write_bytes(data)
    output = tmp / "classes"
    source = tmp / "LambdaProbe.java"
    source.write_bytes(_source("LambdaProbe.java"))
    problem = _javac(source, output, jars, version)
    if problem is None and broken:
        problem = Check("java probe", "fail", f"not valid jars: {', '.join(broken)}")
    for made in [output, *output.rglob("*")]:
        made.chmod(0o755 if made.is_dir() else 0o644)

    marker = uuid.uuid4().hex
    files = ",".join(f"{TASK_ROOT}/{f.target}" for f in spec.files)
    target = f"{TASK_ROOT}/baseimage_probe"
    return Probe(
        handler="baseimage_probe.LambdaProbe::handleRequest",
        mounts={str(output / "baseimage_probe"): {"bind": target, "mode": "ro"}},
        settings=f"marker={marker};classes={','.join(classes)};files={files}",
        marker=marker,
        problem=problem,
    )


def java_classes(jars: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """A few classes per company jar to load, and the jars that are not valid zips."""
    classes: list[str] = []
    broken: list[str] = []
    for path, data in sorted(jars.items()):
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            broken.append(path)
            continue
        found = {
            n[: -len(".class")].replace("/", ".")
            for n in names
            if n.endswith(".class")
            and not n.startswith("META-INF/")
            and "$" not in n
            and not n.endswith(("module-info.class", "package-info.class"))
        }
        known = [c for c in JAVA_WELL_KNOWN if c in found]
        others = sorted(found - set(known), key=lambda c: (c.count("."), c))
        classes.extend(known + others[: max(0, _CLASSES_PER_JAR - len(known))])
    return classes, broken


def _javac(source: Path, output: Path, jars: Path, version: str) -> Check | None:
    javac = shutil.which("javac")
    if javac is None:
        raise EnvironmentProblem(
            "testing a Java image compiles a probe on this machine, but there is no "
            "javac on PATH; install a JDK (e.g. openjdk-17-jdk-headless)"
        )
    shown = subprocess.run(
        [javac, "-version"], capture_output=True, text=True, timeout=60, check=False
    )
    host = re.search(r"javac (\d+)", shown.stdout + shown.stderr)
    if host is None or int(host.group(1)) < int(version):
        found = host.group(0) if host else "an unknown javac"
        raise EnvironmentProblem(
            f"the Java {version} probe needs JDK {version} or newer on this machine, "
            f"but {found} cannot compile for Java {version}; install a newer JDK"
        )
    command = [javac, "--release", version, "-cp", f"{jars}/*", "-d", str(output)]
    done = subprocess.run(
        [*command, str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return Check("java probe", "fail", f"javac failed: {done.stderr.strip()}")
    return None


def judge_java(
    body: dict[str, Any], spec: ImageSpec, stdout: list[str], marker: str
) -> list[Check]:
    """Checks from the Java probe's answer and the container's stdout."""
    checks = [_imports(body), _files(body)]
    logging = body.get("logging") or {}
    if not logging.get("ok"):
        error = logging.get("error") or "unknown error"
        checks.append(Check("logging configuration", "fail", f"Log4j: {error}"))
        return checks

    location = str(logging.get("location") or "")
    path = location.removeprefix("file:")
    wanted = [
        f"{TASK_ROOT}/{f.target}"
        for f in spec.files
        if Path(f.target).name.startswith("log4j2")
    ]
    if "location_error" in logging:
        context = logging.get("context")
        checks.append(
            Check(
                "logging configuration",
                "fail",
                f"Log4j has no configuration to report (its context is {context}, so "
                f"log4j-core is not in use): {logging['location_error']}",
            )
        )
    elif wanted and path not in wanted:
        found = path if location not in ("", "null") else "its default configuration"
        checks.append(
            Check(
                "logging configuration",
                "fail",
                f"Log4j uses {found}, not the company's {' or '.join(wanted)}",
            )
        )
    elif location in ("", "null"):
        checks.append(
            Check("logging configuration", "warn", "Log4j runs on its default")
        )
    else:
        checks.append(Check("logging configuration", "pass", f"Log4j reads {path}"))
    checks.append(structured_log_check(stdout, marker))
    return checks


# --- both --------------------------------------------------------------------------


def structured_log_check(stdout: list[str], marker: str) -> Check:
    """The probe's log line reached stdout as one JSON object."""
    for line in stdout:
        if marker not in line:
            continue
        try:
            document = json.loads(line.strip())
        except ValueError:
            return Check("structured log line", "fail", f"not JSON: {line[:200]}")
        if isinstance(document, dict):
            return Check("structured log line", "pass", line.strip())
    return Check(
        "structured log line",
        "fail",
        "the probe's log line did not reach stdout; check the logging configuration",
    )


def _trace(text: Any) -> str:
    lines = str(text or "").rstrip().splitlines()
    if len(lines) > _TRACE_LINES:
        lines = ["...", *lines[-_TRACE_LINES:]]
    return "\n".join(lines)
