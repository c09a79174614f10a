//! The registry client through a fault-injecting proxy in front of the reference registry:
//! 500s, 429 with `Retry-After`, connections reset in the middle of a blob, slowness. Pushes and
//! fetches complete with the same digests; when faults outlast the retry budget the error is an
//! environment error naming registry and operation, and no tag points at a missing blob.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use talext::registry::{
    BlobSource, PushOutcome, RegistryClient, RegistryOptions, RetryPolicy, UploadMode,
};
use talext::ExitKind;
use talext_kit::faultproxy::{Fault, FaultProxy, Rule};
use talext_kit::registry::{run, Blob, Registry, TestImage};

struct Rig {
    registry: Registry,
    proxy: FaultProxy,
}

impl Rig {
    fn new() -> Rig {
        let registry = Registry::plain();
        let proxy = FaultProxy::start(&registry.addr);
        Rig { registry, proxy }
    }

    fn through_proxy(&self, max_retries: u32, upload: UploadMode) -> RegistryClient {
        let options = RegistryOptions {
            retry: RetryPolicy {
                max_retries,
                max_time: Duration::from_secs(60),
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
            },
            upload,
            ..RegistryOptions::default()
        };
        RegistryClient::new(&options, &self.proxy.addr).unwrap()
    }

    fn direct(&self) -> RegistryClient {
        RegistryClient::new(&RegistryOptions::default(), &self.registry.addr).unwrap()
    }
}

fn push_image(
    c: &RegistryClient,
    repo: &str,
    tag: &str,
    img: &TestImage,
) -> talext::Result<String> {
    for blob in [&img.layer, &img.config] {
        c.push_blob(
            repo,
            &blob.digest,
            blob.bytes.len() as u64,
            BlobSource::Bytes(&blob.bytes),
            None,
        )?;
    }
    Ok(c.put_manifest(repo, tag, &img.manifest.bytes, &img.manifest.media_type)?)
}

/// Deterministic bytes that do not compress to nothing.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Collects what the client logs, as the CLI's stderr would show it.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// Run `f` and return what the client logged meanwhile on lines mentioning `place`. The
/// subscriber is global (installed once): thread-scoped subscribers miss events whose callsite
/// interest another test thread already cached.
fn logged<T>(place: &str, f: impl FnOnce() -> T) -> (T, String) {
    static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();
    let log = LOG.get_or_init(|| {
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        log
    });
    let out = f();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let mine: Vec<&str> = text.lines().filter(|l| l.contains(place)).collect();
    (out, mine.join("\n"))
}

#[test]
fn server_errors_then_success() {
    let rig = Rig::new();
    rig.proxy.add(
        Rule::new(Fault::Status(500))
            .method("PUT")
            .path("/manifests/")
            .times(2),
    );
    rig.proxy.add(
        Rule::new(Fault::Status(503))
            .method("HEAD")
            .path("/blobs/")
            .times(1),
    );
    rig.proxy.add(
        Rule::new(Fault::Status(502))
            .method("POST")
            .path("/blobs/uploads/")
            .times(1),
    );
    let img = TestImage::new("through 5xx\n", "amd64");
    let c = rig.through_proxy(4, UploadMode::Monolithic);
    let (digest, log) = logged(&rig.proxy.addr, || {
        push_image(&c, "faults/five", "v1", &img).unwrap()
    });
    assert_eq!(digest, img.manifest.digest);
    assert_eq!(
        rig.direct()
            .manifest_digest("faults/five", "v1", &[])
            .unwrap(),
        Some(digest)
    );
    let injected = rig
        .proxy
        .hits()
        .iter()
        .filter(|h| h.fault.is_some())
        .count();
    assert_eq!(injected, 4);
    // Each retry is on stderr with the operation and the place.
    assert!(
        log.contains("retrying `push manifest v1`") && log.contains(&rig.proxy.addr),
        "{log}"
    );
    assert!(log.contains("registry answered 500"), "{log}");
}

