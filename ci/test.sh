#!/usr/bin/env bash
# The project's one test command: the same gates run locally and in CI.
#   bash ci/test.sh
# Integration tests need skopeo, umoci, docker-registry, the OCI image-spec schemas and
# `apt-get download` for both amd64 and arm64 (see .ci/run for a fresh Debian 12 machine).
set -euo pipefail

cd "$(dirname "$0")/.."

# The Debian packages the integration tests use, installed when missing.
bash ci/deps.sh

echo "--- cargo fmt" >&2
cargo fmt --all -- --check

echo "--- cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

# Dependencies (zlib-rs, sha2, zstd, tar) are built optimised: the tests run talext dozens of
# times on multi-megabyte payloads, which takes minutes unoptimised and seconds optimised, while
# talext itself keeps debug assertions and overflow checks.
echo "--- cargo test" >&2
cargo test --workspace --locked --no-fail-fast --config 'profile.dev.package."*".opt-level = 2'
