//! Bearer-token authentication end to end, the way Docker Hub, ghcr.io and GitLab ask for it:
//! the reference registry in `auth: token` mode trusts only JWTs signed by the test kit's token
//! service (`talext_kit::token`). Through the binary: push and pull with `--username` and
//! `--password-stdin`, a wrong password (exit 1, a clear message, the password nowhere), and
//! Docker credential helpers named by `credHelpers` that answer a password or an identity token.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use talext_kit::registry::{write_oci_layout, Registry, TestImage};
use talext_kit::schema::{blob_path, read_json};
use talext_kit::token::TokenServer;

const USER: &str = "alice";
const PASSWORD: &str = "t0ken-Pa55word-91d2";

/// A token service accepting `USER`:`PASSWORD` and a registry trusting its tokens; the
/// temporary directory holds the signing key and lives as long as both.
fn token_registry() -> (TokenServer, Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token = TokenServer::start(dir.path(), USER, PASSWORD);
    let registry = Registry::token_auth(&token);
    (token, registry, dir)
}

/// talext with `args` and `stdin`, with no credentials but those given here: no inherited
/// registry variables, and `DOCKER_CONFIG` only when `docker_config` names one.
fn talext(args: &[&str], stdin: &str, docker_config: Option<&Path>, path: Option<&Path>) -> Output {
    let mut cmd = talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"));
    cmd.args(args)
        .env_remove("TALEXT_REGISTRY_USERNAME")
        .env_remove("TALEXT_REGISTRY_PASSWORD")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .env(
            "DOCKER_CONFIG",
            docker_config.unwrap_or(Path::new("/nonexistent")),
        )
        .env("RUST_LOG", "talext=debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = path {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.to_path_buf()];
        paths.extend(std::env::split_paths(&old));
        cmd.env("PATH", std::env::join_paths(paths).unwrap());
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status.code()
    );
    stdout.trim().to_string()
}

fn assert_no_secret(out: &Output, secret: &str) {
    let (stdout, stderr) = text(out);
    let basic = base64_basic(USER, secret);
    for stream in [&stdout, &stderr] {
        assert!(
            !stream.contains(secret) && !stream.contains(&basic),
            "the secret was printed: {stream}"
        );
    }
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A two-blob image in an OCI layout under `dir`, tagged `v1`; returns the layout's `oci:` ref.
fn layout_with(dir: &Path, content: &str) -> (String, TestImage) {
    let img = TestImage::new(content, "amd64");
    write_oci_layout(dir, &[&img], None, "v1");
    (format!("oci:{}:v1", dir.display()), img)
}

/// The digest `oci:DIR:TAG`'s `index.json` entry for `tag` names.
fn tagged_digest(layout: &Path, tag: &str) -> String {
    let index = read_json(&layout.join("index.json"));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no `{tag}` in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn push_and_pull_with_a_password_through_the_token_service() {
    let (token, reg, dir) = token_registry();
    let (src, img) = layout_with(&dir.path().join("src"), "token push\n");
    let dst = format!("docker://{}/team/ext:v1", reg.addr);
    let password = format!("{PASSWORD}\n");

    // Anonymous: the token service refuses, so the registry does.
    let never = dir.path().join("never");
    let out = talext(
        &["copy", &dst, &format!("oci:{}:v1", never.display())],
        "",
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        token.requests().iter().all(|r| !r.granted),
        "{:?}",
        token.requests()
    );

    let out = talext(
        &["copy", "--username", USER, "--password-stdin", &src, &dst],
        &password,
        None,
        None,
    );
    let pushed = assert_ok(&out, "push");
    assert_eq!(pushed, img.manifest.digest);
    assert_no_secret(&out, PASSWORD);

    // The push asked for push and pull on the repository as `alice`, and got a token.
    let requests = token.requests();
    assert!(
        requests.iter().any(|r| r.granted
            && r.method == "GET"
            && r.account.as_deref() == Some(USER)
            && r.service.as_deref() == Some(token.service.as_str())
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:team/ext:")
                    && s.contains("push")
                    && s.contains("pull"))),
        "{requests:?}"
    );

    // Pull it back into a new layout with the same credentials: the same digest and blobs.
    let back = dir.path().join("back");
    let out = talext(
        &[
            "copy",
            "--username",
            USER,
            "--password-stdin",
            &dst,
            &format!("oci:{}:v1", back.display()),
        ],
        &password,
        None,
        None,
    );
    assert_ok(&out, "pull");
    assert_no_secret(&out, PASSWORD);
    assert_eq!(tagged_digest(&back, "v1"), img.manifest.digest);
    for blob in [&img.layer, &img.config, &img.manifest] {
        assert_eq!(
            std::fs::read(blob_path(&back, &blob.digest)).unwrap(),
            blob.bytes,
            "{}",
            blob.digest
        );
    }
    assert!(
        token
            .requests()
            .iter()
            .any(|r| r.granted && r.scopes.iter().any(|s| s == "repository:team/ext:pull")),
        "{:?}",
        token.requests()
    );
}

#[test]
fn a_wrong_password_is_refused_clearly_and_never_printed() {
    let (token, reg, dir) = token_registry();
    let (src, _) = layout_with(&dir.path().join("src"), "token refused\n");
    let dst = format!("docker://{}/team/ext:v1", reg.addr);
    let wrong = "wrong-Pa55word-c4e7";
    let never = dir.path().join("never");
    let never_ref = format!("oci:{}:v1", never.display());

    for (args, what) in [
        (
            vec!["copy", "--username", USER, "--password-stdin", &src, &dst],
            "push",
        ),
        (
            vec![
                "copy",
                "--username",
                USER,
                "--password-stdin",
                &dst,
                &never_ref,
            ],
            "pull",
        ),
    ] {
        let out = talext(&args, &format!("{wrong}\n"), None, None);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stdout.is_empty(), "{what}: {stdout}");
        assert!(
            stderr.contains(&format!("`{}`", reg.addr))
                && stderr.contains("refused the credentials"),
            "{what}: {stderr}"
        );
        assert_no_secret(&out, wrong);
        assert_no_secret(&out, PASSWORD);
    }
    let requests = token.requests();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| !r.granted),
        "{requests:?}"
    );
}

