"""The scan gate's judgement, its timeout, effective scanning and repository rules."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from baseimage import repo_settings, scan, spec
from baseimage.errors import SpecInvalid
from baseimage.repo_spec import Allowance, RegistrySpec, ScanPolicy
from tests.conftest import MINIMAL_PYTHON

TODAY = date(2026, 12, 4)


def basic(*findings: tuple[str, str]) -> dict[str, Any]:
    return {
        "imageScanStatus": {"status": "COMPLETE"},
        "imageScanFindings": {
            "findings": [{"name": n, "severity": s} for n, s in findings]
        },
    }


def enhanced(*findings: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "imageScanStatus": {"status": "ACTIVE"},
        "imageScanFindings": {
            "enhancedFindings": [
                {
                    "severity": s,
                    "status": status,
                    "title": f"{n} in openssl",
                    "packageVulnerabilityDetails": {
                        "vulnerabilityId": n,
                        "vulnerablePackages": [{"name": "openssl"}],
                    },
                }
                for n, s, status in findings
            ]
        },
    }


@pytest.mark.parametrize(
    ("severity", "fail_on", "passed"),
    [
        pytest.param("CRITICAL", "HIGH", False, id="critical-fails-high-gate"),
        pytest.param("HIGH", "HIGH", False, id="high-fails-high-gate"),
        pytest.param("MEDIUM", "HIGH", True, id="medium-passes-high-gate"),
        pytest.param("MEDIUM", "MEDIUM", False, id="medium-fails-medium-gate"),
        pytest.param("LOW", "MEDIUM", True, id="low-passes-medium-gate"),
        pytest.param("INFORMATIONAL", "LOW", True, id="informational-passes-low"),
        pytest.param("UNTRIAGED", "HIGH", True, id="untriaged-passes-high"),
        pytest.param("UNTRIAGED", "LOW", False, id="untriaged-fails-low"),
    ],
)
def test_each_severity_against_the_threshold(severity, fail_on, passed):
    verdict = scan.judge(
        basic(("CVE-2026-0001", severity)), ScanPolicy(fail_on=fail_on), TODAY
    )

    assert verdict.passed is passed


def test_blocking_findings_are_named():
    verdict = scan.judge(
        basic(("CVE-1", "CRITICAL"), ("CVE-2", "HIGH"), ("CVE-3", "LOW")),
        ScanPolicy(),
        TODAY,
    )

    assert not verdict.passed
    assert verdict.reason == (
        "2 finding(s) at or above HIGH: CVE-1 (CRITICAL), CVE-2 (HIGH)"
    )
    assert verdict.counts == {"CRITICAL": 1, "HIGH": 1, "LOW": 1}


def test_allowlisted_finding_passes_until_it_expires():
    allow = (Allowance("CVE-1", "not reachable from Lambda", date(2026, 12, 4)),)
    policy = ScanPolicy(allow=allow)

    today = scan.judge(basic(("CVE-1", "HIGH")), policy, TODAY)
    tomorrow = scan.judge(basic(("CVE-1", "HIGH")), policy, date(2026, 12, 5))

    assert today.passed and [f.id for f in today.allowed] == ["CVE-1"]
    assert not tomorrow.passed
    assert tomorrow.reason.endswith("allowances expired for CVE-1")


def test_enhanced_findings_are_read_and_suppressed_ones_skipped():
    result = enhanced(("CVE-9", "HIGH", "ACTIVE"), ("CVE-8", "CRITICAL", "SUPPRESSED"))

    verdict = scan.judge(result, ScanPolicy(), TODAY)

    assert [(f.id, f.package) for f in verdict.blocking] == [("CVE-9", "openssl")]


class FakeScans:
    """describe_image_scan_findings answers from a script of statuses."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.started = 0

    def describe_image_scan_findings(self, **_: Any) -> dict[str, Any]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == "missing":
            import botocore.exceptions

            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ScanNotFoundException", "Message": "no scan"}},
                "DescribeImageScanFindings",
            )
        if isinstance(answer, str):
            return {"imageScanStatus": {"status": answer, "description": "why"}}
        return dict(answer)

    def start_image_scan(self, **_: Any) -> dict[str, Any]:
        self.started += 1
        return {}


