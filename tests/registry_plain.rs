//! The registry client against the reference registry over plain HTTP on 127.0.0.1: what talext
//! pushes is read back by skopeo and unpacked by umoci; what skopeo pushes is read by talext.

use std::time::Duration;

use talext::registry::{
    BlobSource, PushOutcome, RegistryClient, RegistryOptions, RetryPolicy, UploadMode,
};
use talext::ExitKind;
use talext_kit::registry::{run, sha256, test_index, write_oci_layout, Blob, Registry, TestImage};

fn client(reg: &Registry) -> RegistryClient {
    RegistryClient::new(&RegistryOptions::default(), &reg.addr).unwrap()
}

fn push_image(c: &RegistryClient, repo: &str, img: &TestImage) {
    for blob in [&img.layer, &img.config] {
        let size = blob.bytes.len() as u64;
        c.push_blob(
            repo,
            &blob.digest,
            size,
            BlobSource::Bytes(&blob.bytes),
            None,
        )
        .unwrap();
    }
    let digest = c
        .put_manifest(
            repo,
            &img.manifest.digest,
            &img.manifest.bytes,
            &img.manifest.media_type,
        )
        .unwrap();
    assert_eq!(digest, img.manifest.digest);
}

#[test]
fn pushed_index_is_read_back_by_skopeo_and_unpacked_by_umoci() {
    let reg = Registry::plain();
    let c = client(&reg);
    let amd = TestImage::new("hello from amd64\n", "amd64");
    let arm = TestImage::new("hello from arm64\n", "arm64");

    // The first layer streams from a file; pushing it again finds it present.
    let layer_file = reg.scratch().join("layer.tar.gz");
    std::fs::write(&layer_file, &amd.layer.bytes).unwrap();
    let size = amd.layer.bytes.len() as u64;
    let pushed = c
        .push_blob(
            "ext/hello",
            &amd.layer.digest,
            size,
            BlobSource::Path(&layer_file),
            None,
        )
        .unwrap();
    assert_eq!(pushed, PushOutcome::Uploaded);
    let again = c
        .push_blob(
            "ext/hello",
            &amd.layer.digest,
            size,
            BlobSource::Path(&layer_file),
            None,
        )
        .unwrap();
    assert_eq!(again, PushOutcome::Existed);
    assert_eq!(
        c.blob_exists("ext/hello", &amd.layer.digest).unwrap(),
        Some(size)
    );

    push_image(&c, "ext/hello", &amd);
    push_image(&c, "ext/hello", &arm);
    let index = test_index(&[&amd, &arm]);
    let digest = c
        .put_manifest("ext/hello", "v1", &index.bytes, &index.media_type)
        .unwrap();
    assert_eq!(digest, index.digest);

    // skopeo sees exactly our bytes, for the index and for each child.
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &reg.docker_ref("ext/hello:v1"),
        ],
    );
    assert_eq!(raw, index.bytes);
    let by_digest = reg.docker_ref(&format!("ext/hello@{}", arm.manifest.digest));
    assert_eq!(
        run(
            "skopeo",
            &["inspect", "--tls-verify=false", "--raw", &by_digest]
        ),
        arm.manifest.bytes
    );

    // skopeo copies the whole index without changing a digest.
    let layout = reg.scratch().join("layout");
    let dest = format!("oci:{}:v1", layout.display());
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &reg.docker_ref("ext/hello:v1"),
            &dest,
        ],
    );
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index_json["manifests"][0]["digest"], index.digest.as_str());

    // One platform copied out and unpacked by umoci has our file.
    let single = reg.scratch().join("arm");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--override-arch",
            "arm64",
            "--override-os",
            "linux",
            &reg.docker_ref("ext/hello:v1"),
            &format!("oci:{}:arm", single.display()),
        ],
    );
    let bundle = reg.scratch().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:arm", single.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
        "hello from arm64\n"
    );
}

