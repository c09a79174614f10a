//! Signing against the reference registry, checked with independent readers: `talext key
//! generate`, `build --sign` and `talext sign` write cosign simple-signing signatures under
//! `sha256-HEX.sig`; `talext verify` accepts them with the right key and refuses every tampered
//! variant; `openssl` verifies the same signature from the tag's layer and annotation; skopeo
//! reads the tag; an encrypted cosign key file (made here from the format's description) signs
//! with its password from stdin; `copy` carries the tags unless `--no-signatures`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use serde_json::{json, Value};

use talext_kit::payload;
use talext_kit::registry::{sha256, test_index, write_oci_layout, Blob, Registry, TestImage};
use talext_kit::tools::{self, Outcome};

const TALEXT: &str = env!("CARGO_BIN_EXE_talext");

fn talext(args: &[&str]) -> Outcome {
    tools::talext(TALEXT)
        .args(args)
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .run()
}

/// talext with `stdin` on its standard input and extra environment.
fn talext_stdin(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = tools::command(TALEXT);
    cmd.args(args)
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .env_remove("TALEXT_KEY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        line: format!("talext {}", args.join(" ")),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(out: Outcome) -> Outcome {
    if out.code != Some(0) {
        out.fail("expected exit code 0");
    }
    out
}

fn refused(out: Outcome, reason: &str) -> Outcome {
    if out.code != Some(1) {
        out.fail("expected exit code 1");
    }
    assert!(
        out.stderr.contains(reason),
        "wanted `{reason}`: {}",
        out.stderr
    );
    out
}

/// `talext key generate` into `dir/NAME.key` and `dir/NAME.pub`.
fn generate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    ok(talext(&[
        "key",
        "generate",
        "--output-key-prefix",
        prefix.to_str().unwrap(),
    ]));
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

fn tag_of(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

fn skopeo_raw(reference: &str) -> Option<Vec<u8>> {
    let out = tools::skopeo()
        .args(["inspect", "--tls-verify=false", "--raw", reference])
        .run();
    (out.code == Some(0)).then(|| out.stdout.into_bytes())
}

/// Copy a test layout's `tag` into the registry as `repo:tag` and return its digest.
fn push_layout(layout: &Path, tag: &str, dst: &str) -> String {
    let out = ok(talext(&[
        "copy",
        &format!("oci:{}:{tag}", layout.display()),
        dst,
    ]));
    out.stdout.trim().to_string()
}

/// A signature image pulled into a layout by skopeo: (manifest, payload, base64 signature).
fn pull_signature(reference: &str, dir: &Path) -> (Value, Vec<u8>, String) {
    tools::skopeo()
        .args(["copy", "--src-tls-verify=false", reference])
        .arg(format!("oci:{}:sig", dir.display()))
        .ok();
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob =
        |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d["sha256:".len()..])).unwrap();
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layer = &manifest["layers"][0];
    let payload = blob(layer["digest"].as_str().unwrap());
    let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap()
        .to_string();
    (manifest, payload, sig)
}

