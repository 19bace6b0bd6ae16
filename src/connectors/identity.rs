//! PLACEHOLDER (identity mapping): principalId → UserProfile via Graph, else the HR file.

use tokio::time::Instant;

use super::http::{Fetched, UpstreamCall, UpstreamError};
use super::{Connectors, UserProfile};

impl Connectors {
    /// The requester's profile, from Microsoft Graph when configured, else from the HR file.
    pub async fn user_profile(
        &self,
        _principal_id: &str,
        _deadline: Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        (
            Err(UpstreamError::NotConfigured { connector: "graph" }),
            Vec::new(),
        )
    }
}
