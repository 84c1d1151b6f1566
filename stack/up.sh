#!/usr/bin/env bash
# Start the local stack baseimage builds and tests against:
#
#   docker engine   unix socket (reused if one answers, else dockerd is started)
#   ECR API         http://127.0.0.1:5050   moto_server, all regions
#   per region (STACK_REGIONS in lib.sh):
#     us-east-1     registry http://127.0.0.1:5000, ECR bridge http://127.0.0.1:5051
#     eu-west-1     registry http://127.0.0.1:5002, ECR bridge http://127.0.0.1:5053
#                   registry: Debian's docker-registry, no auth; bridge:
#                   stack/ecr_bridge.py (that registry's events -> moto, that region)
#   Maven repo      http://127.0.0.1:8081/maven2   jars from Debian packages
#
# Usage: eval "$(stack/up.sh)"
# Progress goes to stderr; stdout carries only the export lines the tool needs.
# Safe to run again: services that already answer are left alone.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=stack/lib.sh
. "$HERE/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
LOG_TAG=up

DOCKER_PIDFILE=/var/run/docker.pid

# start_service NAME HEALTH_COMMAND... -- COMMAND... runs COMMAND in its own
# session with output to $STACK_LOG_DIR/NAME.log and its pid in
# $STACK_RUN_DIR/NAME.pid, unless HEALTH_COMMAND already succeeds, then waits up
# to 30 s for HEALTH_COMMAND. A recorded process that is still there but not
# answering gets the same 30 s; if it exits meanwhile (it was stopping, or it
# crashed), the service is started once more.
start_service() {
    local name=$1 health=()
    shift
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
        health+=("$1")
        shift
    done
    if [ "$#" -lt 2 ] || [ "${#health[@]}" -eq 0 ]; then
        die "start_service $name: want HEALTH_COMMAND... -- COMMAND..."
    fi
    shift
    local pidfile=$STACK_RUN_DIR/$name.pid logfile=$STACK_LOG_DIR/$name.log

    if "${health[@]}" >/dev/null 2>&1; then
        if pid_alive "$pidfile"; then
            log "$name already running (pid $(cat "$pidfile"))"
        else
            log "$name already answers (not started by up.sh; left alone)"
        fi
        return 0
    fi

    local attempt deadline
    for attempt in 1 2; do
        if pid_alive "$pidfile"; then
            log "$name (pid $(cat "$pidfile")) is not answering yet; waiting"
        else
            rm -f "$pidfile"
            log "starting $name: $*"
            # setsid: the service must outlive this script and the caller's job control.
            setsid "$@" >>"$logfile" 2>&1 </dev/null &
            echo $! >"$pidfile"
        fi

        deadline=$((SECONDS + 30))
        while [ "$SECONDS" -lt "$deadline" ] && pid_alive "$pidfile"; do
            if "${health[@]}" >/dev/null 2>&1; then
                log "$name is up (pid $(cat "$pidfile"))"
                return 0
            fi
            sleep 0.2
        done
        if pid_alive "$pidfile"; then
            break
        fi
        log "$name (pid $(cat "$pidfile")) exited before answering (attempt $attempt)"
    done

    log "last lines of $logfile:"
    tail -n 20 "$logfile" >&2 || true
    die "$name did not come up (log: $logfile; stack/down.sh stops what up.sh started)"
}

maven_answers() { http_ok "http://127.0.0.1:$MAVEN_PORT/maven2/"; }

stop_recorded() {
    local name=$1 pidfile=$STACK_RUN_DIR/$1.pid
    if pid_alive "$pidfile"; then
        kill "$(cat "$pidfile")"
        wait_until 10 "$name to exit" pid_gone "$pidfile" ||
            die "$name (pid $(cat "$pidfile")) did not stop"
    fi
    rm -f "$pidfile"
}

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        log "docker engine answers"
        return 0
    fi

    # A dockerd killed hard leaves its pid file behind and the next dockerd then
    # refuses to start ("pid file found, ensure docker is not running").
    if [ -e "$DOCKER_PIDFILE" ]; then
        local old
        old=$(cat "$DOCKER_PIDFILE" 2>/dev/null || true)
        if [[ "$old" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$old/comm" 2>/dev/null)" = dockerd ]; then
            log "dockerd (pid $old) is running but not answering yet; waiting for it"
        else
            log "removing stale $DOCKER_PIDFILE (pid ${old:-?} is not a running dockerd)"
            rm -f "$DOCKER_PIDFILE"
        fi
    fi

    if [ ! -e "$DOCKER_PIDFILE" ]; then
        log "starting dockerd (log: $STACK_LOG_DIR/dockerd.log)"
        setsid dockerd >>"$STACK_LOG_DIR/dockerd.log" 2>&1 </dev/null &
        echo $! >"$STACK_RUN_DIR/dockerd.pid"
    fi

    if ! wait_until 60 dockerd docker info; then
        tail -n 20 "$STACK_LOG_DIR/dockerd.log" >&2 || true
        die "docker engine did not answer within 60 s (log: $STACK_LOG_DIR/dockerd.log)"
    fi
    log "docker engine is up"
}

