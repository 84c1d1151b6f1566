# Shared helpers for the local stack scripts. Sourced, never run.
#
# Every helper logs to stderr; stdout is reserved for what a script hands back
# (export lines, digests, checksums).

STACK_STATE_DIR=/var/lib/baseimage-stack
STACK_LOG_DIR=/var/log/baseimage-stack
STACK_RUN_DIR=/run/baseimage-stack
STACK_CACHE_DIR=/var/cache/baseimage-stack

REGISTRY_ADDR=127.0.0.1:5000
MOTO_PORT=5050
BRIDGE_PORT=5051
MAVEN_PORT=8081

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
pid_alive() {
    local pidfile=$1 pid
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null
}

# wait_until TIMEOUT_SECONDS DESCRIPTION COMMAND... polls COMMAND every 0.2 s.
wait_until() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
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
    local repo=$1 tag=$2
    curl -fsS -I --max-time 5 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.oci.image.index.v1+json' \
        "http://${REGISTRY_ADDR}/v2/${repo}/manifests/${tag}" 2>/dev/null |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
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
