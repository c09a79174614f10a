//! What the payload is made of, found in the assembled tree for the SBOM: the Alpine packages of
//! every container root that carries an apk database, and the Go modules of every Go binary.
//!
//! One pass over the tree's regular files. A file is opened only for its first 64 bytes unless
//! it is an ELF file, and then only its section headers, section names and `.go.buildinfo` are
//! read, each within fixed bounds (`gobin`).

use std::io::Read;

use super::apk::{self, ApkPackage};
use super::gobin::{self, BuildInfo, Found};
use crate::error::{Error, Result};
use crate::rootfs::{escape, open_content, Content, NodeKind, Tree};

/// Where an apk database lives below a container root.
const APK_DB: &str = "lib/apk/db/installed";
const ALPINE_RELEASE: &str = "etc/alpine-release";

/// One container root's installed Alpine packages.
#[derive(Debug, Clone)]
pub struct ApkRoot {
    /// The root as the node sees it (`/usr/local/lib/containers/tailscale`, or `/`).
    pub root: String,
    /// `etc/alpine-release` of that root, when present.
    pub release: Option<String>,
    pub packages: Vec<ApkPackage>,
}

/// One Go binary's build information.
#[derive(Debug, Clone)]
pub struct GoBinary {
    /// The binary as the node sees it.
    pub path: String,
    pub info: BuildInfo,
}

/// Everything the SBOM lists about the payload, in tree order.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub apk: Vec<ApkRoot>,
    pub go: Vec<GoBinary>,
}

/// `rootfs/usr/x` as the node sees it: `/usr/x`.
fn on_node(path: &str) -> String {
    match path {
        "rootfs" => "/".to_string(),
        p => format!("/{}", p.strip_prefix("rootfs/").unwrap_or(p)),
    }
}

/// Scan the extension tree's `rootfs/`.
pub fn scan(tree: &Tree) -> Result<Contents> {
    let mut out = Contents::default();
    let (top_db, any_db) = (format!("rootfs/{APK_DB}"), format!("/{APK_DB}"));
    for (path, node) in tree.below("rootfs") {
        let NodeKind::File { content, size } = &node.kind else {
            continue;
        };
        if *path == top_db || path.ends_with(&any_db) {
            let root = &path[..path.len() - APK_DB.len() - 1];
            out.apk.push(apk_root(tree, root, path, content, *size)?);
            continue;
        }
        if *size < 64 {
            continue;
        }
        let found = match content {
            Content::Inline(bytes) => gobin::read(&mut &bytes[..]),
            // A file an earlier pass saw is not ELF cannot be a Go binary.
            Content::Disk(f) if f.head() == Some(crate::rootfs::Head::NotElf) => continue,
            Content::Disk(f) => {
                let p = f.path();
                let file = std::fs::File::open(p)
                    .map_err(|e| Error::internal(format!("opening `{}`: {e}", p.display())))?;
                gobin::read(&mut gobin::FileAt { file, size: *size })
            }
        };
        let shown = escape(&on_node(path));
        match found {
            Ok(Found::NotGo) => {}
            Ok(Found::PointerFormat) => tracing::debug!(
                "`{shown}` is a Go binary from before Go 1.18 whose build information leads outside the file; its modules are not listed in the SBOM"
            ),
            Ok(Found::Go(info)) => out.go.push(GoBinary {
                path: on_node(path),
                info,
            }),
            Err(e) => {
                return Err(Error::input_hint(
                    format!("`{shown}`: the Go build information (`.go.buildinfo`) is unreadable: {e}"),
                    "the SBOM lists the modules of every Go binary; rebuild the binary or leave it out of the payload",
                ))
            }
        }
    }
    Ok(out)
}

fn apk_root(tree: &Tree, root: &str, path: &str, content: &Content, size: u64) -> Result<ApkRoot> {
    let shown = escape(&on_node(path));
    if size > apk::MAX_DB {
        return Err(Error::input(format!(
            "`{shown}`: the apk database is {size} bytes, more than the {} talext reads",
            apk::MAX_DB
        )));
    }
    let mut bytes = Vec::new();
    open_content(content)?
        .take(apk::MAX_DB)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::internal(format!("reading `{shown}`: {e}")))?;
    let packages = apk::parse(&shown, &bytes)?;
    let release_path = crate::rootfs::join(root, ALPINE_RELEASE);
    let release = match tree.get(&release_path) {
        Some(n) if n.is_file() => apk::release(&tree.read_head(&release_path, 256)?),
        _ => None,
    };
    Ok(ApkRoot {
        root: on_node(root),
        release,
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Node;

    #[test]
    fn finds_apk_roots_and_go_binaries() {
        let mut t = Tree::new();
        let c = "rootfs/usr/local/lib/containers/x";
        t.insert(
            &format!("{c}/lib/apk/db/installed"),
            Node::inline(&b"P:musl\nV:1.2.5-r10\nA:aarch64\n"[..], 0o644),
        );
        t.insert(
            &format!("{c}/etc/alpine-release"),
            Node::inline(&b"3.22.1\n"[..], 0o644),
        );
        let elf = gobin::tests::elf_with(
            ".go.buildinfo",
            &gobin::tests::section("go1.19.8", gobin::tests::MODINFO),
            183,
        );
        t.insert(
            &format!("{c}/usr/local/bin/tailscaled"),
            Node::inline(elf, 0o755),
        );
        t.insert(
            "rootfs/usr/local/bin/plain",
            Node::inline(gobin::tests::elf_with(".text", &[0; 64], 183), 0o755),
        );
        let got = scan(&t).unwrap();
        assert_eq!(got.apk.len(), 1);
        assert_eq!(got.apk[0].root, "/usr/local/lib/containers/x");
        assert_eq!(got.apk[0].release.as_deref(), Some("3.22.1"));
        assert_eq!(got.apk[0].packages[0].name, "musl");
        assert_eq!(got.go.len(), 1);
        assert_eq!(
            got.go[0].path,
            "/usr/local/lib/containers/x/usr/local/bin/tailscaled"
        );

        let mut bad = Tree::new();
        let mut body = gobin::tests::section("go1.19.8", gobin::tests::MODINFO);
        body.truncate(50);
        bad.insert(
            "rootfs/usr/bin/broken",
            Node::inline(gobin::tests::elf_with(".go.buildinfo", &body, 62), 0o755),
        );
        let err = scan(&bad).unwrap_err().to_string();
        assert!(
            err.contains("`/usr/bin/broken`: the Go build information"),
            "{err}"
        );

        // An apk database larger than talext reads is refused before it is read.
        let mut huge = Tree::new();
        huge.insert(
            "rootfs/lib/apk/db/installed",
            Node {
                kind: NodeKind::File {
                    content: Content::Inline(std::sync::Arc::from(&b"P:x\n"[..])),
                    size: apk::MAX_DB + 1,
                },
                mode: 0o644,
            },
        );
        let err = scan(&huge).unwrap_err().to_string();
        assert!(
            err.contains("`/lib/apk/db/installed`: the apk database is"),
            "{err}"
        );
    }
}