#[test]
fn too_many_requests_waits_as_told() {
    let rig = Rig::new();
    let img = TestImage::new("rate limited\n", "amd64");
    push_image(&rig.direct(), "faults/busy", "v1", &img).unwrap();
    rig.proxy.add(
        Rule::new(Fault::TooManyRequests { retry_after: 2 })
            .method("GET")
            .path("/manifests/v1")
            .times(1),
    );
    let c = rig.through_proxy(3, UploadMode::Monolithic);
    let m = c.get_manifest("faults/busy", "v1", &[]).unwrap();
    assert_eq!(m.digest, img.manifest.digest);
    let hits: Vec<_> = rig
        .proxy
        .hits()
        .into_iter()
        .filter(|h| h.path.ends_with("/manifests/v1"))
        .collect();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(
        hits[0].fault,
        Some(Fault::TooManyRequests { retry_after: 2 })
    );
    // The computed backoff would be ~50 ms; the registry asked for 2 s.
    let waited = hits[1].at - hits[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
}

#[test]
fn reset_in_the_middle_of_blob_transfers_then_success() {
    let rig = Rig::new();
    let blob = Blob::new("application/octet-stream", noise(300_000, 7));
    let file = rig.registry.scratch().join("blob");
    std::fs::write(&file, &blob.bytes).unwrap();
    let size = blob.bytes.len() as u64;

    // Monolithic upload: the PUT is cut after 64 KiB of body.
    rig.proxy.add(
        Rule::new(Fault::ResetRequestBody { after: 64 * 1024 })
            .method("PUT")
            .path("/blobs/uploads/")
            .times(1),
    );
    let c = rig.through_proxy(3, UploadMode::Monolithic);
    let outcome = c
        .push_blob(
            "faults/reset",
            &blob.digest,
            size,
            BlobSource::Path(&file),
            None,
        )
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        rig.direct()
            .blob_exists("faults/reset", &blob.digest)
            .unwrap(),
        Some(size)
    );

    // Chunked upload: the second PATCH is cut.
    rig.proxy.add(
        Rule::new(Fault::ResetRequestBody { after: 1000 })
            .method("PATCH")
            .skip(1)
            .times(1),
    );
    let chunked = rig.through_proxy(
        3,
        UploadMode::Chunked {
            chunk_size: 100_000,
        },
    );
    let outcome = chunked
        .push_blob(
            "faults/chunked",
            &blob.digest,
            size,
            BlobSource::Path(&file),
            None,
        )
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert!(rig
        .proxy
        .hits()
        .iter()
        .any(|h| matches!(h.fault, Some(Fault::ResetRequestBody { after: 1000 }))));

    // Download: the response body is cut after 100 kB; the fetched file still verifies.
    rig.proxy.add(
        Rule::new(Fault::ResetResponseBody { after: 100_000 })
            .method("GET")
            .path("/blobs/sha256:")
            .times(1),
    );
    let dest = rig.registry.scratch().join("fetched");
    c.fetch_blob("faults/reset", &blob.digest, Some(size), &dest)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), blob.bytes);
    assert_eq!(
        rig.proxy
            .hits()
            .iter()
            .filter(|h| h.fault.is_some())
            .count(),
        3
    );
}

#[test]
fn slowness_is_only_slow() {
    let rig = Rig::new();
    rig.proxy
        .add(Rule::new(Fault::Delay(Duration::from_millis(150))));
    let img = TestImage::new("slow\n", "arm64");
    let c = rig.through_proxy(0, UploadMode::Monolithic);
    assert_eq!(
        push_image(&c, "faults/slow", "v1", &img).unwrap(),
        img.manifest.digest
    );
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &rig.registry.docker_ref("faults/slow:v1"),
        ],
    );
    assert_eq!(raw, img.manifest.bytes);
}

