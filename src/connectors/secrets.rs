//! Secrets come from an environment variable or a file (Kubernetes/Key Vault CSI mounts), never from
//! the rules or the config file itself, and never appear in `Debug`, logs or errors.

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::vocabulary::diagnostic::Diagnostic;

/// Where a secret lives: `{ env = "PIMGATE_SERVICENOW_PASSWORD" }` or `{ file = "/mnt/secrets/sn" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// A secret value. `Debug`/`Display` print a placeholder so it cannot leak through formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

thread_local! {
    /// Set while [`without_secrets`] builds connectors on this thread.
    static SECRETS_DEFERRED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` (connector construction, which is synchronous) with secrets not required: a
/// reference to a variable or file that is not there resolves to an empty secret instead of an
/// error, so `rules validate` and `rules test` work in CI with the configuration but without the
/// production secrets. A malformed reference (both `env` and `file`, or neither) is still an error.
/// Only for tools that never call an upstream system; the service builds its connectors outside it
/// and refuses to start on a missing secret.
pub fn without_secrets<R>(build: impl FnOnce() -> R) -> R {
    let before = SECRETS_DEFERRED.with(|deferred| deferred.replace(true));
    let result = build();
    SECRETS_DEFERRED.with(|deferred| deferred.set(before));
    result
}

impl SecretRef {
    /// Reads the secret now. The error names where we looked, never the value. Inside
    /// [`without_secrets`], a secret that is not there is empty instead of an error.
    pub fn resolve(&self) -> Result<Secret, String> {
        let found = self.read();
        match found {
            Err(_)
                if self.env.is_some() != self.file.is_some()
                    && SECRETS_DEFERRED.with(Cell::get) =>
            {
                Ok(Secret(String::new()))
            }
            found => found,
        }
    }

    fn read(&self) -> Result<Secret, String> {
        match (&self.env, &self.file) {
            (Some(_), Some(_)) => Err("give either `env` or `file`, not both".into()),
            (None, None) => Err("give `env` (a variable name) or `file` (a path)".into()),
            (Some(name), None) => match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => Ok(Secret(value.trim().to_string())),
                _ => Err(format!("environment variable `{name}` is not set or empty")),
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(value) if !value.trim().is_empty() => Ok(Secret(value.trim().to_string())),
                Ok(_) => Err(format!("secret file `{}` is empty", path.display())),
                Err(error) => Err(format!(
                    "cannot read secret file `{}`: {error}",
                    path.display()
                )),
            },
        }
    }
}

/// Resolves the secret setting `connectors.<connector>.<key>` at start-up. A missing or unreadable
/// secret becomes a problem naming the key (never the value), so every one is reported at once.
pub fn required_secret(
    connector: &str,
    key: &str,
    reference: &Option<SecretRef>,
    problems: &mut Vec<Diagnostic>,
) -> Option<Secret> {
    let full_key = format!("connectors.{connector}.{key}");
    let Some(reference) = reference else {
        problems.push(Diagnostic::error(
            full_key,
            "is missing",
            format!("set `{key} = {{ env = \"VARIABLE\" }}` or `{{ file = \"/path\" }}`"),
        ));
        return None;
    };
    match reference.resolve() {
        Ok(secret) => Some(secret),
        Err(message) => {
            problems.push(Diagnostic::error(
                full_key,
                message,
                "provide the secret through that variable or file",
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_secret_is_read_from_a_file_and_errors_name_the_place_not_the_value() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        let from_file = SecretRef {
            env: None,
            file: Some(path.clone()),
        };
        assert_eq!(from_file.resolve().expect("read").expose(), "s3cret");
        let missing = SecretRef {
            env: Some("PIMGATE_TEST_SURELY_UNSET_VARIABLE".into()),
            file: None,
        };
        assert!(
            missing
                .resolve()
                .expect_err("unset")
                .contains("PIMGATE_TEST_SURELY_UNSET_VARIABLE")
        );
        let both = SecretRef {
            env: Some("X".into()),
            file: Some(path),
        };
        assert!(both.resolve().is_err());
        assert!(SecretRef::default().resolve().is_err());
    }

    #[test]
    fn without_secrets_a_missing_secret_is_empty_but_a_malformed_reference_is_still_an_error() {
        let missing = SecretRef {
            env: Some("PIMGATE_TEST_SURELY_UNSET_VARIABLE".into()),
            file: None,
        };
        let deferred = without_secrets(|| missing.resolve());
        assert_eq!(
            deferred.map(|secret| secret.expose().to_string()),
            Ok(String::new())
        );
        assert!(without_secrets(|| SecretRef::default().resolve()).is_err());
        assert!(
            missing.resolve().is_err(),
            "outside, a missing secret is an error again"
        );
    }
}