# write_registry_config REGION REGISTRY_PORT BRIDGE_PORT writes the region's
# registry configuration; it succeeds only when the file changed.
write_registry_config() {
    local region=$1 registry_port=$2 bridge_port=$3 suffix config tmp
    suffix=$(region_suffix "$region")
    config=$STACK_STATE_DIR/registry$suffix.yml
    tmp=$(mktemp "$config.XXXXXX")
    cat >"$tmp" <<EOF
# Written by stack/up.sh; changes here are overwritten on the next run.
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry$suffix
storage:
  filesystem:
    rootdirectory: $STACK_STATE_DIR/registry$suffix
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$registry_port
  headers:
    X-Content-Type-Options: [nosniff]
notifications:
  events:
    includereferences: true
  endpoints:
    - name: ecr-bridge$suffix
      url: http://127.0.0.1:$bridge_port/events
      timeout: 2s
      threshold: 3
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
      ignore:
        actions:
          - pull
EOF
    if cmp -s "$tmp" "$config"; then
        rm -f "$tmp"
        return 1
    fi
    mv "$tmp" "$config"
    log "wrote $config"
    return 0
}

# start_region REGION REGISTRY_PORT BRIDGE_PORT PYTHON starts the region's ECR
# bridge and then its registry (so the registry's first events have somewhere to
# go). The bridge mirrors into moto under REGION.
start_region() {
    local region=$1 registry_port=$2 bridge_port=$3 python=$4 suffix
    suffix=$(region_suffix "$region")
    mkdir -p "$STACK_STATE_DIR/registry$suffix"

    start_service "ecr-bridge$suffix" http_ok "http://127.0.0.1:$bridge_port/" -- \
        "$python" "$HERE/ecr_bridge.py" --port "$bridge_port" \
        --registry "http://127.0.0.1:$registry_port" --region "$region" \
        --ecr-endpoint "http://127.0.0.1:$MOTO_PORT" \
        --log-file "$STACK_LOG_DIR/ecr-bridge$suffix.log"

    if write_registry_config "$region" "$registry_port" "$bridge_port" &&
        pid_alive "$STACK_RUN_DIR/registry$suffix.pid"; then
        log "registry$suffix configuration changed; restarting it"
        stop_recorded "registry$suffix"
    fi
    start_service "registry$suffix" http_ok "http://127.0.0.1:$registry_port/v2/" -- \
        docker-registry serve "$STACK_STATE_DIR/registry$suffix.yml"
}

ensure_python_deps() {
    if have moto_server && python_with boto3 >/dev/null; then
        return 0
    fi
    log "moto_server or boto3 missing; installing moto[server] with pip"
    PIP_CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt} \
        python3 -m pip install --quiet 'moto[server]' >&2 ||
        die "pip could not install moto[server] for $(command -v python3); install it by hand"
    hash -r
    have moto_server || die "moto_server is still not on PATH after pip install"
}

moto_answers() {
    # Any signed-looking ECR call will do; moto routes on the credential scope.
    curl -fsS -o /dev/null --max-time 2 -X POST "http://127.0.0.1:$MOTO_PORT/" \
        -H 'Content-Type: application/x-amz-json-1.1' \
        -H 'X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRepositories' \
        -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=0' \
        -d '{}'
}

# forget_ecr_images removes the image data the registries hold for ECR repositories.
# Moto keeps ECR in memory, so a moto started afresh knows no repository; the
# registries must then forget theirs too, or ECR's view and the registries' would
# disagree (a tag the registry still serves but ECR has never heard of). The
# stand-in bases under lambda/ are not ECR repositories and are kept.
forget_ecr_images() {
    local row region suffix repos
    for row in "${STACK_REGIONS[@]}"; do
        read -r region _ _ <<<"$row"
        suffix=$(region_suffix "$region")
        repos=$STACK_STATE_DIR/registry$suffix/docker/registry/v2/repositories
        [ -d "$repos" ] || continue
        if pid_alive "$STACK_RUN_DIR/registry$suffix.pid"; then
            stop_recorded "registry$suffix"
        fi
        find "$repos" -mindepth 1 -maxdepth 1 ! -name lambda -exec rm -rf {} +
        log "registry$suffix: forgot the image data of the previous ECR state"
    done
}

main() {
    [ "$(id -u)" -eq 0 ] || die "run as root (starts dockerd and writes under /var and /run)"
    check_regions
    mkdir -p "$STACK_STATE_DIR" "$STACK_LOG_DIR" "$STACK_RUN_DIR"

    ensure_packages ca-certificates curl docker.io docker-registry python3
    ensure_python_deps
    local python
    python=$(python_with boto3) || die "no python3 on PATH can import boto3"

    ensure_docker
    if ! moto_answers >/dev/null 2>&1; then
        forget_ecr_images
    fi

    local row region registry_port bridge_port endpoints="" summary=""
    for row in "${STACK_REGIONS[@]}"; do
        read -r region registry_port bridge_port <<<"$row"
        start_region "$region" "$registry_port" "$bridge_port" "$python"
        endpoints+="${endpoints:+,}$region=http://127.0.0.1:$registry_port"
        summary+=" $region (registry 127.0.0.1:$registry_port, bridge 127.0.0.1:$bridge_port);"
    done

    start_service moto moto_answers -- moto_server -H 127.0.0.1 -p "$MOTO_PORT"

    "$HERE/maven-repo.sh" >&2
    start_service maven maven_answers -- \
        "$python" -m http.server --bind 127.0.0.1 "$MAVEN_PORT" \
        --directory "$STACK_STATE_DIR/maven"

    log "stack is up:$summary ECR 127.0.0.1:$MOTO_PORT," \
        "maven http://127.0.0.1:$MAVEN_PORT/maven2"
    cat <<EOF
export AWS_ENDPOINT_URL_ECR=http://127.0.0.1:$MOTO_PORT
export AWS_DEFAULT_REGION=$STACK_PRIMARY_REGION
export BASEIMAGE_REGISTRY_ENDPOINT="$endpoints"
EOF
}

main "$@"
