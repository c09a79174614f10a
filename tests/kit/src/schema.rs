//! The OCI image-spec JSON schemas as an independent reader of what talext writes.
//!
//! The schemas are the ones Debian ships with the image-spec Go sources. They are draft-04 and
//! reference each other by relative names resolved against nested `id`s
//! (`https://opencontainers.org/schema/image/index/annotations` + `defs-descriptor.json`), so, as
//! the spec's own Go loader does (`schema/schema.go`, `schemaNamespaces`), every URI under
//! `https://opencontainers.org/schema/` is served from the schema directory by its file name.
//! Nothing is fetched from the network.
//!
//! [`validate_layout`] walks an OCI image layout from `index.json` down and checks every index,
//! manifest and config against its schema and every blob against its descriptor's digest and
//! size (image-spec `image-layout.md`, `descriptor.md`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where Debian's `golang-github-opencontainers-image-spec-dev` puts the schemas.
pub const SCHEMA_DIR: &str = "/usr/share/gocode/src/github.com/opencontainers/image-spec/schema";

const NAMESPACE: &str = "https://opencontainers.org/schema/";

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The documents the image spec has a schema for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `oci-layout`
    Layout,
    /// `index.json` and image index blobs
    Index,
    /// image manifests
    Manifest,
    /// image configs
    Config,
    /// a single content descriptor
    Descriptor,
}

impl Kind {
    fn file(self) -> &'static str {
        match self {
            Kind::Layout => "image-layout-schema.json",
            Kind::Index => "image-index-schema.json",
            Kind::Manifest => "image-manifest-schema.json",
            Kind::Config => "config-schema.json",
            Kind::Descriptor => "content-descriptor.json",
        }
    }
}

