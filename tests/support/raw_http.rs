//! A raw HTTP/1.1 client on a tokio `TcpStream`, for tests that must control every byte (slow
//! clients) or tell exactly how a request failed (nothing received, or a response cut short), which
//! reqwest's error kinds cannot.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The server said it closes the connection after this response.
    pub fn closes_connection(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How reading a response failed: the difference between a request the server never took up and
/// an answer lost half-way.
#[derive(Debug)]
pub enum Failure {
    /// End of stream or an error before the first byte of a response.
    NothingReceived(String),
    /// The connection ended after `received` bytes of a response.
    CutShort { received: usize, error: String },
}

/// The bytes of `POST /v1/evaluate` with a bearer token and a JSON body.
pub fn evaluate_request(token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The bytes of a bodiless GET.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// Reads one response (headers and a `Content-Length` body). A read error is a failure like end
/// of stream: both mean the server (or the kernel on its behalf) gave up on the connection.
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> Result<Response, Failure> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        read_more(stream, &mut buffer, &mut chunk).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        read_more(stream, &mut buffer, &mut chunk).await?;
    }
    Ok(Response {
        status,
        headers,
        body: buffer[body_start..body_start + length].to_vec(),
    })
}

async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Result<(), Failure> {
    let failure = |error: String| {
        if buffer.is_empty() {
            Failure::NothingReceived(error)
        } else {
            Failure::CutShort {
                received: buffer.len(),
                error,
            }
        }
    };
    match stream.read(chunk).await {
        Ok(0) => Err(failure("end of stream".into())),
        Ok(read) => {
            buffer.extend_from_slice(&chunk[..read]);
            Ok(())
        }
        Err(error) => Err(failure(error.to_string())),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Sends `request` on a new connection and reads the answer.
pub async fn send(port: u16, request: &[u8]) -> Result<Response, Failure> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| Failure::NothingReceived(error.to_string()))?;
    stream
        .write_all(request)
        .await
        .map_err(|error| Failure::NothingReceived(error.to_string()))?;
    read_response(&mut stream).await
}

/// True once the server has closed `stream` (end of stream or reset), reading and discarding
/// anything it sends first (e.g. a 408); false if it is still open after `limit`.
pub async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> bool {
    let mut chunk = [0_u8; 1024];
    let wait = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(limit, wait).await.is_ok()
}
