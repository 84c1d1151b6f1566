#!/usr/bin/env python3
"""Mirror tagged manifest pushes from the local registry into moto's ECR API.

The local registry (Debian's docker-registry) posts notification envelopes to
this server. For every tagged manifest push it fetches the exact manifest bytes
from the registry and calls ECR ``PutImage`` on moto with the registry's digest,
so ``DescribeImages`` lists the tag and digest a docker push produced, the way
real ECR does after a push.

ECR scans on push; moto does not scan until ``StartImageScan`` and then reports
a fixed placeholder finding. So, for a newly pushed image whose scanning is on
push (the repository's ``scanOnPush``, or a registry scanning rule), the bridge
records a completed scan with no findings (this stack has no vulnerability
scanner) and starts the scan. Results a test registered earlier through moto's
API come first, so tests can still stage findings of their choice.

Only the Python standard library and boto3 are used. The registry gets its 200
at once; the work happens on one worker thread, in arrival order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

LOG = logging.getLogger("ecr-bridge")

MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)

# Moto accepts any credentials; these never leave 127.0.0.1.
DUMMY_KEY_ID = DUMMY_SECRET = "testing"
DEFAULT_ACCOUNT = "123456789012"  # moto's account for any credentials


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Bridge:
    """Turns registry push events into ECR PutImage calls."""

    def __init__(self, registry: str, ecr_client: Any, ecr_endpoint: str = "",
                 region: str = "us-east-1") -> None:
        self.registry = registry.rstrip("/")
        self.ecr = ecr_client
        self.ecr_endpoint = ecr_endpoint.rstrip("/")
        self.region = region
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()

    def accept(self, envelope: dict[str, Any]) -> None:
        """Queue the events of one notification envelope that need mirroring."""
        for event in envelope.get("events", []):
            target = event.get("target", {})
            if event.get("action") != "push":
                continue
            if target.get("mediaType") not in MANIFEST_MEDIA_TYPES:
                continue
            if not target.get("tag"):
                LOG.debug(
                    "untagged manifest push %s@%s ignored",
                    target.get("repository"),
                    target.get("digest"),
                )
                continue
            self.events.put(target)

    def run_forever(self) -> None:
        """Work through queued events; one failure never stops the worker."""
        while True:
            target = self.events.get()
            try:
                self.mirror(target)
            except Exception:  # noqa: BLE001 - keep the bridge alive, log the bug
                LOG.exception("mirroring %s failed", target)

    def mirror(self, target: dict[str, Any]) -> None:
        """Copy one tagged manifest into the ECR repository of the same name."""
        repo = target["repository"]
        tag = target["tag"]
        digest = target["digest"]

        if not self.repository_exists(repo):
            LOG.debug("no ECR repository %r; %s:%s not mirrored", repo, repo, tag)
            return

        body, media_type = self.fetch_manifest(repo, digest)
        media_type = target.get("mediaType") or media_type
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != digest:
            LOG.warning(
                "registry sent %s for %s@%s; mirroring it", actual, repo, digest
            )

        try:
            self.ecr.put_image(
                repositoryName=repo,
                imageManifest=body.decode("utf-8"),
                imageManifestMediaType=media_type,
                imageTag=tag,
                imageDigest=digest,
            )
        except botocore.exceptions.ClientError as exc:
            code = error_code(exc)
            if code in (
                "ImageAlreadyExistsException",
                "ImageTagAlreadyExistsException",
            ):
                LOG.info("ECR refused %s:%s (%s): %s", repo, tag, code, exc)
                return
            raise
        LOG.info("mirrored %s:%s %s (%s)", repo, tag, digest, media_type)
        if self.ecr_endpoint and self.scans_on_push(repo):
            self.scan(repo, digest)

    def scans_on_push(self, repo: str) -> bool:
        """Whether ECR would scan a push to this repository (registry rules first)."""
        config = self.ecr.get_registry_scanning_configuration()["scanningConfiguration"]
        rules = config.get("rules") or []
        if rules or config.get("scanType") == "ENHANCED":
            for rule in rules:
                if rule.get("scanFrequency") not in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN"):
                    continue
                for item in rule.get("repositoryFilters") or []:
                    pattern = "^" + ".*".join(
                        re.escape(p) for p in item["filter"].split("*")) + "$"
                    if re.match(pattern, repo):
                        return True
            return False
        found = self.ecr.describe_repositories(repositoryNames=[repo])
        settings = found["repositories"][0].get("imageScanningConfiguration") or {}
        return bool(settings.get("scanOnPush"))

    def scan(self, repo: str, digest: str) -> None:
        """Record a clean completed scan for a pushed image and start it in moto."""
        result = {
            "registryId": DEFAULT_ACCOUNT,
            "repositoryName": repo,
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": "COMPLETE",
                                "description": "The scan was completed successfully."},
            "imageScanFindings": {
                "imageScanCompletedAt": time.time(),
                "vulnerabilitySourceUpdatedAt": time.time(),
                "findings": [],
                "findingSeverityCounts": {},
            },
        }
        body = json.dumps({"results": [result], "region": self.region}).encode()
        request = urllib.request.Request(
            f"{self.ecr_endpoint}/moto-api/static/ecr/scan-finding-results",
            data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        try:
            self.ecr.start_image_scan(repositoryName=repo,
                                      imageId={"imageDigest": digest})
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "LimitExceededException":
                raise
            LOG.debug("%s@%s was scanned already today", repo, digest)
            return
        LOG.info("scanned %s@%s on push (no scanner here: no findings)", repo, digest)

    def repository_exists(self, repo: str) -> bool:
        try:
            self.ecr.describe_repositories(repositoryNames=[repo])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "RepositoryNotFoundException":
                return False
            raise
        return True

    def fetch_manifest(self, repo: str, digest: str) -> tuple[bytes, str]:
        request = urllib.request.Request(
            f"{self.registry}/v2/{repo}/manifests/{digest}",
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read(), response.headers.get_content_type()


def make_handler(bridge: Bridge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "baseimage-ecr-bridge"

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            # Health check for stack/up.sh.
            self._answer(200, b"ok\n")

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            self._answer(200, b"")
            if self.path.rstrip("/") != "/events":
                LOG.debug("POST to unknown path %s ignored", self.path)
                return
            try:
                bridge.accept(json.loads(raw or b"{}"))
            except ValueError:
                LOG.warning("notification body is not JSON; ignored")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            LOG.debug("%s %s", self.address_string(), format % args)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5051)
    parser.add_argument("--registry", default="http://127.0.0.1:5000")
    parser.add_argument("--ecr-endpoint", default="http://127.0.0.1:5050")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--log-file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(
        filename=args.log_file,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    # botocore's own debug output would bury the bridge's lines.
    logging.getLogger("botocore").setLevel(logging.WARNING)

    ecr = boto3.client(
        "ecr",
        endpoint_url=args.ecr_endpoint,
        region_name=args.region,
        config=botocore.config.Config(
            connect_timeout=2, read_timeout=10, retries={"max_attempts": 2}
        ),
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
    )
    bridge = Bridge(args.registry, ecr, args.ecr_endpoint, args.region)
    threading.Thread(target=bridge.run_forever, name="mirror", daemon=True).start()

    server = ThreadingHTTPServer((args.listen, args.port), make_handler(bridge))
    LOG.info(
        "listening on %s:%d; registry %s; ECR %s, region %s",
        args.listen,
        args.port,
        args.registry,
        args.ecr_endpoint,
        args.region,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
