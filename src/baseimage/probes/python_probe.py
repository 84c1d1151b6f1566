"""baseimage's probe handler for Python images; mounted read-only at test time only.

`baseimage test` bind-mounts this file into /var/task of a container started from
the image, so the image's own runtime client imports it as a Lambda handler. It
never becomes part of an image. Its settings come in the BASEIMAGE_PROBE variable
(JSON): the modules of the company layer, the configuration files, and a marker the
log line must carry.

Importing the company layer happens at module level, as in a real function, so its
cost lands in the init phase. An ImportError is caught per module and reported with
its traceback (the runtime client would keep only the message); any other exception
escapes and becomes an init error, as it would in Lambda.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any

SETTINGS: dict[str, Any] = json.loads(os.environ.get("BASEIMAGE_PROBE") or "{}")
TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
SDK = ("boto3", "botocore", "s3transfer", "awslambdaric")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LISTED = 10


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level_modules(distribution: str) -> list[str]:
    """The importable top-level names a distribution installed in the task root."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return []
    listed = (dist.read_text("top_level.txt") or "").split()
    if listed:
        return [n for n in listed if _IDENTIFIER.match(n)]
    found: list[str] = []
    for path in dist.files or []:
        parts = path.parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".data")):
            continue
        name = parts[0].split(".")[0] if len(parts) == 1 else parts[0]
        is_module = len(parts) == 1 and parts[0].endswith((".py", ".so", ".pyd"))
        is_package = len(parts) > 1 and parts[1] == "__init__.py"
        if (is_module or is_package) and _IDENTIFIER.match(name) and name not in found:
            found.append(name)
    return found


def _company_modules() -> list[str]:
    modules = list(SETTINGS.get("modules") or [])
    for distribution in SETTINGS.get("requirements") or []:
        for name in _top_level_modules(distribution):
            if name not in modules:
                modules.append(name)
    return modules


def _traceback() -> str:
    """The current exception's traceback without the probe's and importlib's frames."""
    kind, value, tb = sys.exc_info()
    frames = [
        frame
        for frame in traceback.extract_tb(tb)
        if frame.filename != __file__
        and not frame.filename.startswith("<frozen importlib")
        and not frame.filename.endswith(os.path.join("importlib", "__init__.py"))
    ]
    return "".join(
        [
            "Traceback (most recent call last):\n",
            *traceback.format_list(frames),
            *traceback.format_exception_only(kind, value),
        ]
    )


