//! The reference registry (`/usr/bin/docker-registry`, Debian's build of distribution) started
//! on 127.0.0.1 on a free port with a temporary config and storage: plain HTTP, or TLS with a CA
//! and server certificate made by `openssl` and htpasswd basic auth made by `htpasswd -Bbn`.
//! Killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The CA that signed the server certificate (TLS variant).
    pub ca: Option<PathBuf>,
    /// The user name and password htpasswd accepts (TLS variant).
    pub user: Option<(String, String)>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// The registry's filesystem storage (`docker/registry/v2/…`), for tests that damage what
    /// it serves.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// A plain-HTTP registry without authentication.
    pub fn plain() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root = dir.path().join("storage").display(),
        );
        Registry::start(dir, port, &config, None, None)
    }

    /// A plain-HTTP registry with htpasswd basic auth for `user`:`password` (on 127.0.0.1, where
    /// clients may send credentials without TLS), so the fault proxy can stand in front of it.
    pub fn plain_with_auth(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let htpasswd = write_htpasswd(dir.path(), user, password);
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  htpasswd:\n    realm: talext-test\n    path: {htpasswd}\n",
            root = dir.path().join("storage").display(),
            htpasswd = htpasswd.display(),
        );
        Registry::start(
            dir,
            port,
            &config,
            None,
            Some((user.into(), password.into())),
        )
    }

    /// A TLS registry whose certificate is signed by a fresh CA, with htpasswd basic auth for
    /// `user`:`password`.
    pub fn tls_with_auth(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let pki = make_pki(dir.path());
        let htpasswd = dir.path().join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("run htpasswd");
        assert!(
            out.status.success(),
            "htpasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&htpasswd, &out.stdout).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n\
             auth:\n  htpasswd:\n    realm: talext-test\n    path: {htpasswd}\n",
            root = dir.path().join("storage").display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            htpasswd = htpasswd.display(),
        );
        Registry::start(
            dir,
            port,
            &config,
            Some(pki.ca),
            Some((user.into(), password.into())),
        )
    }

    /// A TLS registry without authentication whose certificate is its own CA: one
    /// `openssl req -x509` with `basicConstraints=critical,CA:TRUE` and the loopback names, the
    /// way many self-hosted registries are set up. [`Registry::ca`] is that certificate.
    pub fn tls_self_signed_ca() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let (cert, key) = make_self_signed_ca(dir.path());
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n",
            root = dir.path().join("storage").display(),
            cert = cert.display(),
            key = key.display(),
        );
        Registry::start(dir, port, &config, Some(cert), None)
    }

    /// A plain-HTTP registry that trusts only bearer tokens from `token` (distribution's
    /// `auth: token` with `realm`, `service`, `issuer` and `rootcertbundle`), as Docker Hub,
    /// ghcr.io and GitLab do.
    pub fn token_auth(token: &crate::token::TokenServer) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n\
             \x20   rootcertbundle: {bundle}\n",
            root = dir.path().join("storage").display(),
            realm = token.realm,
            service = token.service,
            issuer = token.issuer,
            bundle = token.root_cert.display(),
        );
        Registry::start_with_auth(dir, port, &config)
    }

    /// Start a plain-HTTP registry whose `/v2/` asks for authentication (401 means ready).
    fn start_with_auth(dir: tempfile::TempDir, port: u16, config: &str) -> Registry {
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("registry.log"));
                panic!(
                    "docker-registry exited with {status}: {}",
                    log.unwrap_or_default()
                );
            }
            if let Ok(mut s) = TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.1 401")
                {
                    break;
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.path().join("registry.log"));
                panic!("docker-registry did not start: {}", log.unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            addr,
            ca: None,
            user: None,
            child,
            dir,
        }
    }

    fn start(
        dir: tempfile::TempDir,
        port: u16,
        config: &str,
        ca: Option<PathBuf>,
        user: Option<(String, String)>,
    ) -> Registry {
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry {
            addr: format!("127.0.0.1:{port}"),
            ca,
            user,
            child,
            dir,
        };
        registry.wait_ready();
        registry
    }

    /// Wait until `/v2/` answers (any HTTP status, or a TLS handshake for the TLS variant).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                if self.ca.is_some() {
                    return;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!(
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.addr
                );
                let mut answer = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && (answer.starts_with("HTTP/1.1 200")
                        || (self.user.is_some() && answer.starts_with("HTTP/1.1 401")))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the registry wrote on stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the registry.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// `docker://ADDR/REPO` for skopeo.
    pub fn docker_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{repo_and_tag}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write an htpasswd file (bcrypt, made by `htpasswd -Bbn`) holding `user`:`password`.
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let htpasswd = dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd");
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    htpasswd
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Files of a throwaway PKI.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// One self-signed certificate for `127.0.0.1` and `localhost` that is also a CA
/// (`basicConstraints=critical,CA:TRUE`), and its key: `(self-signed.crt, self-signed.key)`.
pub fn make_self_signed_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "self-signed.key",
            "-out",
            "self-signed.crt",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req -x509: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("self-signed.crt"), dir.join("self-signed.key"))
}

