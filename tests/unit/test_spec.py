"""The image spec: what loads, and the exact problems reported for each mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from baseimage import spec
from baseimage.errors import SpecInvalid, UsageError
from tests.conftest import CERT, MINIMAL_PYTHON, ROOT


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SpecInvalid) as info:
        spec.load(path)
    return info.value.problems


def test_minimal_spec_loads_with_default_base(write_spec):
    loaded = spec.load(write_spec())

    rt = loaded.runtime("python3.11")
    assert rt.base == "public.ecr.aws/lambda/python:3.11"
    assert rt.digest is None and not rt.pinned
    assert loaded.registry.host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert loaded.name == "python"


def test_the_project_specs_are_valid():
    for path in spec.discover(ROOT / "images"):
        loaded = spec.load(path)
        assert loaded.runtimes, path


def test_digest_in_base_reference_pins_it(write_spec):
    digest = "sha256:" + "a" * 64
    path = write_spec(
        MINIMAL_PYTHON.replace(
            'base: "public.ecr.aws/lambda/python:3.11"',
            f'base: "public.ecr.aws/lambda/python:3.11@{digest}"',
        )
    )

    rt = spec.load(path).runtime("python3.11")

    assert rt.base == "public.ecr.aws/lambda/python:3.11"
    assert rt.digest == digest


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            'account: "123456789012"',
            "account: 123456789012",
            ":8: registry.account: expected a 12-digit AWS account id in quotes, "
            "but YAML reads '123456789012' as a number; write it in quotes: "
            '"123456789012"',
            id="unquoted-account",
        ),
        pytest.param(
            "  python3.11:",
            "  3.11:",
            ":3: runtimes key: expected a string, but YAML reads '3.11' as a "
            'number; write it in quotes: "3.11"',
            id="runtime-as-number",
        ),
        pytest.param(
            "  python3.11:",
            "  python311:",
            ":3: runtimes.python311: unknown runtime; did you mean "
            "'python3.11'? known runtimes: python3.10, python3.11, python3.12, "
            "python3.13, java11, java17, java21",
            id="unknown-runtime",
        ),
        pytest.param(
            "registry:",
            "registri:",
            ":5: registri: unknown key; did you mean 'registry'?",
            id="misspelt-key",
        ),
        pytest.param(
            'region: "us-east-1"',
            'region: "Virginia"',
            ":7: registry.region: expected an AWS region like us-east-1, got "
            "'Virginia'",
            id="bad-region",
        ),
        pytest.param(
            'repository: "company/test-base"',
            'repository: "Company Base"',
            ":6: registry.repository: expected an ECR repository name like "
            "company/lambda-base, got 'Company Base'",
            id="bad-repository",
        ),
    ],
)
def test_each_mistake_names_line_field_and_fix(write_spec, old, new, expected):
    path = write_spec(MINIMAL_PYTHON.replace(old, new))

    problems = problems_of(path)

    assert problems == [f"{path}{expected}"]


def test_type_guessing_in_env_is_an_error(write_spec):
    path = write_spec(MINIMAL_PYTHON + "env:\n  LOG_EVENT: false\n  RETRIES: 3\n")

    problems = problems_of(path)

    assert problems == [
        f"{path}:10: env.LOG_EVENT: expected a string, but YAML reads 'false' as a "
        'boolean; write it in quotes: "false"',
        f"{path}:11: env.RETRIES: expected a string, but YAML reads '3' as a number; "
        'write it in quotes: "3"',
    ]


def test_every_problem_is_reported_at_once(write_spec):
    text = MINIMAL_PYTHON.replace('account: "123456789012"', "account: 12")
    text += 'color: "blue"\nenv:\n  PATH: "/tmp"\n  DB_PASSWORD: "hunter2"\n'
    path = write_spec(text)

    problems = problems_of(path)

    assert len(problems) == 4
    assert problems[0].endswith(
        "color: unknown key; allowed: description, runtimes, "
        "mirrors, registry, trust, python, java, files, env, scan, architecture, test"
    )
    assert "registry.account" in problems[1]
    assert "env.PATH: is set by Lambda or its base image" in problems[2]
    assert "env.DB_PASSWORD: looks like a credential" in problems[3]


def test_missing_sections_are_named(write_spec):
    path = write_spec('description: "x"\n')

    assert problems_of(path) == [
        f"{path}:1: runtimes: missing; see README 'Image spec'",
        f"{path}:1: registry: missing; see README 'Image spec'",
    ]


def test_yaml_syntax_error_names_the_line(write_spec):
    path = write_spec(MINIMAL_PYTHON + "env: [unclosed\n")

    [problem] = problems_of(path)

    assert problem.startswith(f"{path}:")
    assert "not valid YAML" in problem


def test_duplicate_key_is_an_error(write_spec):
    path = write_spec(MINIMAL_PYTHON + 'description: "again"\n')

    assert problems_of(path) == [f"{path}:9: description: appears twice; keep one"]


def test_paths_must_stay_inside_the_spec_folder(write_spec, tmp_path):
    (tmp_path / "outside.pem").write_text(CERT)
    path = write_spec(
        MINIMAL_PYTHON + 'trust:\n  ca_certificates: ["../../outside.pem"]\n'
    )

    [problem] = problems_of(path)

    assert (
        "trust.ca_certificates[0]: '../../outside.pem' is outside the spec folder"
        in problem
    )


def test_symlink_out_of_the_folder_is_refused(write_spec, tmp_path):
    (tmp_path / "secret.txt").write_text("not yours")
    path = write_spec(
        MINIMAL_PYTHON + 'files:\n  - source: "link.txt"\n    target: "x"\n'
    )
    os.symlink(tmp_path / "secret.txt", path.parent / "link.txt")

    [problem] = problems_of(path)

    assert "files[0].source: 'link.txt' is outside the spec folder" in problem


def test_missing_file_and_bad_target(write_spec):
    path = write_spec(
        MINIMAL_PYTHON + 'files:\n  - source: "nope.json"\n'
        '    target: "../etc/passwd"\n'
    )

    problems = problems_of(path)

    assert problems[0].endswith(
        f"files[0].source: file 'nope.json' not found in {path.parent.resolve()}"
    )
    assert "files[0].target: '../etc/passwd' must name a file under" in problems[1]


def test_python_and_java_layers_are_read(write_spec):
    text = MINIMAL_PYTHON + (
        'python:\n  requirements: "requirements.txt"\n  packages: ["company"]\n'
        'trust:\n  ca_certificates: ["ca.pem"]\n'
    )
    path = write_spec(
        text,
        files={
            "requirements.txt": "pyjwt==2.15.1\n",
            "company/__init__.py": "",
            "ca.pem": CERT,
        },
    )

    loaded = spec.load(path)

    assert loaded.python is not None
    assert loaded.python.packages[0].name == "company"
    assert [p.name for p in loaded.ca_certificates] == ["ca.pem"]
    assert path in loaded.input_files()


def test_java_artifact_rules(write_spec):
    text = MINIMAL_PYTHON.replace("python3.11", "java17") + (
        "java:\n  artifacts:\n"
        '    - coordinates: "org.slf4j:slf4j-api"\n      sha256: "abc"\n'
    )
    path = write_spec(text, name="java")

    problems = problems_of(path)

    assert (
        "java.artifacts[0].coordinates: expected group:artifact:version" in problems[0]
    )
    assert "java.artifacts[0].sha256: expected 64 lowercase hex digits" in problems[1]


def test_a_python_section_needs_a_python_runtime(write_spec):
    text = MINIMAL_PYTHON.replace("python3.11", "java17") + "python:\n  packages: []\n"

    [problem] = problems_of(write_spec(text))

    assert problem.endswith("python: has a python section but no python runtime")


def test_find_picks_the_spec_that_declares_the_runtime(write_spec, tmp_path):
    write_spec()
    write_spec(MINIMAL_PYTHON.replace("python3.11", "java17"), name="java")
    images = tmp_path / "images"

    [found] = spec.find(images, "java17", None)

    assert found.name == "java"
    assert {s.name for s in spec.find(images, None, None)} == {"java", "python"}


def test_find_explains_an_undeclared_runtime(write_spec, tmp_path):
    write_spec()

    with pytest.raises(UsageError) as info:
        spec.find(tmp_path / "images", "python3.12", None)

    assert "no spec in" in info.value.message and "declares runtime python3.12" in (
        info.value.message
    )


def test_find_rejects_unknown_runtime_listing_known(write_spec, tmp_path):
    write_spec()

    with pytest.raises(UsageError) as info:
        spec.find(tmp_path / "images", "go1.x", None)

    assert info.value.message == (
        "unknown runtime 'go1.x'; known runtimes: python3.10, python3.11, python3.12, "
        "python3.13, java11, java17, java21"
    )


def test_two_specs_with_one_runtime_need_image(write_spec, tmp_path):
    write_spec()
    write_spec(name="python-slim")

    with pytest.raises(UsageError, match="pick one with --image"):
        spec.find(tmp_path / "images", "python3.11", None)

    [chosen] = spec.find(tmp_path / "images", "python3.11", "python-slim")
    assert chosen.name == "python-slim"


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        pytest.param(
            'env:\n  DB_PASSWD: "x"\n',
            "env.DB_PASSWD: looks like a credential",
            id="credential-name",
        ),
        pytest.param(
            'env:\n  SOME_ID: "AKIAABCDEFGHIJKLMNOP"\n',
            "env.SOME_ID: holds what looks like a credential",
            id="credential-value",
        ),
        pytest.param(
            'env:\n  AWS_LAMBDA_RUNTIME_API: "x"\n',
            "env.AWS_LAMBDA_RUNTIME_API: is set by Lambda",
            id="lambda-reserved",
        ),
        pytest.param(
            'env:\n  SSL_CERT_FILE: "/x"\n',
            "env.SSL_CERT_FILE: is set from the trust section",
            id="trust-env",
        ),
        pytest.param(
            'env:\n  MULTI: "a\\nb"\n',
            "env.MULTI: holds a line break",
            id="newline-value",
        ),
        pytest.param(
            'files:\n  - {source: "c.json", target: "."}\n',
            "files[0].target: '.' must name a file under /var/task",
            id="target-dot",
        ),
        pytest.param(
            'files:\n  - {source: "c.json", target: "conf/"}\n',
            "files[0].target: 'conf/' must name a file",
            id="target-folder",
        ),
        pytest.param(
            'files:\n  - {source: "c.json", target: "company"}\n'
            '  - {source: "c.json", target: "company/x.json"}\n',
            "files[1].target: 'company/x.json' clashes with the target 'company'",
            id="target-clash",
        ),
    ],
)
def test_values_that_would_break_or_leak_are_refused(write_spec, snippet, message):
    path = write_spec(MINIMAL_PYTHON + snippet, files={"c.json": "{}"})

    assert any(message in p for p in problems_of(path)), problems_of(path)


def test_a_trailing_newline_never_passes_a_pattern(write_spec):
    path = write_spec(
        MINIMAL_PYTHON.replace('region: "us-east-1"', 'region: "us-east-1\\n"')
    )

    [problem] = problems_of(path)

    assert "registry.region: expected an AWS region like us-east-1" in problem


def test_symlinks_inside_a_package_are_refused(write_spec, tmp_path):
    (tmp_path / "secret").write_text("host only")
    text = MINIMAL_PYTHON + 'python:\n  packages: ["company"]\n'
    path = write_spec(text, files={"company/__init__.py": ""})
    os.symlink(tmp_path / "secret", path.parent / "company" / "shadow")

    [problem] = problems_of(path)

    assert problem.endswith(
        "python.packages[0]: company/shadow is a symlink; package "
        "folders must hold plain files only"
    )


def test_the_folder_name_must_make_an_image_name(write_spec):
    path = write_spec(name="My Image")

    [problem] = problems_of(path)

    assert "the folder name 'My Image' names the image" in problem


def test_integers_are_decimal(write_spec):
    path = write_spec(MINIMAL_PYTHON + "scan:\n  timeout_seconds: 010\n")

    [problem] = problems_of(path)

    assert "scan.timeout_seconds: expected a whole number in decimal, got '010'" in (
        problem
    )


def test_architecture_and_size_budget(write_spec):
    loaded = spec.load(
        write_spec(
            MINIMAL_PYTHON + 'architecture: "x86_64"\ntest:\n  size_warning_mb: 300\n'
        )
    )
    arm = write_spec(MINIMAL_PYTHON + 'architecture: "arm64"\n', name="arm")

    assert (loaded.architecture, loaded.size_warning_mb) == ("x86_64", 300)
    assert problems_of(arm)[0].endswith(
        "architecture: arm64 images are not built yet; only x86_64 is supported today"
    )
