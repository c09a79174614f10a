#!/usr/bin/env bash
# The main job: build the Tailscale system extension for linux/amd64 and linux/arm64.
#
#   bash ci/build-tailscale.sh [OUTPUT]
#
# OUTPUT defaults to `oci:out/tailscale:1.102.5` (any `talext build --output` form works:
# `oci-archive:FILE:TAG`, `docker://REGISTRY/REPO:TAG`, ...). The source is the upstream
# `tailscale/tailscale` image pinned by digest in extension/tailscale/extension.yaml, or
# TAILSCALE_SOURCE=LOCATION (a directory with `{arch}`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
# `docker://REF@sha256:...`). When neither is usable because the upstream registry cannot be
# reached, the build uses a stand-in payload (Debian's busybox and stub Go binaries laid out like
# the upstream image)
# and marks the version `-standin`, so the pipeline can be exercised offline; such an image is
# not Tailscale and must not be deployed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/deps.sh

echo "--- cargo build --release" >&2
cargo build --release --locked -p talext
talext=target/release/talext

output=${1:-oci:out/tailscale:1.102.5}
args=(build extension/tailscale --output "$output" --receipt out/tailscale.receipt.json)
mkdir -p out

if [ -n "${TAILSCALE_SOURCE:-}" ]; then
    args+=(--source "tailscale=$TAILSCALE_SOURCE")
elif ! curl -sS -o /dev/null --max-time 15 https://registry-1.docker.io/v2/ 2>/dev/null; then
    echo "warning: registry-1.docker.io cannot be reached: building from a STAND-IN payload" >&2
    echo "warning: (Debian busybox and stub Go binaries laid out like tailscale/tailscale), version 1.102.5-standin" >&2
    echo "warning: set TAILSCALE_SOURCE to a real payload to build Tailscale offline" >&2
    cargo build --release --locked -p talext-kit --bin standin
    standin=$(target/release/standin out/standin)
    output=${1:-oci:out/tailscale:1.102.5-standin}
    args=(build extension/tailscale --output "$output" --receipt out/tailscale.receipt.json
          --source "tailscale=$standin" --version 1.102.5-standin)
fi

echo "--- talext ${args[*]}" >&2
"$talext" "${args[@]}"
echo "receipt: out/tailscale.receipt.json" >&2
