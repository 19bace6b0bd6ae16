//! Identity mapping: PIM names the requester by Entra object id, upstream systems know people by
//! mail or login. This asks Microsoft Graph (cached) or the HR file for the person behind the id.

use tokio::time::Instant;

use super::http::{Fetched, UpstreamCall, UpstreamError};
use super::{Connectors, UserProfile};

/// Where a profile comes from; the `hr` check names it explicitly, other checks take the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileSource {
    Graph,
    HrFile,
}

impl ProfileSource {
    /// How requesters see the system named in messages.
    pub fn label(self) -> &'static str {
        match self {
            ProfileSource::Graph => "the directory (Microsoft Graph)",
            ProfileSource::HrFile => "the HR file",
        }
    }
}

impl Connectors {
    /// The requester's profile, from Microsoft Graph when configured, else from the HR file.
    pub async fn user_profile(
        &self,
        principal_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let source = if self.graph.is_some() {
            ProfileSource::Graph
        } else if self.hr_file.is_some() {
            ProfileSource::HrFile
        } else {
            return (
                Err(UpstreamError::NotConfigured { connector: "graph" }),
                Vec::new(),
            );
        };
        self.user_profile_from(source, principal_id, deadline).await
    }

    /// The requester's profile from one named source; `NotConfigured` when that source is absent.
    /// Through the fact book (`connectors::facts`): recorded, or answered from a replay.
    pub async fn user_profile_from(
        &self,
        source: ProfileSource,
        principal_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let fact = match source {
            ProfileSource::Graph => "graph.user",
            ProfileSource::HrFile => "hr_file.user",
        };
        super::facts::through(
            fact,
            principal_id,
            self.fetch_profile(source, principal_id, deadline),
        )
        .await
    }

    async fn fetch_profile(
        &self,
        source: ProfileSource,
        principal_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        match source {
            // Boxed: Graph's request future is kilobytes of state (HTTP client, retries). Inline, it
            // made this future as large for the HR file's lookup too, and every `hr` check paid for
            // copying it several times over (the caller's future, `facts::through`'s, the check's
            // boxed future); an allocation on the Graph path, which goes upstream anyway, is nothing.
            ProfileSource::Graph => match &self.graph {
                Some(graph) => Box::pin(graph.user(principal_id, deadline)).await,
                None => (
                    Err(UpstreamError::NotConfigured { connector: "graph" }),
                    Vec::new(),
                ),
            },
            ProfileSource::HrFile => match &self.hr_file {
                Some(file) => {
                    let (result, call) = file.user(principal_id);
                    (result, vec![call])
                }
                None => (
                    Err(UpstreamError::NotConfigured {
                        connector: "hr_file",
                    }),
                    Vec::new(),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    /// A local profile lookup (the `hr` check on the HR file) must not carry the Graph request's
    /// state: inline, that made every lookup a 9 KB (release) to 37 KB (debug) future, copied
    /// several times per check (issue 16's profile: 5 % of the CPU in `memcpy`).
    #[test]
    fn a_profile_lookup_is_a_small_future_whatever_the_source() {
        let connectors = crate::connectors::Connectors::default();
        let deadline = tokio::time::Instant::now();
        for source in [super::ProfileSource::HrFile, super::ProfileSource::Graph] {
            let lookup = connectors.user_profile_from(source, "someone", deadline);
            let size = std::mem::size_of_val(&lookup);
            assert!(size <= 1024, "{source:?}: a {size}-byte future");
        }
    }
}
