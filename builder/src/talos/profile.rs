//! `imager-profile`: the YAML profile Talos's imager reads on stdin (`imager -`) to build boot
//! media or an installer with our extension, without a registry when needed.
//!
//! The shape follows `talos:pkg/imager/profile/{profile,input,output}.go`: `arch`, `platform`,
//! `secureboot`, `version`, `input` (`kernel`, `initramfs`, `baseInstaller`, `systemExtensions`
//! as `ContainerAsset`s) and `output` (`kind`, `imageOptions`, `outFormat`). Each extension entry
//! is one of `imageRef` (+ `forceInsecure`), `ociPath` or `tarballPath` (contract §2.1): the
//! imager decodes the profile leniently, so a misspelt key would silently drop an extension —
//! which is why this file is generated, not hand-written.
//!
//! What changed between releases comes from the release table (`crate::release::extensions`):
//! the base installer (`installer-base` from v1.10), the `outFormat` of the built-in `metal`
//! profile (`.zst` from v1.8, `pkg/imager/profile/default.go`), and whether a `uki` needs secure
//! boot (before v1.10 the imager builds the UKI only with secure boot, `pkg/imager/imager.go`).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::receipt::{is_pinned, Receipt};
use super::spec::TalosVersion;
use crate::error::{Error, IoContext, Result};
use crate::goyaml::{self, GoValue};

/// `profile.MinRAWDiskSize` (1246 MiB), used for metal images.
const MIN_RAW_DISK_SIZE: u64 = 1246 * 1024 * 1024;
/// `profile.DefaultRAWDiskSize` (8192 MiB), used for other platforms.
const DEFAULT_RAW_DISK_SIZE: u64 = 8192 * 1024 * 1024;

/// One `input.systemExtensions[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionSource {
    /// A registry reference, pinned by digest unless explicitly allowed otherwise.
    Image { reference: String, insecure: bool },
    /// An OCI layout whose `index.json` lists per-platform manifests.
    OciPath(PathBuf),
    /// A plain, uncompressed filesystem tar of `manifest.yaml` + `rootfs/`.
    Tarball(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ProfileRequest {
    pub arch: String,
    pub platform: String,
    pub talos_version: String,
    pub output_kind: String,
    pub base_installer: Option<String>,
    pub insecure: bool,
    pub extensions: Vec<ExtensionSource>,
    /// An image cache (OCI layout) baked in as `input.imageCache.ociPath`.
    pub image_cache: Option<std::path::PathBuf>,
}

/// Output kinds the imager accepts without secure boot (`OutputKind` values in
/// `pkg/imager/profile/output.go` at v1.14.0-rc.1; `uki` from v1.10 without secure boot).
pub const KINDS: [&str; 7] = [
    "installer",
    "iso",
    "image",
    "kernel",
    "initramfs",
    "uki",
    "cmdline",
];

/// Turn a build receipt into an extension source for `arch`.
pub fn source_from_receipt(
    r: &Receipt,
    arch: &str,
    insecure: bool,
    allow_unpinned: bool,
) -> Result<ExtensionSource> {
    if !r.platforms.is_empty()
        && !r
            .platforms
            .iter()
            .any(|p| p.os == "linux" && p.architecture == arch)
    {
        let have: Vec<String> = r
            .platforms
            .iter()
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        return Err(Error::input_hint(
            format!(
                "receipt for `{}` has no linux/{arch} image (it has {})",
                r.name,
                have.join(", ")
            ),
            format!("build the extension for linux/{arch}, or pass `--arch` matching the receipt"),
        ));
    }
    if let Some(pinned) = r.pinned_reference() {
        if !super::receipt::is_sha256_digest(&r.digest) {
            return Err(Error::input(format!(
                "receipt digest `{}` is not a sha256 digest",
                r.digest
            )));
        }
        return image_source(&pinned, insecure, allow_unpinned);
    }
    let out = r.output.as_str();
    if let Some(path) = out.strip_prefix("tar:") {
        return Ok(ExtensionSource::Tarball(PathBuf::from(path)));
    }
    if let Some(rest) = out.strip_prefix("oci:") {
        let dir = split_transport_tag(rest);
        return Ok(ExtensionSource::OciPath(PathBuf::from(dir)));
    }
    if out.starts_with("oci-archive:") {
        return Err(Error::input_hint(
            format!("the imager cannot read an OCI archive (`{out}`)"),
            "build with `--output oci:DIR` or `--output tar:FILE`, or push it to a registry",
        ));
    }
    Err(Error::input(format!(
        "receipt output `{out}` has no reference the imager can use"
    )))
}

/// `DIR[:TAG]` → `DIR` (a tag never contains `/`).
fn split_transport_tag(s: &str) -> &str {
    match s.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => dir,
        _ => s,
    }
}

