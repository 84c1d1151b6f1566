#!/usr/bin/env bash
# Build Lambda-compatible stand-ins for the official base images and push them to
# the local registry, where a mirror mapping public.ecr.aws/lambda ->
# 127.0.0.1:5000/lambda finds them:
#
#   python3.11  ->  127.0.0.1:5000/lambda/python:3.11   (Debian bookworm, awslambdaric)
#   java17      ->  127.0.0.1:5000/lambda/java:17       (Debian bookworm, own runtime client)
#
# Usage: stack/standins.sh [python3.11|java17|all] [--force]
# Needs stack/up.sh first. Prints "<reference>@<digest>" per runtime on stdout.
#
# A runtime is skipped when the registry already has its tag, unless --force, or
# unless this machine built that tag from an older recipe (the files under
# stack/standin or the build steps in this script changed since). Debootstrap
# output is cached as a tarball in /var/cache/baseimage-stack, so a rebuild does
# not bootstrap again.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=stack/lib.sh
. "$HERE/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
LOG_TAG=standins

SUITE=bookworm
ARCH=$(dpkg --print-architecture)
AWSLAMBDARIC_VERSION=${AWSLAMBDARIC_VERSION:-4.2.2}
# The AWS Python images ship the AWS SDK in /var/runtime; functions rely on it.
BOTO3_VERSION=${BOTO3_VERSION:-1.43.11}
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
BUILD_ROOT=/var/tmp/baseimage-stack
RECORD_DIR=$STACK_STATE_DIR/standins
STANDIN=$HERE/standin
CHECK_USER=993:993

# Values of the official images (lambda-base-contract.md).
IMAGE_CHANGES=(
    --change 'ENV LANG=en_US.UTF-8'
    --change 'ENV TZ=:/etc/localtime'
    --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin'
    --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib'
    --change 'ENV LAMBDA_TASK_ROOT=/var/task'
    --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime'
    --change 'WORKDIR /var/task'
    --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]'
)

CLEANUP=()
cleanup() {
    local i
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP[i]}" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# --- runtime table -----------------------------------------------------------

runtime_repo() {
    case $1 in
        python3.11) echo lambda/python ;;
        java17) echo lambda/java ;;
    esac
}

runtime_tag() {
    case $1 in
        python3.11) echo 3.11 ;;
        java17) echo 17 ;;
    esac
}

runtime_packages() {
    case $1 in
        python3.11) echo python3,python3-pip,ca-certificates ;;
        java17) echo openjdk-17-jre-headless,ca-certificates ;;
    esac
}

# recipe_hash RUNTIME fingerprints what decides the image's content: package list,
# image settings, the files under stack/standin and the functions that assemble
# the root file system (as bash prints them, so editing a comment changes nothing).
recipe_hash() {
    local runtime=$1 family=${1%%[0-9]*}
    {
        echo "$runtime $SUITE $ARCH $(runtime_packages "$runtime") awslambdaric==$AWSLAMBDARIC_VERSION"
        printf '%s\n' "${IMAGE_CHANGES[@]}"
        declare -f in_chroot "add_${family}_runtime" finish_rootfs
        cat "$STANDIN/lambda-entrypoint.sh"
        find "$STANDIN/$family" -type f | LC_ALL=C sort | xargs cat
    } | sha256sum | cut -c1-16
}

# --- root file system ----------------------------------------------------------

# debian_mirror prints the Debian mirror apt uses on this host for $SUITE.
debian_mirror() {
    if [ -n "${BASEIMAGE_DEBIAN_MIRROR:-}" ]; then
        echo "$BASEIMAGE_DEBIAN_MIRROR"
        return 0
    fi
    local mirror="" file
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -e "$file" ] || continue
        # deb822 stanzas: the first enabled "deb" stanza that lists $SUITE.
        mirror=$(awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; suites = ""; types = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[ \t]*#/) continue
                    key = tolower(substr(line, 1, index(line, ":") - 1))
                    val = substr(line, index(line, ":") + 1)
                    gsub(/^[ \t]+|[ \t]+$/, "", val)
                    if (key == "uris") uris = val
                    else if (key == "suites") suites = " " val " "
                    else if (key == "types") types = " " val " "
                    else if (key == "enabled") enabled = tolower(val)
                }
                if (enabled != "no" && types ~ / deb / && index(suites, " " suite " ")) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$file")
        [ -n "$mirror" ] && break
    done
    if [ -z "$mirror" ] && [ -e /etc/apt/sources.list ]; then
        mirror=$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' /etc/apt/sources.list)
    fi
    [ -n "$mirror" ] || die "cannot find a Debian mirror for $SUITE in /etc/apt; set BASEIMAGE_DEBIAN_MIRROR"
    echo "${mirror%/}"
}