def _import_all(names: list[str]) -> tuple[float, list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in names:
        one = time.perf_counter()
        try:
            importlib.import_module(name)
        except ImportError:
            results.append(
                {
                    "module": name,
                    "ok": False,
                    "ms": (time.perf_counter() - one) * 1000,
                    "error": _traceback(),
                }
            )
        else:
            results.append(
                {"module": name, "ok": True, "ms": (time.perf_counter() - one) * 1000}
            )
    return (time.perf_counter() - started) * 1000, results


MODULES = _company_modules()
IMPORT_MS, IMPORTS = _import_all(MODULES)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Exercise the company layer and report what was found."""
    return {
        "probe": "python",
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "request_id": getattr(context, "aws_request_id", None),
        "event_keys": sorted(event) if isinstance(event, dict) else [],
        "modules": MODULES,
        "import_ms": IMPORT_MS,
        "imports": IMPORTS,
        "files": [_load_file(path) for path in SETTINGS.get("files") or []],
        "logging": _guarded(_exercise_logging),
        "sdk": [_sdk_package(name) for name in SDK],
        "dependencies": _guarded(_dependency_check),
        "bytecode": _guarded(_bytecode_check),
        "cold_import": _guarded(_cold_import),
    }


def _guarded(step: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = step()
    except Exception:
        return {"ok": False, "error": traceback.format_exc()}
    return result


def _load_file(path: str) -> dict[str, Any]:
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        else:
            with open(path, "rb") as handle:
                handle.read()
    except (OSError, ValueError) as exc:
        return {"path": path, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"path": path, "ok": True}


def _exercise_logging() -> dict[str, Any]:
    """Call the company's `configure_logging` and log one line with the marker."""
    packages = tuple(SETTINGS.get("packages") or [])
    found = None
    for name in sorted(sys.modules):
        if name.split(".")[0] not in packages:
            continue
        candidate = getattr(sys.modules[name], "configure_logging", None)
        if callable(candidate):
            found = (f"{name}.configure_logging", candidate)
            break
    if found is None:
        return {"ok": None, "function": None}
    where, configure = found
    logger = configure()
    if not callable(getattr(logger, "info", None)):
        logger = logging.getLogger("baseimage.probe")
    logger.info(f"baseimage probe {SETTINGS.get('marker', '')}")
    return {"ok": True, "function": where, "logger": type(logger).__name__}


def _sdk_package(name: str) -> dict[str, Any]:
    spec = importlib.util.find_spec(name)
    try:
        dist = importlib.metadata.distribution(name)
        version: str | None = dist.version
        dist_path = str(getattr(dist, "_path", "")) or None
    except importlib.metadata.PackageNotFoundError:
        version, dist_path = None, None
    return {
        "name": name,
        "version": version,
        "module": spec.origin if spec is not None else None,
        "metadata": dist_path,
    }


def _packaging() -> tuple[Any, Any] | None:
    for prefix in ("pip._vendor.packaging", "packaging"):
        try:
            requirements = importlib.import_module(f"{prefix}.requirements")
            version = importlib.import_module(f"{prefix}.version")
        except ImportError:
            continue
        return requirements.Requirement, version.Version
    return None


def _dependency_check() -> dict[str, Any]:
    """Requires-Dist of every distribution in the task root and of the AWS SDK."""
    tools = _packaging()
    if tools is None:
        return {"ok": None, "reason": "no 'packaging' (nor pip's copy) in the image"}
    requirement_type, version_type = tools
    dists = list(importlib.metadata.distributions(path=[TASK_ROOT]))
    for name in SDK:
        try:
            dists.append(importlib.metadata.distribution(name))
        except importlib.metadata.PackageNotFoundError:
            continue

    problems: list[str] = []
    checked = 0
    for dist in dists:
        owner = f"{dist.metadata['Name']} {dist.version}"
        for text in dist.requires or []:
            requirement = requirement_type(text)
            # Shortcoming: requirements behind extras (e.g. PyJWT[crypto]) are not
            # checked, as the extras a distribution was installed with are not
            # recorded; only unconditional requirements are.
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            checked += 1
            try:
                found = importlib.metadata.distribution(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                problems.append(f"{owner} needs {requirement}, which is not installed")
                continue
            installed = version_type(found.version)
            if not requirement.specifier.contains(installed, prereleases=True):
                where = str(getattr(found, "_path", "?"))
                problems.append(
                    f"{owner} needs {requirement}, found {found.version} at {where}"
                )
    return {"ok": not problems, "checked": checked, "problems": problems}


def _bytecode_check() -> dict[str, Any]:
    """Every .py under the task root has a current .pyc beside it in __pycache__."""
    me = os.path.abspath(__file__)
    total, missing, stale = 0, [], []
    for folder, _, names in os.walk(TASK_ROOT):
        for name in names:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or os.path.abspath(path) == me:
                continue
            total += 1
            state = _pyc_state(path)
            if state == "missing":
                missing.append(path)
            elif state == "stale":
                stale.append(path)
    return {
        "ok": not missing and not stale,
        "sources": total,
        "missing": missing[:_LISTED],
        "missing_count": len(missing),
        "stale": stale[:_LISTED],
        "stale_count": len(stale),
    }


def _pyc_state(source: str) -> str:
    cached = importlib.util.cache_from_source(source)
    try:
        with open(cached, "rb") as handle:
            header = handle.read(16)
    except OSError:
        return "missing"
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return "stale"
    flags = int.from_bytes(header[4:8], "little")
    if flags & 0b1:  # hash-based (PEP 552)
        with open(source, "rb") as handle:
            current = importlib.util.source_hash(handle.read())
        return "current" if header[8:16] == current else "stale"
    info = os.stat(source)
    mtime = int.from_bytes(header[8:12], "little")
    size = int.from_bytes(header[12:16], "little")
    same = (
        mtime == int(info.st_mtime) & 0xFFFFFFFF and size == info.st_size & 0xFFFFFFFF
    )
    return "current" if same else "stale"


# Runs in a fresh interpreter. In "source" mode the task root's bytecode is ignored:
# the loader's cache lookup fails for paths under it, as if the image shipped no
# .pyc files (and nothing is written, the file system being read-only in Lambda).
# Modules elsewhere (the standard library) keep their bytecode, so the difference is
# the company layer's alone. Shortcoming: this leans on CPython's frozen importlib
# looking up `cache_from_source` at call time; where it does not, the timing without
# bytecode is reported as unavailable rather than measured some other way.
_TIMER = """
import importlib, json, sys, time
names, mode, root = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] + "/"
method = "bytecode"
if mode == "source":
    import _frozen_importlib_external as external
    original = getattr(external, "cache_from_source", None)
    if original is None:
        method = "unavailable"
    else:
        def cache_from_source(path, *args, **kwargs):
            if path.startswith(root):
                raise NotImplementedError("bytecode ignored for this measurement")
            return original(path, *args, **kwargs)
        external.cache_from_source = cache_from_source
        method = "source"
started = time.perf_counter()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(json.dumps({"ms": (time.perf_counter() - started) * 1000, "method": method}))
"""


def _cold_import() -> dict[str, Any]:
    """Median import time of the company layer in fresh interpreters, .pyc or not."""
    names = [i["module"] for i in IMPORTS if i["ok"]]
    runs = int(SETTINGS.get("import_runs") or 3)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    env.pop("BASEIMAGE_PROBE", None)
    timings: dict[str, list[float]] = {"bytecode": [], "source": []}
    method = "source"
    for _ in range(runs):
        for mode in ("bytecode", "source"):
            done = subprocess.run(
                [
                    sys.executable,
                    "-B",
                    "-c",
                    _TIMER,
                    json.dumps(names),
                    mode,
                    TASK_ROOT,
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            timings[mode].append(result["ms"])
            if mode == "source":
                method = result["method"]
    return {
        "ok": method == "source",
        "modules": len(names),
        "runs": runs,
        "with_bytecode_ms": statistics.median(timings["bytecode"]),
        "without_bytecode_ms": (
            statistics.median(timings["source"]) if method == "source" else None
        ),
        "all_ms": timings,
    }
