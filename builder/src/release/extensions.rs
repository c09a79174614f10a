//! What the extension loader and the imager of each release enforce or expect (see the module
//! docs of `crate::release`): the paths an extension's `rootfs/` may hold, where firmware and
//! kernel modules live, the kernel release the imager copies modules for, whether the kernel has
//! legacy xtables, the base installer, the image-cache switch and the imager's default metal
//! image format.
//!
//! Every fact is a [`Cited`] value whose `source` names the repository, path and tag (or commit)
//! it was read at, `owner/repo path@tag`; several sources are joined with `; `. Talos v1.14.0 was
//! not tagged when these were read, so the v1.14 row cites `v1.14.0-rc.1`, and v1.15 cites `main`
//! at `ad88231`.

use serde::Serialize;

use super::Minor;

/// A fact and where it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cited<T> {
    pub value: T,
    /// `owner/repo path@tag`, several joined with `; `.
    pub source: &'static str,
}

const fn cited<T>(value: T, source: &'static str) -> Cited<T> {
    Cited { value, source }
}

/// The kernel release (`uname -r`, the directory under the modules path) of one Talos tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelRelease {
    pub tag: &'static str,
    pub release: &'static str,
    pub source: &'static str,
}

const fn k(tag: &'static str, release: &'static str, source: &'static str) -> KernelRelease {
    KernelRelease {
        tag,
        release,
        source,
    }
}

/// How a machine configuration turns the image cache on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageCache {
    /// The release has no image cache.
    Absent,
    /// `machine.features.imageCache` in the v1alpha1 document.
    MachineFeature,
    /// The `ImageCacheConfig` document (the v1alpha1 field is deprecated).
    Document,
}

/// What one minor release's extension loader and imager enforce or expect.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionFacts {
    pub minor: Minor,
    /// Path prefixes a non-directory in `rootfs/` may have, matched as plain string prefixes
    /// with no `/` boundary (`strings.HasPrefix` in the validator).
    pub allowed_paths: Cited<&'static [&'static str]>,
    /// Where the imager takes firmware from (into the initramfs).
    pub firmware_dir: Cited<&'static str>,
    /// Where the imager takes kernel modules from, one directory per kernel release below it.
    pub modules_dir: Cited<&'static str>,
    /// The kernel release of each tag of this minor, oldest first: the imager copies modules
    /// only from `<modules_dir>/<release>`.
    pub kernels: Cited<&'static [KernelRelease]>,
    /// Whether the kernel can run `iptables-legacy` (the legacy xtables tables are built in).
    pub legacy_xtables: Cited<bool>,
    /// The imager's default base installer repository (tagged with the Talos version).
    pub base_installer: Cited<&'static str>,
    pub image_cache: Cited<ImageCache>,
    /// `outFormat` of the imager's built-in `metal` profile.
    pub metal_out_format: Cited<&'static str>,
    /// Whether the imager builds a UKI only with secure boot (so `uki` output needs it).
    pub uki_needs_secureboot: Cited<bool>,
}

impl ExtensionFacts {
    /// Whether the loader accepts a non-directory at `abs` (a path starting with `/`).
    pub fn allowed(&self, abs: &str) -> bool {
        self.allowed_paths.value.iter().any(|p| abs.starts_with(p))
    }

    /// The kernel release of a Talos version of this minor, when its tag is known (`v1.13.4`,
    /// `1.13.4`, `v1.14.0-rc.1`).
    pub fn kernel_of(&self, version: &str) -> Option<&'static KernelRelease> {
        let v = version.trim();
        let v = v.strip_prefix('v').unwrap_or(v);
        self.kernels
            .value
            .iter()
            .find(|kr| kr.tag.strip_prefix('v') == Some(v))
    }

    /// Every fact's name and citation (the kernel list's and each kernel release's).
    pub fn citations(&self) -> Vec<(String, &'static str)> {
        let mut out = vec![
            ("allowed_paths".to_string(), self.allowed_paths.source),
            ("firmware_dir".to_string(), self.firmware_dir.source),
            ("modules_dir".to_string(), self.modules_dir.source),
            ("kernels".to_string(), self.kernels.source),
            ("legacy_xtables".to_string(), self.legacy_xtables.source),
            ("base_installer".to_string(), self.base_installer.source),
            ("image_cache".to_string(), self.image_cache.source),
            ("metal_out_format".to_string(), self.metal_out_format.source),
            (
                "uki_needs_secureboot".to_string(),
                self.uki_needs_secureboot.source,
            ),
        ];
        for kr in self.kernels.value {
            out.push((format!("kernel {}", kr.tag), kr.source));
        }
        out
    }
}

