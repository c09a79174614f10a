#!/usr/bin/env bash
# The steps of the CI templates in this directory (github-actions.yml, gitlab-ci.yml): build a
# Talos system extension for linux/amd64 and linux/arm64 without a Docker daemon, validate it,
# rebuild it twice without the cache in different environments and check that the layouts are
# byte-identical (and have `build`'s digest), and push the validated image by
# digest, keeping a `ref@digest` receipt. The project's own test suite runs this script against
# a local registry (tests/ci_pipeline.rs), so the templates cannot drift from a working tool.
#
#   ci/pipeline.sh build | validate | reproducible | push | all
#   ci/pipeline.sh stitch     # after one `build` per platform on separate runners (below)
#
# Fan-out: each runner builds one platform into its own directory,
#   PLATFORMS=linux/arm64 OUT=out/linux-arm64 ci/pipeline.sh build
# and `stitch` (with PLATFORMS listing them all, in the definition's order) puts the platform
# images of out/linux-amd64, out/linux-arm64, … into one index in out/image, with its receipt
# and digest: the same bytes and digest one `build` of every platform gives, which
# `reproducible` then checks.
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

# The directory of one platform's build when the platforms are built apart: out/linux-arm64.
platform_out() {
    printf '%s/%s\n' "$OUT" "${1//\//-}"
}