/// Every file under `dir`, for searching what the registry stored.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The DER of a PEM file's first block.
fn pem_body(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn build_sign_verify_and_independent_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let (key, public) = generate(tmp.path(), "site");
    let (_other_key, other_public) = generate(tmp.path(), "other");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is owner-only");
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    // An existing key is never replaced.
    refused(
        talext(&[
            "key",
            "generate",
            "--output-key-prefix",
            tmp.path().join("site").to_str().unwrap(),
        ]),
        "already exists",
    );

    // `build --sign` into the registry, logging everything.
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let target = format!("docker://{}/talos/tailscale:1.102.5", reg.addr);
    let built = ok(tools::talext(TALEXT)
        .args([
            "build",
            &format!("{}/../extension/tailscale", env!("CARGO_MANIFEST_DIR")),
        ])
        .args(["--source", &format!("tailscale={}", source.display())])
        .args(["--output", &target, "--sign", key.to_str().unwrap()])
        .env("TALEXT_CACHE_DIR", tmp.path().join("cache"))
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("RUST_LOG", "trace")
        .run());
    let (_, digest) = built.stdout.trim().split_once('@').expect("REF@sha256:…");
    let digest = digest.to_string();
    let secret = pem_body(&key);
    let secret_b64 = std::fs::read_to_string(&key).unwrap();
    let secret_line = secret_b64.lines().nth(1).unwrap();
    assert!(
        !built.stderr.contains(secret_line),
        "the private key reached the log"
    );

    // The right key verifies the index; another key is refused with the reason.
    let pinned = format!("{}/talos/tailscale@{digest}", reg.addr);
    let out = ok(talext(&[
        "verify",
        &target,
        "--key",
        public.to_str().unwrap(),
    ]));
    assert_eq!(out.stdout.trim(), pinned);
    ok(talext(&[
        "verify",
        &pinned,
        "--key",
        public.to_str().unwrap(),
    ]));
    let out = ok(talext(&[
        "verify",
        &target,
        "--key",
        public.to_str().unwrap(),
        "--attestation",
        "sbom",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["reference"], pinned.as_str());
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["attestations"], serde_json::json!(["sbom"]));
    // Signing again changes nothing, and `--json` says so for the index and each platform.
    let out = ok(talext(&[
        "sign",
        &target,
        "--key",
        key.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let signatures = v["signatures"].as_array().unwrap();
    assert_eq!(signatures.len(), 3, "{v}");
    assert!(signatures.iter().all(|s| s["changed"] == false), "{v}");
    assert_eq!(signatures[0]["digest"], digest.as_str());
    refused(
        talext(&["verify", &target, "--key", other_public.to_str().unwrap()]),
        "verifies with this key",
    );

    // `validate` and `imager-profile` can require the signature.
    let (pub_s, other_s) = (public.to_str().unwrap(), other_public.to_str().unwrap());
    ok(talext(&["validate", &target, "--require-signature", pub_s]));
    refused(
        talext(&["validate", &target, "--require-signature", other_s]),
        "is not verified",
    );
    let profile = |key: &str| {
        talext(&[
            "imager-profile",
            "--talos-version",
            "v1.13.0",
            "--image",
            &format!("{}/talos/tailscale:1.102.5@{digest}", reg.addr),
            "--require-signature",
            key,
        ])
    };
    assert!(ok(profile(pub_s)).stdout.contains(&digest));
    refused(profile(other_s), "is not verified");

    // The verifier side: the factory's settings and the nodes' policy name the key and the
    // repository, and the policy passes the config linter.
    let factory = ok(talext(&[
        "factory",
        "config",
        "--public-key",
        pub_s,
        "--key-path",
        "/keys/site.pub",
        "--registry",
        &reg.addr,
        "--insecure",
    ]))
    .stdout;
    let factory: Value =
        serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(&factory).unwrap()).unwrap();
    assert_eq!(
        factory["containerSignature"]["publicKeyFile"],
        "/keys/site.pub"
    );
    assert_eq!(factory["containerSignature"]["subjectRegExp"], "");
    assert_eq!(factory["artifacts"]["core"]["registry"], reg.addr.as_str());
    let policy_file = tmp.path().join("verification.yaml");
    ok(talext(&[
        "config",
        "image-verification",
        "--public-key",
        pub_s,
        "--image",
        &format!("{}/talos/tailscale", reg.addr),
        "--image",
        "docker.io/acme/tailscale",
        "--talos-version",
        "v1.13.0",
        "-o",
        policy_file.to_str().unwrap(),
    ]));
    let policy: Value = serde_json::to_value(
        serde_yaml::from_str::<serde_yaml::Value>(&std::fs::read_to_string(&policy_file).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(policy["kind"], "ImageVerificationConfig");
    assert_eq!(
        policy["rules"][0]["image"],
        format!("{}/talos/tailscale", reg.addr)
    );
    assert_eq!(
        policy["rules"][1]["image"],
        "index.docker.io/acme/tailscale"
    );
    assert_eq!(
        policy["rules"][0]["publicKey"]["certificate"],
        std::fs::read_to_string(&public).unwrap()
    );
    ok(talext(&[
        "config",
        "lint",
        "--talos-version",
        "v1.13.0",
        policy_file.to_str().unwrap(),
    ]));
    refused(
        talext(&[
            "config",
            "image-verification",
            "--public-key",
            pub_s,
            "--image",
            "x/y",
            "--talos-version",
            "v1.12.0",
        ]),
        "has no `ImageVerificationConfig`",
    );

    // Each platform manifest is signed too.
    let index: Value =
        serde_json::from_slice(&skopeo_raw(&reg.docker_ref("talos/tailscale:1.102.5")).unwrap())
            .unwrap();
    let children: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!children.is_empty());
    for child in &children {
        ok(talext(&[
            "verify",
            &format!("{}/talos/tailscale@{child}", reg.addr),
            "--key",
            public.to_str().unwrap(),
        ]));
    }

    // skopeo reads the signature tag; openssl verifies its layer and annotation.
    let sig_ref = reg.docker_ref(&format!("talos/tailscale:{}", tag_of(&digest)));
    let raw = skopeo_raw(&sig_ref).expect("skopeo reads the signature tag");
    let (manifest, payload, sig) = pull_signature(&sig_ref, &tmp.path().join("sig-layout"));
    assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap(), manifest);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        format!("{}/talos/tailscale", reg.addr)
    );
    assert_eq!(
        claims["critical"]["type"],
        "cosign container image signature"
    );
    assert_eq!(claims["optional"], Value::Null);
    let payload_file = tmp.path().join("payload");
    let sig_file = tmp.path().join("sig.der");
    std::fs::write(&payload_file, &payload).unwrap();
    std::fs::write(
        &sig_file,
        base64::engine::general_purpose::STANDARD
            .decode(&sig)
            .unwrap(),
    )
    .unwrap();
    let openssl = |pubkey: &Path| {
        std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(pubkey)
            .arg("-signature")
            .arg(&sig_file)
            .arg(&payload_file)
            .output()
            .unwrap()
    };
    let verified = openssl(&public);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("Verified OK"));
    assert!(
        !openssl(&other_public).status.success(),
        "openssl refuses another key"
    );

    // `build --sign` attested each platform's SBOM and the provenance: `verify --attestation`
    // checks both, another key is refused, and an independent reader (skopeo for the tag,
    // openssl over DSSE's pre-authentication encoding) agrees.
    ok(talext(&[
        "verify",
        &target,
        "--key",
        pub_s,
        "--attestation",
        "sbom",
        "--attestation",
        "provenance",
    ]));
    refused(
        talext(&[
            "verify",
            &target,
            "--key",
            pub_s,
            "--attestation",
            "https://example.com/other/v1",
        ]),
        "attestation is missing",
    );
    for child in &children {
        let att_ref = reg.docker_ref(&format!(
            "talos/tailscale:{}",
            tag_of(child).replace(".sig", ".att")
        ));
        let dir = tmp.path().join(format!("att-{}", &child[7..19]));
        tools::skopeo()
            .args(["copy", "--src-tls-verify=false", &att_ref])
            .arg(format!("oci:{}:att", dir.display()))
            .ok();
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let blob =
            |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d["sha256:".len()..])).unwrap();
        let manifest: Value =
            serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap()))
                .unwrap();
        let types: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["annotations"]["predicateType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "https://spdx.dev/Document",
                "https://slsa.dev/provenance/v1"
            ]
        );
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
            let env: Value =
                serde_json::from_slice(&blob(layer["digest"].as_str().unwrap())).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD;
            let statement = b64.decode(env["payload"].as_str().unwrap()).unwrap();
            let ptype = env["payloadType"].as_str().unwrap();
            assert_eq!(ptype, "application/vnd.in-toto+json");
            let mut pae =
                format!("DSSEv1 {} {ptype} {} ", ptype.len(), statement.len()).into_bytes();
            pae.extend_from_slice(&statement);
            std::fs::write(&payload_file, &pae).unwrap();
            std::fs::write(
                &sig_file,
                b64.decode(env["signatures"][0]["sig"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert!(
                openssl(&public).status.success(),
                "openssl verifies the envelope"
            );
            assert!(!openssl(&other_public).status.success());
            let st: Value = serde_json::from_slice(&statement).unwrap();
            assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
            assert_eq!(st["subject"][0]["digest"]["sha256"], &child[7..]);
            match layer["annotations"]["predicateType"].as_str().unwrap() {
                "https://spdx.dev/Document" => {
                    assert!(st["predicate"]["spdxVersion"]
                        .as_str()
                        .unwrap()
                        .starts_with("SPDX-2"))
                }
                _ => {
                    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
                        .as_array()
                        .unwrap();
                    assert!(
                        deps.iter().any(|d| d["name"] == "extension.yaml"),
                        "{deps:?}"
                    );
                    assert!(deps.iter().any(|d| d["name"] == "tailscale"), "{deps:?}");
                }
            }
        }
    }

    // Signing again leaves the tag as it is (deterministic signatures).
    let again = ok(talext(&["sign", &target, "--key", key.to_str().unwrap()]));
    assert!(again.stderr.contains("already signed"), "{}", again.stderr);
    assert_eq!(skopeo_raw(&sig_ref).unwrap(), raw);

    // No stored blob holds the private key.
    for file in all_files(reg.scratch()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, &secret),
            "`{}` holds the private key",
            file.display()
        );
        assert!(
            !contains(&bytes, secret_line.as_bytes()),
            "`{}` holds the private key",
            file.display()
        );
    }
}

