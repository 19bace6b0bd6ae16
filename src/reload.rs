//! Hot reload of the rules, on SIGHUP or when the rule files change: the new rules are loaded and
//! validated beside the live ones and swapped in only when they load cleanly.
//!
//! A reload that fails keeps the old rules serving and is reported (log, metric, `/readyz`), but it
//! does not make the replica unready: the old rules are still a valid policy, and taking every
//! replica out of the load balancer because of one bad edit would deny every activation instead of
//! deciding under the last good rules. Requests in flight keep the `Arc<RuleSet>` they started with.
//!
//! A reload that would leave no policy at all is refused too (start-up only warns): a half-written
//! file or an emptied folder must not silently deny every activation. Restart to serve that on purpose.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::web;
use chrono::Utc;

use crate::connectors::Connectors;
use crate::http::state::{AppState, ReloadResult, ReloadStatus};
use crate::rules::{self, RuleSet};
use crate::vocabulary::diagnostic::{Diagnostic, Severity};

/// After a change is seen, how long the files must stay the same before they are loaded, so an
/// editor's or `kubectl`'s burst of writes causes one reload, not one per write.
const SETTLE: Duration = Duration::from_millis(250);
/// A folder that never stops changing is still reloaded, after this many settle rounds.
const MAX_SETTLE_ROUNDS: u32 = 20;

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new rules serve from now on.
    Replaced { old: String, new: String },
    /// The files hash to the revision already serving: nothing was swapped.
    Unchanged { revision: String },
    /// The new rules have errors (each formatted for an operator); the old rules keep serving.
    Rejected { problems: Vec<String> },
}

/// Owns what a reload needs: the state whose rules it swaps and the connectors built at start-up
/// (checks keep a handle to theirs, so reloaded rules use the same caches and circuit breakers).
pub struct Reloader {
    state: web::Data<AppState>,
    connectors: Arc<Connectors>,
    path: PathBuf,
    /// One reload at a time: a SIGHUP during a file-change reload waits instead of racing it.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        state: web::Data<AppState>,
        connectors: Arc<Connectors>,
        path: PathBuf,
    ) -> Arc<Reloader> {
        metrics::describe_counter!(
            "pimgate_rules_reloads_total",
            metrics::Unit::Count,
            "Rule reloads (SIGHUP or a change of the rule files), by result (ok|error)"
        );
        Arc::new(Reloader {
            state,
            connectors,
            path,
            running: tokio::sync::Mutex::new(()),
        })
    }

    /// Loads the rules again and serves them if they have no error; otherwise keeps the old ones.
    /// Every outcome is logged, counted and recorded for `/readyz`.
    pub async fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _one_at_a_time = self.running.lock().await;
        let path = self.path.clone();
        let connectors = Arc::clone(&self.connectors);
        // Reading files and compiling CEL is blocking work: keep it off the request workers.
        let loaded =
            tokio::task::spawn_blocking(move || rules::load_with(&path, &connectors)).await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(error) => Err(vec![
                self.problem(format!("the reload task failed: {error}")),
            ]),
        };
        let outcome = match loaded {
            Ok(new) if new.policies.is_empty() => self.reject(
                trigger,
                vec![self.problem(
                    "the new rules have no policies: every request would be denied".to_string(),
                )],
            ),
            Ok(new) => self.accept(trigger, new),
            Err(problems) => self.reject(trigger, problems),
        };
        let result = match outcome {
            ReloadOutcome::Rejected { .. } => "error",
            _ => "ok",
        };
        metrics::counter!("pimgate_rules_reloads_total", "result" => result).increment(1);
        outcome
    }

    fn accept(&self, trigger: &str, new: RuleSet) -> ReloadOutcome {
        for warning in &new.warnings {
            tracing::warn!(problem = %warning, "rules warning");
        }
        let old = self.state.rules().revision.clone();
        self.state.record_reload(ReloadStatus {
            result: ReloadResult::Ok,
            at: Utc::now(),
            trigger: trigger.to_string(),
            problems: 0,
            error: None,
        });
        if old == new.revision {
            tracing::debug!(trigger, revision = %old, "rules unchanged; nothing to reload");
            return ReloadOutcome::Unchanged { revision: old };
        }
        tracing::info!(
            trigger,
            old_revision = %old,
            new_revision = %new.revision,
            policies = new.policies.len(),
            path = %self.path.display(),
            "rules reloaded"
        );
        rules::record_metrics(&new);
        let revision = new.revision.clone();
        self.state.replace_rules(new);
        ReloadOutcome::Replaced { old, new: revision }
    }

    fn reject(&self, trigger: &str, problems: Vec<Diagnostic>) -> ReloadOutcome {
        let revision = self.state.rules().revision.clone();
        let errors: Vec<String> = problems
            .iter()
            .filter(|problem| problem.is_error())
            .map(ToString::to_string)
            .collect();
        for problem in &problems {
            match problem.severity {
                Severity::Error => {
                    tracing::error!(problem = %problem, "rules reload problem")
                }
                Severity::Warning => {
                    tracing::warn!(problem = %problem, "rules reload problem")
                }
            }
        }
        tracing::error!(
            trigger,
            errors = errors.len(),
            revision = %revision,
            path = %self.path.display(),
            "rules reload failed; the previous rules keep serving"
        );
        self.state.record_reload(ReloadStatus {
            result: ReloadResult::Error,
            at: Utc::now(),
            trigger: trigger.to_string(),
            problems: errors.len(),
            error: errors.first().cloned(),
        });
        ReloadOutcome::Rejected { problems: errors }
    }

    fn problem(&self, message: String) -> Diagnostic {
        Diagnostic::error(
            "",
            message,
            "fix the rules and save them again, or send SIGHUP",
        )
        .in_file(self.path.clone())
    }

    /// Polls the rule files every `interval` and reloads once per burst of changes. Std-only on
    /// purpose: names, sizes and modification times of a handful of files cost nothing to read, and
    /// polling also sees the symlink swap Kubernetes does when a mounted ConfigMap changes.
    pub fn spawn_watcher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let reloader = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = reloader.fingerprint().await;
            loop {
                tokio::time::sleep(interval).await;
                let mut current = reloader.fingerprint().await;
                if current == seen {
                    continue;
                }
                for _ in 0..MAX_SETTLE_ROUNDS {
                    tokio::time::sleep(SETTLE).await;
                    let again = reloader.fingerprint().await;
                    if again == current {
                        break;
                    }
                    current = again;
                }
                seen = current;
                reloader.reload("file change").await;
            }
        })
    }

    async fn fingerprint(&self) -> Vec<FileStamp> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || fingerprint(&path))
            .await
            .unwrap_or_default()
    }
}

