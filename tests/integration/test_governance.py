"""Governed publishing on the local stack: repository settings, the scan gate,
several regions, the image test gate, and what was published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.integration.conftest import registry_tags, repository_of

MOTO = "http://127.0.0.1:5050"
EU_REGISTRY = "http://127.0.0.1:5002"


def add_to_registry(folder: Path, name: str, lines: str) -> None:
    """Insert lines at the end of the spec's registry section."""
    spec_file = folder / name / "image.yaml"
    text = spec_file.read_text()
    anchor = '  account: "123456789012"\n'
    assert anchor in text
    spec_file.write_text(text.replace(anchor, anchor + lines, 1))


def set_scan(folder: Path, name: str, text: str) -> None:
    """Replace the spec's scan section (the last one in the project's specs)."""
    spec_file = folder / name / "image.yaml"
    current = spec_file.read_text()
    assert "\nscan:\n" in current
    spec_file.write_text(current[: current.index("\nscan:\n")] + "\n" + text)


def publish(run_cli, folder: Path, *extra: str):
    return run_cli(
        "--images-dir",
        str(folder),
        "--json",
        "publish",
        "--version",
        "1.4.0",
        "--runtime",
        "python3.11",
        "--report-dir",
        str(folder.parent / "reports"),
        *extra,
    )


def stage_scan_result(
    repo: str, status: str, findings: list[tuple[str, str]], region: str = "us-east-1"
) -> None:
    """Have moto's ECR answer the next scan of an image in `repo` with this result."""
    counts: dict[str, int] = {}
    for _, severity in findings:
        counts[severity] = counts.get(severity, 0) + 1
    result = {
        "registryId": "123456789012",
        "repositoryName": repo,
        "imageId": {},
        "imageScanStatus": {"status": status, "description": f"staged {status}"},
        "imageScanFindings": {
            "findings": [
                {
                    "name": n,
                    "severity": s,
                    "uri": f"https://example.invalid/{n}",
                    "attributes": [{"key": "package_name", "value": "openssl"}],
                }
                for n, s in findings
            ],
            "findingSeverityCounts": counts,
        },
    }
    response = requests.post(
        f"{MOTO}/moto-api/static/ecr/scan-finding-results",
        json={"results": [result], "region": region},
        timeout=10,
    )
    response.raise_for_status()


def test_repo_check_finds_drift_per_setting_and_apply_repairs_it(run_cli, images, ecr):
    folder = images("python")
    repo = repository_of(folder, "python")
    spec_file = folder / "python/image.yaml"
    spec_file.write_text(
        spec_file.read_text().replace(
            "  pull:\n", '  pull:\n    organizations: ["o-abcdefghij"]\n', 1
        )
    )
    created = ecr.create_repository(
        repositoryName=repo,
        imageTagMutability="MUTABLE",
        tags=[{"Key": "team", "Value": "someone-else"}],
    )
    ecr.put_lifecycle_policy(
        repositoryName=repo,
        lifecyclePolicyText=json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {
                            "tagStatus": "any",
                            "countType": "imageCountMoreThan",
                            "countNumber": 5,
                        },
                        "action": {"type": "expire"},
                    }
                ]
            }
        ),
    )

    check = run_cli("--images-dir", str(folder), "--json", "repo", "check")

    assert check.code == 5
    [state] = json.loads(check.out)["repositories"]
    drift = set(state["drift"])
    assert {
        "tag mutability",
        "scan on push",
        "lifecycle policy",
        "repository policy",
        "tags",
        "effective scanning",
    } <= drift
    assert "encryption" not in drift
    assert "error: drift found:" in check.err

    applied = run_cli("--images-dir", str(folder), "repo", "apply")

    assert applied.code == 0, applied.err
    settings = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert settings["imageTagMutability"] == "IMMUTABLE"
    assert settings["imageScanningConfiguration"]["scanOnPush"] is True
    lifecycle = json.loads(
        ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"]
    )
    assert [r["selection"]["tagStatus"] for r in lifecycle["rules"]] == ["untagged"]
    policy = json.loads(ecr.get_repository_policy(repositoryName=repo)["policyText"])
    assert {s["Sid"] for s in policy["Statement"]} == {
        "PullFromOrganization",
        "LambdaPull",
    }
    arn = created["repository"]["repositoryArn"]
    tags = ecr.list_tags_for_resource(resourceArn=arn)["tags"]
    assert {"Key": "team", "Value": "platform"} in tags

    again = run_cli("--images-dir", str(folder), "repo", "check")
    assert again.code == 0, again.err