#[test]
fn faults_outlasting_the_budget_leave_no_tag() {
    let rig = Rig::new();
    let direct = rig.direct();
    let img = TestImage::new("never tagged\n", "amd64");

    // Blob uploads always fail: the push stops with an environment error naming the registry
    // and the operation, after the retry budget.
    rig.proxy.add(
        Rule::new(Fault::Status(500))
            .method("PUT")
            .path("/blobs/uploads/"),
    );
    let c = rig.through_proxy(2, UploadMode::Monolithic);
    let (err, log) = logged(&rig.proxy.addr, || {
        push_image(&c, "faults/budget", "v1", &img).unwrap_err()
    });
    assert_eq!(err.exit_kind(), ExitKind::Environment, "{err}");
    let text = err.to_string();
    for part in [
        rig.proxy.addr.as_str(),
        "faults/budget",
        "push blob sha256:",
        "after 3 attempts",
        "500",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert_eq!(log.matches("retrying `push blob").count(), 2, "{log}");
    // A caller that goes on regardless cannot tag a manifest whose blobs are missing.
    let err = c
        .put_manifest(
            "faults/budget",
            "v1",
            &img.manifest.bytes,
            &img.manifest.media_type,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("refusing to write the manifest"),
        "{err}"
    );
    assert_eq!(
        direct.manifest_digest("faults/budget", "v1", &[]).unwrap(),
        None
    );

    // Manifest writes always rate-limited with a wait beyond the time budget: give up at once.
    rig.proxy.clear();
    rig.proxy.add(
        Rule::new(Fault::TooManyRequests { retry_after: 3600 })
            .method("PUT")
            .path("/manifests/"),
    );
    let err = push_image(&c, "faults/budget", "v1", &img).unwrap_err();
    assert_eq!(err.exit_kind(), ExitKind::Environment, "{err}");
    assert!(
        err.to_string().contains("push manifest v1") && err.to_string().contains("TOOMANYREQUESTS"),
        "{err}"
    );
    assert_eq!(
        direct.manifest_digest("faults/budget", "v1", &[]).unwrap(),
        None
    );
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &rig.registry.docker_ref("faults/budget:v1"),
        ])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "the tag exists");
}

/// A chunked upload cut in the middle goes on in the same session from the byte the registry
/// says it holds (`GET` on the session, `Range: 0-N`): no new session, no chunk sent twice
/// except the one that was cut.
#[test]
fn a_cut_chunked_upload_resumes_where_the_registry_says() {
    let rig = Rig::new();
    let blob = Blob::new("application/octet-stream", noise(450_000, 11));
    let file = rig.registry.scratch().join("resume-blob");
    std::fs::write(&file, &blob.bytes).unwrap();
    let size = blob.bytes.len() as u64;
    // The third PATCH (bytes 200000-299999) is cut after 1000 bytes.
    rig.proxy.add(
        Rule::new(Fault::ResetRequestBody { after: 1000 })
            .method("PATCH")
            .skip(2)
            .times(1),
    );
    let chunked = rig.through_proxy(
        3,
        UploadMode::Chunked {
            chunk_size: 100_000,
        },
    );
    let outcome = chunked
        .push_blob(
            "faults/resume",
            &blob.digest,
            size,
            BlobSource::Path(&file),
            None,
        )
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        rig.direct()
            .blob_exists("faults/resume", &blob.digest)
            .unwrap(),
        Some(size)
    );
    let hits = rig.proxy.hits();
    let uploads: Vec<_> = hits
        .iter()
        .filter(|h| h.path.contains("/faults/resume/blobs/uploads/"))
        .collect();
    let opened = uploads.iter().filter(|h| h.method == "POST").count();
    assert_eq!(opened, 1, "one session only: {uploads:#?}");
    let ranges: Vec<&str> = uploads
        .iter()
        .filter(|h| h.method == "PATCH")
        .filter_map(|h| h.header("content-range"))
        .collect();
    assert_eq!(
        ranges,
        [
            "0-99999",
            "100000-199999",
            "200000-299999",
            "200000-299999",
            "300000-399999",
            "400000-449999"
        ]
    );
    let cut = uploads
        .iter()
        .position(|h| h.fault.is_some())
        .expect("the cut PATCH");
    assert_eq!(uploads[cut + 1].method, "GET", "{uploads:#?}");
}
