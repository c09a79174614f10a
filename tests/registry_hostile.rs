//! `talext copy` against hostile registries, through the binary, with the reference registry
//! (htpasswd) behind the fault proxy. Credentials never reach a host they were not configured
//! for: not the storage host a blob `GET` is redirected to, nor the token realm that host
//! names, nor a realm the registry did not announce on its `/v2/` ping, while the token service
//! it did announce gets it, on refreshes too (each proxy records every header and query string
//! it receives, and stderr at `RUST_LOG=trace` is searched too).
//! Every network read is bounded: a stalled body fails after the idle timeout, a dripping one
//! at the deadline, an endless or over-long body at the descriptor's size, and nothing is left
//! in the destination.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use talext::registry::{BlobSource, Credential, RegistryClient, RegistryOptions, Secret};
use talext_kit::faultproxy::{Fault, FaultProxy, Hit, Rule};
use talext_kit::registry::{Registry, TestImage};

const USER: &str = "hostile-user";
const SECRET: &str = "n0t-for-Strangers-9f3a";
/// What the fake token realms hand out, to anyone.
const ANON: &str = "anonymous-token-1";

/// The password and the `Authorization: Basic` form of the credential.
fn secrets() -> [String; 2] {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{SECRET}"));
    [SECRET.to_string(), basic]
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `talext ARGS` with the credential in the environment (when `login`) and trace logging on.
fn talext(args: &[&str], login: bool, envs: &[(&str, &str)]) -> Run {
    let mut cmd = talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"));
    cmd.args(args)
        .env_remove("TALEXT_REGISTRY_USERNAME")
        .env_remove("TALEXT_REGISTRY_PASSWORD")
        .env_remove("TALEXT_IDLE_TIMEOUT")
        .env_remove("TALEXT_TIMEOUT")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if login {
        cmd.env("TALEXT_REGISTRY_USERNAME", USER)
            .env("TALEXT_REGISTRY_PASSWORD", SECRET);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out: Output = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// Push `img` as `repo:v1`, with the test credential when `login`.
fn push(addr: &str, login: bool, repo: &str, img: &TestImage) {
    let options = RegistryOptions {
        credential: login.then(|| Credential::Basic {
            username: USER.into(),
            password: Secret::new(SECRET),
        }),
        ..RegistryOptions::default()
    };
    let c = RegistryClient::new(&options, addr).unwrap();
    for blob in [&img.layer, &img.config] {
        c.push_blob(
            repo,
            &blob.digest,
            blob.bytes.len() as u64,
            BlobSource::Bytes(&blob.bytes),
            None,
        )
        .unwrap();
    }
    c.put_manifest(repo, "v1", &img.manifest.bytes, &img.manifest.media_type)
        .unwrap();
}

fn assert_no_secret(hits: &[Hit], place: &str) {
    for hit in hits {
        for secret in secrets() {
            assert!(
                !hit.contains(&secret),
                "{place} received the credential: {hit:?}"
            );
        }
    }
}

fn assert_no_secret_in(text: &str, place: &str) {
    for secret in secrets() {
        assert!(!text.contains(&secret), "the credential is in {place}");
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Nothing of the blob reached the destination layout: neither the blob nor a temporary file.
fn assert_nothing_left(dest: &Path, digest: &str) {
    let hex = digest.trim_start_matches("sha256:");
    for f in files(dest) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name != hex && !name.starts_with(".tmp-"),
            "partial download left behind: {}",
            f.display()
        );
    }
}

#[test]
fn redirected_blobs_and_the_storage_realm_get_no_credentials() {
    let reg = Registry::plain_with_auth(USER, SECRET);
    let backend = Registry::plain();
    let img = TestImage::new("redirected to storage\n", "amd64");
    push(&reg.addr, true, "hostile/app", &img);
    push(&backend.addr, false, "hostile/app", &img);

    // The storage host asks for a token from its own realm unless given the anonymous one.
    let realm = FaultProxy::start(&backend.addr);
    realm.add(Rule::new(Fault::Token(ANON.into())));
    let storage = FaultProxy::start(&backend.addr);
    storage.add(
        Rule::new(Fault::Challenge(format!(
            r#"Bearer realm="http://{}/token",service="storage""#,
            realm.addr
        )))
        .unless_header("authorization", &format!("Bearer {ANON}")),
    );
    // The registry redirects every blob GET to the storage host.
    let front = FaultProxy::start(&reg.addr);
    front.add(
        Rule::new(Fault::Redirect(format!("http://{}", storage.addr)))
            .method("GET")
            .path("/blobs/sha256:"),
    );

    let dest = reg.scratch().join("dest");
    let run = talext(
        &[
            "copy",
            &format!("docker://{}/hostile/app:v1", front.addr),
            &format!("oci:{}:v1", dest.display()),
        ],
        true,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), img.manifest.digest);
    let layer = dest
        .join("blobs/sha256")
        .join(&img.layer.digest["sha256:".len()..]);
    assert_eq!(std::fs::read(layer).unwrap(), img.layer.bytes);

    // The registry itself was given the credential...
    assert!(
        front.hits().iter().any(|h| h
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))),
        "{:?}",
        front.hits()
    );
    // ...the redirected requests lost it (reqwest drops `Authorization` across hosts), and the
    // storage host got the anonymous token at most.
    let stored = storage.hits();
    assert!(stored.len() >= 4, "{stored:?}");
    for hit in &stored {
        let auth = hit.header("authorization");
        assert!(
            auth.is_none() || auth == Some(&format!("Bearer {ANON}")),
            "{hit:?}"
        );
    }
    assert_no_secret(&stored, "the storage host");
    // The storage realm was asked once per blob (config and layer), always anonymously.
    let asked = realm.hits();
    assert!(asked.len() >= 2, "{asked:?}");
    for hit in &asked {
        assert_eq!(hit.header("authorization"), None, "{hit:?}");
        assert!(
            hit.path.contains("service=storage") && hit.path.contains("scope=repository"),
            "{hit:?}"
        );
    }
    assert_no_secret(&asked, "the storage realm");
    assert!(run.stderr.contains("TRACE"), "trace logging is off");
    assert_no_secret_in(&run.stderr, "stderr");

    // A storage host that refuses even then: the copy fails (exit 2, the registry's setup is
    // broken), naming the host, and still no credential went anywhere but the registry.
    storage.clear();
    storage.add(Rule::new(Fault::Challenge(format!(
        r#"Bearer realm="http://{}/token",service="storage""#,
        realm.addr
    ))));
    let run = talext(
        &[
            "copy",
            &format!("docker://{}/hostile/app:v1", front.addr),
            &format!("oci:{}:v1", reg.scratch().join("dest2").display()),
        ],
        true,
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "`{}`, where `{}` redirected the request, refused it (401)",
            storage.addr, front.addr
        )),
        "{}",
        run.stderr
    );
    assert_no_secret(&storage.hits(), "the storage host");
    assert_no_secret(&realm.hits(), "the storage realm");
    assert!(realm
        .hits()
        .iter()
        .all(|h| h.header("authorization").is_none()));
    assert_no_secret_in(&run.stderr, "stderr");
}

