//! The configuration contract an extension definition declares for its service (`config:` in
//! `extension.yaml`): the environment keys the service reads, which are required and which hold
//! secrets, and the `configFiles` mount paths it reads. `talext config esc` renders the
//! `ExtensionServiceConfig` of any extension from it, and `talext config lint --definition`
//! checks one against it (`contract-env-missing`, `contract-env-unknown`,
//! `contract-config-file-unknown`), so what the Tailscale rules do for Tailscale works for every
//! extension that declares its contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::goyaml::{self, GoValue};

/// `config:` of a definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Contract {
    /// The environment the service reads, by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, EnvKey>,
    /// The `configFiles[].mountPath`s the service reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvKey {
    /// The service does not start without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Its value is a credential: never printed, taken from the environment by `config esc`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Contract {
    /// The known key closest to `key` (a likely typo), for "did you mean".
    pub fn nearest(&self, key: &str) -> Option<&str> {
        crate::error::did_you_mean(key, self.environment.keys().map(String::as_str))
    }
}

/// One `--env` of `config esc`: `KEY=VALUE`, or `KEY` to take the value from the environment
/// variable of that name (how secrets are given).
pub fn parse_env(arg: &str) -> Result<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        Some(_) => Err(Error::input(format!("`--env {arg}` has no key"))),
        None => {
            let v = std::env::var(arg).map_err(|_| {
                Error::input_hint(
                    format!("`--env {arg}` takes its value from the environment variable `{arg}`, which is not set"),
                    format!("export {arg}=… first, or write `--env {arg}=VALUE` for a value that is not a secret"),
                )
            })?;
            Ok((arg.to_string(), v))
        }
    }
}

/// The `ExtensionServiceConfig` of the extension `name` with `env` (in the order given), checked
/// against `contract`: every required key present, no key it does not declare (with the key
/// meant), secrets never given inline on the command line.
pub fn render_esc(
    name: &str,
    contract: &Contract,
    env: &[(String, String)],
    inline: &[String],
) -> Result<String> {
    let mut problems = Vec::new();
    for (k, _) in env {
        if !contract.environment.contains_key(k) {
            problems.push(match contract.nearest(k) {
                Some(near) => {
                    format!("`{k}` is not in the contract of `{name}`; did you mean `{near}`?")
                }
                None => format!("`{k}` is not in the contract of `{name}`"),
            });
        }
    }
    for (k, spec) in &contract.environment {
        if spec.required && !env.iter().any(|(e, v)| e == k && !v.is_empty()) {
            problems.push(format!("`{k}` is required by `{name}` and not given"));
        }
        if spec.secret && inline.contains(k) {
            problems.push(format!(
                "`{k}` is a secret: give it as `--env {k}` with the value in the environment variable `{k}`, not on the command line"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::input_hint(
            problems.join("; "),
            "the keys are declared under `config.environment` in the definition",
        ));
    }
    let entries = env
        .iter()
        .map(|(k, v)| GoValue::str(format!("{k}={v}")))
        .collect();
    Ok(goyaml::marshal(
        &GoValue::Map(vec![
            ("apiVersion".into(), GoValue::str("v1alpha1")),
            ("kind".into(), GoValue::str("ExtensionServiceConfig")),
            ("name".into(), GoValue::str(name)),
            ("environment".into(), GoValue::Seq(entries)),
        ]),
        2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Contract {
        serde_yaml::from_str(
            "environment:\n  API_TOKEN: {required: true, secret: true}\n  LOG_LEVEL: {description: debug or info}\nconfigFiles: [/etc/x/config.toml]\n",
        )
        .unwrap()
    }

    #[test]
    fn renders_what_the_contract_allows() {
        let env = vec![
            ("API_TOKEN".to_string(), "s3cret".to_string()),
            ("LOG_LEVEL".to_string(), "debug".to_string()),
        ];
        let doc = render_esc("x", &contract(), &env, &[]).unwrap();
        assert_eq!(doc, "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: x\nenvironment:\n  - API_TOKEN=s3cret\n  - LOG_LEVEL=debug\n");
        let e = render_esc("x", &contract(), &env[1..], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`API_TOKEN` is required"), "{e}");
        let typo = vec![env[0].clone(), ("LOG_LEVL".into(), "x".into())];
        let e = render_esc("x", &contract(), &typo, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `LOG_LEVEL`?"), "{e}");
        let e = render_esc("x", &contract(), &env, &["API_TOKEN".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a secret") && !e.contains("s3cret"), "{e}");
    }
}
