"""Security helpers for company Lambda functions.

Three jobs, each with a safe default:

- ``redact`` masks secrets and tokens in data before it is logged.
- ``verify_jwt`` checks a bearer token's signature, audience and expiry against a
  PEM public key, accepting asymmetric algorithms only.
- ``parse_xml`` parses untrusted XML with DTDs, entities and external references
  refused.

PyJWT and defusedxml are imported inside the functions that use them, so
importing this module (the logging setup does, for ``redact``) stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = [
    "ALLOWED_JWT_ALGORITHMS",
    "DEFAULT_REDACTED_KEYS",
    "REDACTION_MASK",
    "TokenVerificationError",
    "XmlRejectedError",
    "parse_xml",
    "redact",
    "redact_text",
    "verify_jwt",
]

REDACTION_MASK = "***REDACTED***"

# Fragments matched anywhere in a normalised key (lower case, "-" read as "_"),
# so "DB_PASSWORD", "x-api-key" and "refreshToken" are all caught. Erring towards
# masking a harmless field is the cheaper mistake.
DEFAULT_REDACTED_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "cookie",
        "api_key",
        "apikey",
        "private_key",
        "credential",
        "session_key",
        "signature",
    }
)

# Values that are secrets whatever key they sit under, e.g. inside a message.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/-]+=*", re.IGNORECASE)
_AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")

# Deeper nesting than this in a log payload is a bug or a cycle; mask it
# rather than recurse without end.
_MAX_DEPTH = 32

# Asymmetric algorithms only. "none" is never acceptable, and HMAC (HS*) would let
# anyone holding the verification key mint tokens, so it has no place in a
# function that verifies tokens issued elsewhere.
ALLOWED_JWT_ALGORITHMS: frozenset[str] = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)

# Real tokens from our identity provider are a few KiB; anything far larger is
# refused before any parsing work is spent on it.
_MAX_TOKEN_LENGTH = 16 * 1024

_DEFAULT_MAX_XML_BYTES = 1024 * 1024


class TokenVerificationError(ValueError):
    """Raised when a JWT is malformed, badly signed, expired or not meant for us."""


class XmlRejectedError(ValueError):
    """Raised when XML is too large, not well-formed or uses a forbidden construct."""


def redact(
    data: Any,
    *,
    keys: Iterable[str] = DEFAULT_REDACTED_KEYS,
    mask: str = REDACTION_MASK,
) -> Any:
    """Return a copy of ``data`` with secrets masked, ready to be logged.

    Values under a key that contains one of ``keys`` are replaced by ``mask``;
    strings anywhere are passed through ``redact_text``. Mappings, lists and
    tuples are walked; other values are returned unchanged. ``data`` itself is
    never modified.

    Args:
        data: A log payload: usually a dict decoded from an event or a response.
        keys: Key fragments to mask, matched case-insensitively with "-" read as "_".
        mask: The text that replaces a masked value.

    Returns:
        The redacted copy.
    """
    fragments = tuple(_normalise_key(key) for key in keys)
    return _redact(data, fragments, mask, depth=0)


def redact_text(text: str, *, mask: str = REDACTION_MASK) -> str:
    """Mask JWTs, Bearer/Basic credentials and AWS access key ids inside ``text``.

    Args:
        text: Free text such as a log message or an exception string.
        mask: The text that replaces each secret found.

    Returns:
        ``text`` with every secret replaced.
    """
    text = _JWT.sub(mask, text)
    text = _AUTH_SCHEME.sub(lambda match: f"{match.group(1)} {mask}", text)
    return _AWS_ACCESS_KEY_ID.sub(mask, text)


def verify_jwt(
    token: str,
    public_key_pem: str | bytes,
    *,
    audience: str | Sequence[str],
    issuer: str | None = None,
    algorithms: Sequence[str] = ("RS256",),
    leeway: float = 30.0,
) -> dict[str, Any]:
    """Verify a JWT and return its claims.

    The token must be signed with one of ``algorithms`` (a subset of
    ``ALLOWED_JWT_ALGORITHMS``), carry ``exp``, ``iat`` and an ``aud`` matching
    ``audience``, and, when ``issuer`` is given, that ``iss``.

    Args:
        token: The compact JWT, without a "Bearer " prefix.
        public_key_pem: The issuer's PEM-encoded public key.
        audience: The audience (or audiences) this function accepts.
        issuer: The expected ``iss`` claim; not checked when None.
        algorithms: Signature algorithms to accept.
        leeway: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.

    Returns:
        The verified claims.

    Raises:
        ValueError: ``algorithms`` is empty or names one outside the allowlist, or
            ``public_key_pem`` holds a private key (only the public half belongs in
            a function).
        TokenVerificationError: The token fails any check. The message says which
            check failed and never contains the token.
    """
    accepted = _accepted_algorithms(algorithms)
    key = (
        public_key_pem.encode("ascii")
        if isinstance(public_key_pem, str)
        else public_key_pem
    )
    if b"PRIVATE KEY" in key:
        raise ValueError(
            "verify_jwt was given a private key; pass the issuer's public key instead "
            "and keep the private key out of the function"
        )

    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise TokenVerificationError(
            f"token rejected: empty or longer than {_MAX_TOKEN_LENGTH} characters"
        )

    import jwt

    required = ["exp", "iat", "aud"] + (["iss"] if issuer is not None else [])
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=accepted,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": required},
        )
    except jwt.PyJWTError as exc:
        raise TokenVerificationError(f"token rejected: {exc}") from exc

    return claims


def parse_xml(data: str | bytes, *, max_bytes: int = _DEFAULT_MAX_XML_BYTES) -> Element:
    """Parse untrusted XML into an ElementTree element.

    DTDs, entity declarations and external references are refused, which rules
    out entity expansion ("billion laughs") and XXE file or network reads.

    Args:
        data: The XML document.
        max_bytes: Largest document accepted, measured in UTF-8 bytes.

    Returns:
        The root element.

    Raises:
        XmlRejectedError: The document is too large, not well-formed, or uses a
            DTD, an entity or an external reference.
    """
    size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise XmlRejectedError(
            f"XML rejected: {size} bytes exceeds the limit of {max_bytes}"
        )

    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeElementTree

    try:
        return SafeElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise XmlRejectedError(f"XML rejected: forbidden construct ({exc})") from exc
    except SafeElementTree.ParseError as exc:
        raise XmlRejectedError(f"XML rejected: not well-formed ({exc})") from exc


def _accepted_algorithms(algorithms: Sequence[str]) -> list[str]:
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    chosen = list(dict.fromkeys(algorithms))
    refused = [name for name in chosen if name not in ALLOWED_JWT_ALGORITHMS]
    if not chosen or refused:
        raise ValueError(
            f"JWT algorithms {refused or chosen} are not allowed; choose from "
            f"{sorted(ALLOWED_JWT_ALGORITHMS)}"
        )
    return chosen


def _normalise_key(key: object) -> str:
    return str(key).lower().replace("-", "_")


def _is_sensitive(key: object, fragments: tuple[str, ...]) -> bool:
    name = _normalise_key(key)
    return any(fragment in name for fragment in fragments)


def _redact(value: Any, fragments: tuple[str, ...], mask: str, *, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return mask

    if isinstance(value, str):
        return redact_text(value, mask=mask)

    if isinstance(value, Mapping):
        return {
            key: mask
            if _is_sensitive(key, fragments)
            else _redact(item, fragments, mask, depth=depth + 1)
            for key, item in value.items()
        }

    if isinstance(value, (list, tuple)):
        items = [_redact(item, fragments, mask, depth=depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)

    return value
