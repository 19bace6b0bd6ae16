//! The fact book: what the upstream systems told the checks during one evaluation.
//!
//! Every upstream question a check asks goes through [`through`] at the connector's entry point
//! (profiles from Graph or the HR file, ITSM tickets, on-call shifts, Graph groups and
//! authentication methods, `http` verdicts, OPA). A [`FactBook`] scoped to the evaluation with
//! [`scope`] (a tokio task-local: the checks run with `join_all` in the evaluating task) decides
//! what happens:
//!
//! - **record** ([`FactBook::recording`], the service): the question is asked as usual and the
//!   typed answer (found value, not found, or the error class) is kept as a [`Fact`]
//!   `{source, key, value | notFound | error}`. Cached answers are kept too: the book holds what the
//!   check saw. The audit record carries [`FactBook::facts`].
//! - **replay** ([`FactBook::replaying`], `rules backtest`, rule tests): the question is answered
//!   from the book and never asked. A question the book has no answer for is an [`UpstreamError`]
//!   ("not recorded: cannot replay"), never a pass: the check is not evaluated and `on_error`
//!   decides; [`FactBook::misses`] names those questions. A fact built with [`Fact::any_key`]
//!   answers every question of its `source` that no exact fact answers (for stubbed rule tests).
//! - no book in scope (unit tests, `evaluate`): the question is asked, nothing is kept.
//!
//! Sources are `<connector>.<question>` (`graph.user`, `servicenow.ticket`, `pagerduty.oncall`, ...);
//! keys are what identifies the question (principal id, table and number, schedules and instant).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Fetched, UpstreamError};

/// The answer a fact records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FactAnswer {
    /// The upstream's answer, as pimgate read it (the connector's typed record).
    Value(Value),
    /// The upstream said there is no such record (a 404 for a user or ticket).
    NotFound(bool),
    /// The question could not be answered: the error class (`timeout`, `http_error`, ...).
    Error(String),
}

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fact {
    pub source: String,
    pub key: String,
    /// Replay only: this fact answers any key of `source` (exact facts win).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_key: bool,
    #[serde(flatten)]
    pub answer: FactAnswer,
}

impl Fact {
    pub fn new(source: impl Into<String>, key: impl Into<String>, answer: FactAnswer) -> Self {
        Self {
            source: source.into(),
            key: key.into(),
            any_key: false,
            answer,
        }
    }

    /// A fact that answers every question of `source` (a stub for rule tests).
    pub fn any_key(source: impl Into<String>, answer: FactAnswer) -> Self {
        Self {
            source: source.into(),
            key: "*".into(),
            any_key: true,
            answer,
        }
    }

    /// A found value, serialised as the connector's typed record.
    pub fn found<T: Serialize>(source: &str, key: &str, value: &T) -> Self {
        let answer = serde_json::to_value(value)
            .map(FactAnswer::Value)
            .unwrap_or_else(|_| FactAnswer::Error("malformed".into()));
        Self::new(source, key, answer)
    }
}

#[derive(Debug)]
enum Mode {
    Record,
    Replay(Vec<Fact>),
}

/// The facts of one evaluation; see the module doc.
#[derive(Debug)]
pub struct FactBook {
    mode: Mode,
    recorded: Mutex<Vec<Fact>>,
    misses: Mutex<Vec<(String, String)>>,
}

impl FactBook {
    /// A book that asks upstream and keeps every answer.
    pub fn recording() -> Arc<Self> {
        Arc::new(Self {
            mode: Mode::Record,
            recorded: Mutex::new(Vec::new()),
            misses: Mutex::new(Vec::new()),
        })
    }

    /// A book that answers from `facts` and never asks upstream.
    pub fn replaying(facts: Vec<Fact>) -> Arc<Self> {
        Arc::new(Self {
            mode: Mode::Replay(facts),
            recorded: Mutex::new(Vec::new()),
            misses: Mutex::new(Vec::new()),
        })
    }

    pub fn is_replay(&self) -> bool {
        matches!(self.mode, Mode::Replay(_))
    }

