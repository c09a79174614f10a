//! From build to boot media: `talext build --receipt` (stand-in payload: the static busybox
//! under the names of the Tailscale binaries) feeds `imager-profile` and `catalog build`, for a
//! registry, an OCI layout and a plain tar output.

use std::path::Path;
use std::process::Output;

fn talext(args: &[&str]) -> Output {
    talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(args)
        .output()
        .expect("run talext")
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn payload(dir: &Path) -> String {
    let bin = dir.join("src/amd64/usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for b in ["containerboot", "tailscale", "tailscaled"] {
        std::fs::copy("/bin/busybox", bin.join(b)).unwrap();
    }
    // The nft iptables backend the definition's `links` point at.
    let sbin = dir.join("src/amd64/sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    std::fs::copy("/bin/busybox", sbin.join("xtables-nft-multi")).unwrap();
    format!("tailscale={}/src/{{arch}}", dir.display())
}

fn build(source: &str, output: &str, receipt: &Path) -> serde_json::Value {
    let def = Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/tailscale");
    ok(talext(&[
        "build",
        def.to_str().unwrap(),
        "--platform",
        "linux/amd64",
        "--source",
        source,
        "-o",
        output,
        "--receipt",
        receipt.to_str().unwrap(),
    ]));
    serde_json::from_str(&std::fs::read_to_string(receipt).unwrap()).unwrap()
}

fn profile(receipt: &Path) -> serde_yaml::Value {
    let out = ok(talext(&[
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "--receipt",
        receipt.to_str().unwrap(),
    ]));
    serde_yaml::from_str(&out).unwrap()
}

#[test]
fn registry_build_is_pinned_in_profile_and_catalog() {
    let reg = talext_kit::registry::Registry::plain();
    let tmp = tempfile::tempdir().unwrap();
    let src = payload(tmp.path());
    let receipt = tmp.path().join("receipt.json");
    let r = build(&src, &reg.docker_ref("talos/tailscale:1.102.5"), &receipt);
    let digest = r["digest"].as_str().unwrap();
    let p = profile(&receipt);
    assert_eq!(
        p["input"]["systemExtensions"][0]["imageRef"],
        format!("{}/talos/tailscale@{digest}", reg.addr)
    );
    let cat = tmp.path().join("catalog");
    ok(talext(&[
        "catalog",
        "build",
        "--receipt",
        receipt.to_str().unwrap(),
        "-o",
        &format!("dir:{}", cat.display()),
    ]));
    let lines = std::fs::read_to_string(cat.join("image-digests")).unwrap();
    assert_eq!(
        lines,
        format!("{}/talos/tailscale:1.102.5@{digest}\n", reg.addr)
    );
}

#[test]
fn local_builds_become_oci_and_tarball_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload(tmp.path());
    let layout = tmp.path().join("layout");
    let receipt = tmp.path().join("oci.json");
    build(&src, &format!("oci:{}:1.102.5", layout.display()), &receipt);
    assert_eq!(
        profile(&receipt)["input"]["systemExtensions"][0]["ociPath"],
        layout.to_str().unwrap()
    );

    let tar = tmp.path().join("tailscale.tar");
    let receipt = tmp.path().join("tar.json");
    build(&src, &format!("tar:{}", tar.display()), &receipt);
    assert_eq!(
        profile(&receipt)["input"]["systemExtensions"][0]["tarballPath"],
        tar.to_str().unwrap()
    );
}