/// Push a signature manifest made of `payload` and `signature` under `repo:tag` through a
/// layout (what someone tampering with the registry would do).
fn push_forged(reg: &Registry, dir: &Path, repo: &str, tag: &str, payload: &[u8], signature: &str) {
    let config = Blob::new("application/vnd.oci.image.config.v1+json", b"{}".to_vec());
    let layer = Blob::new(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        payload.to_vec(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(json!({})),
        "layers": [layer.descriptor(json!({"annotations": {"dev.cosignproject.cosign/signature": signature}}))],
    });
    let manifest = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest).unwrap(),
    );
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for b in [&config, &layer, &manifest] {
        std::fs::write(blobs.join(&b.digest["sha256:".len()..]), &b.bytes).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = manifest
        .descriptor(json!({"annotations": {"org.opencontainers.image.ref.name": "forged"}}));
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
    ok(talext(&[
        "copy",
        "--no-signatures",
        &format!("oci:{}:forged", dir.display()),
        &reg.docker_ref(&format!("{repo}:{tag}"))["docker://".len()..],
    ]));
}

#[test]
fn tampered_signatures_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let (key, public) = generate(tmp.path(), "k");
    let (other_key, other_public) = generate(tmp.path(), "o");
    let a = TestImage::new("image a\n", "amd64");
    let b = TestImage::new("image b\n", "amd64");
    let (la, lb) = (tmp.path().join("a"), tmp.path().join("b"));
    write_oci_layout(&la, &[&a], None, "v1");
    write_oci_layout(&lb, &[&b], None, "v1");
    let ref_a = reg.docker_ref("t/x:a");
    let ref_b = reg.docker_ref("t/x:b");
    let da = push_layout(&la, "v1", &ref_a);
    let db = push_layout(&lb, "v1", &ref_b);
    let pubkey = public.to_str().unwrap();

    // Unsigned.
    refused(talext(&["verify", &ref_a, "--key", pubkey]), "no signature");

    // Signed by another key only, then by both: each key finds its own signature.
    ok(talext(&[
        "sign",
        &ref_a,
        "--key",
        other_key.to_str().unwrap(),
    ]));
    refused(
        talext(&["verify", &ref_a, "--key", pubkey]),
        "verifies with this key",
    );
    ok(talext(&["sign", &ref_a, "--key", key.to_str().unwrap()]));
    ok(talext(&["verify", &ref_a, "--key", pubkey]));
    ok(talext(&[
        "verify",
        &ref_a,
        "--key",
        other_public.to_str().unwrap(),
    ]));
    ok(talext(&[
        "sign",
        &format!("{}/t/x@{db}", reg.addr),
        "--key",
        key.to_str().unwrap(),
    ]));

    // The signature of another image, copied under this image's tag.
    let (_, payload_b, sig_b) = pull_signature(
        &reg.docker_ref(&format!("t/x:{}", tag_of(&db))),
        &tmp.path().join("sig-b"),
    );
    push_forged(
        &reg,
        &tmp.path().join("f1"),
        "t/x",
        &tag_of(&da),
        &payload_b,
        &sig_b,
    );
    refused(
        talext(&["verify", &ref_a, "--key", pubkey]),
        &format!("covers `{db}`"),
    );

    // A payload with one byte flipped (its layer digest updated to match).
    let mut flipped = payload_b.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    push_forged(
        &reg,
        &tmp.path().join("f2"),
        "t/x",
        &tag_of(&db),
        &flipped,
        &sig_b,
    );
    refused(
        talext(&["verify", &ref_b, "--key", pubkey]),
        "verifies with this key",
    );

    // A payload naming this image, signed by nobody's key (garbage signature).
    let payload_a = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}/t/x"}},"image":{{"docker-manifest-digest":"{da}"}},"type":"cosign container image signature"}},"optional":null}}"#,
        reg.addr
    );
    push_forged(
        &reg,
        &tmp.path().join("f3"),
        "t/x",
        &tag_of(&da),
        payload_a.as_bytes(),
        &sig_b,
    );
    refused(
        talext(&["verify", &ref_a, "--key", pubkey]),
        "verifies with this key",
    );
    assert_eq!(sha256(payload_a.as_bytes()).len(), 71);
}