    /// What was recorded, one fact per question (the first answer seen), in the order asked.
    pub fn facts(&self) -> Vec<Fact> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// [`FactBook::facts`] for the book's last reader (the audit record): moved out, not copied.
    pub fn take_facts(&self) -> Vec<Fact> {
        std::mem::take(&mut *self.recorded.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replay: the questions (source, key) the book could not answer.
    pub fn misses(&self) -> Vec<(String, String)> {
        self.misses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lookup(&self, source: &str, key: &str) -> Option<FactAnswer> {
        let Mode::Replay(facts) = &self.mode else {
            return None;
        };
        let exact = facts
            .iter()
            .find(|fact| !fact.any_key && fact.source == source && fact.key == key);
        let found = exact.or_else(|| {
            facts
                .iter()
                .find(|fact| fact.any_key && fact.source == source)
        });
        match found {
            Some(fact) => Some(fact.answer.clone()),
            None => {
                self.misses
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((source.to_string(), key.to_string()));
                None
            }
        }
    }

    fn keep(&self, fact: Fact) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if !recorded
            .iter()
            .any(|kept| kept.source == fact.source && kept.key == fact.key)
        {
            recorded.push(fact);
        }
    }
}

tokio::task_local! {
    static BOOK: Arc<FactBook>;
}

/// Runs `future` (an evaluation) with `book` in scope.
pub async fn scope<F: Future>(book: Arc<FactBook>, future: F) -> F::Output {
    BOOK.scope(book, future).await
}

fn current() -> Option<Arc<FactBook>> {
    BOOK.try_with(Arc::clone).ok()
}

/// The connector names errors are attributed to (`UpstreamError` holds `&'static str`).
fn connector_name(source: &str) -> &'static str {
    let connector = source.split('.').next().unwrap_or(source);
    super::ConnectorId::ALL
        .iter()
        .map(|id| id.name())
        .chain(["file"])
        .find(|name| *name == connector)
        .unwrap_or("upstream")
}

/// The error a replayed question answers with: a recorded error class, or "not recorded".
fn replay_error(source: &str, detail: String) -> UpstreamError {
    UpstreamError::Unavailable {
        connector: connector_name(source),
        detail,
    }
}

/// A value the book can keep and give back.
pub trait Recordable: Sized {
    fn to_answer(&self) -> FactAnswer;
    /// `Err`: the recorded answer is not one this question can have (a detail for the operator).
    fn from_answer(answer: FactAnswer, source: &str) -> Result<Self, String>;
}

impl<T: Serialize + DeserializeOwned> Recordable for Result<Fetched<T>, UpstreamError> {
    fn to_answer(&self) -> FactAnswer {
        match self {
            Ok(Fetched::Found(value)) => match serde_json::to_value(value) {
                Ok(value) => FactAnswer::Value(value),
                Err(_) => FactAnswer::Error("malformed".into()),
            },
            Ok(Fetched::NotFound) => FactAnswer::NotFound(true),
            Err(error) => FactAnswer::Error(error.outcome().into()),
        }
    }

    fn from_answer(answer: FactAnswer, source: &str) -> Result<Self, String> {
        Ok(match answer {
            FactAnswer::Value(value) => Ok(Fetched::Found(
                serde_json::from_value(value).map_err(|error| error.to_string())?,
            )),
            FactAnswer::NotFound(_) => Ok(Fetched::NotFound),
            FactAnswer::Error(class) => {
                Err(replay_error(source, format!("recorded error: {class}")))
            }
        })
    }
}

/// How a question that cannot be replayed is answered (the value's own "could not be evaluated").
pub trait Unanswerable {
    fn unanswerable(source: &str, detail: String) -> Self;
}

impl<T> Unanswerable for Result<Fetched<T>, UpstreamError> {
    fn unanswerable(source: &str, detail: String) -> Self {
        Err(replay_error(source, detail))
    }
}

/// An answer that has no "not found" (a verdict, an OPA decision): the value or the error.
#[derive(Debug)]
pub struct Plain<T>(pub Result<T, UpstreamError>);

impl<T: Serialize + DeserializeOwned> Recordable for Plain<T> {
    fn to_answer(&self) -> FactAnswer {
        match &self.0 {
            Ok(value) => match serde_json::to_value(value) {
                Ok(value) => FactAnswer::Value(value),
                Err(_) => FactAnswer::Error("malformed".into()),
            },
            Err(error) => FactAnswer::Error(error.outcome().into()),
        }
    }