# rootfs_tarball RUNTIME prints the cached debootstrap tarball, making it if needed.
rootfs_tarball() {
    local runtime=$1 packages mirror key tarball dir started
    packages=$(runtime_packages "$runtime")
    mirror=$(debian_mirror)
    key=$(echo "minbase $SUITE $ARCH $mirror $packages" | sha256sum | cut -c1-12)
    tarball=$STACK_CACHE_DIR/rootfs-$runtime-$SUITE-$ARCH-$key.tar

    if [ -s "$tarball" ]; then
        log "$runtime: reusing cached root file system $tarball"
        echo "$tarball"
        return 0
    fi

    mkdir -p "$STACK_CACHE_DIR" "$BUILD_ROOT"
    dir=$(mktemp -d "$BUILD_ROOT/debootstrap-$runtime.XXXXXX")
    CLEANUP+=("rm -rf '$dir'")
    log "$runtime: debootstrap --variant=minbase --include=$packages $SUITE from $mirror"
    started=$SECONDS
    # --cache-dir keeps the .deb files, so the second runtime (and a rebuild after
    # a change of package list) downloads only what it does not share.
    mkdir -p "$STACK_CACHE_DIR/debs"
    if ! debootstrap --variant=minbase --arch="$ARCH" --include="$packages" \
        --cache-dir="$STACK_CACHE_DIR/debs" "$SUITE" "$dir" "$mirror" >"$dir.log" 2>&1; then
        tail -n 30 "$dir.log" >&2
        die "$runtime: debootstrap failed (log: $dir.log)"
    fi
    rm -f "$dir.log"
    log "$runtime: debootstrap took $((SECONDS - started)) s"
    # The downloaded .deb files are half the size and never reach the image.
    rm -f "$dir"/var/cache/apt/archives/*.deb

    tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$dir"
    log "$runtime: cached root file system as $tarball ($(du -h "$tarball" | cut -f1))"
    echo "$tarball"
}

# --- runtime layers --------------------------------------------------------------

# in_chroot DIR COMMAND... runs COMMAND in DIR with a clean environment, the host's
# DNS settings and the host's CA bundle (outbound TLS is intercepted here).
in_chroot() {
    local dir=$1
    shift
    # rm first: copying onto a symlink would write through it to the host.
    rm -f "$dir/etc/resolv.conf"
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    cp "$HOST_CA_BUNDLE" "$dir/tmp/host-ca-bundle.crt"
    chroot "$dir" /usr/bin/env -i \
        PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_CERT=/tmp/host-ca-bundle.crt SSL_CERT_FILE=/tmp/host-ca-bundle.crt \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
        "$@"
    rm -f "$dir/tmp/host-ca-bundle.crt"
}

add_python_runtime() {
    local dir=$1
    [ -x "$dir/usr/bin/python3.11" ] || die "python3.11 missing from the bookworm root file system"

    mkdir -p "$dir/var/lang/bin" "$dir/var/lang/lib" "$dir/var/runtime"
    ln -sfn /usr/bin/python3.11 "$dir/var/lang/bin/python3.11"
    ln -sfn python3.11 "$dir/var/lang/bin/python3"
    ln -sfn python3.11 "$dir/var/lang/bin/python"
    # Wrappers, not links to /usr/bin/pip3: that script's shebang names /usr/bin/python3.
    printf '#!/bin/sh\nexec /var/lang/bin/python3.11 -m pip "$@"\n' >"$dir/var/lang/bin/pip3"
    cp "$dir/var/lang/bin/pip3" "$dir/var/lang/bin/pip"
    chmod 755 "$dir/var/lang/bin/pip" "$dir/var/lang/bin/pip3"

    # The AWS images let pip install anywhere; Debian's marker (PEP 668) refuses.
    rm -f "$dir"/usr/lib/python3*/EXTERNALLY-MANAGED

    log "python3.11: pip install awslambdaric==$AWSLAMBDARIC_VERSION and" \
        "boto3==$BOTO3_VERSION into /var/runtime (in the chroot)"
    in_chroot "$dir" /usr/bin/python3.11 -m pip install --quiet --target /var/runtime \
        "awslambdaric==$AWSLAMBDARIC_VERSION" "boto3==$BOTO3_VERSION" >&2 ||
        die "pip could not install awslambdaric and boto3 in the chroot"

    install -m 755 "$STANDIN/python/bootstrap" "$dir/var/runtime/bootstrap"
}

