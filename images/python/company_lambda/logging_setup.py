"""Company logging for Python Lambda functions, built on Powertools' Logger.

Every function logs one JSON object per line to stdout, with a UTC RFC 3339
timestamp, the service name, a correlation id and secrets masked. The settings
come from the JSON file the base image ships at ``/var/task/company/logging.json``;
environment variables override it per function without a rebuild.

Typical use, once at module level and once per invocation:

    from company_lambda.logging_setup import bind_correlation_id, configure_logging

    logger = configure_logging()

    @logger.inject_lambda_context
    def handler(event, context):
        bind_correlation_id(logger, event, context)
        logger.info("order received", extra={"order_id": event["id"]})
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from company_lambda.security import DEFAULT_REDACTED_KEYS, REDACTION_MASK, redact

__all__ = [
    "CONFIG_ENV",
    "LoggingConfig",
    "LoggingConfigError",
    "RedactingFormatter",
    "bind_correlation_id",
    "configure_logging",
    "find_config",
    "load_config",
]

CONFIG_ENV = "COMPANY_LOGGING_CONFIG"
CONFIG_RELATIVE_PATH = Path("company") / "logging.json"
SCHEMA_VERSION = 1

_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


class LoggingConfigError(ValueError):
    """Raised when the logging configuration file cannot be read or is invalid."""


@dataclass(frozen=True)
class LoggingConfig:
    """Logging settings, as read from ``logging.json``.

    Attributes:
        service: Service name used when neither the caller nor
            ``POWERTOOLS_SERVICE_NAME`` gives one.
        level: Log level used when ``POWERTOOLS_LOG_LEVEL`` is not set.
        sampling_rate: Share of invocations (0 to 1) logged at DEBUG, used when
            ``POWERTOOLS_LOGGER_SAMPLE_RATE`` is not set.
        log_record_order: Keys that lead every JSON line, in this order.
        correlation_id_paths: JMESPath expressions tried in order on the event to
            find a correlation id.
        redacted_keys: Key fragments whose values are masked.
        redaction_mask: The text that replaces a masked value.
    """

    service: str = "company-function"
    level: str = "INFO"
    sampling_rate: float = 0.0
    log_record_order: tuple[str, ...] = (
        "timestamp",
        "level",
        "service",
        "correlation_id",
        "message",
    )
    correlation_id_paths: tuple[str, ...] = ("requestContext.requestId",)
    redacted_keys: tuple[str, ...] = tuple(sorted(DEFAULT_REDACTED_KEYS))
    redaction_mask: str = REDACTION_MASK
    source: Path | None = field(default=None, compare=False)


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter with secrets masked in every record."""

    def __init__(
        self,
        *,
        redacted_keys: tuple[str, ...],
        redaction_mask: str,
        correlation_id_paths: tuple[str, ...],
        **options: Any,
    ) -> None:
        """Create the formatter.

        Args:
            redacted_keys: Key fragments whose values are masked.
            redaction_mask: The text that replaces a masked value.
            correlation_id_paths: Kept here so ``bind_correlation_id`` can find
                them from the logger alone.
            **options: Passed to ``LambdaPowertoolsFormatter``.
        """
        super().__init__(**options)
        self.redacted_keys = redacted_keys
        self.redaction_mask = redaction_mask
        self.correlation_id_paths = correlation_id_paths

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        """Mask secrets in the structured record, then serialise it to JSON."""
        return super().serialize(
            redact(log, keys=self.redacted_keys, mask=self.redaction_mask)
        )