def test_encryption_drift_cannot_be_fixed_in_place(run_cli, images, ecr):
    folder = images("python")
    repo = repository_of(folder, "python")
    ecr.create_repository(
        repositoryName=repo,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS"},
    )

    applied = run_cli("--images-dir", str(folder), "repo", "apply")

    assert applied.code == 5
    assert "encryption KMS (want AES256)" in applied.err
    assert "ECR cannot change encryption after creation" in applied.err


@pytest.mark.parametrize(
    ("severity", "exit_code"),
    [
        pytest.param("CRITICAL", 5, id="critical-refused"),
        pytest.param("HIGH", 5, id="high-refused"),
        pytest.param("MEDIUM", 0, id="medium-passes"),
        pytest.param("LOW", 0, id="low-passes"),
    ],
)
def test_scan_gate_by_severity(run_cli, images, ecr, severity, exit_code):
    folder = images("python")
    repo = repository_of(folder, "python")
    stage_scan_result(repo, "COMPLETE", [("CVE-2026-0001", severity)])

    result = publish(run_cli, folder)

    assert result.code == exit_code, result.err
    tags = registry_tags(repo)
    if exit_code:
        assert "failed the scan gate" in result.err
        assert f"CVE-2026-0001 ({severity})" in result.err
        assert "The version tag 1.4.0-python3.11 was not created" in result.err
        assert "1.4.0-python3.11" not in tags
        assert len(tags) == 1 and "-sha256-" in tags[0]
    else:
        assert "1.4.0-python3.11" in tags
        [published] = json.loads(result.out)["published"]
        assert published["destinations"][0]["scan"]["counts"] == {severity: 1}


@pytest.mark.parametrize(
    ("expires", "exit_code"),
    [
        pytest.param("2999-12-31", 0, id="allowed"),
        pytest.param("2020-01-31", 5, id="allowance-expired"),
    ],
)
def test_allowlisted_finding(run_cli, images, ecr, expires, exit_code):
    folder = images("python")
    repo = repository_of(folder, "python")
    set_scan(
        folder,
        "python",
        (
            'scan:\n  fail_on: "HIGH"\n  allow:\n    - id: "CVE-2026-0002"\n'
            '      reason: "the vulnerable code path needs a shell; Lambda has none"\n'
            f'      expires: "{expires}"\n'
        ),
    )
    stage_scan_result(repo, "COMPLETE", [("CVE-2026-0002", "CRITICAL")])

    result = publish(run_cli, folder)

    assert result.code == exit_code, result.err
    if exit_code:
        assert "allowances expired for CVE-2026-0002" in result.err
    else:
        [published] = json.loads(result.out)["published"]
        allowed = published["destinations"][0]["scan"]["allowed"]
        assert [a["id"] for a in allowed] == ["CVE-2026-0002"]


def test_scan_that_never_completes_fails_the_publish(run_cli, images, ecr):
    folder = images("python")
    repo = repository_of(folder, "python")
    set_scan(folder, "python", "scan:\n  timeout_seconds: 4\n")
    stage_scan_result(repo, "IN_PROGRESS", [])

    result = publish(run_cli, folder)

    assert result.code == 5
    assert "no scan result within 4s (last status IN_PROGRESS)" in result.err
    assert "1.4.0-python3.11" not in registry_tags(repo)


def test_publish_to_two_regions_and_report_each(run_cli, images, monkeypatch, tmp_path):
    folder = images("python")
    repo = repository_of(folder, "python")
    add_to_registry(folder, "python", '  replicas:\n    - region: "eu-west-1"\n')
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    result = publish(run_cli, folder)

    assert result.code == 0, result.err
    [published] = json.loads(result.out)["published"]
    by_region = {d["destination"]: d for d in published["destinations"]}
    assert set(by_region) == {"123456789012/us-east-1", "123456789012/eu-west-1"}
    for region in ("us-east-1", "eu-west-1"):
        ecr = boto3.client("ecr", region_name=region)
        listed = ecr.describe_images(
            repositoryName=repo, imageIds=[{"imageTag": "1.4.0-python3.11"}]
        )
        assert (
            listed["imageDetails"][0]["imageDigest"]
            == by_region[f"123456789012/{region}"]["digest"]
        )
    eu_tags = requests.get(f"{EU_REGISTRY}/v2/{repo}/tags/list", timeout=10).json()
    assert "1.4.0-python3.11" in eu_tags["tags"]
    report = json.loads(
        (folder.parent / "reports/publish-1.4.0-python3.11.json").read_text()
    )
    assert report["ok"] is True
    markdown = summary.read_text()
    assert "| python | python3.11 | 123456789012/eu-west-1 | published |" in markdown


