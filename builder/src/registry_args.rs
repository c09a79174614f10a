//! The registry flags every registry command shares (`--username`, `--password-stdin`,
//! `--ca-file`, retries, timeouts, uploads) and their reading into [`RegistryOptions`]. Kept out
//! of `crate::registry`, which knows nothing of the command line or of the crate's error type.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::registry::{Credential, RegistryOptions, RetryPolicy, Secret, UploadMode};

/// Registry flags shared by every command that talks to a registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// User name for the registry; the password comes from `--password-stdin` or
    /// `TALEXT_REGISTRY_PASSWORD`.
    #[arg(long, env = "TALEXT_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Credentials file (Docker `config.json` or containers `auth.json` format) searched before
    /// the usual ones.
    #[arg(long, env = "TALEXT_REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Trust this PEM CA bundle for registry TLS, besides the system roots (repeatable).
    #[arg(
        long = "ca-file",
        env = "TALEXT_REGISTRY_CA_FILE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub ca_files: Vec<PathBuf>,
    /// Allow plain HTTP and unverified TLS to any registry, and sending credentials that way:
    /// anyone on the network path can read or alter the images and steal the credentials.
    #[arg(long, env = "TALEXT_REGISTRY_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: bool,
    /// Retries of one registry operation after its first attempt.
    #[arg(long, env = "TALEXT_RETRY_MAX", default_value_t = 5, value_name = "N")]
    pub retry_max: u32,
    /// Stop retrying an operation this long after its first attempt (e.g. `90s`, `5m`).
    #[arg(long, env = "TALEXT_RETRY_MAX_TIME", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_max_time: Duration,
    /// Delay before the first retry, doubled for each further one, with jitter.
    #[arg(long, env = "TALEXT_RETRY_DELAY", default_value = "500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_delay: Duration,
    /// Upload blobs in chunks instead of one request (some registries mishandle chunks).
    #[arg(long, env = "TALEXT_REGISTRY_CHUNKED", value_parser = clap::builder::BoolishValueParser::new())]
    pub chunked: bool,
    /// Chunk size in bytes for `--chunked`.
    #[arg(long, env = "TALEXT_REGISTRY_CHUNK_SIZE", default_value_t = 4 << 20, value_name = "BYTES")]
    pub chunk_size: usize,
    /// Fail an attempt when the registry sends nothing for this long (e.g. `60`, `90s`, `2m`).
    #[arg(long, env = "TALEXT_IDLE_TIMEOUT", default_value = "60", value_parser = parse_duration, value_name = "SECONDS")]
    pub idle_timeout: Duration,
    /// Fail an attempt whose request, answer included, takes longer than this (default: no
    /// deadline while bytes keep coming).
    #[arg(long, env = "TALEXT_TIMEOUT", value_parser = parse_duration, value_name = "SECONDS")]
    pub timeout: Option<Duration>,
}

/// Environment variable holding the password for `--username`.
pub const PASSWORD_ENV: &str = "TALEXT_REGISTRY_PASSWORD";

/// Credentials for one side of a copy, spelled like skopeo's (`--src-creds`, `--dest-creds`),
/// each sent only to that side's registry and winning there over `--username` and the files.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyCredentialArgs {
    /// Credentials for the source registry only, `USER[:PASSWORD]`; without a password it comes
    /// from `--src-password-stdin` or `TALEXT_SRC_PASSWORD`.
    #[arg(
        long,
        env = "TALEXT_SRC_CREDS",
        value_name = "USER[:PASSWORD]",
        hide_env_values = true
    )]
    pub src_creds: Option<String>,
    /// Read the source registry's password from standard input.
    #[arg(long, requires = "src_creds", conflicts_with_all = ["dest_password_stdin", "password_stdin"])]
    pub src_password_stdin: bool,
    /// Credentials for the destination registry only, `USER[:PASSWORD]`; without a password it
    /// comes from `--dest-password-stdin` or `TALEXT_DEST_PASSWORD`.
    #[arg(
        long,
        env = "TALEXT_DEST_CREDS",
        value_name = "USER[:PASSWORD]",
        hide_env_values = true
    )]
    pub dest_creds: Option<String>,
    /// Read the destination registry's password from standard input.
    #[arg(long, requires = "dest_creds", conflicts_with = "password_stdin")]
    pub dest_password_stdin: bool,
}

/// Environment variables holding the passwords for `--src-creds USER` and `--dest-creds USER`.
pub const SRC_PASSWORD_ENV: &str = "TALEXT_SRC_PASSWORD";
pub const DEST_PASSWORD_ENV: &str = "TALEXT_DEST_PASSWORD";