/// Validate `doc` against the schema for `kind`; every violation is returned, one per line.
pub fn validate(kind: Kind, doc: &Value) -> Result<(), Vec<String>> {
    let errors: Vec<String> = validator(kind)
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Panic with every violation unless `doc` is a valid `kind`; `what` names it in the message.
pub fn assert_valid(kind: Kind, doc: &Value, what: &str) {
    if let Err(errors) = validate(kind, doc) {
        panic!(
            "{what} fails the OCI {kind:?} schema:\n  {}\ndocument:\n{}",
            errors.join("\n  "),
            serde_json::to_string_pretty(doc).unwrap_or_default()
        );
    }
}

/// Where `ci/deps.sh` installs the SPDX 2.3 JSON schema (the SPDX project's
/// `schemas/spdx-schema.json`, as the `lib4sbom` wheel on PyPI ships it).
pub const SPDX_SCHEMA: &str = "/usr/local/share/spdx/schema/spdx-2.3-schema.json";

/// Every violation of the SPDX 2.3 JSON schema in `doc`, one per line.
pub fn validate_spdx(doc: &Value) -> Result<(), Vec<String>> {
    static CELL: OnceLock<Validator> = OnceLock::new();
    let v = CELL.get_or_init(|| {
        let schema = read_json(Path::new(SPDX_SCHEMA));
        assert_eq!(
            schema["title"], "SPDX 2.3",
            "`{SPDX_SCHEMA}` is not the SPDX 2.3 schema (run `ci/deps.sh`)"
        );
        jsonschema::options()
            .with_draft(Draft::Draft7)
            .build(&schema)
            .unwrap_or_else(|e| panic!("compiling `{SPDX_SCHEMA}`: {e}"))
    });
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Panic with every violation unless `doc` is a valid SPDX 2.3 document.
pub fn assert_valid_spdx(doc: &Value, what: &str) {
    if let Err(errors) = validate_spdx(doc) {
        panic!(
            "{what} fails the SPDX 2.3 schema:\n  {}",
            errors.join("\n  ")
        );
    }
}

/// What [`validate_layout`] checked: the digests of each kind of blob, in walk order.
#[derive(Debug, Default, Clone)]
pub struct LayoutContents {
    pub indexes: Vec<String>,
    pub manifests: Vec<String>,
    pub configs: Vec<String>,
    pub layers: Vec<String>,
}

/// Check a whole OCI image layout: `oci-layout`, `index.json`, and every index, manifest, config
/// and layer reachable from it (schema, media type, digest and size). Panics on the first
/// problem, naming the blob and the path that led to it.
pub fn validate_layout(dir: &Path) -> LayoutContents {
    let layout = read_json(&dir.join("oci-layout"));
    assert_valid(
        Kind::Layout,
        &layout,
        &format!("`{}/oci-layout`", dir.display()),
    );
    let index = read_json(&dir.join("index.json"));
    assert_valid(
        Kind::Index,
        &index,
        &format!("`{}/index.json`", dir.display()),
    );
    let mut walk = Walk {
        dir,
        seen: BTreeSet::new(),
        out: LayoutContents::default(),
    };
    walk.index(&index, "index.json");
    walk.out
}

struct Walk<'a> {
    dir: &'a Path,
    seen: BTreeSet<String>,
    out: LayoutContents,
}

impl Walk<'_> {
    fn index(&mut self, index: &Value, trail: &str) {
        for (i, desc) in array(index, "manifests", trail).iter().enumerate() {
            let trail = format!("{trail} → manifests[{i}]");
            assert_valid(Kind::Descriptor, desc, &trail);
            let digest = str_field(desc, "digest", &trail);
            let media = str_field(desc, "mediaType", &trail);
            let bytes = self.blob(desc, &trail);
            let first = self.seen.insert(digest.to_owned());
            let doc: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{trail}: blob `{digest}` is not JSON: {e}"));
            match media {
                MEDIA_INDEX => {
                    assert_valid(Kind::Index, &doc, &format!("{trail} (`{digest}`)"));
                    assert_media(&doc, MEDIA_INDEX, &trail);
                    if first {
                        self.out.indexes.push(digest.to_owned());
                        self.index(&doc, &trail);
                    }
                }
                MEDIA_MANIFEST => {
                    assert_valid(Kind::Manifest, &doc, &format!("{trail} (`{digest}`)"));
                    assert_media(&doc, MEDIA_MANIFEST, &trail);
                    if first {
                        self.out.manifests.push(digest.to_owned());
                        self.manifest(&doc, &trail);
                    }
                }
                other => panic!("{trail}: unexpected media type `{other}` for `{digest}`"),
            }
        }
    }

    fn manifest(&mut self, manifest: &Value, trail: &str) {
        let config = manifest
            .get("config")
            .unwrap_or_else(|| panic!("{trail}: manifest has no `config`"));
        let ctrail = format!("{trail} → config");
        let media = str_field(config, "mediaType", &ctrail);
        assert_eq!(media, MEDIA_CONFIG, "{ctrail}: config media type");
        let bytes = self.blob(config, &ctrail);
        let doc: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{ctrail}: config is not JSON: {e}"));
        assert_valid(Kind::Config, &doc, &ctrail);
        self.out
            .configs
            .push(str_field(config, "digest", &ctrail).to_owned());
        for (i, layer) in array(manifest, "layers", trail).iter().enumerate() {
            let ltrail = format!("{trail} → layers[{i}]");
            self.blob(layer, &ltrail);
            self.out
                .layers
                .push(str_field(layer, "digest", &ltrail).to_owned());
        }
    }

    /// Read the blob a descriptor names and check its size and sha256.
    fn blob(&self, desc: &Value, trail: &str) -> Vec<u8> {
        let digest = str_field(desc, "digest", trail);
        let size = desc
            .get("size")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{trail}: descriptor has no `size`"));
        let path = blob_path(self.dir, digest);
        let bytes = fs::read(&path)
            .unwrap_or_else(|e| panic!("{trail}: reading `{}`: {e}", path.display()));
        assert_eq!(bytes.len() as u64, size, "{trail}: size of `{digest}`");
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        assert_eq!(
            actual,
            digest,
            "{trail}: content of `{}` does not match its name",
            path.display()
        );
        bytes
    }
}

