"""Handler the stand-in check runs inside the Python image."""

import sys


def handler(event, context):
    major, minor = sys.version_info[:2]
    return {"echo": event["message"], "runtime": f"python{major}.{minor}"}