def test_one_region_failing_is_reported_and_the_other_is_done(run_cli, images):
    folder = images("python")
    repo = repository_of(folder, "python")
    add_to_registry(folder, "python", '  replicas:\n    - region: "eu-west-1"\n')
    eu = boto3.client("ecr", region_name="eu-west-1")
    eu.create_repository(
        repositoryName=repo,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS"},
    )

    result = publish(run_cli, folder)

    assert result.code == 5
    assert (
        f"error: {repo}:1.4.0-python3.11 published to 123456789012/us-east-1; "
        "FAILED in 123456789012/eu-west-1"
    ) in result.err
    assert "1.4.0-python3.11" in registry_tags(repo)
    eu_tags = requests.get(f"{EU_REGISTRY}/v2/{repo}/tags/list", timeout=10)
    assert eu_tags.status_code == 404 or not eu_tags.json().get("tags")
    report = json.loads(
        (folder.parent / "reports/publish-1.4.0-python3.11.json").read_text()
    )
    statuses = {
        d["destination"]: d["status"] for d in report["published"][0]["destinations"]
    }
    assert statuses == {
        "123456789012/us-east-1": "published",
        "123456789012/eu-west-1": "failed",
    }


def test_versions_and_use_show_what_was_published(run_cli, images):
    folder = images("python")
    first = publish(run_cli, folder)
    assert first.code == 0, first.err
    digest = json.loads(first.out)["published"][0]["destinations"][0]["digest"]
    repo = repository_of(folder, "python")

    listed = run_cli(
        "--images-dir", str(folder), "--json", "versions", "--runtime", "python3.11"
    )
    use = run_cli(
        "--images-dir",
        str(folder),
        "use",
        "--version",
        "1.4.0",
        "--runtime",
        "python3.11",
    )
    missing = run_cli(
        "--images-dir",
        str(folder),
        "use",
        "--version",
        "9.9.9",
        "--runtime",
        "python3.11",
    )

    assert listed.code == 0, listed.err
    [release] = json.loads(listed.out)["versions"]
    assert (release["version"], release["runtime"], release["digest"]) == (
        "1.4.0",
        "python3.11",
        digest,
    )
    assert release["scan_status"] == "COMPLETE"
    assert use.out.strip() == (
        f"FROM 123456789012.dkr.ecr.us-east-1.amazonaws.com/"
        f"{repo}:1.4.0-python3.11@{digest}"
    )
    assert missing.code == 2
    assert "9.9.9-python3.11 is not published" in missing.err


BROKEN_INIT = "raise RuntimeError('company settings missing at init')\n"


def test_publish_refuses_an_image_that_fails_its_lambda_test(run_cli, images):
    folder = images("python")
    repo = repository_of(folder, "python")
    init = folder / "python/company_lambda/__init__.py"
    init.write_text(init.read_text() + BROKEN_INIT)

    refused = publish(run_cli, folder)

    assert refused.code == 4
    assert "failed its Lambda test, so it is not published" in refused.err
    assert registry_tags(repo) == []


def test_skipping_the_test_is_loud_and_recorded(run_cli, images, docker_client):
    folder = images("python")
    init = folder / "python/company_lambda/__init__.py"
    init.write_text(init.read_text() + BROKEN_INIT)

    result = publish(run_cli, folder, "--skip-test", "emergency fix, INC-42")

    assert result.code == 0, result.err
    assert "THE LAMBDA TEST WAS SKIPPED" in result.err
    [published] = json.loads(result.out)["published"]
    assert published["test"] == {"skipped": True, "reason": "emergency fix, INC-42"}
    labels: dict[str, Any] = docker_client.api.inspect_image(
        "baseimage/python:python3.11"
    )["Config"]["Labels"]
    assert labels["dev.baseimage.test"] == "skipped"
    markdown = (folder.parent / "reports/publish-1.4.0-python3.11.md").read_text()
    assert "**SKIPPED**" in markdown


@pytest.fixture
def enhanced_scanning_elsewhere(ecr):
    """Registry-level enhanced scanning whose only rule covers other repositories."""
    ecr.put_registry_scanning_configuration(
        scanType="ENHANCED",
        rules=[
            {
                "scanFrequency": "SCAN_ON_PUSH",
                "repositoryFilters": [
                    {"filter": "other-team/*", "filterType": "WILDCARD"}
                ],
            }
        ],
    )
    yield
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])


def test_registry_scanning_overrides_the_repository(
    run_cli, images, enhanced_scanning_elsewhere
):
    folder = images("python")
    repo = repository_of(folder, "python")

    check = run_cli("--images-dir", str(folder), "--json", "repo", "check")
    refused = publish(run_cli, folder)

    states = json.loads(check.out)["repositories"]
    assert check.code == 5 and states[0]["exists"] is False
    assert refused.code == 5
    assert (
        "effective scanning enhanced scanning, but no registry rule covers this "
        "repository (want scans on push)"
    ) in refused.err
    assert "put-registry-scanning-configuration" in refused.err
    assert registry_tags(repo) == []
