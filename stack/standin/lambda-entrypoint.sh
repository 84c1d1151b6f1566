#!/bin/sh
# /lambda-entrypoint.sh of the baseimage stand-in images (see
# /work/shared/lambda-base-contract.md for the behaviour it reproduces).
#
# Takes exactly one argument, the handler, and exports it as _HANDLER.
# With AWS_LAMBDA_RUNTIME_API set (as in Lambda), runs /var/runtime/bootstrap.
# Without it, runs the runtime interface emulator in front of the bootstrap if
# the image has one; the stand-ins ship none, so they exit 127 with a message.

if [ "$#" -ne 1 ]; then
    echo "lambda-entrypoint.sh: expected exactly one argument, the handler (e.g. app.handler), got $#" >&2
    exit 142
fi

export _HANDLER="$1"

BOOTSTRAP=/var/runtime/bootstrap
EMULATOR=/usr/local/bin/aws-lambda-rie

if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    exec "$BOOTSTRAP"
fi

if [ -x "$EMULATOR" ]; then
    exec "$EMULATOR" "$BOOTSTRAP"
fi

echo "lambda-entrypoint.sh: AWS_LAMBDA_RUNTIME_API is not set and this stand-in image has no" \
     "runtime interface emulator at $EMULATOR; set AWS_LAMBDA_RUNTIME_API to a Runtime API" \
     "server (host:port) or add the emulator" >&2
exit 127