class FakeEcr:
    def __init__(self, client: FakeScans) -> None:
        from baseimage.ecr import Ecr

        self._ecr = Ecr(client, RegistrySpec("r/x", "us-east-1", "123456789012"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ecr, name)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run_gate(answers: list[Any], *, timeout: int = 30, on_push: bool = True):
    client = FakeScans(answers)
    clock = Clock()
    waiter = scan.Waiter(clock=clock, sleep=clock.sleep, today=lambda: TODAY)
    verdict = scan.wait_and_judge(
        FakeEcr(client),
        "sha256:abc",  # type: ignore[arg-type]
        ScanPolicy(timeout_seconds=timeout),
        scans_on_push=on_push,
        waiter=waiter,
    )
    return verdict, client, clock


def test_a_scan_that_never_completes_is_a_failure_not_zero_findings():
    verdict, _, clock = run_gate(["IN_PROGRESS"], timeout=30)

    assert not verdict.passed
    assert verdict.reason == (
        "no scan result within 30s (last status IN_PROGRESS); an "
        "unfinished scan is not a clean one"
    )
    assert 30 <= clock.now <= 33


def test_waits_through_progress_then_judges():
    verdict, _, _ = run_gate(["missing", "IN_PROGRESS", basic(("CVE-1", "LOW"))])

    assert verdict.passed and verdict.counts == {"LOW": 1}


@pytest.mark.parametrize(
    "status",
    ["FAILED", "UNSUPPORTED_IMAGE", "FINDINGS_UNAVAILABLE", "SCAN_ELIGIBILITY_EXPIRED"],
)
def test_terminal_statuses_fail_with_the_status(status):
    verdict, _, _ = run_gate([status])

    assert not verdict.passed
    assert verdict.reason == f"the scan ended {status}: why"


def test_manual_scanning_starts_a_scan_at_once():
    _, client, _ = run_gate(["missing", basic()], on_push=False)

    assert client.started == 1


def test_scan_on_push_waits_before_starting_one_itself():
    _, client, clock = run_gate(["missing"] * 5 + [basic()], on_push=True)

    assert client.started == 0 and clock.now < 15

    _, client, _ = run_gate(["missing"] * 10 + [basic()], on_push=True)
    assert client.started == 1


REG = RegistrySpec("company/base", "us-east-1", "123456789012")


@pytest.mark.parametrize(
    ("registry", "repository", "expected"),
    [
        pytest.param(
            {"scanType": "BASIC", "rules": []},
            {"imageScanningConfiguration": {"scanOnPush": True}},
            ("basic scanning, on push (repository setting)", True),
            id="basic-repository-flag",
        ),
        pytest.param(
            {
                "scanType": "BASIC",
                "rules": [
                    {
                        "scanFrequency": "SCAN_ON_PUSH",
                        "repositoryFilters": [{"filter": "other/*"}],
                    }
                ],
            },
            {"imageScanningConfiguration": {"scanOnPush": True}},
            ("basic scanning, manual (registry rules override the repository)", False),
            id="registry-rules-override",
        ),
        pytest.param(
            {
                "scanType": "ENHANCED",
                "rules": [
                    {
                        "scanFrequency": "CONTINUOUS_SCAN",
                        "repositoryFilters": [{"filter": "company/*"}],
                    }
                ],
            },
            {"imageScanningConfiguration": {"scanOnPush": False}},
            ("enhanced scanning, CONTINUOUS_SCAN (registry rule 'company/*')", True),
            id="enhanced-rule",
        ),
        pytest.param(
            {"scanType": "ENHANCED", "rules": []},
            {"imageScanningConfiguration": {"scanOnPush": True}},
            ("enhanced scanning, but no registry rule covers this repository", False),
            id="enhanced-no-rule",
        ),
    ],
)
def test_effective_scanning(registry, repository, expected):
    assert repo_settings.effective_scanning(registry, repository, REG) == expected


def test_lifecycle_policy_only_ever_expires_untagged_images():
    rules = json.loads(repo_settings.lifecycle_policy(14))["rules"]

    assert [r["selection"]["tagStatus"] for r in rules] == ["untagged"]


def test_policy_grants_pull_to_organization_and_lambda(write_spec):
    text = MINIMAL_PYTHON.replace(
        '  account: "123456789012"\n',
        (
            '  account: "123456789012"\n  pull:\n    organizations: ["o-abcdefghij"]\n'
            "    lambda: true\n"
        ),
    )
    loaded = spec.load(write_spec(text))

    policy = json.loads(repo_settings.repository_policy(loaded.registry) or "{}")

    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert sids["PullFromOrganization"]["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": ["o-abcdefghij"]}
    }
    assert sids["LambdaPull"]["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_registry_and_scan_sections_parse(write_spec):
    text = MINIMAL_PYTHON.replace(
        '  account: "123456789012"\n',
        (
            '  account: "123456789012"\n'
            '  replicas: [{region: "eu-west-1"}]\n'
            '  tag_mutability: "IMMUTABLE_WITH_EXCLUSION"\n  mutable_tags: ["latest"]\n'
            '  expire_untagged_after_days: 14\n  tags: {team: "platform"}\n'
        ),
    ) + (
        'scan:\n  fail_on: "CRITICAL"\n  timeout_seconds: 120\n  allow:\n'
        '    - id: "CVE-2026-1"\n      reason: "not reachable"\n'
        "      expires: 2027-01-31\n"
    )

    loaded = spec.load(write_spec(text))

    assert [str(d) for d in loaded.registry.destinations] == [
        "123456789012/us-east-1",
        "123456789012/eu-west-1",
    ]
    assert loaded.registry.tag_is_mutable("latest")
    assert not loaded.registry.tag_is_mutable("1.4.0-python3.11")
    assert loaded.scan == ScanPolicy(
        "CRITICAL", 120, (Allowance("CVE-2026-1", "not reachable", date(2027, 1, 31)),)
    )


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        pytest.param(
            'scan:\n  fail_on: "SEVERE"\n',
            "scan.fail_on: expected one of CRITICAL, HIGH, MEDIUM, LOW, "
            "INFORMATIONAL, got 'SEVERE'",
            id="bad-severity",
        ),
        pytest.param(
            'scan:\n  timeout_seconds: "soon"\n',
            "scan.timeout_seconds: expected a whole number, got a string",
            id="timeout-not-a-number",
        ),
        pytest.param(
            'scan:\n  allow:\n    - id: "CVE-1"\n      reason: "x"\n',
            "scan.allow[0].expires: missing; every allowance needs an id, a "
            "reason and an expiry date",
            id="allowance-without-expiry",
        ),
        pytest.param(
            'scan:\n  allow:\n    - {id: "CVE-1", reason: "x", expires: "someday"}\n',
            "scan.allow[0].expires: expected a date YYYY-MM-DD, got 'someday'",
            id="bad-expiry",
        ),
    ],
)
def test_scan_section_mistakes(write_spec, snippet, message):
    path = write_spec(MINIMAL_PYTHON + snippet)

    with pytest.raises(SpecInvalid) as info:
        spec.load(path)

    assert any(p.endswith(message) for p in info.value.problems), info.value.problems


def test_exclusions_that_would_make_releases_mutable_are_refused(write_spec):
    text = MINIMAL_PYTHON.replace(
        '  account: "123456789012"\n',
        (
            '  account: "123456789012"\n  tag_mutability: "IMMUTABLE_WITH_EXCLUSION"\n'
            '  mutable_tags: ["*"]\n'
        ),
    )

    with pytest.raises(SpecInvalid) as info:
        spec.load(write_spec(text))

    assert "'*' would make release tags mutable" in info.value.problems[0]


def test_a_replica_cannot_repeat_a_destination(write_spec):
    text = MINIMAL_PYTHON.replace(
        '  account: "123456789012"\n',
        ('  account: "123456789012"\n  replicas:\n    - region: "us-east-1"\n'),
    )

    with pytest.raises(SpecInvalid) as info:
        spec.load(write_spec(text))

    assert "123456789012/us-east-1 is already a destination" in info.value.problems[0]
