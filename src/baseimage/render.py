"""Render a minimal Docker build context (Dockerfile and files) from an image spec.

Every file is written with fixed modes (0644, directories 0755), so what lands under
/var/task is readable by the non-root Lambda user whatever the build host's umask or
checkout modes. Layers go from least to most often changed: trust, libraries, company
packages, configuration, environment; a configuration-only change reuses the cached
library layers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from baseimage import maven
from baseimage.errors import UsageError
from baseimage.spec import ImageSpec, RuntimeSpec

log = logging.getLogger(__name__)

TASK_ROOT = "/var/task"
SHARE = "/usr/local/share/baseimage"
CONTEXT_FORMAT = "baseimage-context-v1"
_FROM_PLACEHOLDER = "@@BASE@@"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

# Runs inside the image. It must work on the official images (Amazon Linux:
# update-ca-trust) as well as Debian-like bases (update-ca-certificates), and makes the
# JVM trust the same certificates when the image has one.
TRUST_SCRIPT = r"""#!/bin/sh
# Installs the certificates in SHARE/ca into the image's trust stores.
set -eu
# Lambda's PATH has no sbin, where Debian-like images keep update-ca-certificates.
PATH="$PATH:/usr/sbin:/sbin"
share=SHARE
if command -v update-ca-trust >/dev/null 2>&1; then
    cp "$share"/ca/*.crt /etc/pki/ca-trust/source/anchors/
    update-ca-trust extract
    bundle=/etc/pki/tls/certs/ca-bundle.crt
elif command -v update-ca-certificates >/dev/null 2>&1; then
    mkdir -p /usr/local/share/ca-certificates/baseimage
    cp "$share"/ca/*.crt /usr/local/share/ca-certificates/baseimage/
    update-ca-certificates >/dev/null
    bundle=/etc/ssl/certs/ca-certificates.crt
else
    echo "baseimage: the base image has neither update-ca-trust nor" \
         "update-ca-certificates, so the company CA cannot be trusted" >&2
    exit 1
fi
test -s "$bundle" || { echo "baseimage: no CA bundle at $bundle" >&2; exit 1; }
ln -sf "$bundle" "$share/ca-bundle.pem"
if command -v java >/dev/null 2>&1; then
    java_home=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    keytool="$java_home/bin/keytool"
    cacerts="$java_home/lib/security/cacerts"
    if [ -x "$keytool" ] && [ -f "$cacerts" ]; then
        for cert in "$share"/ca/*.crt; do
            # The build network's bundle is for pip during the build; the JVM
            # fetches nothing then, and a keytool run per public root is slow.
            case "$cert" in */build-network-*) continue ;; esac
            alias="baseimage-$(basename "$cert" .crt)"
            "$keytool" -delete -alias "$alias" -cacerts -storepass changeit \
                >/dev/null 2>&1 || true
            "$keytool" -importcert -noprompt -cacerts -storepass changeit \
                -alias "$alias" -file "$cert" >/dev/null
        done
    fi