impl CopyCredentialArgs {
    /// The options for the source and for the destination: `base` with each side's credential
    /// in place of the shared one when that side has its own.
    pub fn sides(
        &self,
        base: &RegistryOptions,
    ) -> Result<(RegistryOptions, RegistryOptions), Error> {
        let side = |flag: &str, creds: &Option<String>, stdin: bool, env: &str| {
            let mut options = base.clone();
            if let Some(creds) = creds {
                options.credential = Some(side_credential(flag, creds, stdin, env)?);
            }
            Ok::<_, Error>(options)
        };
        Ok((
            side(
                "--src-creds",
                &self.src_creds,
                self.src_password_stdin,
                SRC_PASSWORD_ENV,
            )?,
            side(
                "--dest-creds",
                &self.dest_creds,
                self.dest_password_stdin,
                DEST_PASSWORD_ENV,
            )?,
        ))
    }
}

/// `USER[:PASSWORD]`, the password otherwise from stdin or `env`. Messages never hold the value
/// given, which may be a password.
fn side_credential(flag: &str, creds: &str, stdin: bool, env: &str) -> Result<Credential, Error> {
    let (username, inline) = match creds.split_once(':') {
        Some((user, password)) => (user, Some(password.to_string())),
        None => (creds, None),
    };
    if username.is_empty() {
        return Err(Error::input(format!("`{flag}` names no user")));
    }
    let stdin_flag = flag.replace("-creds", "-password-stdin");
    let password = match (inline, stdin) {
        (Some(_), true) => {
            return Err(Error::input(format!(
                "`{flag}` holds a password and `{stdin_flag}` was given: keep one"
            )))
        }
        (Some(password), false) => password,
        (None, true) => read_password_stdin(&stdin_flag)?,
        (None, false) => std::env::var(env)
            .ok()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::input_hint(
                    format!("`{flag}` needs a password"),
                    format!("write `{flag} USER:PASSWORD`, pass `{stdin_flag}` or set `{env}`"),
                )
            })?,
    };
    if password.is_empty() {
        return Err(Error::input(format!("`{flag}` holds an empty password")));
    }
    Ok(Credential::Basic {
        username: username.to_string(),
        password: Secret::new(password),
    })
}

/// One password from standard input, without its line ending.
fn read_password_stdin(flag: &str) -> Result<String, Error> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| Error::input(format!("cannot read the password from stdin: {e}")))?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Error::input(format!("`{flag}` read an empty password")));
    }
    Ok(password)
}

impl RegistryArgs {
    /// Resolve the flags into options, reading the password from stdin or the environment.
    pub fn options(&self) -> Result<RegistryOptions, Error> {
        let mut options = RegistryOptions::from_env();
        if let Some(file) = &self.auth_file {
            options.auth_files.insert(0, file.clone());
        }
        let env_password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        options.credential = match (&self.username, self.password_stdin, env_password) {
            (Some(username), true, _) => {
                let password = read_password_stdin("--password-stdin")?;
                Some(Credential::Basic {
                    username: username.clone(),
                    password: Secret::new(password),
                })
            }
            (Some(username), false, Some(password)) => Some(Credential::Basic {
                username: username.clone(),
                password: Secret::new(password),
            }),
            (Some(_), false, None) => {
                return Err(Error::input_hint(
                    "`--username` needs a password",
                    format!("pass `--password-stdin` or set `{PASSWORD_ENV}`"),
                ))
            }
            (None, _, Some(_)) => {
                return Err(Error::input(format!(
                    "`{PASSWORD_ENV}` is set but `--username` is not"
                )))
            }
            (None, _, None) => None,
        };
        options.tls.ca_files = self.ca_files.clone();
        options.tls.insecure = self.insecure;
        options.retry = RetryPolicy {
            max_retries: self.retry_max,
            max_time: self.retry_max_time,
            initial_delay: self.retry_delay,
            ..RetryPolicy::default()
        };
        if self.idle_timeout.is_zero() {
            return Err(Error::input("`--idle-timeout` must be more than 0"));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::input("`--timeout` must be more than 0"));
        }
        options.idle_timeout = self.idle_timeout;
        options.timeout = self.timeout;
        options.upload = if self.chunked {
            if self.chunk_size == 0 {
                return Err(Error::input("`--chunk-size` must be at least 1"));
            }
            UploadMode::Chunked {
                chunk_size: self.chunk_size,
            }
        } else {
            UploadMode::Monolithic
        };
        Ok(options)
    }
}

/// Parse `500ms`, `30s`, `5m`, `1h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like `500ms`, `30s` or `5m`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
