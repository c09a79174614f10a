#!/usr/bin/env bash
# Install what talext's build and tests use, when it is missing (Debian 12, as root): the
# reference registry, skopeo, umoci, the OCI image-spec schemas, busybox-static for amd64 and
# arm64 (stand-in payloads), pigz, zstd, htpasswd, openssl, taskset; with `bench`, also the
# peers the benchmark runs (buildah, hyperfine, GNU time). Idempotent: a machine that has
# everything is left alone.
#   bash ci/deps.sh [bench]
set -euo pipefail

missing=()
need() { # need COMMAND-OR-PATH PACKAGE
    if [[ $1 == /* ]]; then [ -e "$1" ] || missing+=("$2"); else command -v "$1" >/dev/null 2>&1 || missing+=("$2"); fi
}
need docker-registry docker-registry
need skopeo skopeo
need umoci umoci
need /usr/share/gocode/src/github.com/opencontainers/image-spec/schema/image-index-schema.json golang-github-opencontainers-image-spec-dev
need /bin/busybox busybox-static
need pigz pigz
need zstd zstd
need htpasswd apache2-utils
need openssl openssl
need curl curl
need cc gcc
need git git
# taskset pins the reproducibility rebuild to one CPU.
need taskset util-linux
if [ "${1:-}" = bench ]; then
    need buildah buildah
    need hyperfine hyperfine
    need /usr/bin/time time
fi

arm64=1
dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64 || arm64=0

if [ ${#missing[@]} -eq 0 ] && [ $arm64 -eq 1 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing ${missing[*]:-} (and arm64 packages); install them with apt-get as root" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
# Stand-in payloads are built from arm64 packages as well as amd64 ones.
[ $arm64 -eq 1 ] || dpkg --add-architecture arm64
# Installing docker-registry must not start it as a service on :5000: the tests start their own.
cleanup=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    cleanup=/usr/sbin/policy-rc.d
fi
apt-get update
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y --no-install-recommends "${missing[@]}" ca-certificates
fi
[ -z "$cleanup" ] || rm -f "$cleanup"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi
# A packaged service would hold :5000 with the package's config; the tests start their own.
pkill -f 'docker-registry serve /etc/docker/registry/config.yml' 2>/dev/null || true
