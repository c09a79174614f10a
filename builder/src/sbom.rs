//! The extension's SPDX 2.3 JSON SBOM, installed at `rootfs/usr/local/share/spdx/<name>.spdx.json`
//! where Talos reads extension SBOMs. Deterministic: `created` is the build epoch and the
//! document namespace is derived from the document's own content.

use serde::Serialize;

use crate::error::Result;
use crate::image::{rfc3339, to_json};
use crate::oci::Digest;

pub fn path_for(name: &str) -> String {
    format!("rootfs/usr/local/share/spdx/{name}.spdx.json")
}

/// A source as the SBOM records it.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub name: String,
    /// Where it came from (a pinned reference, a layout, a directory).
    pub location: String,
    /// The platform image's manifest digest, or the content digest of a directory tree.
    pub digest: Digest,
}

pub struct Input<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub license: Option<&'a str>,
    pub cpe: Option<String>,
    pub homepage: Option<&'a str>,
    pub supplier: Option<&'a str>,
    pub platform: &'a str,
    pub epoch: u64,
    pub sources: &'a [SourceRecord],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package<'a>>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package<'a> {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<&'a str>,
    supplier: String,
    download_location: String,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<&'a str>,
    license_concluded: String,
    license_declared: String,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

fn spdx_ref(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Render the SBOM.
pub fn render(input: &Input<'_>) -> Result<Vec<u8>> {
    let license = input.license.unwrap_or("NOASSERTION").to_string();
    let pkg_id = format!("SPDXRef-Package-{}", spdx_ref(input.name));
    let mut packages = vec![Package {
        name: input.name.to_string(),
        spdx_id: pkg_id.clone(),
        version_info: Some(input.version),
        supplier: input
            .supplier
            .map(|s| format!("Organization: {s}"))
            .unwrap_or_else(|| "NOASSERTION".into()),
        download_location: "NOASSERTION".into(),
        files_analyzed: false,
        checksums: Vec::new(),
        homepage: input.homepage,
        license_concluded: license.clone(),
        license_declared: license,
        copyright_text: "NOASSERTION",
        comment: Some(format!("Talos system extension for {}", input.platform)),
        external_refs: input
            .cpe
            .iter()
            .map(|c| ExternalRef {
                reference_category: "SECURITY",
                reference_type: "cpe23Type",
                reference_locator: c.clone(),
            })
            .collect(),
    }];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        relationship_type: "DESCRIBES",
        related_spdx_element: pkg_id.clone(),
    }];
    for s in input.sources {
        let id = format!("SPDXRef-Source-{}", spdx_ref(&s.name));
        packages.push(Package {
            name: s.name.clone(),
            spdx_id: id.clone(),
            version_info: None,
            supplier: "NOASSERTION".into(),
            download_location: if s.location.contains('@') {
                s.location.clone()
            } else {
                "NOASSERTION".into()
            },
            files_analyzed: false,
            checksums: vec![Checksum {
                algorithm: "SHA256",
                checksum_value: s.digest.hex().to_string(),
            }],
            homepage: None,
            license_concluded: "NOASSERTION".into(),
            license_declared: "NOASSERTION".into(),
            copyright_text: "NOASSERTION",
            comment: Some(format!(
                "source `{}` for {}: {}",
                s.name, input.platform, s.digest
            )),
            external_refs: Vec::new(),
        });
        relationships.push(Relationship {
            spdx_element_id: pkg_id.clone(),
            relationship_type: "GENERATED_FROM",
            related_spdx_element: id,
        });
    }
    let name = format!("{}-{}", input.name, input.version);
    let mut doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: name.clone(),
        document_namespace: String::new(),
        creation_info: CreationInfo {
            created: rfc3339(input.epoch),
            creators: vec!["Tool: talext"],
        },
        packages,
        relationships,
    };
    // The namespace must be unique per document: derive it from everything else in it.
    let digest = Digest::of(&to_json(&doc)?);
    doc.document_namespace = format!(
        "https://spdx.org/spdxdocs/{}-{}",
        spdx_ref(&name),
        &digest.hex()[..32]
    );
    let mut out =
        serde_json::to_vec_pretty(&doc).map_err(|e| crate::Error::internal(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_content_addressed() {
        let sources = vec![SourceRecord {
            name: "tailscale".into(),
            location: "docker.io/tailscale/tailscale:v1@sha256:00".into(),
            digest: Digest::of(b"x"),
        }];
        let input = Input {
            name: "tailscale",
            version: "1.102.5",
            license: Some("BSD-3-Clause"),
            cpe: Some("cpe:2.3:a:tailscale:tailscale:1.102.5:*:*:*:*:*:*:*".into()),
            homepage: None,
            supplier: None,
            platform: "linux/amd64",
            epoch: 0,
            sources: &sources,
        };
        let a = render(&input).unwrap();
        assert_eq!(a, render(&input).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        assert_eq!(v["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        assert_eq!(v["packages"][0]["licenseDeclared"], "BSD-3-Clause");
        assert_eq!(
            v["packages"][1]["checksums"][0]["checksumValue"],
            Digest::of(b"x").hex()
        );
        let other = Input {
            version: "1.102.6",
            ..input
        };
        let b: serde_json::Value = serde_json::from_slice(&render(&other).unwrap()).unwrap();
        assert_ne!(v["documentNamespace"], b["documentNamespace"]);
    }
}