    fn from_answer(answer: FactAnswer, source: &str) -> Result<Self, String> {
        Ok(Plain(match answer {
            FactAnswer::Value(value) => {
                Ok(serde_json::from_value(value).map_err(|error| error.to_string())?)
            }
            FactAnswer::NotFound(_) => return Err("`notFound` for a question that has none".into()),
            FactAnswer::Error(class) => {
                Err(replay_error(source, format!("recorded error: {class}")))
            }
        }))
    }
}

impl<T> Unanswerable for Plain<T> {
    fn unanswerable(source: &str, detail: String) -> Self {
        Plain(Err(replay_error(source, detail)))
    }
}

/// A short stable key for a question asked with a whole document (OPA's input).
pub fn digest(value: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// Asks `fetch` (or the book) the question `key` of `source`, as the book in scope says. `calls` is
/// what the fetch also returns (its upstream call records); a replayed answer has none.
pub async fn through<T, C, F>(source: &str, key: &str, fetch: F) -> (T, C)
where
    T: Recordable + Unanswerable,
    C: Default,
    F: Future<Output = (T, C)>,
{
    let Some(book) = current() else {
        return fetch.await;
    };
    if book.is_replay() {
        let answer = match book.lookup(source, key) {
            Some(answer) => T::from_answer(answer, source).unwrap_or_else(|detail| {
                book.misses
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((source.to_string(), key.to_string()));
                T::unanswerable(source, format!("unreadable recorded answer: {detail}"))
            }),
            None => T::unanswerable(source, NOT_RECORDED.to_string()),
        };
        return (answer, C::default());
    }
    let (answer, calls) = fetch.await;
    book.keep(Fact::new(source, key, answer.to_answer()));
    (answer, calls)
}

/// The detail of a question the book has no answer for.
pub const NOT_RECORDED: &str = "not recorded: cannot replay";

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = Result<Fetched<String>, UpstreamError>;

    async fn ask(key: &str, asked: &std::sync::atomic::AtomicUsize) -> (Answer, Vec<u8>) {
        through("graph.user", key, async {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (Ok(Fetched::Found(format!("live {key}"))), vec![1])
        })
        .await
    }

    #[tokio::test]
    async fn recording_keeps_each_question_once_and_replay_answers_without_asking() {
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let book = FactBook::recording();
        scope(book.clone(), async {
            let _ = ask("a", &asked).await;
            let _ = ask("a", &asked).await;
            let _ = ask("b", &asked).await;
        })
        .await;
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
        let facts = book.facts();
        assert_eq!(facts.len(), 2);
        let text = serde_json::to_string(&facts[0]).expect("json");
        assert_eq!(
            text,
            r#"{"source":"graph.user","key":"a","value":"live a"}"#
        );
        let back: Fact = serde_json::from_str(&text).expect("fact");
        assert_eq!(back, facts[0]);

        let replay = FactBook::replaying(facts);
        let (answer, calls) = scope(replay.clone(), ask("a", &asked)).await;
        assert_eq!(answer, Ok(Fetched::Found("live a".to_string())));
        assert!(calls.is_empty());
        let (missing, _) = scope(replay.clone(), ask("c", &asked)).await;
        assert!(
            matches!(&missing, Err(UpstreamError::Unavailable { connector: "graph", detail }) if detail == NOT_RECORDED),
            "{missing:?}"
        );
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(replay.misses(), [("graph.user".into(), "c".into())]);
    }

    #[tokio::test]
    async fn a_wildcard_fact_answers_any_key_and_an_exact_one_wins() {
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let book = FactBook::replaying(vec![
            Fact::any_key("graph.user", FactAnswer::NotFound(true)),
            Fact::found("graph.user", "x", &"exact"),
        ]);
        let (any, _) = scope(book.clone(), ask("whoever", &asked)).await;
        assert_eq!(any, Ok(Fetched::NotFound));
        let (exact, _) = scope(book.clone(), ask("x", &asked)).await;
        assert_eq!(exact, Ok(Fetched::Found("exact".to_string())));
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(book.misses().is_empty());
    }

    #[tokio::test]
    async fn a_recorded_error_replays_as_an_error_and_no_book_asks_live() {
        let book = FactBook::replaying(vec![Fact::new(
            "servicenow.ticket",
            "k",
            FactAnswer::Error("timeout".into()),
        )]);
        let (answer, ()) = scope(
            book,
            through::<Answer, (), _>("servicenow.ticket", "k", async {
                (Ok(Fetched::NotFound), ())
            }),
        )
        .await;
        assert!(matches!(
            answer,
            Err(UpstreamError::Unavailable {
                connector: "servicenow",
                ..
            })
        ));
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let (live, _) = ask("z", &asked).await;
        assert_eq!(live, Ok(Fetched::Found("live z".to_string())));
    }
}
