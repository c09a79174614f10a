#!/usr/bin/env bash
# Install talext from its own image (`talext build extension/talext`) in seconds, without
# compiling it: the platform of this machine is copied with skopeo, the binary taken from the
# layer (`rootfs/usr/local/bin/talext`) and installed into DEST (default `~/.local/bin`). Pin
# the image by digest so a job never runs a binary it did not ask for.
#   bash ci/install-talext.sh docker://ghcr.io/OWNER/talext:0.1.0@sha256:… [DEST]
#   bash ci/install-talext.sh oci:DIR:TAG [DEST]
set -euo pipefail
image="${1:?usage: install-talext.sh IMAGE [DEST]}"
dest="${2:-$HOME/.local/bin}"
case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "error: no talext image for $(uname -m)" >&2; exit 2 ;;
esac
work="$(mktemp -d "${TMPDIR:-/tmp}/talext-install-XXXXXX")"
trap 'rm -rf "$work"' EXIT
skopeo --insecure-policy copy --quiet --override-os linux --override-arch "$arch" \
    "$image" "dir:$work/image"
python3 - "$work/image" <<'PY' >"$work/layers"
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))
for layer in m["layers"]:
    print(layer["digest"].split(":", 1)[1])
PY
found=""
while read -r hex; do
    if tar -xzf "$work/image/$hex" -C "$work" rootfs/usr/local/bin/talext 2>/dev/null; then
        found=1
    fi
done <"$work/layers"
if [ -z "$found" ]; then
    echo "error: $image holds no rootfs/usr/local/bin/talext" >&2
    exit 1
fi
mkdir -p "$dest"
install -m 0755 "$work/rootfs/usr/local/bin/talext" "$dest/talext.tmp"
mv "$dest/talext.tmp" "$dest/talext"
"$dest/talext" --version
