"""The spec's `registry` and `scan` sections: the repository's desired state and the
scan gate's rules.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import date

import yaml

from baseimage.yamlcheck import Checker

ACCOUNT = re.compile(r"^[0-9]{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
REPOSITORY = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$"
)
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_KMS = re.compile(r"^(arn:aws[a-z-]*:kms:\S+|alias/\S+|[0-9a-f-]{36})$")
_TAG_FILTER = re.compile(r"^[A-Za-z0-9_.*-]{1,128}$")
_FINDING = re.compile(r"^\S{1,200}$")

# Tags publish creates, for every known runtime: exclusion filters must match none.
_RELEASE_SAMPLES = tuple(
    tag
    for rid in (
        "python3.10",
        "python3.11",
        "python3.12",
        "python3.13",
        "java11",
        "java17",
        "java21",
    )
    for tag in (
        f"1.4.0-{rid}",
        f"0.0.1-{rid}",
        f"10.20.30-rc.1-{rid}",
        f"2.0.0-beta-{rid}",
        f"{rid}-sha256-0123456789abcdef",
    )
)
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL")
MUTABILITY = ("IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION")
ENCRYPTION = ("AES256", "KMS")

REGISTRY_KEYS = (
    "repository",
    "region",
    "account",
    "replicas",
    "tag_mutability",
    "mutable_tags",
    "scan_on_push",
    "encryption",
    "kms_key",
    "expire_untagged_after_days",
    "pull",
    "tags",
)


@dataclass(frozen=True)
class Destination:
    """One account and region a repository is published to."""

    region: str
    account: str

    @property
    def host(self) -> str:
        """The ECR registry host for this account and region."""
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"


@dataclass(frozen=True)
class PullAccess:
    """Who may pull the image: AWS Organizations, accounts, and Lambda itself."""

    organizations: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    lambda_service: bool = False

    @property
    def empty(self) -> bool:
        return not (self.organizations or self.accounts or self.lambda_service)


@dataclass(frozen=True)
class RegistrySpec:
    """The ECR repository: where it lives and the settings it must have."""

    repository: str
    region: str
    account: str
    replicas: tuple[Destination, ...] = ()
    tag_mutability: str = "IMMUTABLE"
    mutable_tags: tuple[str, ...] = ()
    scan_on_push: bool = True
    encryption: str = "AES256"
    kms_key: str | None = None
    expire_untagged_after_days: int | None = None
    pull: PullAccess = field(default_factory=PullAccess)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """The primary ECR registry host."""
        return self.primary.host

    @property
    def primary(self) -> Destination:
        return Destination(self.region, self.account)

    @property
    def destinations(self) -> tuple[Destination, ...]:
        """Every account and region the image is published to, primary first."""
        return (self.primary, *self.replicas)

    def tag_is_mutable(self, tag: str) -> bool:
        """True when an exclusion filter would let this tag be overwritten."""
        return any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.mutable_tags)


@dataclass(frozen=True)
class Allowance:
    """A finding the scan gate lets through, with why and until when."""

    finding: str
    reason: str
    expires: date

    def active(self, today: date) -> bool:
        """An entry allows up to and including its expiry date."""
        return today <= self.expires


@dataclass(frozen=True)
class ScanPolicy:
    """The scan gate: what fails a publish, how long to wait, what is allowed."""

    fail_on: str = "HIGH"
    timeout_seconds: int = 600
    allow: tuple[Allowance, ...] = ()


def parse_registry(check: Checker, node: yaml.Node) -> RegistrySpec | None:
    """Validate the `registry` section."""
    fields = check.mapping(node, "registry", REGISTRY_KEYS)
    where = "registry"
    required = {
        "repository": (REPOSITORY, "an ECR repository name like company/lambda-base"),
        "region": (REGION, "an AWS region like us-east-1"),
        "account": (ACCOUNT, "a 12-digit AWS account id in quotes"),
    }
    values: dict[str, str] = {}
    for key, (pattern, expected) in required.items():
        if key not in fields:
            if isinstance(node, yaml.MappingNode):
                check.problem(node, f"{where}.{key}", f"missing; expected {expected}")
            continue
        value = check.string(fields[key][1], f"{where}.{key}", pattern, expected)
        if value is not None:
            values[key] = value

    settings: dict[str, object] = {}
    if "replicas" in fields:
        settings["replicas"] = _replicas(
            check, fields["replicas"][1], values.get("account"), values.get("region")
        )
    if "tag_mutability" in fields:
        settings["tag_mutability"] = _choice(
            check, fields["tag_mutability"][1], f"{where}.tag_mutability", MUTABILITY
        )
    if "mutable_tags" in fields:
        settings["mutable_tags"] = tuple(
            check.strings(
                fields["mutable_tags"][1],
                f"{where}.mutable_tags",
                _TAG_FILTER,
                "a tag filter (letters, digits, . _ - and * wildcards)",
            )
        )
    if "scan_on_push" in fields:
        settings["scan_on_push"] = check.boolean(
            fields["scan_on_push"][1], f"{where}.scan_on_push"
        )
    if "encryption" in fields:
        settings["encryption"] = _choice(
            check, fields["encryption"][1], f"{where}.encryption", ENCRYPTION
        )
    if "kms_key" in fields:
        settings["kms_key"] = check.string(
            fields["kms_key"][1],
            f"{where}.kms_key",
            _KMS,
            "a KMS key ARN, alias/… or key id",
        )
    if "expire_untagged_after_days" in fields:
        settings["expire_untagged_after_days"] = check.integer(
            fields["expire_untagged_after_days"][1],
            f"{where}.expire_untagged_after_days",
            1,
            3650,
        )
    if "pull" in fields:
        settings["pull"] = _pull(check, fields["pull"][1])
    if "tags" in fields:
        settings["tags"] = _tags(check, fields["tags"][1])

    _check_consistency(check, node, fields, settings)
    if len(values) != len(required) or any(v is None for v in settings.values()):
        return None
    return RegistrySpec(**values, **settings)  # type: ignore[arg-type]


def _check_consistency(
    check: Checker,
    node: yaml.Node,
    fields: dict[str, tuple[yaml.Node, yaml.Node]],
    settings: dict[str, object],
) -> None:
    mutability = settings.get("tag_mutability", "IMMUTABLE")
    filters = settings.get("mutable_tags") or ()
    if mutability == "IMMUTABLE_WITH_EXCLUSION" and not filters:
        check.problem(
            fields["tag_mutability"][1],
            "registry.tag_mutability",
            "IMMUTABLE_WITH_EXCLUSION needs registry.mutable_tags",
        )
    if filters and mutability != "IMMUTABLE_WITH_EXCLUSION":
        check.problem(
            fields["mutable_tags"][1],
            "registry.mutable_tags",
            "only applies with tag_mutability: IMMUTABLE_WITH_EXCLUSION",
        )
    for pattern in filters:  # type: ignore[attr-defined]
        if any(fnmatch.fnmatchcase(tag, pattern) for tag in _RELEASE_SAMPLES):
            check.problem(
                fields["mutable_tags"][1],
                "registry.mutable_tags",
                f"{pattern!r} would make release tags mutable; exclude only "
                "tags such as 'latest' or 'dev-*'",
            )
    if settings.get("encryption") == "KMS" and not settings.get("kms_key"):
        check.problem(
            fields["encryption"][1], "registry.encryption", "KMS needs registry.kms_key"
        )
    if settings.get("kms_key") and settings.get("encryption", "AES256") != "KMS":
        check.problem(
            fields["kms_key"][1],
            "registry.kms_key",
            "only applies with encryption: KMS",
        )


def _choice(
    check: Checker, node: yaml.Node, where: str, choices: tuple[str, ...]
) -> str | None:
    value = check.string(node, where, expected=f"one of {', '.join(choices)}")
    if value is not None and value not in choices:
        check.problem(
            node, where, f"expected one of {', '.join(choices)}, got {value!r}"
        )
        return None
    return value


def _replicas(
    check: Checker, node: yaml.Node, account: str | None, region: str | None
) -> tuple[Destination, ...] | None:
    found: list[Destination] = []
    primary = Destination(region or "", account or "")
    for i, item in enumerate(check.sequence(node, "registry.replicas")):
        where = f"registry.replicas[{i}]"
        entry = check.mapping(item, where, ("region", "account"))
        if "region" not in entry:
            check.problem(item, f"{where}.region", "missing; expected an AWS region")
            continue
        region = check.string(
            entry["region"][1],
            f"{where}.region",
            REGION,
            "an AWS region like eu-west-1",
        )
        replica_account = account
        if "account" in entry:
            replica_account = check.string(
                entry["account"][1],
                f"{where}.account",
                ACCOUNT,
                "a 12-digit AWS account id in quotes",
            )
        if region and replica_account:
            destination = Destination(region, replica_account)
            if destination == primary or destination in found:
                check.problem(item, where, f"{destination} is already a destination")
                continue
            found.append(destination)
    return tuple(found)


def _pull(check: Checker, node: yaml.Node) -> PullAccess:
    fields = check.mapping(
        node, "registry.pull", ("organizations", "accounts", "lambda")
    )
    orgs: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    lambda_service = False
    if "organizations" in fields:
        orgs = tuple(
            check.strings(
                fields["organizations"][1],
                "registry.pull.organizations",
                _ORG,
                "an AWS Organization id like o-a1b2c3d4e5",
            )
        )
    if "accounts" in fields:
        accounts = tuple(
            check.strings(
                fields["accounts"][1],
                "registry.pull.accounts",
                ACCOUNT,
                "a 12-digit AWS account id in quotes",
            )
        )
    if "lambda" in fields:
        lambda_service = bool(
            check.boolean(fields["lambda"][1], "registry.pull.lambda")
        )
    return PullAccess(
        organizations=orgs, accounts=accounts, lambda_service=lambda_service
    )


def _tags(check: Checker, node: yaml.Node) -> dict[str, str]:
    tags: dict[str, str] = {}
    for key, (_, value_node) in check.mapping(node, "registry.tags").items():
        value = check.string(value_node, f"registry.tags.{key}")
        if value is not None:
            tags[key] = value
    return tags


def parse_scan(check: Checker, node: yaml.Node) -> ScanPolicy:
    """Validate the `scan` section."""
    fields = check.mapping(node, "scan", ("fail_on", "timeout_seconds", "allow"))
    policy: dict[str, object] = {}
    if "fail_on" in fields:
        policy["fail_on"] = _choice(
            check, fields["fail_on"][1], "scan.fail_on", SEVERITIES
        )
    if "timeout_seconds" in fields:
        policy["timeout_seconds"] = check.integer(
            fields["timeout_seconds"][1], "scan.timeout_seconds", 1, 86400
        )
    allow = []
    if "allow" in fields:
        for i, item in enumerate(check.sequence(fields["allow"][1], "scan.allow")):
            where = f"scan.allow[{i}]"
            entry = check.mapping(item, where, ("id", "reason", "expires"))
            missing = [k for k in ("id", "reason", "expires") if k not in entry]
            for key in missing:
                check.problem(
                    item,
                    f"{where}.{key}",
                    "missing; every allowance needs an id, a reason and an expiry date",
                )
            if missing:
                continue
            finding = check.string(
                entry["id"][1],
                f"{where}.id",
                _FINDING,
                "a finding id like CVE-2024-1234",
            )
            reason = check.string(entry["reason"][1], f"{where}.reason")
            expires = check.day(entry["expires"][1], f"{where}.expires")
            if reason is not None and not reason.strip():
                check.problem(entry["reason"][1], f"{where}.reason", "must say why")
                continue
            if finding and reason and expires:
                allow.append(Allowance(finding, reason, expires))
    policy["allow"] = tuple(allow)
    clean = {k: v for k, v in policy.items() if v is not None}
    return ScanPolicy(**clean)  # type: ignore[arg-type]
