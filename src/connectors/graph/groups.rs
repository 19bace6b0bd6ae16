//! The requester's transitive group memberships, for the `group` check:
//! `GET /v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group?$select=id,displayName`, every
//! `@odata.nextLink` page followed (bounded, same Graph origin only).
//!
//! A child module of `graph` so it can use the connector's token lease without widening its API.
//! Not cached: membership is current state, and a removal must take effect on the next request.
//!
//! Without `GroupMember.Read.All` (or a grant that includes it) Graph answers this call with fewer
//! groups, or with groups stripped to their type, instead of refusing it. A token that does not
//! prove the grant is therefore refused here, before asking: a short list read as "not a member"
//! would let a `not_member_of` rule pass.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{CONNECTOR, Graph};
use crate::connectors::Permission;
use crate::connectors::http::{Fetched, UpstreamCall, UpstreamError};

/// Application permission to read every group a user belongs to, transitively.
pub const GROUP_MEMBER_READ_ALL: Permission = Permission {
    connector: CONNECTOR,
    name: "GroupMember.Read.All",
    satisfied_by: &[
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    reads: "users' transitive group memberships",
};

/// At most this many pages (Graph's default page is 100 groups): a user in more is not judged.
pub const MAX_GROUP_PAGES: usize = 20;

pub const GROUPS_OPERATION: &str = "GET /v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group";

/// One group the user is a member of, directly or through nested groups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRef {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GroupPage {
    value: Vec<GroupRef>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

impl Graph {
    /// Every group `user_id` is a transitive member of. `NotFound`: Graph does not know the user.
    /// Every Graph or token call made is returned for the audit record.
    pub async fn transitive_groups(
        &self,
        user_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<Vec<GroupRef>>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let fetch = async {
            let mut calls = Vec::new();
            let result = self
                .fetch_groups(user_id.trim(), deadline, &mut calls)
                .await;
            (result, calls)
        };
        crate::connectors::facts::through("graph.groups", user_id.trim(), fetch).await
    }

    async fn fetch_groups(
        &self,
        user_id: &str,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<Vec<GroupRef>>, UpstreamError> {
        let unreachable = UpstreamError::Unreachable {
            connector: CONNECTOR,
        };
        let mut url = reqwest::Url::parse(self.graph_url()).map_err(|_| unreachable.clone())?;
        url.path_segments_mut()
            .map_err(|_| unreachable.clone())?
            .pop_if_empty()
            .extend([
                "v1.0",
                "users",
                user_id,
                "transitiveMemberOf",
                "microsoft.graph.group",
            ]);
        url.set_query(Some("$select=id,displayName"));
        let mut groups = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(page_url) = next.take() {
            if pages == MAX_GROUP_PAGES {
                tracing::warn!(
                    connector = CONNECTOR,
                    operation = GROUPS_OPERATION,
                    pages,
                    "the user is in more groups than pimgate reads; the group check is not evaluated"
                );
                return Err(UpstreamError::Malformed {
                    connector: CONNECTOR,
                });
            }
            pages += 1;
            match self.fetch_group_page(page_url, deadline, calls).await? {
                Fetched::NotFound => return Ok(Fetched::NotFound),
                Fetched::Found(page) => {
                    groups.extend(page.value);
                    next = match page.next_link {
                        None => None,
                        Some(link) => Some(self.same_origin(&link, GROUPS_OPERATION)?),
                    };
                }
            }
        }
        Ok(Fetched::Found(groups))
    }

    /// A `@odata.nextLink` is followed only under the configured Graph root: the bearer token goes
    /// with it. `operation` names the lookup in the log.
    pub(super) fn same_origin(
        &self,
        link: &str,
        operation: &'static str,
    ) -> Result<reqwest::Url, UpstreamError> {
        let malformed = UpstreamError::Malformed {
            connector: CONNECTOR,
        };
        let root = format!("{}/", self.graph_url());
        if !link.starts_with(&root) {
            tracing::warn!(
                connector = CONNECTOR,
                operation,
                "Microsoft Graph's next page link leaves the configured Graph URL; not following it"
            );
            return Err(malformed);
        }
        reqwest::Url::parse(link).map_err(|_| malformed)
    }

    async fn fetch_group_page(
        &self,
        url: reqwest::Url,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<GroupPage>, UpstreamError> {
        self.get_page(
            url,
            &GROUP_MEMBER_READ_ALL,
            GROUPS_OPERATION,
            (
                "the app's token does not show GroupMember.Read.All, without which Graph leaves groups out; grant it with admin consent",
                "Microsoft Graph refused the app's token; grant it GroupMember.Read.All with admin consent",
            ),
            deadline,
            calls,
        )
        .await
    }
}
