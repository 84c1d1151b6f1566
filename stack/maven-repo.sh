#!/usr/bin/env bash
# Lay out a Maven repository under /var/lib/baseimage-stack/maven/maven2 from the
# jars Debian ships in /usr/share/java, for stack/up.sh to serve at
# http://127.0.0.1:8081/maven2.
#
# Usage: stack/maven-repo.sh
# Prints one line per published jar on stdout: "<sha256>  <group:artifact:version>  <url>".
#
# The jars are Debian's builds of the upstream sources, so their checksums differ
# from the same coordinates on Maven Central. The POMs are written here (Debian's
# own POMs point at a parent with version "debian" and leave dependency versions
# out, which a plain Maven client cannot resolve); they declare only the compile
# dependencies among the artifacts published here.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=stack/lib.sh
. "$HERE/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
LOG_TAG=maven-repo

MAVEN_ROOT=$STACK_STATE_DIR/maven
REPO_DIR=$MAVEN_ROOT/maven2
REPO_URL=http://127.0.0.1:$MAVEN_PORT/maven2
JAVA_DIR=/usr/share/java

LOG4J=org.apache.logging.log4j
SLF4J=org.slf4j

# group artifact version required dependencies(comma separated g:a:v, or -)
ARTIFACTS=(
    "$SLF4J slf4j-api 1.7.32 yes -"
    "$LOG4J log4j-api 2.19.0 yes -"
    "$LOG4J log4j-core 2.19.0 yes $LOG4J:log4j-api:2.19.0"
    "$LOG4J log4j-layout-template-json 2.19.0 no $LOG4J:log4j-core:2.19.0"
    "$LOG4J log4j-slf4j-impl 2.19.0 no $LOG4J:log4j-api:2.19.0,$SLF4J:slf4j-api:1.7.32"
    "$LOG4J log4j-to-slf4j 2.19.0 no $LOG4J:log4j-api:2.19.0,$SLF4J:slf4j-api:1.7.32"
)

write_checksums() {
    local file=$1
    sha1sum "$file" | cut -d' ' -f1 | tr -d '\n' >"$file.sha1"
    sha256sum "$file" | cut -d' ' -f1 | tr -d '\n' >"$file.sha256"
    md5sum "$file" | cut -d' ' -f1 | tr -d '\n' >"$file.md5"
}

write_pom() {
    local out=$1 group=$2 artifact=$3 version=$4 deps=$5 package=$6 dep
    {
        cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by baseimage stack/maven-repo.sh for the jar of Debian package $package. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>$group</groupId>
  <artifactId>$artifact</artifactId>
  <version>$version</version>
  <packaging>jar</packaging>
EOF
        if [ "$deps" != "-" ]; then
            echo "  <dependencies>"
            IFS=, read -r -a dep_list <<<"$deps"
            for dep in "${dep_list[@]}"; do
                IFS=: read -r dg da dv <<<"$dep"
                printf '    <dependency>\n      <groupId>%s</groupId>\n      <artifactId>%s</artifactId>\n      <version>%s</version>\n    </dependency>\n' \
                    "$dg" "$da" "$dv"
            done
            echo "  </dependencies>"
        fi
        echo "</project>"
    } >"$out"
}

write_metadata() {
    local out=$1 group=$2 artifact=$3 version=$4 stamp=$5
    cat >"$out" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<metadata>
  <groupId>$group</groupId>
  <artifactId>$artifact</artifactId>
  <versioning>
    <latest>$version</latest>
    <release>$version</release>
    <versions>
      <version>$version</version>
    </versions>
    <lastUpdated>$stamp</lastUpdated>
  </versioning>
</metadata>
EOF
}

main() {
    ensure_packages liblog4j2-java libslf4j-java

    mkdir -p "$MAVEN_ROOT"
    STAGING=$(mktemp -d "$MAVEN_ROOT/.staging.XXXXXX")
    trap 'rm -rf "$STAGING"' EXIT
    local staging=$STAGING

    local published=() entry group artifact version required deps
    for entry in "${ARTIFACTS[@]}"; do
        read -r group artifact version required deps <<<"$entry"
        local jar=$JAVA_DIR/$artifact-$version.jar
        if [ ! -e "$jar" ]; then
            if [ "$required" = yes ]; then
                die "$jar is missing although its Debian package is installed"
            fi
            log "Debian ships no $artifact-$version.jar in $JAVA_DIR; $group:$artifact skipped"
            continue
        fi

        local real package dir base stamp
        real=$(readlink -f "$jar")
        package=$(dpkg-query -S "$real" 2>/dev/null | cut -d: -f1 | head -n1)
        dir=$staging/${group//.//}/$artifact/$version
        base=$dir/$artifact-$version
        stamp=$(date -u -r "$real" +%Y%m%d%H%M%S)
        mkdir -p "$dir"

        # A copy, not a link: the repository must not change under a client when
        # Debian upgrades the package.
        cp "$real" "$base.jar"
        touch -r "$real" "$base.jar"
        write_pom "$base.pom" "$group" "$artifact" "$version" "$deps" "${package:-unknown}"
        write_checksums "$base.jar"
        write_checksums "$base.pom"
        write_metadata "$(dirname "$dir")/maven-metadata.xml" "$group" "$artifact" "$version" "$stamp"
        write_checksums "$(dirname "$dir")/maven-metadata.xml"
        published+=("$group:$artifact:$version")
    done
    chmod -R a+rX "$staging"

    if [ -d "$REPO_DIR" ] && diff -rq "$staging" "$REPO_DIR" >/dev/null 2>&1; then
        log "repository in $REPO_DIR is up to date"
    else
        rm -rf "$REPO_DIR.old"
        [ -d "$REPO_DIR" ] && mv "$REPO_DIR" "$REPO_DIR.old"
        mv "$staging" "$REPO_DIR"
        rm -rf "$REPO_DIR.old"
        log "repository written to $REPO_DIR"
    fi

    local coords
    for coords in "${published[@]}"; do
        IFS=: read -r group artifact version <<<"$coords"
        local path=${group//.//}/$artifact/$version/$artifact-$version.jar
        printf '%s  %s  %s\n' "$(cat "$REPO_DIR/$path.sha256")" "$coords" "$REPO_URL/$path"
    done
}

main "$@"
