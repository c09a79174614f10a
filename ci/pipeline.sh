#!/usr/bin/env bash
# The steps of the CI templates in this directory (github-actions.yml, gitlab-ci.yml): build a
# Talos system extension for linux/amd64 and linux/arm64 without a Docker daemon, validate it,
# check that a second and third build give the same digest, and push the validated image by
# digest, keeping a `ref@digest` receipt. The project's own test suite runs this script against
# a local registry (tests/ci_pipeline.rs), so the templates cannot drift from a working tool.
#
#   ci/pipeline.sh build | validate | reproducible | push | all
#
# Environment (every variable is optional except REGISTRY for `push`):
#   TALEXT             the talext binary (default: `talext` on PATH)
#   DEFINITION         extension definition directory (default: extension/tailscale)
#   SOURCE             source overrides, `NAME=LOCATION[;NAME=LOCATION…]` (default: the pins in
#                      the definition)
#   PLATFORMS          platforms to build (default: linux/amd64,linux/arm64)
#   OUT                directory for the image and the receipts (default: out)
#   SOURCE_DATE_EPOCH  timestamp of every file (default: 0)
#   TALOS_VERSION      `validate`: Talos version the extension must support, e.g. v1.11.0
#   REGISTRY           `push`: the repository to push to, e.g. ghcr.io/acme/tailscale
#   TAG                `push`: the tag (default: the extension version)
#   TALEXT_REGISTRY_USERNAME, TALEXT_REGISTRY_PASSWORD
#                      `push`: credentials for REGISTRY, from the CI's secret store; talext
#                      reads them itself, this script never prints them, and the other steps
#                      run without them so they are never sent to a source registry
#   TALEXT_REGISTRY_CA_FILE, TALEXT_REGISTRY_AUTH_FILE, TALEXT_CACHE_DIR, …
#                      passed through to talext (see `talext copy --help`)
#
# Artifacts in OUT:
#   image/               the OCI image layout (tag `extension`)
#   image.digest         the index digest `build` printed
#   build-receipt.json   the build receipt (name, version, digests per platform)
#   validate.txt         the validation report
#   receipt.txt          `push`: REGISTRY:TAG@sha256:…
#   receipt.json         `push`: the build receipt with the registry reference, for
#                        `talext imager-profile --receipt` and `talext catalog build`
set -euo pipefail

TALEXT=${TALEXT:-talext}
DEFINITION=${DEFINITION:-extension/tailscale}
PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
OUT=${OUT:-out}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
LAYOUT_TAG=extension

die() {
    echo "pipeline: $*" >&2
    exit 2
}

step() {
    echo "--- $*" >&2
}

# Run talext without the push credentials: a credential given by flag or environment goes to
# every registry, and sources are pulled from public registries.
talext_anon() {
    env -u TALEXT_REGISTRY_USERNAME -u TALEXT_REGISTRY_PASSWORD "$TALEXT" "$@"
}

# talext build into an OCI layout at $1, printing the index digest.
build_into() {
    local dir=$1
    shift
    rm -rf "$dir"
    local args=(build "$DEFINITION" --platform "$PLATFORMS" --output "oci:$dir:$LAYOUT_TAG")
    if [ -n "${SOURCE:-}" ]; then
        args+=(--source "$SOURCE")
    fi
    talext_anon "${args[@]}" "$@"
}

# A field of the build receipt (flat string fields only; the receipt is talext's own
# pretty-printed JSON, one field per line).
receipt_field() {
    sed -n "s/^  \"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$OUT/build-receipt.json" | head -n 1
}

cmd_build() {
    step "build $DEFINITION for $PLATFORMS"
    mkdir -p "$OUT"
    build_into "$OUT/image" --receipt "$OUT/build-receipt.json" >"$OUT/image.digest"
    echo "built $(receipt_field name) $(receipt_field version): $(cat "$OUT/image.digest")" >&2
}

need_build() {
    [ -s "$OUT/image.digest" ] || die "no build in \`$OUT\`: run \`$0 build\` first"
}

cmd_validate() {
    need_build
    step "validate oci:$OUT/image:$LAYOUT_TAG"
    local args=(validate "oci:$OUT/image:$LAYOUT_TAG")
    if [ -n "${TALOS_VERSION:-}" ]; then
        args+=(--talos-version "$TALOS_VERSION")
    fi
    local status=0
    talext_anon "${args[@]}" >"$OUT/validate.txt" || status=$?
    cat "$OUT/validate.txt" >&2
    [ "$status" -eq 0 ] || exit "$status"
}

cmd_reproducible() {
    step "reproducible: build twice more and compare digests"
    mkdir -p "$OUT"
    local first second
    first=$(build_into "$OUT/repro-1")
    second=$(build_into "$OUT/repro-2")
    if [ "$first" != "$second" ]; then
        echo "pipeline: two builds differ: $first and $second" >&2
        exit 1
    fi
    if [ -s "$OUT/image.digest" ] && [ "$(cat "$OUT/image.digest")" != "$first" ]; then
        echo "pipeline: the build in \`$OUT/image\` is $(cat "$OUT/image.digest"), a rebuild is $first" >&2
        exit 1
    fi
    rm -rf "$OUT/repro-1" "$OUT/repro-2"
    echo "reproducible: $first" >&2
}

cmd_push() {
    need_build
    [ -n "${REGISTRY:-}" ] || die "set REGISTRY to the repository to push to (e.g. ghcr.io/acme/tailscale)"
    local registry=${REGISTRY#docker://}
    local tag=${TAG:-$(receipt_field version)}
    [ -n "$tag" ] || die "no TAG given and no version in \`$OUT/build-receipt.json\`"
    local built
    built=$(cat "$OUT/image.digest")
    step "push $built to $registry:$tag"
    rm -f "$OUT/pushed.digest"
    "$TALEXT" copy "oci:$OUT/image:$LAYOUT_TAG" "docker://$registry:$tag" \
        --digestfile "$OUT/pushed.digest" >/dev/null
    local pushed
    pushed=$(cat "$OUT/pushed.digest")
    if [ "$pushed" != "$built" ]; then
        echo "pipeline: pushed $pushed, but the validated build is $built" >&2
        exit 1
    fi
    local ref="$registry:$tag"
    printf '%s@%s\n' "$ref" "$pushed" >"$OUT/receipt.txt"
    sed -e "s|^  \"output\": \".*\",\$|  \"output\": \"docker://$ref\",\\n  \"reference\": \"$ref@$pushed\",|" \
        "$OUT/build-receipt.json" >"$OUT/receipt.json"
    grep -q "\"reference\": \"$ref@$pushed\"" "$OUT/receipt.json" ||
        die "cannot write \`$OUT/receipt.json\` from \`$OUT/build-receipt.json\`"
    cat "$OUT/receipt.txt"
}

case "${1:-}" in
build) cmd_build ;;
validate) cmd_validate ;;
reproducible) cmd_reproducible ;;
push) cmd_push ;;
all)
    cmd_build
    cmd_validate
    cmd_reproducible
    cmd_push
    ;;
*)
    echo "usage: $0 build|validate|reproducible|push|all (see the comment at the top)" >&2
    exit 2
    ;;
esac
