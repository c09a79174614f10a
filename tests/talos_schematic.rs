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

/// Every case of the conformance set (1000 realistic schematics with the IDs the factory gives,
/// computed with its own types and go-yaml v4 rc.6): each must get that ID, or be refused where
/// the factory refuses (`id: null`).
#[test]
fn conformance_set_matches_the_factory() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/schematic/schematic-ids.json");
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = set["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1000);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input = case["input"].as_str().unwrap();
        let got = talext::talos::schematic::Schematic::parse(input, name).and_then(|s| s.id());
        match (case["id"].as_str(), got) {
            (Some(want), Ok(id)) if id == want => {}
            (None, Err(_)) => {}
            (want, got) => failures.push(format!(
                "{name}: want {want:?}, got {:?}\n{input}",
                got.map_err(|e| e.to_string())
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} match; first failures:\n{}",
        cases.len() - failures.len(),
        cases.len(),
        failures[..failures.len().min(15)].join("\n")
    );
}

const EMPTY_ID: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

fn id_of_input(input: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, input).unwrap();
    let mut args = vec!["schematic", "id"];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    talext(&args)
}

/// One minimal input per way talext used to differ from the factory (go-yaml v4 rc.6 decoding
/// into the factory's types, then `yaml.Marshal`), each with the factory's ID.
#[test]
fn odd_inputs_get_the_factory_id() {
    let cases: &[(&str, &str)] = &[
        // An explicit default is kept: `enrollKeys` is a plain omitempty string.
        (
            "customization: {secureboot: {enrollKeys: if-safe}}\n",
            "8bbda22c237bab0fd95b91d4b9022e62e0f1b9f75f8f1e62f6eaa4eecc337ff6",
        ),
        // YAML 1.1 booleans are single-quoted by the v4 representer.
        (
            "customization: {secureboot: {enrollKeys: \"off\"}}\n",
            "d8f665fc030589c746e0948aacb3f6009984ffe16082f5f286cfa0ce6213cdfe",
        ),
        (
            "customization: {extraKernelArgs: [\"yes\"]}\n",
            "63c43708a9d1973743adc0ad11d2de292a3fe9135b52df5d52118992c05ad216",
        ),
        // A null list item is dropped.
        (
            "customization: {extraKernelArgs: [a, ~]}\n",
            "b768f3ce41d4c6a93b0b20f96413eb41e9ba05148ddc4bde45beed428ce27cba",
        ),
        // `012` is octal for go-yaml: key 10.
        (
            "customization: {meta: [{key: 012, value: x}]}\n",
            "ab79d5ec02d6e5ff5f458d535dc7395bf3f889205b1c1f69b2fe5151e19af367",
        ),
        // A leading line break: a literal block without an indentation hint.
        (
            "customization: {extraKernelArgs: [\"\\nx\"]}\n",
            "3edf825730e86db346595570a0597649a206359e29d487426a5bcadc439dfecb",
        ),
        // The bootloader enum is read case-insensitively; `none` is its zero value.
        ("customization: {bootloader: none}\n", EMPTY_ID),
        (
            // customization:\n    bootloader: grub\n
            "customization: {bootloader: GRUB}\n",
            "39d496b2cbdb6265d3b714514c5334bf010f1b4d31b23b9e38c80fb2f3ad7ecb",
        ),
        (
            // Duplicates and empty names are stored as given.
            "customization: {systemExtensions: {officialExtensions: [siderolabs/tailscale, siderolabs/tailscale, \"\"]}}\n",
            "e39a31c41d4771fc91e2644911f6fb3c840bd7e29555a4386b60112c461ce620",
        ),
        (
            // Any `enrollKeys` string is stored; the factory checks it only when building.
            "customization: {secureboot: {enrollKeys: maybe}}\n",
            "df805582332a539e7ccacd05ded3ba8f3da07a9fb8367e5b76933b328d42f8f4",
        ),
        // A byte order mark is dropped, as go-yaml's reader drops it.
        ("\u{feff}customization: {}\n", EMPTY_ID),
        // With several documents the first is decoded.
        (
            "customization: {extraKernelArgs: [noapic, nolapic]}\n---\nowner: someone\nbogus: 1\n",
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
        ),
    ];
    for (input, want) in cases {
        let out = stdout(&id_of_input(input, &[]));
        assert_eq!(out.trim(), *want, "input {input:?}");
    }
}

#[test]
fn inputs_the_factory_refuses_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("customization: {bootloader: auto}\n", "auto"),
        ("customization: {bootloader: \"\"}\n", "BootloaderKind"),
        ("owner: alice\n", "owner"),
        ("", "EOF"),
        ("# only a comment\n", "EOF"),
        ("customization: {meta: [{key: 256, value: x}]}\n", "uint8"),
        (
            "customization: {extraKernelArgs: [2024-01-02]}\n",
            "timestamp",
        ),
        (
            "customization: {secureboot: {}, secureboot: {}}\n",
            "already defined",
        ),
    ];
    for (input, needle) in cases {
        let o = id_of_input(input, &[]);
        assert_eq!(o.status.code(), Some(1), "input {input:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "input {input:?}: {err}");
    }
}

#[test]
fn enterprise_accepts_an_owner() {
    let out = stdout(&id_of_input("owner: alice\n", &["--enterprise"]));
    // owner: alice\ncustomization: {}\n
    assert_eq!(
        out.trim(),
        "325e789382e85e76ab77e38cb320a816e2c9550cb5afe960b21f75e06605e2e9"
    );
}