/// `DOCKER_CONFIG` with a `config.json` naming helper `docker-credential-test` for `registry`,
/// and a `bin` directory holding that helper: it logs the server it was asked about and answers
/// `username`/`secret` for `registry`, "not found" for anything else.
fn credential_helper(
    dir: &Path,
    registry: &str,
    username: &str,
    secret: &str,
) -> (PathBuf, PathBuf) {
    let config = dir.join("docker");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"credHelpers": {{"{registry}": "test"}}}}"#),
    )
    .unwrap();
    std::fs::set_permissions(
        config.join("config.json"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let helper = bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nserver=$(cat)\n\
             printf '%s\\n' \"$server\" >>'{log}'\n\
             if [ \"$server\" = '{registry}' ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{username}\",\"Secret\":\"{secret}\"}}\\n' \"$server\"\n\
             exit 0\nfi\necho 'credentials not found in native keychain'\nexit 1\n",
            log = dir.join("helper.log").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700)).unwrap();
    (config, bin)
}

#[test]
fn a_credential_helper_that_answers_a_password() {
    let (token, reg, dir) = token_registry();
    let (src, img) = layout_with(&dir.path().join("src"), "token helper\n");
    let dst = format!("docker://{}/helped/ext:v1", reg.addr);
    let (config, bin) = credential_helper(dir.path(), &reg.addr, USER, PASSWORD);

    let out = talext(&["copy", &src, &dst], "", Some(&config), Some(&bin));
    assert_eq!(assert_ok(&out, "push with a helper"), img.manifest.digest);
    assert_no_secret(&out, PASSWORD);
    let back = dir.path().join("back");
    let out = talext(
        &["copy", &dst, &format!("oci:{}:v1", back.display())],
        "",
        Some(&config),
        Some(&bin),
    );
    assert_ok(&out, "pull with a helper");
    assert_no_secret(&out, PASSWORD);
    assert_eq!(tagged_digest(&back, "v1"), img.manifest.digest);

    // The helper was asked about this registry, and its password bought the tokens.
    let asked = std::fs::read_to_string(dir.path().join("helper.log")).unwrap();
    assert!(asked.lines().all(|l| l == reg.addr), "{asked}");
    assert!(
        token
            .requests()
            .iter()
            .any(|r| r.granted && r.account.as_deref() == Some(USER)),
        "{:?}",
        token.requests()
    );
}

#[test]
fn a_credential_helper_that_answers_an_identity_token() {
    let (token, reg, dir) = token_registry();
    let refresh = "identity-token-5b0e-not-a-password";
    token.allow_refresh_token(refresh, "robot");
    let (src, img) = layout_with(&dir.path().join("src"), "token identity\n");
    let dst = format!("docker://{}/robots/ext:v1", reg.addr);
    // Helpers answer `<token>` as the user name for an identity token (docker-credential-helpers).
    let (config, bin) = credential_helper(dir.path(), &reg.addr, "<token>", refresh);

    let out = talext(&["copy", &src, &dst], "", Some(&config), Some(&bin));
    assert_eq!(
        assert_ok(&out, "push with an identity token"),
        img.manifest.digest
    );
    let (stdout, stderr) = text(&out);
    assert!(
        !stdout.contains(refresh) && !stderr.contains(refresh),
        "{stderr}"
    );
    // The OAuth2 refresh-token grant was used, never Basic.
    let requests = token.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.granted && r.method == "POST" && r.account.as_deref() == Some("robot")),
        "{requests:?}"
    );
    assert!(requests.iter().all(|r| r.method == "POST"), "{requests:?}");
}

#[test]
fn login_through_the_token_service_is_checked_then_used() {
    let (_token, reg, dir) = token_registry();
    let (src, _) = layout_with(&dir.path().join("src"), "token login\n");
    let auth = dir.path().join("auth.json");
    let auth_s = auth.to_str().unwrap();
    // A wrong password: the token service refuses it, and no file appears.
    let out = talext(
        &[
            "login",
            &reg.addr,
            "--username",
            USER,
            "--password-stdin",
            "--auth-file",
            auth_s,
        ],
        "not-the-password\n",
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(!auth.exists());
    let out = talext(
        &[
            "login",
            &reg.addr,
            "--username",
            USER,
            "--password-stdin",
            "--auth-file",
            auth_s,
        ],
        &format!("{PASSWORD}\n"),
        None,
        None,
    );
    assert_ok(&out, "login");
    assert_no_secret(&out, PASSWORD);
    // The stored credential gets a push token.
    let dst = format!("docker://{}/team/login:v1", reg.addr);
    let out = talext(&["copy", &src, &dst, "--auth-file", auth_s], "", None, None);
    assert_ok(&out, "copy with the stored credential");
}