/// A cosign `ENCRYPTED SIGSTORE PRIVATE KEY` made from the format's description: the PKCS#8
/// DER key sealed with NaCl secretbox under a key derived by scrypt (N=32768, r=8, p=1) from
/// the password, as JSON, as PEM.
fn cosign_key(dir: &Path, password: &str) -> (PathBuf, PathBuf) {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let der = dir.join("plain.der");
    let public = dir.join("cosign.pub");
    let sec1 = dir.join("plain.sec1");
    talext_kit::registry::run(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-outform",
            "DER",
            "-out",
            sec1.to_str().unwrap(),
        ],
    );
    // openssl writes DER keys in SEC 1 form; cosign seals PKCS#8.
    talext_kit::registry::run(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-inform",
            "DER",
            "-in",
            sec1.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&sec1).unwrap();
    talext_kit::registry::run(
        "openssl",
        &[
            "pkey",
            "-inform",
            "DER",
            "-in",
            der.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    let plain = std::fs::read(&der).unwrap();
    std::fs::remove_file(&der).unwrap();
    let salt = [7u8; 32];
    let nonce = [9u8; 24];
    let mut key = [0u8; 32];
    scrypt::scrypt(
        password.as_bytes(),
        &salt,
        &scrypt::Params::new(15, 8, 1).unwrap(),
        &mut key,
    )
    .unwrap();
    let sealed = crypto_secretbox::XSalsa20Poly1305::new((&key).into())
        .encrypt((&nonce).into(), plain.as_slice())
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = json!({
        "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64.encode(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64.encode(nonce)},
        "ciphertext": b64.encode(&sealed),
    });
    let encoded = b64.encode(serde_json::to_vec(&body).unwrap());
    let mut pem = String::from("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n");
    let path = dir.join("cosign.key");
    std::fs::write(&path, pem).unwrap();
    (path, public)
}

#[test]
fn an_encrypted_cosign_key_signs_with_its_password_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let password = "correct horse battery staple";
    let (key, public) = cosign_key(tmp.path(), password);
    let img = TestImage::new("cosign key\n", "arm64");
    let layout = tmp.path().join("img");
    write_oci_layout(&layout, &[&img], None, "v1");
    let target = reg.docker_ref("c/img:v1");
    push_layout(&layout, "v1", &target);
    let k = key.to_str().unwrap();

    // No password, then a wrong one: refused, and the password never shown.
    refused(
        talext_stdin(&["sign", &target, "--key", k], "", &[]),
        "is encrypted and no password was given",
    );
    let wrong = refused(
        talext_stdin(
            &["sign", &target, "--key", k, "--key-password-stdin"],
            "hunter2\n",
            &[("RUST_LOG", "trace")],
        ),
        "cannot decrypt",
    );
    assert!(!wrong.stderr.contains("hunter2"));
    refused(
        talext(&["verify", &target, "--key", public.to_str().unwrap()]),
        "no signature",
    );

    let signed = ok(talext_stdin(
        &["sign", &target, "--key", k, "--key-password-stdin"],
        &format!("{password}\n"),
        &[("RUST_LOG", "trace")],
    ));
    assert!(!signed.stderr.contains(password));
    ok(talext(&[
        "verify",
        &target,
        "--key",
        public.to_str().unwrap(),
    ]));
    // The password in the environment works too.
    ok(talext_stdin(
        &["sign", &target, "--key", k],
        "",
        &[("TALEXT_KEY_PASSWORD", password)],
    ));
}