cmd_stitch() {
    step "stitch the platform builds of $PLATFORMS into one index"
    # The layouts by path (not the paths the receipts recorded, which were the runners'); the
    # receipts give the name and version and must match what is stitched.
    local images=() receipts=() platform dir
    local IFS=,
    for platform in $PLATFORMS; do
        dir=$(platform_out "$platform")
        [ -s "$dir/build-receipt.json" ] ||
            die "no build of $platform in \`$dir\`: run \`PLATFORMS=$platform OUT=$dir $0 build\` first"
        images+=("oci:$dir/image:$LAYOUT_TAG")
        receipts+=(--from-receipt "$dir/build-receipt.json")
    done
    unset IFS
    rm -rf "$OUT/image"
    talext_anon index create "${images[@]}" "${receipts[@]}" --output "oci:$OUT/image:$LAYOUT_TAG" \
        --receipt "$OUT/build-receipt.json" --digestfile "$OUT/image.digest" >/dev/null
    echo "stitched $(receipt_field name) $(receipt_field version): $(cat "$OUT/image.digest")" >&2
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

# An absolute form of the path $1 (relative paths are taken from the current directory).
absolute() {
    case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
    esac
}

# SOURCE with every local location made absolute, so a build from another directory reads the
# same inputs: `NAME=oci:DIR[:TAG]`, `NAME=oci-archive:FILE[:TAG]`, `NAME=DIR`; registry
# references are kept as they are.
absolute_sources() {
    local item name location out=() IFS=';'
    for item in $1; do
        name=${item%%=*}
        location=${item#*=}
        case $location in
        oci:/* | oci-archive:/* | /* | docker://*) ;;
        oci:* | oci-archive:*) location="${location%%:*}:$PWD/${location#*:}" ;;
        *)
            if [ -e "$location" ] || [[ $location == *'{arch}'* ]]; then
                location="$PWD/$location"
            fi
            ;;
        esac
        out+=("$name=$location")
    done
    printf '%s\n' "${out[*]}"
}

# The first CPU this process may run on (taskset -c 0 fails where CPU 0 is not ours).
first_cpu() {
    sed -n 's/^Cpus_allowed_list:[[:space:]]*\([0-9]*\).*/\1/p' /proc/self/status 2>/dev/null
}

# Compare two OCI layouts byte for byte (`index.json`, `oci-layout` and every blob), naming
# every file that is in one and not the other or whose bytes differ.
compare_layouts() {
    local a=$1 b=$2 status=0 file
    while IFS= read -r file; do
        if [ ! -e "$b/$file" ]; then
            echo "pipeline: \`${file}\` is only in the first rebuild$(describe "$a" "$file")" >&2
            status=1
        elif ! cmp -s "$a/$file" "$b/$file"; then
            echo "pipeline: \`${file}\` differs between the two rebuilds" >&2
            status=1
        fi
    done < <(cd "$a" && find . -type f | LC_ALL=C sort | sed 's|^\./||')
    while IFS= read -r file; do
        if [ ! -e "$a/$file" ]; then
            echo "pipeline: \`${file}\` is only in the second rebuild$(describe "$b" "$file")" >&2
            status=1
        fi
    done < <(cd "$b" && find . -type f | LC_ALL=C sort | sed 's|^\./||')
    return $status
}

# What the blob file $2 of layout $1 is, for the message: the media type a descriptor in one of
# the layout's JSON blobs gives it (a layer or a config), else the one it declares itself (a
# manifest or an index), and its size.
describe() {
    local layout=$1 file=$2 media="" doc
    local field='"mediaType"[[:space:]]*:[[:space:]]*"[^"]*"'
    local value='s/^"mediaType"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/'
    local descriptor="$field[^{}]*\"sha256:${file##*/}\""
    for doc in "$layout"/blobs/sha256/*; do
        [ "$(wc -c <"$doc")" -lt 1048576 ] || continue
        media=$(LC_ALL=C grep -ao "$descriptor" "$doc" | head -n 1 | sed "$value" || true)
        [ -z "$media" ] || break
    done
    if [ -z "$media" ]; then
        media=$(head -c 4096 "$layout/$file" | LC_ALL=C grep -ao "$field" | head -n 1 |
            sed "$value" || true)
    fi
    printf ' (%s%s bytes)' "${media:+$media, }" "$(wc -c <"$layout/$file" | tr -d ' ')"
}

cmd_reproducible() {
    step "reproducible: rebuild twice without the cache in different environments and compare bytes"
    mkdir -p "$OUT"
    local out talext definition sources
    out=$(absolute "$OUT")
    definition=$(absolute "$DEFINITION")
    sources=""
    [ -z "${SOURCE:-}" ] || sources=$(absolute_sources "$SOURCE")
    talext=$TALEXT
    [[ $talext != */* ]] || talext=$(absolute "$talext")
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/talext-repro.XXXXXX")
    trap 'rm -rf "${scratch:-}"' EXIT
    mkdir -p "$scratch/tmp-1" "$scratch/tmp-2" "$scratch/cwd-2"
    # Nothing may leak from the environment into the bytes: the second build runs from another
    # directory with another TMPDIR, umask, locale and time zone, on one CPU, pulling one blob at
    # a time; neither reads or writes the layer cache, so each really builds.
    local pin=()
    local cpu
    cpu=$(first_cpu)
    if [ -n "$cpu" ] && command -v taskset >/dev/null 2>&1 &&
        taskset -c "$cpu" true 2>/dev/null; then
        pin=(taskset -c "$cpu")
    else
        echo "reproducible: taskset is not available, the second build uses every CPU" >&2
    fi
    local common=(env -u TALEXT_REGISTRY_USERNAME -u TALEXT_REGISTRY_PASSWORD)
    local build=(build "$definition" --platform "$PLATFORMS" --no-cache)
    [ -z "$sources" ] || build+=(--source "$sources")
    local first second
    rm -rf "$out/repro-1" "$out/repro-2"
    first=$(umask 022 && "${common[@]}" TMPDIR="$scratch/tmp-1" LC_ALL=C TZ=UTC \
        "$talext" "${build[@]}" --output "oci:$out/repro-1:$LAYOUT_TAG")
    second=$(umask 077 && cd "$scratch/cwd-2" && "${common[@]}" TMPDIR="$scratch/tmp-2" \
        LC_ALL=C.UTF-8 LANG=C.UTF-8 TZ=Pacific/Kiritimati ${pin[@]+"${pin[@]}"} \
        "$talext" "${build[@]}" --jobs 1 --output "oci:$out/repro-2:$LAYOUT_TAG")
    rm -rf "$scratch"
    local status=0
    if [ "$first" != "$second" ]; then
        echo "pipeline: two builds differ: $first and $second" >&2
        status=1
    fi
    compare_layouts "$out/repro-1" "$out/repro-2" || status=1
    if [ "$status" -ne 0 ]; then
        echo "pipeline: the rebuilds are kept in \`$OUT/repro-1\` and \`$OUT/repro-2\`" >&2
        exit 1
    fi
    if [ -s "$OUT/image.digest" ] && [ "$(cat "$OUT/image.digest")" != "$first" ]; then
        echo "pipeline: the build in \`$OUT/image\` is $(cat "$OUT/image.digest"), a rebuild is $first" >&2
        exit 1
    fi
    rm -rf "$out/repro-1" "$out/repro-2"
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
stitch) cmd_stitch ;;
all)
    cmd_build
    cmd_validate
    cmd_reproducible
    cmd_push
    ;;
*)
    echo "usage: $0 build|validate|reproducible|push|all|stitch (see the comment at the top)" >&2
    exit 2
    ;;
esac
