"""Contract checks on small real tar streams and inspect documents; no engine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from baseimage import spec
from baseimage.contract import (
    Check,
    FileTree,
    config_checks,
    credential_findings,
    read_tree,
    resolve,
    tree_checks,
)

DIR, FILE, LINK = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE


Entries = list[tuple[str, bytes, int, str]]


def tar_stream(tmp_path: Path, entries: Entries) -> io.BytesIO:
    """A tar file written to tmp_path, as `docker export` would stream it."""
    path = tmp_path / "export.tar"
    with tarfile.open(path, "w") as tar:
        for name, kind, mode, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            data = extra.encode() if kind == FILE else b""
            if kind == LINK:
                info.linkname = extra
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return io.BytesIO(path.read_bytes())


def healthy() -> Entries:
    return [
        ("var", DIR, 0o755, ""),
        ("var/task", DIR, 0o755, ""),
        ("var/task/app", DIR, 0o755, ""),
        ("var/task/app/__init__.py", FILE, 0o644, "x = 1\n"),
        ("var/task/config.json", FILE, 0o644, "{}"),
        ("tmp", DIR, 0o1777, ""),
        ("var/tmp", DIR, 0o1777, ""),
        ("usr", DIR, 0o755, ""),
        ("usr/bin", DIR, 0o755, ""),
        ("usr/bin/python3", FILE, 0o755, "elf"),
    ]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_a_healthy_tree_passes_with_sticky_tmp(tmp_path):
    checks = by_name(tree_checks(read_tree(tar_stream(tmp_path, healthy()))))

    assert checks["task root readable"].status == "pass"
    assert checks["nothing world-writable"].status == "pass"


def test_an_unreadable_file_fails_naming_it(tmp_path):
    entries = [*healthy(), ("var/task/app/secret.py", FILE, 0o600, "")]

    check = by_name(tree_checks(read_tree(tar_stream(tmp_path, entries))))[
        "task root readable"
    ]

    assert check.status == "fail"
    assert "/var/task/app/secret.py (0600, file not readable)" in check.detail


def test_a_folder_without_search_permission_fails(tmp_path):
    entries = [*healthy(), ("var/task/private", DIR, 0o750, "")]

    check = by_name(tree_checks(read_tree(tar_stream(tmp_path, entries))))[
        "task root readable"
    ]

    assert check.status == "fail"
    assert "/var/task/private (0750, folder not listable)" in check.detail


def test_a_folder_above_the_task_root_must_be_searchable(tmp_path):
    entries = [e for e in healthy() if e[0] != "var"] + [("var", DIR, 0o750, "")]

    check = by_name(tree_checks(read_tree(tar_stream(tmp_path, entries))))[
        "task root readable"
    ]

    assert check.status == "fail"
    assert "/var (0750, not searchable)" in check.detail


@pytest.mark.parametrize(
    ("name", "kind", "mode"),
    [
        ("var/task/app/open.py", FILE, 0o666),
        ("usr/bin/tool", FILE, 0o777),
        ("var/task/drop", DIR, 0o777),
    ],
    ids=["file-in-task-root", "file-elsewhere", "non-sticky-folder"],
)
def test_anything_world_writable_fails(tmp_path, name, kind, mode):
    entries = [*healthy(), (name, kind, mode, "")]

    check = by_name(tree_checks(read_tree(tar_stream(tmp_path, entries))))[
        "nothing world-writable"
    ]

    assert check.status == "fail"
    assert f"/{name} ({mode:04o})" in check.detail


def test_a_symlink_is_judged_by_its_target(tmp_path):
    entries = [
        *healthy(),
        ("etc", DIR, 0o755, ""),
        ("etc/hidden.conf", FILE, 0o600, ""),
        ("var/task/conf", LINK, 0o777, "../../etc/hidden.conf"),
        ("var/task/ok", LINK, 0o777, "config.json"),
        ("var/task/gone", LINK, 0o777, "/nowhere"),
    ]

    checks = by_name(tree_checks(read_tree(tar_stream(tmp_path, entries))))

    readable = checks["task root readable"]
    assert readable.status == "fail"
    assert "/var/task/conf -> /etc/hidden.conf (0600" in readable.detail
    assert "/var/task/ok" not in readable.detail
    assert checks["task root symlinks"].status == "warn"
    assert "/var/task/gone -> /nowhere" in checks["task root symlinks"].detail
    # A symlink's own mode (0777) is not a world-writable file.
    assert checks["nothing world-writable"].status == "pass"


def test_links_through_linked_folders_and_loops_resolve(tmp_path):
    entries = [
        *healthy(),
        ("opt", DIR, 0o755, ""),
        ("opt/real", DIR, 0o755, ""),
        ("opt/real/lib.so", FILE, 0o644, ""),
        ("opt/current", LINK, 0o777, "real"),
        ("var/task/lib.so", LINK, 0o777, "/opt/current/lib.so"),
        ("var/task/loop", LINK, 0o777, "loop"),
    ]
    tree = read_tree(tar_stream(tmp_path, entries))

    target = resolve(tree, "/var/task/lib.so")
    assert target is not None
    assert target.path == "/opt/real/lib.so"
    assert resolve(tree, "/var/task/loop") is None


def test_jars_under_the_class_path_folder_are_kept(tmp_path):
    entries = [
        *healthy(),
        ("var/task/lib", DIR, 0o755, ""),
        ("var/task/lib/company.jar", FILE, 0o644, "PK-bytes"),
        ("var/task/lib/notes.txt", FILE, 0o644, "no"),
    ]

    tree = read_tree(tar_stream(tmp_path, entries))

    assert tree.jars == {"/var/task/lib/company.jar": b"PK-bytes"}


def test_an_image_without_a_task_root_fails():
    checks = by_name(tree_checks(FileTree()))
    assert checks["task root readable"].status == "fail"


# --- credentials ----------------------------------------------------------------------


def image(env: list[str] | None = None, labels: dict[str, str] | None = None) -> Any:
    return {"Config": {"Env": env or [], "Labels": labels or {}}}


@pytest.mark.parametrize(
    ("env", "labels", "history", "expected"),
    [
        (
            ["AWS_SECRET_ACCESS_KEY=abc"],
            {},
            [],
            "env AWS_SECRET_ACCESS_KEY is named like a credential",
        ),
        (["DB_PASSWORD=hunter22"], {}, [], "env DB_PASSWORD is named like"),
        (
            ["SOME_KEY=AKIAABCDEFGHIJKLMNOP"],
            {},
            [],
            "env SOME_KEY holds what looks like an AWS access key id",
        ),
        (
            ["X=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
            {},
            [],
            "env X holds what looks like an AWS secret access key",
        ),
        (
            [],
            {"build.key": "-----BEGIN RSA PRIVATE KEY-----"},
            [],
            "label build.key holds what looks like a private key",
        ),
        (
            [],
            {},
            [{"CreatedBy": "RUN pip install --extra-index-url https://u:pw@pypi.x/"}],
            "history step 1 holds what looks like credentials in a URL",
        ),
        (
            [],
            {},
            [{"CreatedBy": "curl -H 'Authorization: Bearer abcdefghijklmnopqrstuv'"}],
            "history step 1 holds what looks like an auth token",
        ),
        (
            [],
            {},
            [{"CreatedBy": "RUN echo password=s3cr3tvalue > /etc/x"}],
            "history step 1 holds what looks like a password or secret assignment",
        ),
        (
            [],
            {"ci.note": "ghp_" + "a" * 36},
            [],
            "label ci.note holds what looks like an auth token",
        ),
    ],
    ids=[
        "aws-secret-name",
        "password-name",
        "access-key-id",
        "secret-key-shape",
        "private-key-label",
        "url-credentials",
        "bearer-token",
        "password-assignment",
        "github-token",
    ],
)
def test_credentials_are_found_and_never_echoed(env, labels, history, expected):
    findings = credential_findings(image(env, labels), history)

    assert any(expected in f for f in findings), findings
    for secret in ("hunter22", "AKIAABCDEFGHIJKLMNOP", "s3cr3tvalue", "pw@"):
        assert all(secret not in f for f in findings)


def test_an_ordinary_image_has_no_credential_findings():
    attrs = image(
        [
            "PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            "PIP_CERT=/usr/local/share/baseimage/ca-bundle.pem",
            "POWERTOOLS_SERVICE_NAME=company-function",
        ],
        {
            "org.opencontainers.image.revision": "0123456789abcdef" * 2 + "01234567",
            "dev.baseimage.content-hash": "sha256:" + "ab" * 32,
            "org.opencontainers.image.description": "JWT verification, tokens redacted",
        },
    )
    history = [
        {"CreatedBy": "/bin/sh -c #(nop) COPY file:" + "0f" * 32 + " in /var/task/"},
        {"CreatedBy": "/bin/sh -c sh /usr/local/share/baseimage/trust-ca.sh"},
    ]

    assert credential_findings(attrs, history) == []


# --- image configuration --------------------------------------------------------------

LAMBDA_ENV = [
    "PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LAMBDA_TASK_ROOT=/var/task",
    "LAMBDA_RUNTIME_DIR=/var/runtime",
]


def inspect_doc(**config: Any) -> dict[str, Any]:
    base_config = {
        "Entrypoint": ["/lambda-entrypoint.sh"],
        "WorkingDir": "/var/task",
        "Env": list(LAMBDA_ENV),
    }
    base_config.update(config)
    return {"Config": base_config, "Architecture": "amd64", "Size": 200 * 1024**2}


@pytest.fixture
def loaded_spec(write_spec) -> spec.ImageSpec:
    from tests.conftest import MINIMAL_PYTHON

    return spec.load(write_spec(MINIMAL_PYTHON + 'env:\n  SERVICE: "orders"\n'))


def test_a_faithful_image_passes_every_configuration_check(loaded_spec):
    built = inspect_doc(Env=[*LAMBDA_ENV, "SERVICE=orders"])

    checks = config_checks(built, inspect_doc(), loaded_spec)

    assert {c.status for c in checks} == {"pass"}, checks


def test_an_overridden_entrypoint_fails_naming_both(loaded_spec):
    built = inspect_doc(Entrypoint=["/bin/sh"], Env=[*LAMBDA_ENV, "SERVICE=orders"])

    check = by_name(config_checks(built, inspect_doc(), loaded_spec))["entrypoint"]

    assert check.status == "fail"
    assert "['/bin/sh']" in check.detail
    assert "['/lambda-entrypoint.sh']" in check.detail


def test_spec_env_and_base_env_are_compared(loaded_spec):
    built = inspect_doc(Env=["PATH=/usr/bin", "LAMBDA_TASK_ROOT=/var/task"])

    checks = by_name(config_checks(built, inspect_doc(), loaded_spec))

    assert checks["spec environment"].status == "fail"
    assert "SERVICE is missing" in checks["spec environment"].detail
    assert checks["base environment"].status == "fail"
    assert "PATH" in checks["base environment"].detail
    assert "LAMBDA_RUNTIME_DIR" in checks["base environment"].detail


@pytest.mark.parametrize(
    ("size", "status"),
    [(100 * 1024**2, "pass"), (2 * 1024**3, "warn"), (11 * 1000**3, "fail")],
    ids=["small", "over-budget", "over-lambda-limit"],
)
def test_image_size_against_budget_and_limit(loaded_spec, size, status):
    built = inspect_doc(Env=[*LAMBDA_ENV, "SERVICE=orders"])
    built["Size"] = size

    checks = by_name(
        config_checks(built, None, loaded_spec, size_warning_bytes=1024**3)
    )

    assert checks["image size"].status == status


def test_architecture_must_match(loaded_spec):
    built = inspect_doc(Env=[*LAMBDA_ENV, "SERVICE=orders"])
    built["Architecture"] = "arm64"

    check = by_name(config_checks(built, None, loaded_spec))["architecture"]

    assert check.status == "fail"
    assert "image is arm64; a x86_64 function needs amd64" in check.detail
