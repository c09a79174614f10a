#!/usr/bin/env python3
"""Draw the benchmark curves: ci/bench_plot.py DIR reads DIR/{size,files,platforms,images}.csv
(written by ci/bench.sh) and writes DIR/{size,files,platforms,images}.png next to them."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

MIB = 1 << 20


def load(d, name):
    with open(f"{d}/{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def col(rows, key, scale=1.0):
    return [float(r[key]) / scale for r in rows]


def linear(ax):
    """Linear axes from zero: growth in proportion is a straight line through the origin, so
    a knee or a curve shows at a glance."""
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))


def errbar(ax, x, rows, prefix, label, **kw):
    m = col(rows, f"{prefix}median_s")
    lo = [a - b for a, b in zip(m, col(rows, f"{prefix}min_s"))]
    hi = [b - a for a, b in zip(m, col(rows, f"{prefix}max_s"))]
    ax.errorbar(x, m, yerr=[lo, hi], marker="o", capsize=3, label=label, **kw)


def size_chart(d):
    rows = load(d, "size")
    x = col(rows, "input_bytes", MIB)
    fig, axs = plt.subplots(1, 3, figsize=(15, 4.5))
    errbar(axs[0], x, rows, "talext_", "talext build (2 cores)")
    errbar(axs[0], x, rows, "floor_", "floor: tar | libdeflate-gzip -6 + sha256 (1 core)")
    axs[0].set(title="build time (median, min–max)", xlabel="input (MiB)", ylabel="seconds")
    axs[1].plot(x, col(rows, "talext_peak_rss_mib"), marker="o", label="talext build")
    axs[1].axhline(128, color="grey", linestyle="--", label="target 128 MiB")
    axs[1].set(title="peak RSS", xlabel="input (MiB)", ylabel="MiB")
    axs[1].set_ylim(bottom=0)
    axs[2].plot(x, col(rows, "talext_layer_bytes", MIB), marker="o", label="talext layer")
    axs[2].plot(x, col(rows, "floor_gz_bytes", MIB), marker="x", linestyle=":", label="libdeflate -6")
    axs[2].set(title="output (layer) size", xlabel="input (MiB)", ylabel="MiB")
    for ax in axs:
        linear(ax)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Payload size, one platform (linux/amd64)")
    fig.tight_layout()
    fig.savefig(f"{d}/size.png", dpi=100)


def files_chart(d):
    rows = load(d, "files")
    x = col(rows, "files")
    fig, axs = plt.subplots(1, 3, figsize=(15, 4.5))
    errbar(axs[0], x, rows, "", "talext build")
    errbar(axs[0], x, rows, "floor_", "libdeflate floor (one core)")
    axs[0].set(title="build time (median, min–max)", xlabel="small files", ylabel="seconds")
    axs[1].plot(x, col(rows, "peak_rss_mib"), marker="o", label="talext build")
    axs[1].axhline(128, color="grey", linestyle="--", label="target 128 MiB")
    axs[1].set(title="peak RSS", xlabel="small files", ylabel="MiB")
    axs[1].set_ylim(bottom=0)
    axs[2].plot(x, col(rows, "per_byte_over_standin"), marker="o", label="talext: cost per byte / stand-in's")
    axs[2].plot(x, col(rows, "floor_per_byte_over_standin"), marker="s", label="floor: the same")
    axs[2].axhline(1.5, color="grey", linestyle="--", label="target 1.5")
    axs[2].set(title="cost per input byte, relative", xlabel="small files", ylabel="ratio")
    axs[2].set_ylim(bottom=0)
    for ax in axs:
        linear(ax)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("File count, one platform, over the stand-in payload")
    fig.tight_layout()
    fig.savefig(f"{d}/files.png", dpi=100)


def platforms_chart(d):
    rows = load(d, "platforms")
    x = col(rows, "platforms")
    fig, ax = plt.subplots(figsize=(5, 4))
    errbar(ax, x, rows, "", "talext build (wall)")
    ax.plot(x, col(rows, "cpu_s"), marker="x", linestyle=":", label="CPU (user + sys)")
    ax.set(title="Stand-in payload: time against platforms", xlabel="platforms", ylabel="seconds")
    ax.set_xticks(x)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{d}/platforms.png", dpi=100)


def images_chart(d):
    rows = load(d, "images")
    fig, axs = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axs[0], "images", "images"), (axs[1], "blobs", "blobs in the bundle")):
        x = col(rows, key)
        errbar(ax, x, rows, "copy_talext_", "talext copy (per image)")
        errbar(ax, x, rows, "copy_skopeo_", "skopeo copy (per image, cold)")
        errbar(ax, x, rows, "bundle_push_", "talext bundle push")
        errbar(ax, x, rows, "skopeo_sync_", "skopeo sync --src dir (cold)")
        ax.set(xlabel=label, ylabel="seconds", title=f"into an empty registry, against {label}")
        linear(ax)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(f"{d}/images.png", dpi=100)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "ci/bench-results"
    size_chart(d)
    files_chart(d)
    platforms_chart(d)
    images_chart(d)


if __name__ == "__main__":
    main()
