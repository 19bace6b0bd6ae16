//! OpenID discovery and the bounded HTTP fetches behind it: the only network code in `auth`.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub(crate) use crate::vocabulary::fetch_url::check_fetch_url;

/// Discovery documents and key sets are a few KiB; a larger answer is a misconfiguration or an attack.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct DiscoveryDocument {
    pub jwks_uri: String,
}

/// GETs a JSON document with a timeout over the whole exchange and a cap on the body size.
pub(crate) async fn fetch_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<T, String> {
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| format!("request to `{url}` failed: {error}"))?;
    // The shared client may follow redirects; keys that arrived over a redirect to plain http
    // elsewhere are no better than keys fetched from there directly.
    check_fetch_url(response.url().as_str())
        .map_err(|problem| format!("`{url}` redirected: {problem}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("`{url}` answered {status}"));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(format!(
            "`{url}` answered more than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("reading `{url}` failed: {error}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "`{url}` answered more than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|error| format!("`{url}` did not answer the expected json: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_accepted_only_for_loopback_hosts() {
        assert!(check_fetch_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_fetch_url("http://[::1]:8080/x").is_ok());
        assert!(check_fetch_url("http://localhost/x").is_ok());
        assert!(check_fetch_url("https://login.microsoftonline.com/x").is_ok());
        assert!(check_fetch_url("http://login.microsoftonline.com/x").is_err());
        assert!(check_fetch_url("http://10.0.0.1/x").is_err());
        assert!(check_fetch_url("ftp://127.0.0.1/x").is_err());
        assert!(check_fetch_url("not a url").is_err());
    }
}