/// What identifies one version of a rule file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    name: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
}

/// The files `rules::load_with` reads: the file itself, or a folder's `*.yaml`/`*.yml` files except
/// the `*.test.yaml`/`*.test.yml` cases. Metadata follows symlinks, so a swapped target counts.
fn fingerprint(path: &Path) -> Vec<FileStamp> {
    let stamp = |file: &Path| {
        std::fs::metadata(file).ok().map(|metadata| FileStamp {
            name: file.to_path_buf(),
            size: metadata.len(),
            modified: metadata.modified().ok(),
        })
    };
    if !path.is_dir() {
        return stamp(path).into_iter().collect();
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut stamps: Vec<FileStamp> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|file| file.is_file() && crate::rules::compile::is_rule_file(file))
        .filter_map(|file| stamp(&file))
        .collect();
    stamps.sort_by(|a, b| a.name.cmp(&b.name));
    stamps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_covers_the_rule_files_but_not_test_cases_or_other_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.yaml"), "x").expect("write");
        std::fs::write(dir.path().join("b.YML"), "xy").expect("write");
        std::fs::write(dir.path().join("a.test.yaml"), "cases").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "notes").expect("write");
        let names: Vec<String> = fingerprint(dir.path())
            .iter()
            .filter_map(|stamp| stamp.name.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yaml", "b.YML"]);
    }

    #[test]
    fn the_fingerprint_changes_when_a_rule_file_is_rewritten_added_or_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "one").expect("write");
        let first = fingerprint(dir.path());
        std::fs::write(&file, "three").expect("write");
        let rewritten = fingerprint(dir.path());
        assert_ne!(first, rewritten);
        std::fs::write(dir.path().join("b.yaml"), "x").expect("write");
        let added = fingerprint(dir.path());
        assert_ne!(rewritten, added);
        std::fs::remove_file(dir.path().join("b.yaml")).expect("remove");
        assert_eq!(fingerprint(dir.path()), rewritten);
        assert_eq!(fingerprint(&file).len(), 1);
    }
}