/// A CA and a server certificate for `127.0.0.1` and `localhost`, made by `openssl`.
pub fn make_pki(dir: &Path) -> Pki {
    let p = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=talext test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        p("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    Pki {
        ca: p("ca.crt"),
        server_cert: p("server.crt"),
        server_key: p("server.key"),
    }
}

/// A blob with its digest and media type.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            digest: sha256(&bytes),
            media_type: media_type.to_string(),
            bytes,
        }
    }

    /// The OCI descriptor of this blob, with extra fields merged in.
    pub fn descriptor(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut d = serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        });
        if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
            d.extend(extra.clone());
        }
        d
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A one-layer OCI image: a gzip layer holding `hello.txt` (built deterministically: mtime 0,
/// uid/gid 0), its config and its manifest.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub arch: String,
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

impl TestImage {
    pub fn new(content: &str, arch: &str) -> TestImage {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, "hello.txt", content.as_bytes())
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar).unwrap();
        let layer = Blob::new(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            gz.finish().unwrap(),
        );
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
        });
        let config = Blob::new(
            "application/vnd.oci.image.config.v1+json",
            serde_json::to_vec(&config).unwrap(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(serde_json::json!({})),
            "layers": [layer.descriptor(serde_json::json!({}))],
        });
        let manifest = Blob::new(
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec_pretty(&manifest).unwrap(),
        );
        TestImage {
            arch: arch.to_string(),
            layer,
            config,
            manifest,
        }
    }

    pub fn platform_descriptor(&self) -> serde_json::Value {
        self.manifest
            .descriptor(serde_json::json!({"platform": {"architecture": self.arch, "os": "linux"}}))
    }
}

/// An OCI index over `images`.
pub fn test_index(images: &[&TestImage]) -> Blob {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": images.iter().map(|i| i.platform_descriptor()).collect::<Vec<_>>(),
    });
    Blob::new(
        "application/vnd.oci.image.index.v1+json",
        serde_json::to_vec_pretty(&index).unwrap(),
    )
}

/// Write an OCI image layout at `dir` holding `images` and, when given, `index`; the top
/// entry (the index, or the single image) is tagged `tag`.
pub fn write_oci_layout(dir: &Path, images: &[&TestImage], index: Option<&Blob>, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put =
        |b: &Blob| std::fs::write(blobs.join(&b.digest["sha256:".len()..]), &b.bytes).unwrap();
    for i in images {
        put(&i.layer);
        put(&i.config);
        put(&i.manifest);
    }
    let top = match index {
        Some(idx) => {
            put(idx);
            idx.clone()
        }
        None => images[0].manifest.clone(),
    };
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = top
        .descriptor(serde_json::json!({"annotations": {"org.opencontainers.image.ref.name": tag}}));
    let index_json = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index_json).unwrap(),
    )
    .unwrap();
}

/// Run a command and return its stdout, panicking with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Write an OCI image layout at `dir` holding one linux/`arch` image made of `layers` (plain
/// tarballs, bottom first, each stored gzip-compressed), its manifest tagged `tag` and listed in
/// `index.json` with its platform. Returns the manifest blob. For tests that craft hostile layers.
pub fn write_layers_layout(dir: &Path, layers: &[Vec<u8>], arch: &str, tag: &str) -> Blob {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put =
        |b: &Blob| std::fs::write(blobs.join(&b.digest["sha256:".len()..]), &b.bytes).unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let blob = Blob::new(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            gz.finish().unwrap(),
        );
        put(&blob);
        descriptors.push(blob.descriptor(serde_json::json!({})));
        diff_ids.push(sha256(tar));
    }
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap(),
    );
    put(&config);
    let manifest = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(serde_json::json!({})),
            "layers": descriptors,
        }))
        .unwrap(),
    );
    put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = manifest.descriptor(serde_json::json!({
        "platform": {"architecture": arch, "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
    manifest
}