#[test]
fn reads_what_skopeo_pushed() {
    let reg = Registry::plain();
    let c = client(&reg);
    let img = TestImage::new("pushed by skopeo\n", "amd64");
    let layout = reg.scratch().join("src");
    write_oci_layout(&layout, &[&img], None, "v2");
    run(
        "skopeo",
        &[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:v2", layout.display()),
            &reg.docker_ref("from/skopeo:v2"),
        ],
    );

    let m = c.get_manifest("from/skopeo", "v2", &[]).unwrap();
    assert_eq!(m.digest, img.manifest.digest);
    assert_eq!(m.bytes, img.manifest.bytes);
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        c.get_manifest("from/skopeo", &img.manifest.digest, &[])
            .unwrap(),
        m
    );
    assert_eq!(
        c.manifest_digest("from/skopeo", "v2", &[]).unwrap(),
        Some(img.manifest.digest.clone())
    );

    for blob in [&img.layer, &img.config] {
        let size = blob.bytes.len() as u64;
        assert_eq!(
            c.blob_exists("from/skopeo", &blob.digest).unwrap(),
            Some(size)
        );
        let dest = reg.scratch().join("out").join(&blob.digest[7..]);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        c.fetch_blob("from/skopeo", &blob.digest, Some(size), &dest)
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), blob.bytes);
    }

    // A size that disagrees with the blob is caught, and nothing is left at the destination.
    let dest = reg.scratch().join("wrong-size");
    let quick = RegistryOptions {
        retry: RetryPolicy {
            max_retries: 1,
            initial_delay: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        ..RegistryOptions::default()
    };
    let c2 = RegistryClient::new(&quick, &reg.addr).unwrap();
    let err = c2
        .fetch_blob("from/skopeo", &img.layer.digest, Some(1), &dest)
        .unwrap_err();
    assert!(err.to_string().contains("expected 1"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn mounts_across_repositories_and_uploads_in_chunks() {
    let reg = Registry::plain();
    let options = RegistryOptions {
        upload: UploadMode::Chunked { chunk_size: 1000 },
        ..RegistryOptions::default()
    };
    let c = RegistryClient::new(&options, &reg.addr).unwrap();
    let bytes: Vec<u8> = (0..10_500u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let blob = Blob::new("application/octet-stream", bytes);
    let size = blob.bytes.len() as u64;
    let push = |repo: &str, from: Option<&str>| {
        c.push_blob(
            repo,
            &blob.digest,
            size,
            BlobSource::Bytes(&blob.bytes),
            from,
        )
        .unwrap()
    };

    assert_eq!(push("a/one", None), PushOutcome::Uploaded);
    let dest = reg.scratch().join("chunked");
    c.fetch_blob("a/one", &blob.digest, Some(size), &dest)
        .unwrap();
    assert_eq!(sha256(&std::fs::read(&dest).unwrap()), blob.digest);

    assert_eq!(push("b/two", Some("a/one")), PushOutcome::Mounted);
    assert_eq!(push("b/two", Some("a/one")), PushOutcome::Existed);
    // The source lacks the blob: the registry answers 202 and the client uploads into that session.
    let other = Blob::new("application/octet-stream", b"not in a/one".to_vec());
    let outcome = c
        .push_blob(
            "c/three",
            &other.digest,
            other.bytes.len() as u64,
            BlobSource::Bytes(&other.bytes),
            Some("a/one"),
        )
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        c.blob_exists("c/three", &other.digest).unwrap(),
        Some(other.bytes.len() as u64)
    );
}

#[test]
fn unknown_names_and_incomplete_manifests_are_user_errors() {
    let reg = Registry::plain();
    let c = client(&reg);
    let err = c.get_manifest("nothing/here", "v1", &[]).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_kind(), ExitKind::User, "{text}");
    for part in [
        reg.addr.as_str(),
        "nothing/here",
        "get manifest v1",
        "UNKNOWN",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert_eq!(c.manifest_digest("nothing/here", "v1", &[]).unwrap(), None);

    // A manifest whose blobs are absent is refused before the tag is written.
    let img = TestImage::new("never pushed\n", "amd64");
    let err = c
        .put_manifest(
            "half/done",
            "v1",
            &img.manifest.bytes,
            &img.manifest.media_type,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains(&img.config.digest) || err.to_string().contains(&img.layer.digest),
        "{err}"
    );
    assert_eq!(c.manifest_digest("half/done", "v1", &[]).unwrap(), None);

    // A digest reference that does not match the bytes is refused too.
    let other = TestImage::new("other\n", "amd64");
    let err = c
        .put_manifest(
            "half/done",
            &other.manifest.digest,
            &img.manifest.bytes,
            &img.manifest.media_type,
        )
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn unreachable_registry_is_an_environment_error() {
    let port = talext_kit::registry::free_port();
    let options = RegistryOptions {
        retry: RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        ..RegistryOptions::default()
    };
    let addr = format!("127.0.0.1:{port}");
    let c = RegistryClient::new(&options, &addr).unwrap();
    let err = c.get_manifest("a/b", "v1", &[]).unwrap_err();
    assert_eq!(err.exit_kind(), ExitKind::Environment);
    let text = err.to_string();
    // Nothing listens on a loopback port: waiting will not change that, so no retries.
    assert!(
        text.contains(&addr) && text.contains("get manifest v1") && !text.contains("attempts"),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("address and port"), "{text}");
}
