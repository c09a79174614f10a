//! `talext schematic`: every vector from the Image Factory's own tests (reference §1.2) produces
//! its ID through the binary, and the committed schematic example keeps its ID.

use std::path::Path;
use std::process::Output;

fn talext(args: &[&str]) -> Output {
    talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(args)
        .output()
        .expect("run talext")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

const VECTORS: &[(&str, &str)] = &[
    ("{}\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
    ("customization: {}\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
    ("customization:\n  extraKernelArgs: []\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
    (
        "customization:\n  extraKernelArgs:\n    - noapic\n    - nolapic\n",
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        "customization:\n  meta:\n    - key: 0xa\n      value: foo\n",
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    (
        "overlay:\n  image: siderolabs/sbc-raspberrypi\n  name: rpi_generic\n",
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        "customization:\n  secureboot:\n    includeWellKnownCertificates: true\n",
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
    (
        "customization:\n  diskImage:\n    sectorSize: 4096\n",
        "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
    ),
    (
        "{\"customization\":{\"systemExtensions\":{\"officialExtensions\":[\"siderolabs/tailscale\"]}}}",
        "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b",
    ),
];

#[test]
fn every_reference_vector_produces_its_id() {
    let dir = tempfile::tempdir().unwrap();
    for (n, (yaml, id)) in VECTORS.iter().enumerate() {
        let path = dir.path().join(format!("v{n}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = stdout(&talext(&["schematic", "id", path.to_str().unwrap()]));
        assert_eq!(out.trim(), *id, "vector {n}: {yaml:?}");
    }
}

#[test]
fn create_from_flags() {
    let out = stdout(&talext(&[
        "schematic",
        "create",
        "--extension",
        "siderolabs/tailscale",
    ]));
    assert_eq!(
        out.trim(),
        "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b"
    );
    let out = stdout(&talext(&[
        "schematic",
        "create",
        "--kernel-arg",
        "noapic",
        "--kernel-arg",
        "nolapic",
    ]));
    assert_eq!(
        out.trim(),
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    let out = stdout(&talext(&[
        "schematic",
        "create",
        "--meta",
        "0xa=foo",
        "-o",
        file.to_str().unwrap(),
    ]));
    assert_eq!(
        out.trim(),
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "customization:\n    meta:\n        - key: 10\n          value: foo\n"
    );
    // The written canonical form hashes to the same ID.
    let again = stdout(&talext(&["schematic", "id", file.to_str().unwrap()]));
    assert_eq!(again.trim(), out.trim());
}

#[test]
fn json_output_mirrors_the_factory_response() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, VECTORS[3].0).unwrap();
    let out = stdout(&talext(&[
        "schematic",
        "id",
        "--json",
        path.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], VECTORS[3].1);
    assert_eq!(
        v["schematic"],
        "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n"
    );
}

#[test]
fn committed_schematic_example_keeps_its_id() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/schematic/tailscale.yaml");
    let out = stdout(&talext(&["schematic", "id", path.to_str().unwrap()]));
    assert_eq!(
        out.trim(),
        "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b"
    );
}

#[test]
fn unknown_keys_fail_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "customization:\n  systemExtensions:\n    extensions: [x]\n",
    )
    .unwrap();
    let o = talext(&["schematic", "id", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:3:"), "{err}");
}
