#!/usr/bin/env bash
# Build the self-contained talext binary a release ships: the `dist` profile (thin LTO, one
# codegen unit, stripped), with the C runtime linked statically on the gnu target so it runs on
# a machine without the build's shared libraries. `SOURCE_DATE_EPOCH` (default: the last
# commit's time) is the build date `talext --version` prints.
#   bash ci/dist.sh            # writes dist/talext-<target>
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(rustc -vV | sed -n 's/^host: //p')"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
# `--target` keeps the static runtime away from build scripts and proc macros, which run on
# the host and must stay dynamic.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --locked --profile dist --target "$target" -p talext --bin talext
mkdir -p dist
out="dist/talext-$target"
cp "target/$target/dist/talext" "$out.tmp"
mv "$out.tmp" "$out"
# Also as `dist/<arch>/talext`, the per-platform tree `extension/talext` packages.
case "$target" in
    x86_64-*) arch=amd64 ;;
    aarch64-*) arch=arm64 ;;
    *) arch="" ;;
esac
if [ -n "$arch" ]; then
    mkdir -p "dist/$arch"
    cp "$out" "dist/$arch/talext.tmp"
    mv "dist/$arch/talext.tmp" "dist/$arch/talext"
fi
# Self-contained: no shared library the loader would have to find (`readelf` from binutils).
if readelf -d "$out" | grep -q '(NEEDED)'; then
    echo "error: $out needs shared libraries:" >&2
    readelf -d "$out" | grep '(NEEDED)' >&2
    exit 1
fi
"$out" --version
echo "$out"