/// The row for a minor release, if talext has one.
pub fn of(minor: Minor) -> Option<&'static ExtensionFacts> {
    TABLE.iter().find(|r| r.minor == minor)
}

/// The row for a minor release, or the nearest one (the oldest for older releases, the newest
/// for newer), and whether it was the release's own.
pub fn nearest(minor: Minor) -> (&'static ExtensionFacts, bool) {
    if let Some(r) = of(minor) {
        return (r, true);
    }
    let first = &TABLE[0];
    let last = &TABLE[TABLE.len() - 1];
    (if minor < first.minor { first } else { last }, false)
}

// `pkg/machinery/extensions/extensions.go` `AllowedPaths`, per tag.

const PATHS_1_7: &[&str] = &[
    "/etc/cri/conf.d",
    "/lib/firmware",
    "/lib/modules",
    "/lib64/ld-linux-x86-64.so.2",
    "/usr/etc/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
];

const PATHS_1_9: &[&str] = &[
    "/etc/cri/conf.d",
    "/lib/firmware",
    "/lib/modules",
    "/lib64/ld-linux-x86-64.so.2",
    "/sbin/ldconfig",
    "/usr/lib/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
];

const PATHS_1_10: &[&str] = &[
    "/etc/cri/conf.d",
    "/usr/lib/firmware",
    "/usr/lib/modules",
    "/usr/lib/ld-linux-x86-64.so.2",
    "/usr/bin/ldconfig",
    "/usr/lib/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
];

const PATHS_1_12: &[&str] = &[
    "/etc/cri/conf.d",
    "/usr/lib/firmware",
    "/usr/lib/modules",
    "/usr/lib/ld-linux-x86-64.so.2",
    "/usr/lib/ld-linux-aarch64.so.1",
    "/usr/bin/ldconfig",
    "/usr/lib/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
];

const PATHS_1_13: &[&str] = &[
    "/etc/cri/conf.d",
    "/usr/lib/firmware",
    "/usr/lib/modules",
    "/usr/lib/ld-linux-x86-64.so.2",
    "/usr/lib/ld-linux-aarch64.so.1",
    "/usr/bin/ldconfig",
    "/etc/ld.so.conf",
    "/etc/ld.so.cache",
    "/usr/bin/nvidia-modprobe",
    "/usr/bin/nvidia-pcc",
    "/usr/bin/nvidia-smi",
    "/usr/bin/nvidia-ctk",
    "/usr/bin/nvidia-cdi-hook",
    "/usr/bin/nvme",
    "/usr/lib/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
];

// `DefaultKernelVersion` in `pkg/machinery/constants/constants.go` at every tag of the minor
// (v1.14: its pre-releases). It matches `linux_version` in `siderolabs/pkgs` `Pkgfile` at the
// commit the release's `Makefile` pins as `PKGS`.