#[test]
fn copy_carries_signatures_unless_told_not_to() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let (key, public) = generate(tmp.path(), "k");
    let pubkey = public.to_str().unwrap();
    let amd = TestImage::new("carry amd64\n", "amd64");
    let arm = TestImage::new("carry arm64\n", "arm64");
    let index = test_index(&[&amd, &arm]);
    let layout = tmp.path().join("src");
    write_oci_layout(&layout, &[&amd, &arm], Some(&index), "v1");
    let src = reg.docker_ref("carry/src:v1");
    let digest = push_layout(&layout, "v1", &src);
    assert_eq!(digest, index.digest);
    ok(talext(&["sign", &src, "--key", key.to_str().unwrap()]));
    let predicate = tmp.path().join("predicate.json");
    std::fs::write(
        &predicate,
        br#"{"buildDefinition":{"buildType":"urn:test"}}"#,
    )
    .unwrap();
    let attested = ok(talext(&[
        "attest",
        &src,
        "--key",
        key.to_str().unwrap(),
        "--type",
        "provenance",
        "--predicate",
        predicate.to_str().unwrap(),
    ]));
    assert!(
        attested.stdout.trim().ends_with(".att"),
        "{}",
        attested.stdout
    );
    let digests = [
        index.digest.clone(),
        amd.manifest.digest.clone(),
        arm.manifest.digest.clone(),
    ];
    let sig_of =
        |repo: &str, d: &str| skopeo_raw(&reg.docker_ref(&format!("{repo}:{}", tag_of(d))));

    // Registry to registry: every signature tag arrives, bytes unchanged, and still verifies.
    let out = ok(talext(&["copy", &src, &reg.docker_ref("carry/dst:v1")]));
    assert_eq!(out.stdout.trim(), index.digest);
    for d in &digests {
        assert_eq!(
            sig_of("carry/dst", d).expect("carried"),
            sig_of("carry/src", d).unwrap()
        );
    }
    ok(talext(&[
        "verify",
        &reg.docker_ref("carry/dst:v1"),
        "--key",
        pubkey,
        "--attestation",
        "provenance",
    ]));

    // `--no-signatures` drops them.
    ok(talext(&[
        "copy",
        "--no-signatures",
        &src,
        &reg.docker_ref("carry/bare:v1"),
    ]));
    for d in &digests {
        assert!(sig_of("carry/bare", d).is_none());
    }
    refused(
        talext(&["verify", &reg.docker_ref("carry/bare:v1"), "--key", pubkey]),
        "no signature",
    );
    assert!(skopeo_raw(&reg.docker_ref(&format!(
        "carry/bare:{}",
        tag_of(&index.digest).replace(".sig", ".att")
    )))
    .is_none());

    // Into a layout (tagged `sha256-HEX.sig` there) and back out to another registry repository.
    let out_dir = tmp.path().join("out");
    ok(talext(&[
        "copy",
        &src,
        &format!("oci:{}:v1", out_dir.display()),
    ]));
    let idx: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    for d in &digests {
        assert!(names.contains(&tag_of(d).as_str()), "{names:?}");
    }
    // A layout is verified where it lies.
    ok(talext(&[
        "verify",
        &format!("oci:{}:v1", out_dir.display()),
        "--key",
        pubkey,
    ]));
    ok(talext(&[
        "copy",
        &format!("oci:{}:v1", out_dir.display()),
        &reg.docker_ref("carry/back:v1"),
    ]));
    ok(talext(&[
        "verify",
        &reg.docker_ref("carry/back:v1"),
        "--key",
        pubkey,
    ]));
    assert_eq!(
        sig_of("carry/back", &index.digest).unwrap(),
        sig_of("carry/src", &index.digest).unwrap()
    );

    // Through an oci-archive (the air-gap hop): in, appended beside another image, and out to a
    // registry where every signature still verifies; skopeo reads the signature tag in it.
    let archive = tmp.path().join("carry.tar");
    let other = tmp.path().join("other");
    let lone = TestImage::new("another image\n", "amd64");
    write_oci_layout(&other, &[&lone], None, "other");
    ok(talext(&[
        "copy",
        &format!("oci:{}:other", other.display()),
        &format!("oci-archive:{}:other", archive.display()),
    ]));
    ok(talext(&[
        "copy",
        &src,
        &format!("oci-archive:{}:v1", archive.display()),
    ]));
    let sig_in_archive = skopeo_raw(&format!(
        "oci-archive:{}:{}",
        archive.display(),
        tag_of(&index.digest)
    ))
    .expect("skopeo reads the signature tag in the archive");
    assert_eq!(sig_in_archive, sig_of("carry/src", &index.digest).unwrap());
    ok(talext(&[
        "verify",
        &format!("oci-archive:{}:v1", archive.display()),
        "--key",
        pubkey,
        "--attestation",
        "provenance",
    ]));
    ok(talext(&[
        "copy",
        &format!("oci-archive:{}:v1", archive.display()),
        &reg.docker_ref("carry/offline:v1"),
    ]));
    for d in &digests {
        assert_eq!(
            sig_of("carry/offline", d).expect("carried through the archive"),
            sig_of("carry/src", d).unwrap()
        );
    }
    ok(talext(&[
        "verify",
        &reg.docker_ref("carry/offline:v1"),
        "--key",
        pubkey,
    ]));
    // The other image in the archive kept its tag.
    ok(talext(&[
        "inspect",
        &format!("oci-archive:{}:other", archive.display()),
    ]));
}

