"""Repository settings as code: compare an ECR repository with the spec, and fix it.

Each setting is compared field by field. Most can be fixed in place; encryption cannot
change after a repository is created, and registry-level scanning belongs to the
whole registry, so those are reported with what to do instead.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from typing import Any

from baseimage.ecr import Ecr
from baseimage.errors import RepositoryDrift
from baseimage.repo_spec import RegistrySpec

log = logging.getLogger(__name__)

UNMANAGED = "(not managed by the spec)"
_PULL_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
]


@dataclass(frozen=True)
class Setting:
    """One setting: what the spec wants, what ECR has, and whether it can be fixed."""

    name: str
    desired: str
    actual: str
    fixable: bool = True
    how_to_fix: str = ""

    @property
    def ok(self) -> bool:
        return self.desired == self.actual or self.desired == UNMANAGED

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "desired": self.desired,
            "actual": self.actual,
            "ok": self.ok,
            "fixable": self.fixable,
        }


@dataclass(frozen=True)
class RepoState:
    """A repository as found in one account and region, against the spec."""

    destination: str
    repository: str
    uri: str
    exists: bool
    settings: tuple[Setting, ...]
    scanning: str  # the effective scanning, in words
    scans_on_push: bool

    @property
    def drift(self) -> list[Setting]:
        return [s for s in self.settings if not s.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "repository": self.repository,
            "uri": self.uri,
            "exists": self.exists,
            "scanning": self.scanning,
            "scans_on_push": self.scans_on_push,
            "settings": [s.as_dict() for s in self.settings],
            "drift": [s.name for s in self.drift],
        }


def lifecycle_policy(days: int) -> str:
    """A lifecycle policy that expires untagged images only: never a tagged release.

    Content tags and version tags sit on the same image, so a rule matching tag
    patterns could expire a release; untagged images are the only safe target.
    """
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Expire untagged images after {days} days; "
                    "tagged releases are never expired",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": days,
                    },
                    "action": {"type": "expire"},
                }
            ]
        },
        sort_keys=True,
    )


def repository_policy(spec: RegistrySpec) -> str | None:
    """The repository policy the spec's pull access asks for (None: not managed)."""
    pull = spec.pull
    if pull.empty:
        return None
    statements = []
    if pull.organizations:
        statements.append(
            {
                "Sid": "PullFromOrganization",
                "Effect": "Allow",
                "Principal": "*",
                "Action": _PULL_ACTIONS,
                "Condition": {
                    "StringEquals": {"aws:PrincipalOrgID": list(pull.organizations)}
                },
            }
        )
    if pull.accounts:
        statements.append(
            {
                "Sid": "PullFromAccounts",
                "Effect": "Allow",
                "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in pull.accounts]},
                "Action": _PULL_ACTIONS,
            }
        )
    if pull.lambda_service:
        statements.append(
            {
                "Sid": "LambdaPull",
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            }
        )
    return json.dumps(
        {"Version": "2012-10-17", "Statement": statements}, sort_keys=True
    )


def _normal(text: str | None) -> str:
    """JSON text in one canonical form, so formatting differences are not drift."""
    if not text:
        return "none"
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except ValueError:
        return text


