# shellcheck shell=bash
# Shared helpers for the local stack scripts. Sourced, never run.
#
# Every helper logs to stderr; stdout is reserved for what a script hands back
# (export lines, digests, checksums).

# The defaults are the stack's documented locations and ports. The
# BASEIMAGE_STACK_* variables exist to run a second copy beside a live stack
# (to test these scripts); nothing else should need them.
# shellcheck disable=SC2034  # used by the scripts that source this file
{
    STACK_PREFIX=${BASEIMAGE_STACK_PREFIX:-}
    STACK_STATE_DIR=$STACK_PREFIX/var/lib/baseimage-stack
    STACK_LOG_DIR=$STACK_PREFIX/var/log/baseimage-stack
    STACK_RUN_DIR=$STACK_PREFIX/run/baseimage-stack
    STACK_CACHE_DIR=$STACK_PREFIX/var/cache/baseimage-stack

    MOTO_PORT=${BASEIMAGE_STACK_MOTO_PORT:-5050}
    MAVEN_PORT=${BASEIMAGE_STACK_MAVEN_PORT:-8081}

    # The regions the stack serves, one "REGION REGISTRY_PORT BRIDGE_PORT" row
    # each. All regions share the one moto ECR API (moto keeps them apart by the
    # signing region), but each region has its own registry and ECR bridge: one
    # registry holding company/x for two regions would mix their tags.
    # The first row is the primary region. Its services keep the plain names
    # (registry, ecr-bridge, registry.yml, registry/); the others' names end in
    # -REGION (see region_suffix). BASEIMAGE_STACK_REGIONS replaces the whole
    # table, rows separated by commas.
    if [ -n "${BASEIMAGE_STACK_REGIONS:-}" ]; then
        IFS=, read -r -a STACK_REGIONS <<<"$BASEIMAGE_STACK_REGIONS"
    else
        STACK_REGIONS=(
            "us-east-1 ${BASEIMAGE_STACK_REGISTRY_PORT:-5000} ${BASEIMAGE_STACK_BRIDGE_PORT:-5051}"
            "eu-west-1 5002 5053"
        )
    fi
    read -r STACK_PRIMARY_REGION REGISTRY_PORT _ <<<"${STACK_REGIONS[0]}"
    # The primary region's registry: standins.sh pushes there, registry_digest reads it.
    REGISTRY_ADDR=127.0.0.1:$REGISTRY_PORT
}

# region_suffix REGION prints nothing for the primary region and -REGION for
# the others. Service names (pid files, logs) and the registry's configuration
# and storage carry it: registry-eu-west-1.pid, ecr-bridge-eu-west-1.log, ...
region_suffix() {
    [ "$1" = "$STACK_PRIMARY_REGION" ] || printf -- '-%s' "$1"
}

# check_regions dies unless every STACK_REGIONS row is "REGION REGISTRY_PORT
# BRIDGE_PORT" and no region or port is used twice (moto's and Maven's included).
check_regions() {
    local row region registry_port bridge_port extra seen=" $MOTO_PORT $MAVEN_PORT "
    [ "${#STACK_REGIONS[@]}" -gt 0 ] || die "no regions configured"
    for row in "${STACK_REGIONS[@]}"; do
        read -r region registry_port bridge_port extra <<<"$row"
        [[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ && "$registry_port" =~ ^[0-9]+$ &&
            "$bridge_port" =~ ^[0-9]+$ && "$registry_port" != "$bridge_port" &&
            -z "$extra" ]] ||
            die "bad region row '$row' (want: REGION REGISTRY_PORT BRIDGE_PORT)"
        case "$seen" in
            *" $region "* | *" $registry_port "* | *" $bridge_port "*)
                die "region row '$row' reuses a region or port already taken" ;;
        esac
        seen="$seen$region $registry_port $bridge_port "
    done
}

log() {
    printf '[%s] %s\n' "${LOG_TAG:-stack}" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# ensure_packages PKG... installs the Debian packages that are not installed yet.
# apt-get update runs at most once per script, and only when something is missing.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    log "installing missing Debian packages: ${missing[*]}"
    if [ -z "${_STACK_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _STACK_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
}

# pid_alive PIDFILE succeeds when PIDFILE names a process that still runs.
# A zombie does not count: an exited service whose parent has not reaped it yet
# still answers kill -0.
pid_alive() {
    local pidfile=$1 pid state
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# pid_gone PIDFILE is the opposite of pid_alive, for wait_until.
pid_gone() {
    ! pid_alive "$1"
}

# wait_until TIMEOUT_SECONDS DESCRIPTION COMMAND... polls COMMAND every 0.2 s.
wait_until() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "gave up waiting for $what after ${timeout} s"
            return 1
        fi
        sleep 0.2
    done
}

# http_ok URL succeeds when URL answers with a 2xx status.
http_ok() {
    curl -fsS -o /dev/null --max-time 2 "$1"
}

# registry_digest REPO TAG prints the manifest digest the local registry holds
# for REPO:TAG, or nothing when the tag is absent.
registry_digest() {
    local repo=$1 tag=$2 headers
    headers=$(curl -fsS -I --max-time 5 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.oci.image.index.v1+json' \
        "http://${REGISTRY_ADDR}/v2/${repo}/manifests/${tag}" 2>/dev/null) || return 0
    printf '%s\n' "$headers" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}

# python_with MODULE prints a python3 interpreter that can import MODULE.
python_with() {
    local module=$1 candidate
    for candidate in python3 /usr/bin/python3; do
        if have "$candidate" && "$candidate" -c "import $module" 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}