#[test]
fn referrers_are_pushed_with_the_tag_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let (key, public) = generate(tmp.path(), "k");
    let (other, _) = generate(tmp.path(), "o");
    let amd = TestImage::new("referrers amd64\n", "amd64");
    let arm = TestImage::new("referrers arm64\n", "arm64");
    let index = test_index(&[&amd, &arm]);
    let layout = tmp.path().join("src");
    write_oci_layout(&layout, &[&amd, &arm], Some(&index), "v1");
    let target = reg.docker_ref("ref/img:v1");
    push_layout(&layout, "v1", &target);
    ok(talext(&[
        "sign",
        "--referrers",
        &target,
        "--key",
        key.to_str().unwrap(),
    ]));
    ok(talext(&[
        "verify",
        &target,
        "--key",
        public.to_str().unwrap(),
    ]));

    // Debian's registry has no referrers API: the `sha256-HEX` tag holds the referrers index.
    let fallback = |d: &str| reg.docker_ref(&format!("ref/img:{}", d.replace(':', "-")));
    for d in [&index.digest, &amd.manifest.digest, &arm.manifest.digest] {
        let raw = skopeo_raw(&fallback(d)).expect("the referrers tag exists");
        let refs: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(refs["mediaType"], "application/vnd.oci.image.index.v1+json");
        let entries = refs["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{refs}");
        assert_eq!(
            entries[0]["artifactType"],
            "application/vnd.dev.cosign.artifact.sig.v1+json"
        );
        let referrer = entries[0]["digest"].as_str().unwrap();
        let m: Value = serde_json::from_slice(
            &skopeo_raw(&format!("docker://{}/ref/img@{referrer}", reg.addr)).unwrap(),
        )
        .unwrap();
        assert_eq!(m["subject"]["digest"], d.as_str());
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        // The same payload and signature as the `.sig` tag's.
        let sig: Value = serde_json::from_slice(
            &skopeo_raw(&reg.docker_ref(&format!("ref/img:{}", tag_of(d)))).unwrap(),
        )
        .unwrap();
        assert_eq!(m["layers"][0], sig["layers"][0]);
    }

    // Again: nothing changes. Another key: a second referrer beside the first.
    let before = skopeo_raw(&fallback(&index.digest)).unwrap();
    ok(talext(&[
        "sign",
        "--referrers",
        &target,
        "--key",
        key.to_str().unwrap(),
    ]));
    assert_eq!(skopeo_raw(&fallback(&index.digest)).unwrap(), before);
    ok(talext(&[
        "sign",
        "--referrers",
        &target,
        "--key",
        other.to_str().unwrap(),
    ]));
    let refs: Value =
        serde_json::from_slice(&skopeo_raw(&fallback(&index.digest)).unwrap()).unwrap();
    assert_eq!(refs["manifests"].as_array().unwrap().len(), 2, "{refs}");

    // `copy` carries the referrers: the tag index arrives unchanged, with every referrer it
    // lists, through an archive and into another repository.
    let archive = tmp.path().join("referrers.tar");
    ok(talext(&[
        "copy",
        &target,
        &format!("oci-archive:{}:v1", archive.display()),
    ]));
    let copied = reg.docker_ref("ref/copied:v1");
    ok(talext(&[
        "copy",
        &format!("oci-archive:{}:v1", archive.display()),
        &copied,
    ]));
    let tag = tag_of(&index.digest).replace(".sig", "");
    let moved =
        skopeo_raw(&reg.docker_ref(&format!("ref/copied:{tag}"))).expect("the referrers tag");
    assert_eq!(moved, skopeo_raw(&fallback(&index.digest)).unwrap());
    for e in refs["manifests"].as_array().unwrap() {
        let d = e["digest"].as_str().unwrap();
        assert!(
            skopeo_raw(&format!("docker://{}/ref/copied@{d}", reg.addr)).is_some(),
            "referrer `{d}` arrived"
        );
    }
}