#[test]
fn a_realm_the_registry_did_not_announce_gets_no_credentials() {
    let reg = Registry::plain_with_auth(USER, SECRET);
    let img = TestImage::new("foreign realm\n", "amd64");
    push(&reg.addr, true, "hostile/realm", &img);
    let realm = FaultProxy::start(&reg.addr);
    realm.add(Rule::new(Fault::Token(ANON.into())));
    // The ping announces Basic (htpasswd); blob GETs then name a token realm on another host.
    let front = FaultProxy::start(&reg.addr);
    front.add(
        Rule::new(Fault::Challenge(format!(
            r#"Bearer realm="http://{}/token",service="elsewhere""#,
            realm.addr
        )))
        .method("GET")
        .path("/blobs/sha256:")
        .unless_header("authorization", &format!("Bearer {ANON}")),
    );
    let dest = reg.scratch().join("dest");
    let run = talext(
        &[
            "copy",
            &format!("docker://{}/hostile/realm:v1", front.addr),
            &format!("oci:{}:v1", dest.display()),
            "--retry-max",
            "1",
        ],
        true,
        &[],
    );
    // The anonymous token is not good for the registry: it refuses, and that is the user's to
    // fix (exit 1); the foreign realm never saw the credential.
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    let asked = realm.hits();
    assert!(!asked.is_empty(), "the realm was never asked");
    for hit in &asked {
        assert_eq!(hit.header("authorization"), None, "{hit:?}");
        assert!(hit.path.contains("service=elsewhere"), "{hit:?}");
    }
    assert_no_secret(&asked, "the foreign realm");
    assert_no_secret_in(&run.stderr, "stderr");
    assert_no_secret_in(&run.stdout, "stdout");
}

