#!/usr/bin/env bash
# Install what talext's build and tests use, when it is missing (Debian 12, as root): the
# reference registry, skopeo, umoci, the OCI image-spec schemas, busybox-static for amd64 and
# arm64 (stand-in payloads), Go (stand-in Go binaries, `go version -m` as the SBOM's independent
# reader), the SPDX 2.3 JSON schema, pigz, zstd, htpasswd, openssl, taskset; with `bench`, also the
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
need go golang-go
# pip fetches the wheel that carries the SPDX 2.3 schema (below).
need pip3 python3-pip
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

# The SPDX 2.3 JSON schema (the SPDX project's `schemas/spdx-schema.json`, CC0-1.0) that the
# SBOM tests validate against. No Debian package carries it; the `lib4sbom` wheel on PyPI does,
# and the file is checked against its known digest.
spdx_schema=/usr/local/share/spdx/schema/spdx-2.3-schema.json
spdx_wheel=lib4sbom==0.10.4
spdx_member=lib4sbom/schemas/spdx/2.3-schema.json
spdx_sha256=239208b7ac287b3cf5d9a9af23f9d69863971102a5e1587a27a398b43490b89b
schema=1
[ -e "$spdx_schema" ] || schema=0

if [ ${#missing[@]} -eq 0 ] && [ $arm64 -eq 1 ] && [ $schema -eq 1 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing ${missing[*]:-} (or arm64 packages, or $spdx_schema); run this script as root" >&2
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
if [ $schema -eq 0 ]; then
    work=$(mktemp -d)
    python3 -m pip download -q --no-cache-dir --no-deps --dest "$work" "$spdx_wheel"
    python3 -m zipfile -e "$work"/lib4sbom-*.whl "$work/wheel"
    echo "$spdx_sha256  $work/wheel/$spdx_member" | sha256sum -c --quiet -
    install -D -m 0644 "$work/wheel/$spdx_member" "$spdx_schema"
    rm -rf "$work"
fi
[ -z "$cleanup" ] || rm -f "$cleanup"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi
# A packaged service would hold :5000 with the package's config; the tests start their own.
pkill -f 'docker-registry serve /etc/docker/registry/config.yml' 2>/dev/null || true