pub fn image_source(
    reference: &str,
    insecure: bool,
    allow_unpinned: bool,
) -> Result<ExtensionSource> {
    let reference = reference.strip_prefix("docker://").unwrap_or(reference);
    if !is_pinned(reference) && !allow_unpinned {
        return Err(Error::input_hint(
            format!("`{reference}` is not pinned by digest"),
            "use `REF@sha256:<digest>` (or `--receipt` from the build); `--allow-unpinned` accepts a tag",
        ));
    }
    Ok(ExtensionSource::Image {
        reference: reference.to_string(),
        insecure,
    })
}

/// Check local sources the way the imager will read them (contract §2.1), when they exist here.
pub fn check_local(source: &ExtensionSource, arch: &str) -> Result<()> {
    match source {
        ExtensionSource::OciPath(dir) => {
            let index = dir.join("index.json");
            if !index.exists() {
                tracing::warn!(path = %dir.display(), "OCI layout not found here; the imager must see it at this path");
                return Ok(());
            }
            let text = std::fs::read_to_string(&index).at("reading", &index)?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::input(format!("`{}` is not JSON: {e}", index.display())))?;
            let ok = v["manifests"].as_array().is_some_and(|m| {
                m.iter().any(|d| {
                    d["platform"]["os"] == "linux" && d["platform"]["architecture"] == arch
                })
            });
            if !ok {
                return Err(Error::input_hint(
                    format!("`{}` lists no manifest for linux/{arch} with a platform", index.display()),
                    "the imager takes the first index.json entry whose descriptor has platform linux/<arch> and does not follow nested indexes",
                ));
            }
        }
        ExtensionSource::Tarball(file) => {
            if !file.exists() {
                tracing::warn!(path = %file.display(), "tarball not found here; the imager must see it at this path");
                return Ok(());
            }
            let mut head = [0u8; 2];
            let mut f = std::fs::File::open(file).at("opening", file)?;
            let n = f.read(&mut head).at("reading", file)?;
            if n == 2 && head == [0x1f, 0x8b] {
                return Err(Error::input_hint(
                    format!("`{}` is gzip-compressed", file.display()),
                    "tarballPath must be a plain tar (the imager does not decompress it)",
                ));
            }
            let f = std::fs::File::open(file).at("opening", file)?;
            let mut archive = tar::Archive::new(f);
            let mut manifest = false;
            for entry in archive.entries().at("reading", file)? {
                let entry = entry.at("reading", file)?;
                let path = entry
                    .path()
                    .at("reading", file)?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_string();
                if path == "manifest.yaml" {
                    manifest = true;
                }
            }
            if !manifest {
                return Err(Error::input_hint(
                    format!("`{}` has no `manifest.yaml` at its root", file.display()),
                    "tarballPath is a filesystem tar of the extension (`manifest.yaml` + `rootfs/`), not an image archive",
                ));
            }
        }
        ExtensionSource::Image { .. } => {}
    }
    Ok(())
}

