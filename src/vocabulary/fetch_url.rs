//! The one rule for URLs pimgate fetches from (signing keys, OpenID metadata, upstream systems):
//! `https://` anywhere, plain `http://` only to loopback, where nobody can tamper in transit.

use std::net::IpAddr;

use reqwest::Url;

/// Accepts `https://` anywhere and plain `http://` only to loopback, where nobody can tamper with
/// the keys in transit (`shared/spec/interface.md`, Configuration).
pub fn check_fetch_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|error| format!("`{raw}` is not a url: {error}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "`{raw}` uses plain http to a host that is not loopback"
            ));
        }
        other => return Err(format!("`{raw}` has unsupported scheme `{other}`")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}