const KERNEL_1_7: &[KernelRelease] = &[
    k(
        "v1.7.0",
        "6.6.28-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.0",
    ),
    k(
        "v1.7.1",
        "6.6.29-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.1",
    ),
    k(
        "v1.7.2",
        "6.6.30-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.2",
    ),
    k(
        "v1.7.3",
        "6.6.32-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.3",
    ),
    k(
        "v1.7.4",
        "6.6.32-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.4",
    ),
    k(
        "v1.7.5",
        "6.6.33-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.5",
    ),
    k(
        "v1.7.6",
        "6.6.43-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.6",
    ),
    k(
        "v1.7.7",
        "6.6.52-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.7",
    ),
];
const KERNEL_1_8: &[KernelRelease] = &[
    k(
        "v1.8.0",
        "6.6.52-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.0",
    ),
    k(
        "v1.8.1",
        "6.6.54-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.1",
    ),
    k(
        "v1.8.2",
        "6.6.58-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.2",
    ),
    k(
        "v1.8.3",
        "6.6.60-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.3",
    ),
    k(
        "v1.8.4",
        "6.6.64-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.4",
    ),
];
const KERNEL_1_9: &[KernelRelease] = &[
    k(
        "v1.9.0",
        "6.12.5-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.0",
    ),
    k(
        "v1.9.1",
        "6.12.6-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.1",
    ),
    k(
        "v1.9.2",
        "6.12.9-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.2",
    ),
    k(
        "v1.9.3",
        "6.12.11-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.3",
    ),
    k(
        "v1.9.4",
        "6.12.13-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.4",
    ),
    k(
        "v1.9.5",
        "6.12.18-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.5",
    ),
    k(
        "v1.9.6",
        "6.12.25-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.6",
    ),
];
const KERNEL_1_10: &[KernelRelease] = &[
    k(
        "v1.10.0",
        "6.12.25-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.0",
    ),
    k(
        "v1.10.1",
        "6.12.25-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.1",
    ),
    k(
        "v1.10.2",
        "6.12.27-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.2",
    ),
    k(
        "v1.10.3",
        "6.12.28-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.3",
    ),
    k(
        "v1.10.4",
        "6.12.31-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.4",
    ),
    k(
        "v1.10.5",
        "6.12.35-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.5",
    ),
    k(
        "v1.10.6",
        "6.12.40-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.6",
    ),
    k(
        "v1.10.7",
        "6.12.43-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.7",
    ),
    k(
        "v1.10.8",
        "6.12.58-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.8",
    ),
    k(
        "v1.10.9",
        "6.12.63-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.9",
    ),
];
const KERNEL_1_11: &[KernelRelease] = &[
    k(
        "v1.11.0",
        "6.12.43-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.0",
    ),
    k(
        "v1.11.1",
        "6.12.45-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.1",
    ),
    k(
        "v1.11.2",
        "6.12.48-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.2",
    ),
    k(
        "v1.11.3",
        "6.12.52-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.3",
    ),
    k(
        "v1.11.4",
        "6.12.57-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.4",
    ),
    k(
        "v1.11.5",
        "6.12.57-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.5",
    ),
    k(
        "v1.11.6",
        "6.12.62-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.6",
    ),
];
const KERNEL_1_12: &[KernelRelease] = &[
    k(
        "v1.12.0",
        "6.18.1-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.0",
    ),
    k(
        "v1.12.1",
        "6.18.2-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.1",
    ),
    k(
        "v1.12.2",
        "6.18.5-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.2",
    ),
    k(
        "v1.12.3",
        "6.18.8-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.3",
    ),
    k(
        "v1.12.4",
        "6.18.9-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.4",
    ),
    k(
        "v1.12.5",
        "6.18.15-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.5",
    ),
    k(
        "v1.12.6",
        "6.18.18-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.6",
    ),
    k(
        "v1.12.7",
        "6.18.24-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.7",
    ),
    k(
        "v1.12.8",
        "6.18.32-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.8",
    ),
    k(
        "v1.12.9",
        "6.18.35-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.9",
    ),
    k(
        "v1.12.10",
        "6.18.38-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.10",
    ),
    k(
        "v1.12.11",
        "6.18.42-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.11",
    ),
];
const KERNEL_1_13: &[KernelRelease] = &[
    k(
        "v1.13.0",
        "6.18.24-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.0",
    ),
    k(
        "v1.13.1",
        "6.18.29-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.1",
    ),
    k(
        "v1.13.2",
        "6.18.29-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.2",
    ),
    k(
        "v1.13.3",
        "6.18.33-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.3",
    ),
    k(
        "v1.13.4",
        "6.18.34-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.4",
    ),
    k(
        "v1.13.5",
        "6.18.36-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.5",
    ),
    k(
        "v1.13.6",
        "6.18.38-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.6",
    ),
    k(
        "v1.13.7",
        "6.18.39-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.7",
    ),
    k(
        "v1.13.8",
        "6.18.42-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.8",
    ),
    k(
        "v1.13.9",
        "6.18.44-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.9",
    ),
];
const KERNEL_1_14: &[KernelRelease] = &[
    k(
        "v1.14.0-alpha.0",
        "6.18.25-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.14.0-alpha.0",
    ),
    k(
        "v1.14.0-alpha.1",
        "6.18.33-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.14.0-alpha.1",
    ),
    k(
        "v1.14.0-alpha.2",
        "6.18.36-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.14.0-alpha.2",
    ),
    k(
        "v1.14.0-beta.0",
        "6.18.39-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.14.0-beta.0",
    ),
    k(
        "v1.14.0-beta.1",
        "6.18.41-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.14.0-beta.1",
    ),
    k(
        "v1.14.0-rc.1",
        "6.18.44-talos",
        "siderolabs/talos pkg/machinery/constants/constants.go@v1.14.0-rc.1",
    ),
];

