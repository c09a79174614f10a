//! The registry client against the reference registry with TLS from a CA made for the test and
//! htpasswd basic auth: trust via `--ca-file` and `certs.d`, credentials via options, a
//! `config.json` and `DOCKER_CONFIG`, and refusals that never show the password.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use talext::registry::{
    BlobSource, Credential, RegistryClient, RegistryOptions, RetryPolicy, Secret, TlsSettings,
};
use talext::ExitKind;
use talext_kit::registry::{Registry, TestImage};

const PASSWORD: &str = "s3cret-Pa55word";

fn options(reg: &Registry, credential: Option<Credential>) -> RegistryOptions {
    RegistryOptions {
        credential,
        tls: TlsSettings {
            ca_files: vec![reg.ca.clone().unwrap()],
            ..TlsSettings::default()
        },
        retry: RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..RegistryOptions::default()
    }
}

fn alice(password: &str) -> Option<Credential> {
    Some(Credential::Basic {
        username: "alice".into(),
        password: Secret::new(password),
    })
}

/// Push a one-layer image tagged `tag` and read its manifest back.
fn push_and_read(c: &RegistryClient, repo: &str, tag: &str) -> talext::Result<()> {
    let img = TestImage::new(&format!("{repo}:{tag}\n"), "amd64");
    for blob in [&img.layer, &img.config] {
        c.push_blob(
            repo,
            &blob.digest,
            blob.bytes.len() as u64,
            BlobSource::Bytes(&blob.bytes),
            None,
        )?;
    }
    let digest = c.put_manifest(repo, tag, &img.manifest.bytes, &img.manifest.media_type)?;
    assert_eq!(digest, img.manifest.digest);
    assert_eq!(c.get_manifest(repo, tag, &[])?.bytes, img.manifest.bytes);
    Ok(())
}

fn assert_no_secret(text: &str) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    assert!(
        !text.contains(PASSWORD) && !text.contains(&basic),
        "secret leaked: {text}"
    );
}

#[test]
fn ca_file_and_password_from_options() {
    let reg = Registry::tls_with_auth("alice", PASSWORD);

    // The right password over TLS verified with the test CA.
    let c = RegistryClient::new(&options(&reg, alice(PASSWORD)), &reg.addr).unwrap();
    push_and_read(&c, "secure/ext", "v1").unwrap();

    // A wrong password is refused: exit 1, the registry named, the password nowhere.
    let c = RegistryClient::new(&options(&reg, alice("wrong-password")), &reg.addr).unwrap();
    let err = push_and_read(&c, "secure/ext", "v2").unwrap_err();
    assert_eq!(err.exit_kind(), ExitKind::User, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&reg.addr)
            && text.contains("refused the credentials")
            && text.contains("secure/ext"),
        "{text}"
    );
    assert_no_secret(&text);
    assert_no_secret(&format!("{err:?}"));
    assert!(err.hint().unwrap().contains("--username"));

    // No credentials at all: the same kind of refusal.
    let c = RegistryClient::new(&options(&reg, None), &reg.addr).unwrap();
    let err = c.get_manifest("secure/ext", "v1", &[]).unwrap_err();
    assert_eq!(err.exit_kind(), ExitKind::User, "{err}");
    assert!(err.to_string().contains("401"), "{err}");
}

#[test]
fn tls_is_verified_unless_insecure() {
    let reg = Registry::tls_with_auth("alice", PASSWORD);
    // Without the CA the certificate is rejected at once (no retries), and never downgraded
    // to plain HTTP even on loopback.
    let untrusted = RegistryOptions {
        credential: alice(PASSWORD),
        ..RegistryOptions::default()
    };
    let c = RegistryClient::new(&untrusted, &reg.addr).unwrap();
    let start = Instant::now();
    let err = c.get_manifest("secure/ext", "v1", &[]).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let text = err.to_string();
    assert!(
        text.to_lowercase().contains("certificate") && text.contains(&reg.addr),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("--ca-file"));
    assert_no_secret(&text);

    // `--insecure` accepts the unverified certificate.
    let mut insecure = untrusted.clone();
    insecure.tls.insecure = true;
    let c = RegistryClient::new(&insecure, &reg.addr).unwrap();
    push_and_read(&c, "insecure/ext", "v1").unwrap();
}

#[test]
fn certs_d_directory_is_trusted() {
    let reg = Registry::tls_with_auth("alice", PASSWORD);
    let root = reg.scratch().join("certs.d");
    std::fs::create_dir_all(root.join(&reg.addr)).unwrap();
    std::fs::copy(
        reg.ca.as_ref().unwrap(),
        root.join(&reg.addr).join("ca.crt"),
    )
    .unwrap();
    let options = RegistryOptions {
        credential: alice(PASSWORD),
        tls: TlsSettings {
            certs_d_roots: vec![PathBuf::from("/nonexistent"), root],
            ..TlsSettings::default()
        },
        ..RegistryOptions::default()
    };
    let c = RegistryClient::new(&options, &reg.addr).unwrap();
    push_and_read(&c, "certsd/ext", "v1").unwrap();
}

fn write_docker_config(dir: &std::path::Path, registry: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"https://{registry}":{{"auth":"{auth}"}},"other.example":{{"auth":"eDp5"}}}}}}"#),
    )
    .unwrap();
}

#[test]
fn credentials_from_config_json_files() {
    let reg = Registry::tls_with_auth("alice", PASSWORD);
    let good = reg.scratch().join("good");
    let bad = reg.scratch().join("bad");
    write_docker_config(&good, &reg.addr, PASSWORD);
    write_docker_config(&bad, &reg.addr, "stale-password");

    let mut opts = options(&reg, None);
    opts.auth_files = vec![
        reg.scratch().join("absent.json"),
        good.join("config.json"),
        bad.join("config.json"),
    ];
    let c = RegistryClient::new(&opts, &reg.addr).unwrap();
    push_and_read(&c, "fromfile/ext", "v1").unwrap();

    // The first file naming the registry wins, even when it is stale.
    opts.auth_files.reverse();
    let c = RegistryClient::new(&opts, &reg.addr).unwrap();
    let err = c.get_manifest("fromfile/ext", "v1", &[]).unwrap_err();
    assert_eq!(err.exit_kind(), ExitKind::User);
    assert!(!err.to_string().contains("stale-password"));

    // Explicit credentials win over every file.
    opts.credential = alice(PASSWORD);
    let c = RegistryClient::new(&opts, &reg.addr).unwrap();
    assert!(c.get_manifest("fromfile/ext", "v1", &[]).is_ok());
}

#[test]
fn credentials_from_docker_config_env() {
    let reg = Registry::tls_with_auth("alice", PASSWORD);
    let docker = reg.scratch().join("docker");
    write_docker_config(&docker, &reg.addr, PASSWORD);
    // Only this test changes the environment; the others pass their options explicitly.
    let home = reg.scratch().join("home");
    std::fs::create_dir_all(&home).unwrap();
    for var in ["REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"] {
        std::env::remove_var(var);
    }
    std::env::set_var("HOME", &home);
    std::env::set_var("DOCKER_CONFIG", &docker);
    let mut opts = RegistryOptions::from_env();
    opts.tls.ca_files = vec![reg.ca.clone().unwrap()];
    assert!(
        opts.auth_files.contains(&docker.join("config.json")),
        "{:?}",
        opts.auth_files
    );
    let c = RegistryClient::new(&opts, &reg.addr).unwrap();
    push_and_read(&c, "fromenv/ext", "v1").unwrap();
}