/// Check that the image cache at `dir` (an OCI layout wrapping the cache tree, as `talext
/// image-cache create` and `talosctl image cache-create` write it, or the flat tree) has a
/// `manifests/<registry>/<repository>/reference/<tag>` entry for `image`.
pub fn check_cache_holds(dir: &Path, image: &str) -> Result<()> {
    let r = crate::registry::Reference::parse(image)?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let want = format!(
        "manifests/{}/{}/reference/{tag}",
        crate::store::image_cache::registry_dir(&r.registry, image),
        r.repository
    );
    let found = if dir.join("manifests").is_dir() {
        dir.join(&want).is_file()
    } else {
        let loc = crate::transport::Location::Oci {
            dir: dir.to_path_buf(),
            tag: None,
        };
        let Some(crate::store::source::Source::Layout { layout, .. }) =
            crate::store::source::Source::open(&loc, &Default::default())?
        else {
            return Err(Error::internal("a layout location opens as a layout"));
        };
        let desc = layout.resolve(None)?;
        let manifest: crate::oci::Manifest =
            serde_json::from_slice(&layout.read_document(&desc.digest)?).map_err(|e| {
                Error::input(format!(
                    "`{}`: the image cache's manifest is not valid: {e}",
                    dir.display()
                ))
            })?;
        let mut found = false;
        for layer in &manifest.layers {
            let blob = layout.open_blob(layer)?;
            let tar = crate::source::image::decompress(blob).at("reading", dir)?;
            let mut archive = tar::Archive::new(tar);
            for entry in archive.entries().at("reading", dir)? {
                let entry = entry.at("reading", dir)?;
                let path = entry
                    .path()
                    .at("reading", dir)?
                    .to_string_lossy()
                    .into_owned();
                if path.trim_start_matches("./") == want {
                    found = true;
                    break;
                }
            }
        }
        found
    };
    if found {
        return Ok(());
    }
    Err(Error::input_hint(
        format!(
            "the image cache `{}` does not hold the installer `{image}` (no `{want}`)",
            dir.display()
        ),
        format!("add it: `talext image-cache create … {image}` (an offline install would stall pulling it)"),
    ))
}