fi
""".replace("SHARE", SHARE)


@dataclass(frozen=True)
class BaseImage:
    """The base an image is built on: upstream name, where it is pulled, digest."""

    name: str
    pull_ref: str
    digest: str

    @property
    def from_ref(self) -> str:
        """The exact reference the Dockerfile builds on, pinned by digest."""
        repository = self.pull_ref.rsplit("@", 1)[0]
        last = repository.rsplit("/", 1)[-1]
        if ":" in last:
            repository = repository[: repository.rindex(":")]
        return f"{repository}@{self.digest}"


@dataclass(frozen=True)
class Context:
    """A rendered build context on disk."""

    path: Path
    dockerfile: str
    content_hash: str
    base: BaseImage


def render(
    spec: ImageSpec,
    runtime: RuntimeSpec,
    base: BaseImage,
    dest: Path,
    extra_ca: Path | None = None,
) -> Context:
    """Write the build context for one runtime of a spec into `dest`.

    Raises:
        ArtifactFailed: a Maven artifact cannot be fetched or fails its checksum.
    """
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest} is not empty; render into a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)

    has_ca = _write_certificates(spec, extra_ca, dest / "ca")
    if has_ca:
        _write(dest / "trust-ca.sh", TRUST_SCRIPT.encode())
    if spec.python is not None:
        if spec.python.requirements is not None:
            _write(dest / "requirements.txt", spec.python.requirements.read_bytes())
        for package in spec.python.packages:
            _copy_tree(package, dest / "packages" / package.name)
    if spec.java is not None and spec.java.artifacts:
        maven.fetch_all(spec.java, spec.mirrors, dest / "lib")
    for copy in spec.files:
        _write(dest / "files" / copy.target, copy.source.read_bytes())

    template = _dockerfile(spec, runtime, dest, has_ca)
    _normalise_modes(dest)
    _write(
        dest / "Dockerfile", template.replace(_FROM_PLACEHOLDER, base.from_ref).encode()
    )
    (dest / "Dockerfile").chmod(0o644)
    # The description becomes a label, so it is part of what the image carries.
    content_hash = _hash(
        dest,
        template.replace(_FROM_PLACEHOLDER, f"{base.name}@{base.digest}"),
        spec.description,
    )
    return Context(
        path=dest,
        dockerfile=(dest / "Dockerfile").read_text(),
        content_hash=content_hash,
        base=base,
    )


def _dockerfile(spec: ImageSpec, runtime: RuntimeSpec, dest: Path, has_ca: bool) -> str:
    rt = runtime.runtime
    lines = [
        f"# Rendered by baseimage from {spec.name}/image.yaml for {rt.id}.",
        f"FROM {_FROM_PLACEHOLDER}",
        "",
    ]
    if has_ca:
        lines += [
            "# Company certificate authorities, trusted by the OS, pip and the JVM.",
            f"COPY ca/ {SHARE}/ca/",
            f"COPY trust-ca.sh {SHARE}/trust-ca.sh",
            f"RUN sh {SHARE}/trust-ca.sh",
            _env_line(
                {
                    "SSL_CERT_FILE": f"{SHARE}/ca-bundle.pem",
                    "REQUESTS_CA_BUNDLE": f"{SHARE}/ca-bundle.pem",
                    "AWS_CA_BUNDLE": f"{SHARE}/ca-bundle.pem",
                    "PIP_CERT": f"{SHARE}/ca-bundle.pem",
                }
            ),
            "",
        ]
    if rt.family == "python":
        lines += _python_steps(spec, rt.version, dest)
    else:
        lines += _java_steps(rt.version, dest)
    if (dest / "files").is_dir():
        lines += ["# Company configuration.", f"COPY files/ {TASK_ROOT}/", ""]
    if spec.env:
        lines += [_env_line(spec.env), ""]
    return "\n".join(lines).rstrip() + "\n"


def _python_steps(spec: ImageSpec, version: str, dest: Path) -> list[str]:
    check = (
        "import sys; v = '%d.%d' % sys.version_info[:2]; "
        f"sys.exit(0 if v == '{version}' else "
        f"'base image has Python ' + v + ', the runtime needs {version}')"
    )
    steps = [f"RUN python3 -c {json.dumps(check)}", ""]
    if (dest / "requirements.txt").is_file():
        steps += [
            "# Company libraries, as bytecode too: /var/task is read-only in Lambda.",
            f"COPY requirements.txt {SHARE}/requirements.txt",
            "RUN python3 -m pip install --no-cache-dir --disable-pip-version-check "
            f"--target {TASK_ROOT} -r {SHARE}/requirements.txt \\",
            f" && python3 -m compileall -q {TASK_ROOT} \\",
            f" && chmod -R a+rX,go-w {TASK_ROOT}",
            "",
        ]
    if (dest / "packages").is_dir():
        names = " ".join(f"{TASK_ROOT}/{p.name}" for p in spec.python.packages)  # type: ignore[union-attr]
        steps += [
            "# The company's own packages.",
            f"COPY packages/ {TASK_ROOT}/",
            f"RUN python3 -m compileall -q {names} && chmod -R a+rX,go-w {names}",
            "",
        ]
    return steps


def _java_steps(version: str, dest: Path) -> list[str]:
    probe = (
        "java -XshowSettings:properties -version 2>&1 "
        f"| grep -q 'java.specification.version = {version}$' "
        f"|| {{ echo 'base image has no Java {version}' >&2; exit 1; }}"
    )
    steps = [f"RUN {probe}", ""]
    if (dest / "lib").is_dir():
        steps += [
            "# Company jars, on the Lambda class path.",
            f"COPY lib/ {TASK_ROOT}/lib/",
            "",
        ]
    return steps


def _env_line(env: dict[str, str]) -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in sorted(env.items())]
    return "ENV " + " \\\n    ".join(parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def _write_certificates(spec: ImageSpec, extra_ca: Path | None, dest: Path) -> bool:
    sources = [(p.stem, p.read_bytes()) for p in spec.ca_certificates]
    if extra_ca is not None:
        sources.append(("build-network", extra_ca.read_bytes()))
    count = 0
    for stem, data in sources:
        for i, pem in enumerate(_PEM.findall(data)):
            _write(dest / f"{stem}-{i:03d}.crt", pem + b"\n")
            count += 1
    return count > 0


def _copy_tree(source: Path, dest: Path) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            _write(dest / path.relative_to(source), path.read_bytes())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _normalise_modes(root: Path) -> None:
    """Give every directory 0755 and every file 0644, whatever the host's umask."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _hash(root: Path, canonical_dockerfile: str, description: str) -> str:
    digest = hashlib.sha256(f"{CONTEXT_FORMAT}\n".encode())
    digest.update(b"description\0" + hashlib.sha256(description.encode()).digest())
    digest.update(
        b"Dockerfile\0" + hashlib.sha256(canonical_dockerfile.encode()).digest()
    )
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == "Dockerfile":
            continue
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return f"sha256:{digest.hexdigest()}"
