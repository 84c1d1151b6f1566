"""baseimage: build, prove and publish a company's AWS Lambda base images."""

from __future__ import annotations

__version__ = "0.1.0"