/// `blobs/<alg>/<hex>` for a digest (image-spec `image-layout.md`).
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("`{digest}` is not a digest"));
    assert_eq!(
        alg, "sha256",
        "only sha256 digests are expected, got `{digest}`"
    );
    dir.join("blobs").join(alg).join(hex)
}

/// Read and parse a JSON file, panicking with its path.
pub fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("`{}` is not JSON: {e}", path.display()))
}

fn assert_media(doc: &Value, expected: &str, trail: &str) {
    // The schema leaves `mediaType` optional; when present it must agree with the descriptor.
    if let Some(media) = doc.get("mediaType").and_then(Value::as_str) {
        assert_eq!(media, expected, "{trail}: document media type");
    }
}

fn array<'v>(doc: &'v Value, key: &str, trail: &str) -> &'v Vec<Value> {
    doc.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{trail}: `{key}` is not an array"))
}

fn str_field<'v>(doc: &'v Value, key: &str, trail: &str) -> &'v str {
    doc.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{trail}: `{key}` is not a string"))
}

/// Serves `https://opencontainers.org/schema/**/NAME.json` from [`SCHEMA_DIR`] by file name.
struct LocalSchemas;

impl Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let uri = uri.as_str();
        let rest = uri
            .strip_prefix(NAMESPACE)
            .ok_or_else(|| format!("schema reference `{uri}` is outside `{NAMESPACE}`"))?;
        let name = rest.rsplit('/').next().unwrap_or(rest);
        Ok(load(name))
    }
}

fn load(name: &str) -> Value {
    let path = Path::new(SCHEMA_DIR).join(name);
    let bytes = fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading schema `{}`: {e} (install `golang-github-opencontainers-image-spec-dev`)",
            path.display()
        )
    });
    let mut doc: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("schema `{}` is not JSON: {e}", path.display()));
    // The files name their meta-schema with an `https` URI that no draft is registered under;
    // the draft is set explicitly instead.
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("$schema");
    }
    doc
}

