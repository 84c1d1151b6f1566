"""Company helpers baked into every Python Lambda base image.

The package lives at ``/var/task/company_lambda`` in the image. Import the
submodules you need; this module imports nothing, so ``import company_lambda``
costs nothing at cold start:

    from company_lambda.logging_setup import bind_correlation_id, configure_logging
    from company_lambda.security import parse_xml, redact, verify_jwt
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "1.0.0"
