"""Building the company images on the local stack, and looking inside them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import yaml

from baseimage import spec as spec_module

# Run inside the image as a uid that has no entry there, like Lambda's user: every
# file under /var/task must open, and no directory may refuse a listing.
UNREADABLE_SCRIPT = """
import os, sys
bad = []
for root, dirs, files in os.walk('/var/task', onerror=lambda e: bad.append(str(e))):
    for name in files:
        path = os.path.join(root, name)
        try:
            open(path, 'rb').close()
        except OSError as exc:
            bad.append(path)
print(len(bad)); print('\\n'.join(bad[:5]))
"""


def build_json(run_cli, images: Path, runtime: str) -> dict:
    result = run_cli(
        "--images-dir", str(images), "--json", "build", "--runtime", runtime
    )
    assert result.code == 0, result.err
    [built] = json.loads(result.out)["built"]
    return built


def run_in(docker_client, image: str, *command: str) -> str:
    output = docker_client.containers.run(
        image,
        list(command),
        entrypoint=[],
        user="993:993",
        read_only=True,
        tmpfs={"/tmp": "rw"},
        remove=True,
        network_mode="none",
    )
    return output.decode()


def test_python_image_has_the_company_layer_readable_by_lambda(
    run_cli, images, docker_client
):
    folder = images("python")
    # The host's modes must not matter: make the sources private, as a strict
    # umask or checkout would.
    for path in (folder / "python").rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    os.umask(0o077)
    try:
        built = build_json(run_cli, folder, "python3.11")
    finally:
        os.umask(0o022)

    image = built["reference"]
    assert image == "baseimage/python:python3.11"
    listing = run_in(docker_client, image, "python3", "-c", UNREADABLE_SCRIPT)
    assert listing.split("\n")[0] == "0", listing

    imported = run_in(
        docker_client,
        image,
        "python3",
        "-c",
        "import company_lambda, aws_lambda_powertools, jwt, defusedxml;"
        "print(company_lambda.__file__)",
    )
    assert imported.strip() == "/var/task/company_lambda/__init__.py"
    config = run_in(docker_client, image, "cat", "/var/task/company/logging.json")
    assert json.loads(config) == json.loads(
        (folder / "python/config/logging.json").read_text()
    )


def test_python_image_keeps_the_lambda_contract_and_labels(
    run_cli, images, docker_client
):
    folder = images("python")
    built = build_json(run_cli, folder, "python3.11")
    attrs = docker_client.api.inspect_image(built["reference"])
    config = attrs["Config"]
    base = docker_client.api.inspect_image(
        built["base"]
        .split("@")[0]
        .replace("public.ecr.aws/lambda", "127.0.0.1:5000/lambda")
    )

    assert (
        config["Entrypoint"]
        == base["Config"]["Entrypoint"]
        == ["/lambda-entrypoint.sh"]
    )
    assert config["Cmd"] == base["Config"]["Cmd"]
    assert config["WorkingDir"] == "/var/task"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    spec_env = yaml.safe_load((folder / "python/image.yaml").read_text())["env"]
    for name, value in spec_env.items():
        assert env[name] == value

    labels = config["Labels"]
    assert labels["dev.baseimage.content-hash"] == built["content_hash"]
    assert (
        labels["org.opencontainers.image.base.name"]
        == "public.ecr.aws/lambda/python:3.11"
    )
    assert labels["org.opencontainers.image.base.digest"] == built["base"].split("@")[1]
    assert labels["org.opencontainers.image.version"] == "0.0.0-dev"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels["org.opencontainers.image.revision"]


def test_company_ca_is_trusted_in_the_image(run_cli, images, docker_client):
    folder = images("python")
    built = build_json(run_cli, folder, "python3.11")
    pem = (folder / "python/certs/company-root-ca.pem").read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))

    bundle = run_in(
        docker_client,
        built["reference"],
        "python3",
        "-c",
        "import ssl, os; p = ssl.get_default_verify_paths().cafile;"
        "print(p); print(open(p).read())",
    )

    path, _, text = bundle.partition("\n")
    assert path == "/usr/local/share/baseimage/ca-bundle.pem"
    assert body[:64] in text.replace("\n", "")


def test_config_only_change_reuses_the_library_layers(run_cli, images, docker_client):
    folder = images("python")
    first = build_json(run_cli, folder, "python3.11")
    config = folder / "python/config/logging.json"
    settings = json.loads(config.read_text())
    settings["level"] = "DEBUG" if settings.get("level") != "DEBUG" else "INFO"
    config.write_text(json.dumps(settings))
    second = build_json(run_cli, folder, "python3.11")

    def layer_of(image: str, marker: str) -> str:
        # Newest step first: the last COPY of a folder is the configuration's.
        for entry in docker_client.api.history(image):
            if marker in entry["CreatedBy"]:
                return str(entry["Id"])
        raise AssertionError(f"no {marker!r} step in {image}")

    assert first["content_hash"] != second["content_hash"]
    assert layer_of(first["id"], "pip install") == layer_of(second["id"], "pip install")
    assert layer_of(first["id"], "COPY dir:") != layer_of(second["id"], "COPY dir:")


def test_java_image_has_verified_jars_on_the_class_path(run_cli, images, docker_client):
    folder = images("java")
    built = build_json(run_cli, folder, "java17")
    loaded = spec_module.load(folder / "java")

    container = docker_client.containers.create(built["reference"])
    try:
        bits, _ = container.get_archive("/var/task")
        archive = tarfile.open(fileobj=io.BytesIO(b"".join(bits)))  # noqa: SIM115
        members = {m.name: m for m in archive.getmembers()}
        for artifact in loaded.java.artifacts:  # type: ignore[union-attr]
            member = members[f"task/lib/{artifact.filename}"]
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == artifact.sha256
            assert member.mode & 0o004
        config = members["task/log4j2.xml"]
        assert config.mode & 0o444 == 0o444
    finally:
        container.remove()

    env = dict(
        e.split("=", 1)
        for e in docker_client.api.inspect_image(built["reference"])["Config"]["Env"]
    )
    assert env["JAVA_TOOL_OPTIONS"] == "-XX:+TieredCompilation -XX:TieredStopAtLevel=1"


def test_missing_library_fails_the_build_with_pips_words(run_cli, images):
    folder = images("python")
    (folder / "python/requirements.txt").write_text("no-such-package-baseimage==1.0\n")

    result = run_cli("--images-dir", str(folder), "build", "--runtime", "python3.11")

    assert result.code == 3
    assert "error: build failed: The command" in result.err
    assert "no-such-package-baseimage" in result.err


def test_missing_base_image_is_named_with_the_fix(run_cli, images):
    folder = images("python")
    spec_file = folder / "python/image.yaml"
    spec_file.write_text(spec_file.read_text().replace("python:3.11", "python:0.0"))

    result = run_cli("--images-dir", str(folder), "build", "--runtime", "python3.11")

    assert result.code == 6
    assert "error: cannot pull 127.0.0.1:5000/lambda/python:0.0" in result.err
    assert "check the image name, the mirrors mapping" in result.err