def inspect(ecr: Ecr) -> RepoState:
    """Compare the repository with the spec (it may not exist yet).

    Raises:
        CredentialsProblem, RegistryUnavailable: ECR cannot be asked.
    """
    spec = ecr.spec
    found = ecr.describe_repository()
    scanning, on_push = effective_scanning(ecr.registry_scanning(), found, spec)
    if found is None:
        return RepoState(
            destination=ecr.destination_name,
            repository=spec.repository,
            uri="",
            exists=False,
            settings=(),
            scanning=scanning,
            scans_on_push=on_push,
        )
    settings = (
        _mutability(spec, found),
        Setting(
            "scan on push",
            _onoff(spec.scan_on_push),
            _onoff((found.get("imageScanningConfiguration") or {}).get("scanOnPush")),
        ),
        _encryption(spec, found),
        _lifecycle(spec, ecr.lifecycle_policy()),
        _policy(spec, ecr.repository_policy()),
        _tags(spec, ecr.tags(found["repositoryArn"])),
        Setting(
            "effective scanning",
            "scans on push" if spec.scan_on_push else UNMANAGED,
            "scans on push" if on_push else scanning,
            fixable=False,
            how_to_fix="the registry's scanning configuration overrides the "
            "repository; change it with put-registry-scanning-configuration",
        ),
    )
    return RepoState(
        destination=ecr.destination_name,
        repository=spec.repository,
        uri=found["repositoryUri"],
        exists=True,
        settings=settings,
        scanning=scanning,
        scans_on_push=on_push,
    )


def ensure(ecr: Ecr, fix: bool) -> RepoState:
    """Create the repository if missing; refuse or fix drift (publish runs this).

    Raises:
        RepositoryDrift: settings differ and `fix` is False, or cannot be fixed.
    """
    state = inspect(ecr)
    if not state.exists:
        # A repository we create gets all of the spec's settings, including those
        # CreateRepository cannot set (lifecycle and repository policies).
        ecr.create_repository()
        return apply(ecr, inspect(ecr))
    if state.drift and not fix:
        raise RepositoryDrift(
            f"ECR repository {state.repository} in {state.destination} has "
            f"{describe(state.drift)}. Publishing there would break the guarantees "
            "of a base image; run `baseimage repo apply` or publish with "
            "--fix-repository"
        )
    return apply(ecr, state) if state.drift else state


def apply(ecr: Ecr, state: RepoState) -> RepoState:
    """Fix every fixable setting; raise if something cannot be fixed.

    Raises:
        RepositoryDrift: a setting that cannot be fixed in place differs.
    """
    if not state.exists:
        ecr.create_repository()
        state = inspect(ecr)
    spec = ecr.spec
    for setting in state.drift:
        if not setting.fixable:
            continue
        log.info(
            "Fixing %s of %s in %s: %s -> %s",
            setting.name,
            state.repository,
            state.destination,
            setting.actual,
            setting.desired,
        )
        if setting.name == "tag mutability":
            ecr.put_tag_mutability()
        elif setting.name == "scan on push":
            ecr.put_scan_on_push(spec.scan_on_push)
        elif setting.name == "lifecycle policy":
            days = spec.expire_untagged_after_days
            ecr.put_lifecycle_policy(lifecycle_policy(days) if days else None)
        elif setting.name == "repository policy":
            ecr.put_repository_policy(repository_policy(spec) or "")
        elif setting.name == "tags":
            ecr.put_tags(dict(spec.tags))
    after = inspect(ecr)
    left = after.drift
    if left:
        raise RepositoryDrift(
            f"ECR repository {after.repository} in {after.destination} still has "
            f"{describe(left)}; "
            + "; ".join(f"{s.name}: {s.how_to_fix}" for s in left if s.how_to_fix)
        )
    return after


def describe(drift: list[Setting]) -> str:
    """Drift in words: `tag mutability MUTABLE (want IMMUTABLE); …`."""
    return "; ".join(f"{s.name} {s.actual} (want {s.desired})" for s in drift)


