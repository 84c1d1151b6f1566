"""Mirror mapping: rewrite an upstream prefix (registry path or URL) to a mirror."""

from __future__ import annotations


def apply(reference: str, mirrors: dict[str, str]) -> str:
    """Rewrite a reference through the longest matching mirror prefix.

    A prefix matches the whole reference or up to a path boundary, so
    `public.ecr.aws/lambda` rewrites `public.ecr.aws/lambda/python:3.11` but not
    `public.ecr.aws/lambdax/python`. A reference no prefix matches is returned as is.
    """
    best = ""
    for prefix in mirrors:
        trimmed = prefix.rstrip("/")
        boundary = reference[len(trimmed) : len(trimmed) + 1]
        matches = reference.startswith(trimmed) and boundary in ("", "/", ":", "@")
        if matches and len(trimmed) > len(best):
            best = trimmed
    if not best:
        return reference
    for prefix, target in mirrors.items():
        if prefix.rstrip("/") == best:
            return target.rstrip("/") + reference[len(best) :]
    return reference