fn validator(kind: Kind) -> &'static Validator {
    static CELLS: [OnceLock<Validator>; 5] = [const { OnceLock::new() }; 5];
    let slot = match kind {
        Kind::Layout => 0,
        Kind::Index => 1,
        Kind::Manifest => 2,
        Kind::Config => 3,
        Kind::Descriptor => 4,
    };
    CELLS[slot].get_or_init(|| {
        let schema = load(kind.file());
        jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_retriever(LocalSchemas)
            .build(&schema)
            .unwrap_or_else(|e| panic!("compiling OCI schema `{}`: {e}", kind.file()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D1: &str = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";

    fn platform_desc(arch: &str) -> Value {
        json!({
            "mediaType": MEDIA_MANIFEST,
            "digest": D1,
            "size": 7,
            "platform": {"os": "linux", "architecture": arch}
        })
    }

    #[test]
    fn the_spdx_schema_tells_good_from_bad() {
        let good = json!({
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": "x",
            "documentNamespace": "https://spdx.org/spdxdocs/x",
            "creationInfo": {"created": "1970-01-01T00:00:00Z", "creators": ["Tool: t"]},
            "packages": [{"name": "x", "SPDXID": "SPDXRef-x", "downloadLocation": "NOASSERTION"}]
        });
        validate_spdx(&good).unwrap();
        let mut bad = good.clone();
        bad["packages"][0]["externalRefs"] = json!([{"referenceType": "purl"}]);
        bad.as_object_mut().unwrap().remove("creationInfo");
        let errors = validate_spdx(&bad).unwrap_err();
        assert!(errors.len() >= 2, "{errors:?}");
    }

    #[test]
    fn a_good_index_passes() {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [platform_desc("amd64"), platform_desc("arm64")],
            "annotations": {"org.opencontainers.image.ref.name": "1.102.5"}
        });
        validate(Kind::Index, &index).unwrap();
    }

    #[test]
    fn index_faults_are_found_through_the_cross_file_refs() {
        // A bad digest is only caught by `defs-descriptor.json#/definitions/digest`, and a bad
        // annotation by `defs.json#/definitions/mapStringString`: both are `$ref`s to other files.
        let mut desc = platform_desc("amd64");
        desc["digest"] = json!("sha256/no-colon");
        let index = json!({"schemaVersion": 2, "manifests": [desc]});
        let errors = validate(Kind::Index, &index).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("digest")), "{errors:?}");

        let index = json!({"schemaVersion": 2, "manifests": [], "annotations": {"k": 1}});
        assert!(validate(Kind::Index, &index).is_err());

        let index = json!({"schemaVersion": 1, "manifests": []});
        assert!(validate(Kind::Index, &index).is_err());

        let mut desc = platform_desc("amd64");
        desc["platform"] = json!({"os": "linux"});
        let index = json!({"schemaVersion": 2, "manifests": [desc]});
        assert!(
            validate(Kind::Index, &index).is_err(),
            "platform needs an architecture"
        );
    }

    #[test]
    fn manifests_and_configs() {
        let layer = json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": D1,
            "size": 10
        });
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": D1, "size": 2},
            "layers": [layer]
        });
        validate(Kind::Manifest, &manifest).unwrap();
        let mut bad = manifest.clone();
        bad["config"]["size"] = json!("2");
        assert!(validate(Kind::Manifest, &bad).is_err());
        let mut bad = manifest;
        bad["layers"][0]["mediaType"] = json!("not a media type");
        assert!(validate(Kind::Manifest, &bad).is_err());

        let config = json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": "arm64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [D1]}
        });
        validate(Kind::Config, &config).unwrap();
        let mut bad = config.clone();
        bad["rootfs"]["type"] = json!("squashfs");
        assert!(validate(Kind::Config, &bad).is_err());
        let mut bad = config;
        bad.as_object_mut().unwrap().remove("os");
        assert!(validate(Kind::Config, &bad).is_err());
    }

    #[test]
    fn layout_header() {
        validate(Kind::Layout, &json!({"imageLayoutVersion": "1.0.0"})).unwrap();
        assert!(validate(Kind::Layout, &json!({})).is_err());
    }

    #[test]
    fn a_hand_made_layout_walks_and_a_corrupt_blob_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        let put = |bytes: &[u8]| -> (String, usize) {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
            fs::write(blob_path(root, &digest), bytes).unwrap();
            (digest, bytes.len())
        };
        let (layer, layer_size) = put(b"not really a tar, the walk only checks digests");
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer]}
        });
        let (config_d, config_n) = put(&serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_d, "size": config_n},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]
        });
        let (man_d, man_n) = put(&serde_json::to_vec(&manifest).unwrap());
        let index = json!({
            "schemaVersion": 2, "mediaType": MEDIA_INDEX,
            "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": man_d, "size": man_n,
                           "platform": {"os": "linux", "architecture": "amd64"}}]
        });
        let (idx_d, idx_n) = put(&serde_json::to_vec(&index).unwrap());
        let top = json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": MEDIA_INDEX, "digest": idx_d, "size": idx_n,
                 "annotations": {"org.opencontainers.image.ref.name": "t"}},
                {"mediaType": MEDIA_MANIFEST, "digest": man_d, "size": man_n,
                 "platform": {"os": "linux", "architecture": "amd64"}}
            ]
        });
        fs::write(root.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();

        let seen = validate_layout(root);
        assert_eq!(seen.indexes, vec![idx_d]);
        assert_eq!(seen.manifests, vec![man_d]);
        assert_eq!(seen.configs, vec![config_d]);
        assert_eq!(seen.layers, vec![layer.clone()]);

        fs::write(blob_path(root, &layer), b"tampered").unwrap();
        let caught = std::panic::catch_unwind(|| validate_layout(root));
        assert!(caught.is_err(), "a tampered layer must fail the walk");
    }
}