def find_config() -> Path | None:
    """Locate the logging configuration file.

    ``COMPANY_LOGGING_CONFIG`` wins when set; otherwise the file is looked for at
    ``$LAMBDA_TASK_ROOT/company/logging.json`` (``/var/task`` in Lambda).

    Returns:
        The path, or None when no file exists there.
    """
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)

    task_root = Path(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
    candidate = task_root / CONFIG_RELATIVE_PATH
    return candidate if candidate.is_file() else None


def load_config(path: str | os.PathLike[str]) -> LoggingConfig:
    """Read and validate a logging configuration file.

    Args:
        path: The JSON file.

    Returns:
        The settings it holds, with defaults for the keys it leaves out.

    Raises:
        LoggingConfigError: The file is missing, not JSON, of another schema
            version, or has an unknown key or a value of the wrong kind.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LoggingConfigError(f"{path}: cannot read logging config: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise LoggingConfigError(
            f"{path}:{exc.lineno}: logging config is not valid JSON: {exc.msg}"
        ) from exc

    if not isinstance(raw, dict):
        raise LoggingConfigError(f"{path}: logging config must be a JSON object")

    version = raw.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise LoggingConfigError(
            f"{path}: schema_version {version!r} is not supported; "
            f"this company_lambda reads version {SCHEMA_VERSION}"
        )

    known = {name for name in LoggingConfig.__dataclass_fields__ if name != "source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise LoggingConfigError(
            f"{path}: unknown key(s) {unknown}; expected some of {sorted(known)}"
        )

    return _validated(raw, path)


def configure_logging(
    service: str | None = None,
    *,
    config: LoggingConfig | None = None,
) -> Logger:
    """Return a Powertools Logger set up from the company logging configuration.

    Settings are resolved in this order: the ``service`` argument, then the
    Powertools environment variables (``POWERTOOLS_SERVICE_NAME``,
    ``POWERTOOLS_LOG_LEVEL``, ``POWERTOOLS_LOGGER_SAMPLE_RATE``), then the config
    file. AWS Lambda's own log level control (``AWS_LAMBDA_LOG_LEVEL``), when set,
    still takes precedence as Powertools applies it. Without a config file the
    built-in defaults of ``LoggingConfig`` apply and a warning is logged.

    Call it once per service, at module level: Powertools configures a service's
    logger the first time only, so later calls return a logger with the first
    call's settings.

    Args:
        service: Service name; defaults to ``POWERTOOLS_SERVICE_NAME`` or the
            config file's ``service``.
        config: Settings to use instead of the file found by ``find_config``.

    Returns:
        The configured Logger.

    Raises:
        LoggingConfigError: The config file exists but is invalid.
    """
    missing_file = False
    if config is None:
        path = find_config()
        missing_file = path is None
        config = load_config(path) if path is not None else LoggingConfig()

    sample_rate_env = os.environ.get("POWERTOOLS_LOGGER_SAMPLE_RATE")
    formatter = RedactingFormatter(
        redacted_keys=config.redacted_keys,
        redaction_mask=config.redaction_mask,
        correlation_id_paths=config.correlation_id_paths,
        log_record_order=list(config.log_record_order),
        utc=True,
        use_rfc3339=True,
    )
    logger = Logger(
        service=service or os.environ.get("POWERTOOLS_SERVICE_NAME") or config.service,
        # None hands the choice to Powertools, which then reads the env variable.
        level=None if os.environ.get("POWERTOOLS_LOG_LEVEL") else config.level,
        sampling_rate=None if sample_rate_env else (config.sampling_rate or None),
        logger_formatter=formatter,
    )

    if missing_file:
        looked_for = f"${CONFIG_ENV} or $LAMBDA_TASK_ROOT/{CONFIG_RELATIVE_PATH}"
        logger.warning(
            "logging config not found; using built-in defaults",
            extra={"looked_for": looked_for},
        )

    return logger


def bind_correlation_id(
    logger: Logger,
    event: Mapping[str, Any] | None,
    context: Any | None = None,
) -> str:
    """Set the correlation id on every following log line of this invocation.

    The id is the first non-empty match of the configured ``correlation_id_paths``
    in the event (so an id sent by the caller is carried on), else the Lambda
    request id from ``context``, else a fresh UUID.

    Args:
        logger: A logger returned by ``configure_logging``.
        event: The invocation event.
        context: The Lambda context object.

    Returns:
        The correlation id now in use.
    """
    import jmespath

    formatter = logger.registered_formatter
    paths = getattr(
        formatter, "correlation_id_paths", LoggingConfig.correlation_id_paths
    )

    correlation_id: str | None = None
    if isinstance(event, Mapping):
        for expression in paths:
            found = jmespath.search(expression, event)
            if isinstance(found, (str, int)) and str(found):
                correlation_id = str(found)
                break

    if correlation_id is None:
        correlation_id = getattr(context, "aws_request_id", None) or str(uuid.uuid4())

    logger.set_correlation_id(correlation_id)
    return correlation_id


def _validated(raw: dict[str, Any], path: Path) -> LoggingConfig:
    def fail(key: str, expected: str) -> LoggingConfigError:
        return LoggingConfigError(
            f"{path}: {key!r} must be {expected}, got {raw[key]!r}"
        )

    values: dict[str, Any] = {"source": path}

    for key in ("service", "redaction_mask"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                raise fail(key, "a non-empty string")
            values[key] = raw[key]

    if "level" in raw:
        if not isinstance(raw["level"], str) or raw["level"].upper() not in _LEVELS:
            raise fail("level", f"one of {sorted(_LEVELS)}")
        values["level"] = raw["level"].upper()

    if "sampling_rate" in raw:
        rate = raw["sampling_rate"]
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not 0 <= rate <= 1
        ):
            raise fail("sampling_rate", "a number from 0 to 1")
        values["sampling_rate"] = float(rate)

    for key in ("log_record_order", "correlation_id_paths", "redacted_keys"):
        if key in raw:
            items = raw[key]
            if not isinstance(items, list) or not all(
                isinstance(item, str) and item for item in items
            ):
                raise fail(key, "a list of non-empty strings")
            values[key] = tuple(items)

    if "correlation_id_paths" in values:
        _check_jmespath(values["correlation_id_paths"], path)

    return LoggingConfig(**values)


def _check_jmespath(expressions: tuple[str, ...], path: Path) -> None:
    import jmespath
    from jmespath.exceptions import JMESPathError

    for expression in expressions:
        try:
            jmespath.compile(expression)
        except JMESPathError as exc:
            raise LoggingConfigError(
                f"{path}: correlation_id_paths entry {expression!r} is not a valid "
                f"JMESPath expression: {exc}"
            ) from exc
