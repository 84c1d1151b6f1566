#!/usr/bin/env bash
# Stop the services stack/up.sh started, by the pids it recorded in
# /run/baseimage-stack. Processes up.sh did not start are never touched.
#
# Usage: stack/down.sh [--all]
#   --all   also stop dockerd, but only if up.sh started it.
# That is every region's registry and ECR bridge (STACK_REGIONS in lib.sh), moto
# and the Maven server. Registry storage (/var/lib/baseimage-stack/registry and
# registry-REGION) is kept; moto keeps its state in memory, so its ECR
# repositories are gone after a restart.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=stack/lib.sh
. "$HERE/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
LOG_TAG=down

# stop NAME CMDLINE_PATTERN [TIMEOUT] sends SIGTERM to the recorded pid if that
# process still looks like the service (guards against a reused pid).
stop() {
    local name=$1 pattern=$2 timeout=${3:-10}
    local pidfile=$STACK_RUN_DIR/$name.pid pid

    if ! pid_alive "$pidfile"; then
        [ -e "$pidfile" ] && log "$name: recorded pid is gone; removing $pidfile"
        [ -e "$pidfile" ] || log "$name: no pid file; nothing to stop"
        rm -f "$pidfile"
        return 0
    fi

    pid=$(cat "$pidfile")
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"; then
        log "$name: pid $pid is now another program; not killing it, removing $pidfile"
        rm -f "$pidfile"
        return 0
    fi

    log "stopping $name (pid $pid)"
    kill "$pid"
    if ! wait_until "$timeout" "$name to exit" pid_gone "$pidfile"; then
        log "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

main() {
    local all=no
    case "${1:-}" in
        --all) all=yes ;;
        "") ;;
        *) die "usage: $0 [--all]" ;;
    esac

    check_regions
    # The patterns name the region's own configuration and port, so a pid reused
    # by another region's service is not mistaken for this one.
    local row region bridge_port suffix
    for row in "${STACK_REGIONS[@]}"; do
        read -r region _ <<<"$row"
        suffix=$(region_suffix "$region")
        stop "registry$suffix" "docker-registry serve $STACK_STATE_DIR/registry$suffix.yml"
    done
    stop moto 'moto_server'
    for row in "${STACK_REGIONS[@]}"; do
        read -r region _ bridge_port <<<"$row"
        suffix=$(region_suffix "$region")
        stop "ecr-bridge$suffix" "ecr_bridge.py --port $bridge_port "
    done
    stop maven 'http.server'

    if [ "$all" = yes ]; then
        stop dockerd 'dockerd' 30
    elif pid_alive "$STACK_RUN_DIR/dockerd.pid"; then
        log "dockerd (started by up.sh) left running; use --all to stop it"
    fi
}

main "$@"