def effective_scanning(
    registry: dict[str, Any], repository: dict[str, Any] | None, spec: RegistrySpec
) -> tuple[str, bool]:
    """What scanning really applies to the repository, and whether it is on push.

    The registry's scanning configuration wins over the repository's `scanOnPush`:
    enhanced scanning covers only repositories its rules match, and with basic
    scanning, registry-level rules (when there are any) replace the repository flag.
    """
    scan_type = registry.get("scanType", "BASIC")
    rules = registry.get("rules") or []
    for rule in rules:
        for item in rule.get("repositoryFilters") or []:
            if fnmatch.fnmatchcase(spec.repository, item.get("filter", "")):
                frequency = rule.get("scanFrequency", "MANUAL")
                on_push = frequency in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN")
                return (
                    f"{scan_type.lower()} scanning, {frequency} (registry rule "
                    f"{item.get('filter')!r})",
                    on_push,
                )
    if scan_type == "ENHANCED":
        return "enhanced scanning, but no registry rule covers this repository", False
    if rules:
        return "basic scanning, manual (registry rules override the repository)", False
    flag = bool(
        ((repository or {}).get("imageScanningConfiguration") or {}).get(
            "scanOnPush", spec.scan_on_push if repository is None else False
        )
    )
    how = "on push" if flag else "manual"
    return f"basic scanning, {how} (repository setting)", flag


def _onoff(value: object) -> str:
    return "on" if value else "off"


def _mutability(spec: RegistrySpec, found: dict[str, Any]) -> Setting:
    desired = spec.tag_mutability
    if spec.mutable_tags:
        desired += f" except {', '.join(sorted(spec.mutable_tags))}"
    actual = found.get("imageTagMutability", "MUTABLE")
    filters = [
        f.get("filter", "")
        for f in found.get("imageTagMutabilityExclusionFilters") or []
    ]
    if filters:
        actual += f" except {', '.join(sorted(filters))}"
    return Setting("tag mutability", desired, actual)


def _encryption(spec: RegistrySpec, found: dict[str, Any]) -> Setting:
    config = found.get("encryptionConfiguration") or {"encryptionType": "AES256"}
    actual = config.get("encryptionType", "AES256")
    desired = spec.encryption
    if spec.kms_key:
        desired += f" {spec.kms_key}"
        if config.get("kmsKey"):
            actual += f" {config['kmsKey']}"
    return Setting(
        "encryption",
        desired,
        actual,
        fixable=False,
        how_to_fix="ECR cannot change encryption after creation; create a "
        "new repository with the spec's encryption and move to it",
    )


def _lifecycle(spec: RegistrySpec, actual_text: str | None) -> Setting:
    days = spec.expire_untagged_after_days
    actual = _normal(actual_text)
    if days:
        wanted = f"expire untagged images after {days} days"
        same = actual == _normal(lifecycle_policy(days))
        return Setting("lifecycle policy", wanted, wanted if same else _label(actual))
    # Not declared: leave it alone unless it could expire tagged releases.
    rules = json.loads(actual_text).get("rules", []) if actual_text else []
    risky = [
        r
        for r in rules
        if (r.get("selection") or {}).get("tagStatus") in ("tagged", "any")
    ]
    if risky:
        return Setting(
            "lifecycle policy",
            "none that expires tagged images",
            "expires tagged images",
        )
    return Setting("lifecycle policy", UNMANAGED, actual)


def _policy(spec: RegistrySpec, actual_text: str | None) -> Setting:
    actual = _normal(actual_text)
    if spec.pull.empty:
        return Setting("repository policy", UNMANAGED, _label(actual))
    who = [
        *(f"organization {o}" for o in spec.pull.organizations),
        *(f"account {a}" for a in spec.pull.accounts),
    ]
    if spec.pull.lambda_service:
        who.append("lambda.amazonaws.com")
    wanted = "pull for " + ", ".join(who)
    same = actual == _normal(repository_policy(spec))
    return Setting("repository policy", wanted, wanted if same else _label(actual))


def _label(normal_text: str) -> str:
    """A short word for a policy that is absent or differs from the spec's."""
    return "none" if normal_text == "none" else "a different policy"


def _tags(spec: RegistrySpec, actual: dict[str, str]) -> Setting:
    if not spec.tags:
        return Setting("tags", UNMANAGED, _pairs(actual))
    # Only declared tags are managed; others (added by other tools) are left alone.
    seen = {k: actual[k] for k in spec.tags if k in actual}
    return Setting("tags", _pairs(spec.tags), _pairs(seen))


def _pairs(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "none"