#[test]
fn signed_images_cross_the_gap_in_a_bundle_and_are_resigned_with_the_site_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (online, site) = (Registry::plain(), Registry::plain());
    let (key, public) = generate(tmp.path(), "vendor");
    let (site_key, site_public) = generate(tmp.path(), "site");
    let (_, other_public) = generate(tmp.path(), "other");
    let (pub_s, site_pub_s) = (public.to_str().unwrap(), site_public.to_str().unwrap());
    let amd = TestImage::new("gap amd64\n", "amd64");
    let arm = TestImage::new("gap arm64\n", "arm64");
    let index = test_index(&[&amd, &arm]);
    let layout = tmp.path().join("src");
    write_oci_layout(&layout, &[&amd, &arm], Some(&index), "v1");
    let src = format!("{}/acme/ext:v1", online.addr);
    push_layout(&layout, "v1", &format!("docker://{src}"));
    ok(talext(&["sign", &src, "--key", key.to_str().unwrap()]));
    let predicate = tmp.path().join("provenance.json");
    std::fs::write(
        &predicate,
        br#"{"buildDefinition":{"buildType":"urn:test"}}"#,
    )
    .unwrap();
    ok(talext(&[
        "attest",
        &src,
        "--key",
        key.to_str().unwrap(),
        "--type",
        "provenance",
        "--predicate",
        predicate.to_str().unwrap(),
    ]));

    // The bundle carries the signatures of the index and of each platform, and the attestation.
    let bundle = tmp.path().join("gap.tar");
    let created = ok(talext(&[
        "bundle",
        "create",
        &src,
        "-o",
        bundle.to_str().unwrap(),
    ]));
    for d in [&index.digest, &amd.manifest.digest, &arm.manifest.digest] {
        assert!(
            created.stdout.contains(&format!("acme/ext:{}", tag_of(d))),
            "{}",
            created.stdout
        );
    }
    assert!(created
        .stdout
        .contains(&tag_of(&index.digest).replace(".sig", ".att")));
    let b = bundle.to_str().unwrap();
    ok(talext(&[
        "bundle",
        "verify",
        b,
        "--key",
        pub_s,
        "--attestation",
        "provenance",
    ]));
    refused(
        talext(&[
            "bundle",
            "verify",
            b,
            "--key",
            other_public.to_str().unwrap(),
        ]),
        "not verified by the key",
    );
    refused(
        talext(&[
            "bundle",
            "verify",
            b,
            "--key",
            pub_s,
            "--attestation",
            "sbom",
        ]),
        "no attestation",
    );
    // `--no-signatures` leaves them out.
    let bare = tmp.path().join("bare.tar");
    let out = ok(talext(&[
        "bundle",
        "create",
        "--no-signatures",
        &src,
        "-o",
        bare.to_str().unwrap(),
    ]));
    assert!(!out.stdout.contains(".sig"), "{}", out.stdout);
    refused(
        talext(&["bundle", "verify", bare.to_str().unwrap(), "--key", pub_s]),
        "no signature",
    );

    // Pushed into the site registry and re-signed there with the site's key: the site key
    // verifies every image under its new name, the vendor's signature still does, and the
    // digests are the source's.
    let pushed = ok(tools::talext(TALEXT)
        .args(["bundle", "push", b, &format!("{}/mirror", site.addr)])
        .args(["--resign", site_key.to_str().unwrap()])
        .run());
    assert!(pushed.stderr.contains("re-signed"), "{}", pushed.stderr);
    let there = format!("{}/mirror/acme/ext:v1", site.addr);
    let out = ok(talext(&["verify", &there, "--key", site_pub_s]));
    assert!(out.stdout.trim().ends_with(&index.digest), "{}", out.stdout);
    for child in [&amd.manifest.digest, &arm.manifest.digest] {
        ok(talext(&[
            "verify",
            &format!("{}/mirror/acme/ext@{child}", site.addr),
            "--key",
            site_pub_s,
        ]));
    }
    ok(talext(&[
        "verify",
        &there,
        "--key",
        pub_s,
        "--attestation",
        "provenance",
    ]));
    refused(
        talext(&["verify", &there, "--key", other_public.to_str().unwrap()]),
        "verifies with this key",
    );
    // Re-signing is deterministic: a second push changes nothing.
    let sig_ref = format!(
        "docker://{}/mirror/acme/ext:{}",
        site.addr,
        tag_of(&index.digest)
    );
    let before = skopeo_raw(&sig_ref).unwrap();
    ok(tools::talext(TALEXT)
        .args(["bundle", "push", b, &format!("{}/mirror", site.addr)])
        .args(["--resign", site_key.to_str().unwrap()])
        .run());
    assert_eq!(skopeo_raw(&sig_ref).unwrap(), before);
}