/// The profile document.
pub fn render(req: &ProfileRequest) -> Result<String> {
    if req.arch != "amd64" && req.arch != "arm64" {
        return Err(Error::input(format!(
            "arch `{}` is not `amd64` or `arm64`",
            req.arch
        )));
    }
    if req.platform.is_empty() {
        return Err(Error::input("platform is required"));
    }
    let version = TalosVersion::parse(&req.talos_version)
        .ok_or_else(|| Error::input(format!("`{}` is not a Talos version", req.talos_version)))?;
    if !KINDS.contains(&req.output_kind.as_str()) {
        return Err(Error::input_hint(
            format!("output kind `{}` is not supported", req.output_kind),
            format!("use one of {}", KINDS.join(", ")),
        ));
    }
    if req.extensions.is_empty() {
        return Err(Error::input_hint(
            "no system extension given",
            "pass `--receipt`, `--image`, `--oci-path` or `--tarball`",
        ));
    }
    let tag = req.talos_version.clone();
    let tag = if tag.starts_with('v') {
        tag
    } else {
        format!("v{tag}")
    };
    let (facts, _) = crate::release::extensions::nearest(crate::release::Minor::new(
        version.major as u16,
        version.minor as u16,
    ));
    if req.output_kind == "uki" && facts.uki_needs_secureboot.value {
        return Err(Error::input_hint(
            format!(
                "the imager of Talos `{tag}` builds a UKI only with secure boot, which this profile does not set"
            ),
            "use Talos v1.10 or later for a `uki` without secure boot, or the `image` / `iso` output kinds",
        ));
    }
    // The imager's default base installer: installer-base from v1.10, the installer before.
    let base = req
        .base_installer
        .clone()
        .unwrap_or_else(|| format!("{}:{tag}", facts.base_installer.value));
    let s = |v: &str| GoValue::str(v);
    let path = |p: String| GoValue::Map(vec![("path".into(), GoValue::Str(p))]);
    let mut base_asset = vec![("imageRef".to_string(), s(&base))];
    if req.insecure {
        base_asset.push(("forceInsecure".into(), GoValue::Bool(true)));
    }
    let exts = req
        .extensions
        .iter()
        .map(|e| {
            GoValue::Map(match e {
                ExtensionSource::Image {
                    reference,
                    insecure,
                } => {
                    let mut m = vec![("imageRef".to_string(), s(reference))];
                    if *insecure {
                        m.push(("forceInsecure".into(), GoValue::Bool(true)));
                    }
                    m
                }
                ExtensionSource::Tarball(p) => {
                    vec![("tarballPath".into(), s(&p.display().to_string()))]
                }
                ExtensionSource::OciPath(p) => {
                    vec![("ociPath".into(), s(&p.display().to_string()))]
                }
            })
        })
        .collect();
    let mut input = vec![
        (
            "kernel".into(),
            path(format!("/usr/install/{}/vmlinuz", req.arch)),
        ),
        (
            "initramfs".into(),
            path(format!("/usr/install/{}/initramfs.xz", req.arch)),
        ),
        ("baseInstaller".into(), GoValue::Map(base_asset)),
    ];
    if let Some(cache) = &req.image_cache {
        // The imager's `imageCache` is a container asset, here by `ociPath`
        // (`pkg/imager/profile/input.go` `ImageCache ContainerAsset` at v1.14.0-rc.1). The cache
        // must hold the installer the profile installs with, or an offline install stalls
        // pulling it (siderolabs/talos#12592).
        check_cache_holds(cache, &base)?;
        input.push((
            "imageCache".into(),
            GoValue::Map(vec![("ociPath".into(), s(&cache.display().to_string()))]),
        ));
    }
    input.push(("systemExtensions".into(), GoValue::Seq(exts)));
    let input = GoValue::Map(input);
    let mut output = vec![("kind".to_string(), s(&req.output_kind))];
    let format = if req.output_kind == "image" {
        let size = if req.platform == "metal" {
            MIN_RAW_DISK_SIZE
        } else {
            DEFAULT_RAW_DISK_SIZE
        };
        output.push((
            "imageOptions".into(),
            GoValue::Map(vec![
                ("diskSize".into(), GoValue::Uint(size)),
                ("diskFormat".into(), s("raw")),
            ]),
        ));
        // The built-in `metal` profile's compression; other platforms keep `.xz`.
        if req.platform == "metal" {
            facts.metal_out_format.value
        } else {
            ".xz"
        }
    } else {
        "raw"
    };
    output.push(("outFormat".into(), s(format)));
    let profile = GoValue::Map(vec![
        ("arch".into(), s(&req.arch)),
        ("platform".into(), s(&req.platform)),
        ("secureboot".into(), GoValue::Bool(false)),
        ("version".into(), s(&tag)),
        ("input".into(), input),
        ("output".into(), GoValue::Map(output)),
    ]);
    let local = req
        .extensions
        .iter()
        .any(|e| !matches!(e, ExtensionSource::Image { .. }));
    let mut out = format!(
        "# Talos imager profile ({} {} for {}/{}), generated by `talext imager-profile`.\n# docker run --rm -i -v \"$PWD/_out:/out\"{} ghcr.io/siderolabs/imager:{tag} - < profile.yaml\n",
        req.output_kind,
        tag,
        req.platform,
        req.arch,
        if local { " -v \"$PWD:$PWD\"" } else { "" },
    );
    if local {
        out.push_str("# ociPath/tarballPath are read inside the imager container: mount them at the same path.\n");
    }
    out.push_str(&goyaml::marshal(&profile, 2));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ext: Vec<ExtensionSource>) -> ProfileRequest {
        ProfileRequest {
            arch: "amd64".into(),
            platform: "metal".into(),
            talos_version: "v1.11.5".into(),
            output_kind: "installer".into(),
            base_installer: None,
            insecure: false,
            extensions: ext,
            image_cache: None,
        }
    }

    #[test]
    fn installer_profile_shape() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let out = render(&req(vec![ExtensionSource::Image {
            reference: format!("r.example/talos/tailscale@{digest}"),
            insecure: false,
        }]))
        .unwrap();
        let body: String = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            body,
            format!(
                "arch: amd64\nplatform: metal\nsecureboot: false\nversion: v1.11.5\ninput:\n  kernel:\n    path: /usr/install/amd64/vmlinuz\n  initramfs:\n    path: /usr/install/amd64/initramfs.xz\n  baseInstaller:\n    imageRef: ghcr.io/siderolabs/installer-base:v1.11.5\n  systemExtensions:\n    - imageRef: r.example/talos/tailscale@{digest}\noutput:\n  kind: installer\n  outFormat: raw\n"
            )
        );
    }

    #[test]
    fn unpinned_refused_and_old_base_installer() {
        assert!(image_source("r/x:1.0", false, false).is_err());
        assert!(image_source("r/x:1.0", false, true).is_ok());
        let mut r = req(vec![ExtensionSource::Tarball("/x.tar".into())]);
        r.talos_version = "v1.9.3".into();
        r.output_kind = "image".into();
        let out = render(&r).unwrap();
        assert!(
            out.contains("imageRef: ghcr.io/siderolabs/installer:v1.9.3\n"),
            "{out}"
        );
        assert!(out.contains("diskSize: 1306525696\n"), "{out}");
        assert!(out.contains("- tarballPath: /x.tar\n"), "{out}");
    }
}