add_java_runtime() {
    local dir=$1 java_home classes
    java_home=$(cd "$dir" && find usr/lib/jvm -maxdepth 1 -name 'java-17-openjdk-*' -type d | head -n1)
    if [ -z "$java_home" ] || [ ! -x "$dir/$java_home/bin/java" ]; then
        die "OpenJDK 17 missing from the bookworm root file system"
    fi

    mkdir -p "$dir/var/lang/bin" "$dir/var/lang/lib" "$dir/var/runtime/lib"
    ln -sfn "/$java_home/bin/java" "$dir/var/lang/bin/java"

    classes=$(mktemp -d "$BUILD_ROOT/java-runtime.XXXXXX")
    CLEANUP+=("rm -rf '$classes'")
    log "java17: compiling the stand-in runtime client (javac --release 17)"
    javac --release 17 -Xlint:all -Werror -d "$classes" \
        "$STANDIN/java/src/baseimage/standin/LambdaRuntime.java"
    jar --create --file "$dir/var/runtime/lib/lambda-standin-runtime.jar" \
        --main-class baseimage.standin.LambdaRuntime -C "$classes" .

    install -m 755 "$STANDIN/java/bootstrap" "$dir/var/runtime/bootstrap"
}

finish_rootfs() {
    local dir=$1
    install -m 755 "$STANDIN/lambda-entrypoint.sh" "$dir/lambda-entrypoint.sh"
    mkdir -p "$dir/var/task" "$dir/opt"
    chmod 755 "$dir/var/task" "$dir/opt" "$dir/var/lang" "$dir/var/runtime"

    # Nothing of the build host and no package caches in the image.
    rm -f "$dir/etc/resolv.conf"
    : >"$dir/etc/resolv.conf"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
        "$dir"/tmp/* "$dir"/var/tmp/* "$dir"/root/.cache
    chmod 1777 "$dir/tmp" "$dir/var/tmp"

    # The function runs as an unprivileged user: all of the runtime must be readable.
    # (The build directory comes from mktemp -d, mode 700, and becomes the image's /.)
    chmod 755 "$dir"
    chmod -R a+rX "$dir/var/lang" "$dir/var/runtime" "$dir/var/task" "$dir/opt"
}

# --- checks ------------------------------------------------------------------------

# expect_exit STATUS DESCRIPTION docker-run-args... runs a container and checks its
# exit status.
expect_exit() {
    local want=$1 what=$2 got=0
    shift 2
    docker run --rm --network none "$@" >/dev/null 2>&1 || got=$?
    [ "$got" -eq "$want" ] || die "check failed: $what exited $got, expected $want"
}

# check_invoke RUNTIME IMAGE runs one invocation as user $CHECK_USER on a
# read-only root against stack/fake_runtime_api.py.
check_invoke() {
    local runtime=$1 image=$2 work task handler marker server port name result kind body
    work=$(mktemp -d "$BUILD_ROOT/check-$runtime.XXXXXX")
    CLEANUP+=("rm -rf '$work'")
    task=$work/task
    mkdir -p "$task"
    case $runtime in
        python3.11)
            cp "$STANDIN/check/python/app.py" "$task/"
            handler=app.handler
            ;;
        java17)
            javac --release 17 -d "$task" "$STANDIN/check/java/check/Hello.java"
            handler=check.Hello::handleRequest
            ;;
    esac
    chmod -R a+rX "$work"

    marker=standin-check-$RANDOM$RANDOM
    python3 "$HERE/fake_runtime_api.py" --event "{\"message\": \"$marker\"}" \
        --port-file "$work/port" --result-file "$work/result.json" --timeout 60 \
        2>"$work/api.log" &
    server=$!
    CLEANUP+=("grep -q fake_runtime_api /proc/$server/cmdline && kill $server")
    wait_until 10 "runtime API" test -s "$work/port" || die "fake Runtime API did not start"
    port=$(cat "$work/port")

    name=baseimage-standin-check-$runtime-$$
    CLEANUP+=("docker rm -f $name")
    docker run -d --name "$name" --network host --user "$CHECK_USER" --read-only \
        --tmpfs /tmp -e AWS_LAMBDA_RUNTIME_API="127.0.0.1:$port" \
        -v "$task:/var/task:ro" "$image" "$handler" >/dev/null

    wait "$server" || true
    result=$(cat "$work/result.json" 2>/dev/null || echo '{"kind":"none","body":""}')
    kind=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["kind"])' <<<"$result")
    body=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["body"])' <<<"$result")
    if [ "$kind" != response ] || [[ "$body" != *"$marker"* ]]; then
        log "container output:"
        docker logs "$name" >&2 2>&1 || true
        die "check failed: $runtime handler answered ${kind}: $body"
    fi
    docker rm -f "$name" >/dev/null 2>&1 || true
    log "$runtime: invocation check passed: $body"
}

check_image() {
    local runtime=$1 image=$2
    log "$runtime: checking the entrypoint contract and one invocation"
    expect_exit 142 "entrypoint without a handler" "$image"
    expect_exit 142 "entrypoint with two arguments" "$image" a b
    expect_exit 127 "entrypoint without AWS_LAMBDA_RUNTIME_API or emulator" "$image" app.handler
    case $runtime in
        python3.11)
            expect_exit 0 "python and pip on PATH" --user "$CHECK_USER" --read-only \
                --entrypoint /bin/sh "$image" -c \
                'python --version && PYTHONPATH=/var/runtime python3.11 -c "import awslambdaric" && pip --version && pip3 --version'
            ;;
        java17)
            expect_exit 0 "java on PATH" --user "$CHECK_USER" --read-only --tmpfs /tmp \
                --entrypoint /bin/sh "$image" -c 'java -version && test -x /var/lang/bin/java'
            ;;
    esac
    check_invoke "$runtime" "$image"
}

# --- build -------------------------------------------------------------------------

build_runtime() {
    local runtime=$1 force=$2 repo tag image recipe record digest started tarball dir
    repo=$(runtime_repo "$runtime")
    tag=$(runtime_tag "$runtime")
    image=$REGISTRY_ADDR/$repo:$tag
    recipe=$(recipe_hash "$runtime")
    record=$RECORD_DIR/$runtime.recipe

    digest=$(registry_digest "$repo" "$tag")
    if [ -n "$digest" ] && [ "$force" = no ]; then
        if [ ! -e "$record" ] || [ "$(cat "$record")" = "$recipe" ]; then
            log "$runtime: $image already in the registry ($digest); skipped (--force rebuilds)"
            echo "$image@$digest"
            return 0
        fi
        log "$runtime: $image was built from an older recipe; rebuilding"
    fi

    started=$SECONDS
    tarball=$(rootfs_tarball "$runtime")
    dir=$(mktemp -d "$BUILD_ROOT/rootfs-$runtime.XXXXXX")
    CLEANUP+=("rm -rf '$dir'")
    tar -C "$dir" --numeric-owner -xf "$tarball"

    case $runtime in
        python3.11) add_python_runtime "$dir" ;;
        java17) add_java_runtime "$dir" ;;
    esac
    finish_rootfs "$dir"

    log "$runtime: importing $image"
    tar -C "$dir" --numeric-owner -c . | docker import "${IMAGE_CHANGES[@]}" \
        --message "baseimage stand-in $runtime (recipe $recipe)" - "$image" >/dev/null
    rm -rf "$dir"

    check_image "$runtime" "$image"

    log "$runtime: pushing $image"
    docker push "$image" >/dev/null
    digest=$(registry_digest "$repo" "$tag")
    [ -n "$digest" ] || die "$runtime: the registry does not list $image after the push"
    mkdir -p "$RECORD_DIR"
    echo "$recipe" >"$record"
    log "$runtime: pushed $image@$digest in $((SECONDS - started)) s"
    echo "$image@$digest"
}

main() {
    local target=all force=no arg runtimes=()
    for arg in "$@"; do
        case $arg in
            --force) force=yes ;;
            python3.11 | java17 | all) target=$arg ;;
            -h | --help)
                awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
                return 0
                ;;
            *) die "unknown argument '$arg'; usage: $0 [python3.11|java17|all] [--force]" ;;
        esac
    done
    case $target in
        all) runtimes=(python3.11 java17) ;;
        *) runtimes=("$target") ;;
    esac

    [ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
    docker info >/dev/null 2>&1 || die "the docker engine does not answer; run stack/up.sh first"
    http_ok "http://$REGISTRY_ADDR/v2/" ||
        die "the registry at $REGISTRY_ADDR does not answer; run stack/up.sh first"

    # Only a build needs the tools; the fast path must stay fast.
    local runtime need_build=no
    for runtime in "${runtimes[@]}"; do
        if [ "$force" = yes ] || [ -z "$(registry_digest "$(runtime_repo "$runtime")" "$(runtime_tag "$runtime")")" ] ||
            { [ -e "$RECORD_DIR/$runtime.recipe" ] && [ "$(cat "$RECORD_DIR/$runtime.recipe")" != "$(recipe_hash "$runtime")" ]; }; then
            need_build=yes
        fi
    done
    if [ "$need_build" = yes ]; then
        ensure_packages debootstrap ca-certificates curl python3 openjdk-17-jdk-headless
        mkdir -p "$BUILD_ROOT" "$STACK_CACHE_DIR"
    fi

    # One after the other. Tried side by side on a 2-CPU machine: the debootstraps
    # took 86 s and 113 s instead of about 45 s each alone, so no clear gain, and
    # the two logs interleave.
    for runtime in "${runtimes[@]}"; do
        build_runtime "$runtime" "$force"
    done
}

main "$@"