#[test]
fn the_token_service_announced_on_the_ping_gets_the_credential_and_no_other_realm_does() {
    const TOKEN: &str = "registry-token-1";
    let reg = Registry::plain();
    let img = TestImage::new("token auth\n", "amd64");
    push(&reg.addr, false, "hostile/token", &img);
    // The registry's own token service, announced on the ping, and a stranger's realm that
    // (to let the copy go on) hands out the same token.
    let service = FaultProxy::start(&reg.addr);
    service.add(Rule::new(Fault::Token(TOKEN.into())));
    let stranger = FaultProxy::start(&reg.addr);
    stranger.add(Rule::new(Fault::Token(TOKEN.into())));
    let front = FaultProxy::start(&reg.addr);
    let challenge = |realm: &FaultProxy, service: &str| {
        Fault::Challenge(format!(
            r#"Bearer realm="http://{}/token",service="{service}""#,
            realm.addr
        ))
    };
    // Once, the layer GET names the stranger's realm; once, the config GET asks again for a
    // token from the registry's own service (a refresh); otherwise every request without the
    // token is challenged to fetch one from the registry's service.
    front.add(
        Rule::new(challenge(&stranger, "elsewhere"))
            .method("GET")
            .path(&img.layer.digest)
            .times(1),
    );
    front.add(
        Rule::new(challenge(&service, "registry"))
            .method("GET")
            .path(&img.config.digest)
            .times(1),
    );
    front.add(
        Rule::new(challenge(&service, "registry"))
            .unless_header("authorization", &format!("Bearer {TOKEN}")),
    );
    let dest = reg.scratch().join("dest");
    let run = talext(
        &[
            "copy",
            &format!("docker://{}/hostile/token:v1", front.addr),
            &format!("oci:{}:v1", dest.display()),
        ],
        true,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), img.manifest.digest);

    // The announced service got the credential, on the first request and on the refresh.
    let basic = format!("Basic {}", secrets()[1]);
    let asked = service.hits();
    let with_credential = asked
        .iter()
        .filter(|h| h.header("authorization") == Some(basic.as_str()))
        .count();
    assert!(with_credential >= 2, "{asked:?}");
    assert!(
        asked.iter().all(|h| h.path.contains("service=registry")),
        "{asked:?}"
    );
    // The stranger's realm was asked, anonymously.
    let asked = stranger.hits();
    assert!(!asked.is_empty(), "the stranger's realm was never asked");
    for hit in &asked {
        assert_eq!(hit.header("authorization"), None, "{hit:?}");
        assert!(hit.path.contains("service=elsewhere"), "{hit:?}");
    }
    assert_no_secret(&asked, "the stranger's realm");
    // The registry itself only ever saw tokens, never the password.
    assert_no_secret(&front.hits(), "the registry");
    assert_no_secret_in(&run.stderr, "stderr");
}