const KERNEL_1_15: &[KernelRelease] = &[k(
    "main",
    "6.18.45-talos",
    "siderolabs/talos pkg/machinery/constants/constants.go@ad88231",
)];

// Legacy xtables: Linux 6.6 (v1.7, v1.8) has no legacy switch and builds the legacy tables with
// `CONFIG_IP_NF_IPTABLES` and `CONFIG_IP_NF_FILTER`; 6.12 (v1.9 to v1.11) has
// `CONFIG_IP_NF_IPTABLES_LEGACY=y`; 6.18 (v1.12 on) has `CONFIG_NETFILTER_XTABLES_LEGACY` unset
// and no `CONFIG_IP_NF_FILTER`. Read from `kernel/build/config-amd64` (and `config-arm64`, the
// same) at the `siderolabs/pkgs` commit each Talos `Makefile` pins.

/// The table, oldest first: one row per minor in [`super::KNOWN`].
pub const TABLE: &[ExtensionFacts] = &[
    ExtensionFacts {
        minor: Minor::new(1, 7),
        allowed_paths: cited(PATHS_1_7, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.7.0"),
        firmware_dir: cited("/lib/firmware", "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.0"),
        modules_dir: cited("/lib/modules", "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.0"),
        kernels: cited(KERNEL_1_7, "siderolabs/talos pkg/machinery/constants/constants.go@v1.7.0"),
        legacy_xtables: cited(true, "siderolabs/pkgs kernel/build/config-amd64@29106c0; siderolabs/talos Makefile@v1.7.0"),
        base_installer: cited("ghcr.io/siderolabs/installer", "siderolabs/talos pkg/imager/profile/input.go@v1.7.0; siderolabs/talos pkg/images/images.go@v1.7.0"),
        image_cache: cited(ImageCache::Absent, "siderolabs/talos pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.7.0"),
        metal_out_format: cited(".xz", "siderolabs/talos pkg/imager/profile/default.go@v1.7.0"),
        uki_needs_secureboot: cited(true, "siderolabs/talos pkg/imager/imager.go@v1.7.0"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 8),
        allowed_paths: cited(PATHS_1_7, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.8.0"),
        firmware_dir: cited("/lib/firmware", "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.0"),
        modules_dir: cited("/lib/modules", "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.0"),
        kernels: cited(KERNEL_1_8, "siderolabs/talos pkg/machinery/constants/constants.go@v1.8.0"),
        legacy_xtables: cited(true, "siderolabs/pkgs kernel/build/config-amd64@df1a1a5; siderolabs/talos Makefile@v1.8.0"),
        base_installer: cited("ghcr.io/siderolabs/installer", "siderolabs/talos pkg/imager/profile/input.go@v1.8.0; siderolabs/talos pkg/images/images.go@v1.8.0"),
        image_cache: cited(ImageCache::Absent, "siderolabs/talos pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.8.0"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@v1.8.0"),
        uki_needs_secureboot: cited(true, "siderolabs/talos pkg/imager/imager.go@v1.8.0"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 9),
        allowed_paths: cited(PATHS_1_9, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.9.0"),
        firmware_dir: cited("/lib/firmware", "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.0"),
        modules_dir: cited("/lib/modules", "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.0"),
        kernels: cited(KERNEL_1_9, "siderolabs/talos pkg/machinery/constants/constants.go@v1.9.0"),
        legacy_xtables: cited(true, "siderolabs/pkgs kernel/build/config-amd64@9576b97; siderolabs/talos Makefile@v1.9.0"),
        base_installer: cited("ghcr.io/siderolabs/installer", "siderolabs/talos pkg/imager/profile/input.go@v1.9.0; siderolabs/talos pkg/images/images.go@v1.9.0"),
        image_cache: cited(ImageCache::MachineFeature, "siderolabs/talos pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.9.0"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@v1.9.0"),
        uki_needs_secureboot: cited(true, "siderolabs/talos pkg/imager/imager.go@v1.9.0"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 10),
        allowed_paths: cited(PATHS_1_10, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.10.0"),
        firmware_dir: cited("/usr/lib/firmware", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.10.0"),
        modules_dir: cited("/usr/lib/modules", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.10.0"),
        kernels: cited(KERNEL_1_10, "siderolabs/talos pkg/machinery/constants/constants.go@v1.10.0"),
        legacy_xtables: cited(true, "siderolabs/pkgs kernel/build/config-amd64@48dba3e; siderolabs/talos Makefile@v1.10.0"),
        base_installer: cited("ghcr.io/siderolabs/installer-base", "siderolabs/talos pkg/imager/profile/input.go@v1.10.0; siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.10.0"),
        image_cache: cited(ImageCache::MachineFeature, "siderolabs/talos pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.10.0"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@v1.10.0"),
        uki_needs_secureboot: cited(false, "siderolabs/talos pkg/imager/imager.go@v1.10.0"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 11),
        allowed_paths: cited(PATHS_1_10, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.11.0"),
        firmware_dir: cited("/usr/lib/firmware", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.11.0"),
        modules_dir: cited("/usr/lib/modules", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.11.0"),
        kernels: cited(KERNEL_1_11, "siderolabs/talos pkg/machinery/constants/constants.go@v1.11.0"),
        legacy_xtables: cited(true, "siderolabs/pkgs kernel/build/config-amd64@2ac857a; siderolabs/talos Makefile@v1.11.0"),
        base_installer: cited("ghcr.io/siderolabs/installer-base", "siderolabs/talos pkg/imager/profile/input.go@v1.11.0; siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.11.0"),
        image_cache: cited(ImageCache::MachineFeature, "siderolabs/talos pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.11.0"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@v1.11.0"),
        uki_needs_secureboot: cited(false, "siderolabs/talos pkg/imager/imager.go@v1.11.0"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 12),
        allowed_paths: cited(PATHS_1_12, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.12.0"),
        firmware_dir: cited("/usr/lib/firmware", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.12.0"),
        modules_dir: cited("/usr/lib/modules", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.12.0"),
        kernels: cited(KERNEL_1_12, "siderolabs/talos pkg/machinery/constants/constants.go@v1.12.0"),
        legacy_xtables: cited(false, "siderolabs/pkgs kernel/build/config-amd64@e0b78b8; siderolabs/talos Makefile@v1.12.0"),
        base_installer: cited("ghcr.io/siderolabs/installer-base", "siderolabs/talos pkg/imager/profile/input.go@v1.12.0; siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.12.0"),
        image_cache: cited(ImageCache::MachineFeature, "siderolabs/talos pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.12.0"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@v1.12.0"),
        uki_needs_secureboot: cited(false, "siderolabs/talos pkg/imager/imager.go@v1.12.0"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 13),
        allowed_paths: cited(PATHS_1_13, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.13.0"),
        firmware_dir: cited("/usr/lib/firmware", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.13.0"),
        modules_dir: cited("/usr/lib/modules", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.13.0"),
        kernels: cited(KERNEL_1_13, "siderolabs/talos pkg/machinery/constants/constants.go@v1.13.0"),
        legacy_xtables: cited(false, "siderolabs/pkgs kernel/build/config-amd64@v1.13.0; siderolabs/talos Makefile@v1.13.0"),
        base_installer: cited("ghcr.io/siderolabs/installer-base", "siderolabs/talos pkg/imager/profile/input.go@v1.13.0; siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.13.0"),
        image_cache: cited(ImageCache::MachineFeature, "siderolabs/talos pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.13.0"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@v1.13.0"),
        uki_needs_secureboot: cited(false, "siderolabs/talos pkg/imager/imager.go@v1.13.0"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 14),
        allowed_paths: cited(PATHS_1_13, "siderolabs/talos pkg/machinery/extensions/extensions.go@v1.14.0-rc.1"),
        firmware_dir: cited("/usr/lib/firmware", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.14.0-rc.1"),
        modules_dir: cited("/usr/lib/modules", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@v1.14.0-rc.1"),
        kernels: cited(KERNEL_1_14, "siderolabs/talos pkg/machinery/constants/constants.go@v1.14.0-rc.1"),
        legacy_xtables: cited(false, "siderolabs/pkgs kernel/build/config-amd64@effed43; siderolabs/talos Makefile@v1.14.0-rc.1"),
        base_installer: cited("ghcr.io/siderolabs/installer-base", "siderolabs/talos pkg/imager/profile/input.go@v1.14.0-rc.1; siderolabs/talos pkg/images/images.go@v1.14.0-rc.1"),
        image_cache: cited(ImageCache::Document, "siderolabs/talos pkg/machinery/config/types/cri/image_cache.go@v1.14.0-rc.1"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@v1.14.0-rc.1"),
        uki_needs_secureboot: cited(false, "siderolabs/talos pkg/imager/imager.go@v1.14.0-rc.1"),
    },
    ExtensionFacts {
        minor: Minor::new(1, 15),
        allowed_paths: cited(PATHS_1_13, "siderolabs/talos pkg/machinery/extensions/extensions.go@ad88231"),
        firmware_dir: cited("/usr/lib/firmware", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@ad88231"),
        modules_dir: cited("/usr/lib/modules", "siderolabs/talos pkg/machinery/imager/quirks/quirks.go@ad88231"),
        kernels: cited(KERNEL_1_15, "siderolabs/talos pkg/machinery/constants/constants.go@ad88231"),
        legacy_xtables: cited(false, "siderolabs/pkgs kernel/build/config-amd64@b914c26; siderolabs/talos Makefile@ad88231"),
        base_installer: cited("ghcr.io/siderolabs/installer-base", "siderolabs/talos pkg/imager/profile/input.go@ad88231; siderolabs/talos pkg/images/images.go@ad88231"),
        image_cache: cited(ImageCache::Document, "siderolabs/talos pkg/machinery/config/types/cri/image_cache.go@ad88231"),
        metal_out_format: cited(".zst", "siderolabs/talos pkg/imager/profile/default.go@ad88231"),
        uki_needs_secureboot: cited(false, "siderolabs/talos pkg/imager/imager.go@ad88231"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_known_minor_in_order() {
        let minors: Vec<Minor> = TABLE.iter().map(|r| r.minor).collect();
        assert_eq!(minors, super::super::KNOWN);
    }

    #[test]
    fn every_fact_is_cited() {
        for row in TABLE {
            for (fact, source) in row.citations() {
                for part in source.split("; ") {
                    let (repo, rest) = part.split_once(' ').unwrap_or(("", ""));
                    let (path, at) = rest.split_once('@').unwrap_or(("", ""));
                    assert!(
                        repo.starts_with("siderolabs/") && !path.is_empty() && !at.is_empty(),
                        "{} {fact}: `{part}` is not `owner/repo path@tag`",
                        row.minor
                    );
                }
            }
            assert!(!row.kernels.value.is_empty(), "{}", row.minor);
        }
    }

    #[test]
    fn usr_merge_and_kernel_lookup() {
        let v1_9 = of(Minor::new(1, 9)).unwrap();
        let v1_11 = of(Minor::new(1, 11)).unwrap();
        assert!(v1_9.allowed("/lib/firmware/x") && !v1_9.allowed("/usr/lib/firmware/x"));
        assert!(!v1_11.allowed("/lib/firmware/x") && v1_11.allowed("/usr/lib/firmware/x"));
        assert_eq!(v1_9.kernel_of("v1.9.0").unwrap().release, "6.12.5-talos");
        assert_eq!(v1_9.kernel_of("1.9.5").unwrap().release, "6.12.18-talos");
        assert!(v1_9.kernel_of("v1.9.99").is_none());
        assert_eq!(nearest(Minor::new(1, 6)).0.minor, Minor::new(1, 7));
        assert!(nearest(Minor::new(1, 12)).1);
        let (newest, own) = nearest(Minor::new(1, 99));
        assert_eq!((newest.minor, own), (Minor::new(1, 15), false));
    }
}