/// A plain registry with one image and the proxy in front; the proxy's rules go on `fault`.
fn rig(repo: &str, content: &str) -> (Registry, FaultProxy, TestImage) {
    let reg = Registry::plain();
    let img = TestImage::new(content, "amd64");
    push(&reg.addr, false, repo, &img);
    let front = FaultProxy::start(&reg.addr);
    (reg, front, img)
}

fn copy_through(
    front: &FaultProxy,
    repo: &str,
    dest: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Run {
    let src = format!("docker://{}/{repo}:v1", front.addr);
    let dst = format!("oci:{}:v1", dest.display());
    let mut args = vec!["copy", src.as_str(), dst.as_str()];
    args.extend_from_slice(extra);
    talext(&args, false, envs)
}

/// `talext validate` of `repo:v1` through `front`: its layers are streamed from the answers, so
/// the same faults must fail it the same way.
fn validate_through(front: &FaultProxy, repo: &str, extra: &[&str], envs: &[(&str, &str)]) -> Run {
    let src = format!("docker://{}/{repo}:v1", front.addr);
    let mut args = vec!["validate", "--talos-version", "v1.12.0"];
    args.extend_from_slice(extra);
    args.push(src.as_str());
    talext(&args, false, envs)
}

#[test]
fn a_stalled_blob_body_fails_within_the_idle_timeout() {
    let (reg, front, img) = rig("hostile/stall", "stalls in the middle\n");
    front.add(
        Rule::new(Fault::Stall { after: 20 })
            .method("GET")
            .path(&img.layer.digest),
    );
    let dest = reg.scratch().join("dest");
    // The env twin of `--idle-timeout`.
    let run = copy_through(
        &front,
        "hostile/stall",
        &dest,
        &["--retry-max", "0"],
        &[("TALEXT_IDLE_TIMEOUT", "2")],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("the registry sent nothing for 2s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--idle-timeout"), "{}", run.stderr);
    assert!(
        run.took >= Duration::from_secs(2) && run.took < Duration::from_secs(12),
        "took {:?}",
        run.took
    );
    assert_nothing_left(&dest, &img.layer.digest);
    let run = validate_through(
        &front,
        "hostile/stall",
        &["--retry-max", "0"],
        &[("TALEXT_IDLE_TIMEOUT", "2")],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("the registry sent nothing for 2s"),
        "{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(12), "took {:?}", run.took);

    // With retries, each attempt stalls once: still bounded, by attempts × idle timeout.
    let run = copy_through(
        &front,
        "hostile/stall",
        &dest,
        &[
            "--retry-max",
            "1",
            "--retry-delay",
            "100ms",
            "--idle-timeout",
            "1",
        ],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("after 2 attempts"), "{}", run.stderr);
    assert!(run.took < Duration::from_secs(12), "took {:?}", run.took);
    assert_nothing_left(&dest, &img.layer.digest);
    // A stream taken up again where it stalled counts against the same budget.
    let run = validate_through(
        &front,
        "hostile/stall",
        &[
            "--retry-max",
            "1",
            "--retry-delay",
            "100ms",
            "--idle-timeout",
            "1",
        ],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("after 2 attempts"), "{}", run.stderr);
    assert!(run.took < Duration::from_secs(12), "took {:?}", run.took);
    let resumed = front
        .hits()
        .iter()
        .any(|h| h.path.contains(&img.layer.digest) && h.header("range") == Some("bytes=20-"));
    assert!(resumed, "the stalled layer was not asked for from byte 20");

    let run = copy_through(
        &front,
        "hostile/stall",
        &dest,
        &["--idle-timeout", "0"],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("`--idle-timeout` must be more than 0"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_dripping_blob_body_fails_at_the_deadline() {
    let (reg, front, img) = rig("hostile/drip", "one byte at a time, forever\n");
    front.add(
        Rule::new(Fault::Drip {
            interval: Duration::from_millis(200),
        })
        .method("GET")
        .path(&img.layer.digest),
    );
    let dest = reg.scratch().join("dest");
    let run = copy_through(
        &front,
        "hostile/drip",
        &dest,
        &["--retry-max", "0", "--timeout", "2", "--idle-timeout", "10"],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the request took longer than the 2s deadline"),
        "{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    assert_nothing_left(&dest, &img.layer.digest);
    let run = validate_through(
        &front,
        "hostile/drip",
        &["--retry-max", "0", "--timeout", "2", "--idle-timeout", "10"],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the request took longer than the 2s deadline"),
        "{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}

#[test]
fn an_endless_blob_body_stops_at_its_size() {
    let (reg, front, img) = rig("hostile/endless", "never ends\n");
    front.add(
        Rule::new(Fault::Endless)
            .method("GET")
            .path(&img.layer.digest),
    );
    let dest = reg.scratch().join("dest");
    let run = copy_through(&front, "hostile/endless", &dest, &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let size = img.layer.bytes.len();
    assert!(
        run.stderr.contains(&format!(
            "the registry sent more than the {size} bytes expected"
        )),
        "{}",
        run.stderr
    );
    // Not worth a retry: one GET of the layer.
    let gets = front
        .hits()
        .iter()
        .filter(|h| h.method == "GET" && h.path.contains(&img.layer.digest))
        .count();
    assert_eq!(gets, 1);
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    assert_nothing_left(&dest, &img.layer.digest);
    let run = validate_through(&front, "hostile/endless", &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the registry sent more than the {size} bytes expected"
        )),
        "{}",
        run.stderr
    );
    let gets = front
        .hits()
        .iter()
        .filter(|h| h.method == "GET" && h.path.contains(&img.layer.digest))
        .count();
    assert_eq!(gets, 2, "one GET of the layer per command");
}

#[test]
fn a_huge_content_length_is_refused_before_the_body() {
    let (reg, front, img) = rig("hostile/huge", "announced as a petabyte\n");
    front.add(
        Rule::new(Fault::HugeLength(1_000_000_000_000_000))
            .method("GET")
            .path(&img.layer.digest),
    );
    let dest = reg.scratch().join("dest");
    let run = copy_through(&front, "hostile/huge", &dest, &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let size = img.layer.bytes.len();
    assert!(
        run.stderr.contains(&format!(
            "the registry announced 1000000000000000 bytes, expected {size}"
        )),
        "{}",
        run.stderr
    );
    assert_nothing_left(&dest, &img.layer.digest);
    let run = validate_through(&front, "hostile/huge", &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the registry announced 1000000000000000 bytes, expected {size}"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn an_endless_manifest_is_capped_while_it_streams() {
    let (reg, front, _img) = rig("hostile/manifest", "manifest never ends\n");
    front.add(Rule::new(Fault::Endless).method("GET").path("/manifests/"));
    let dest = reg.scratch().join("dest");
    let run = copy_through(&front, "hostile/manifest", &dest, &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the manifest is larger than 4194304 bytes"),
        "{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}

#[test]
fn a_layer_shorter_than_its_descriptor_is_refused_after_one_try_from_its_end() {
    let reg = Registry::plain();
    let img = TestImage::new("shorter than it says\n", "amd64");
    // The manifest says the layer has 100 bytes more than it has (the registry does not check).
    let mut manifest: serde_json::Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
    let size = img.layer.bytes.len() as u64;
    manifest["layers"][0]["size"] = (size + 100).into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    push(&reg.addr, false, "hostile/short", &img);
    RegistryClient::new(&RegistryOptions::default(), &reg.addr)
        .unwrap()
        .put_manifest("hostile/short", "v1", &bytes, &img.manifest.media_type)
        .unwrap();
    let front = FaultProxy::start(&reg.addr);
    let run = validate_through(&front, "hostile/short", &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("received {size} bytes, expected {}", size + 100)),
        "{}",
        run.stderr
    );
    // Asked once more, from where it ended; the registry has nothing there (416).
    let ranges: Vec<Option<String>> = front
        .hits()
        .iter()
        .filter(|h| h.method == "GET" && h.path.contains(&img.layer.digest))
        .map(|h| h.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges, [None, Some(format!("bytes={size}-"))]);
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}
