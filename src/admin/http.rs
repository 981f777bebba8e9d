//! The little HTTP/1.1 the admin port speaks: one request per connection
//! (`Connection: close`), a bounded head, a bounded body read by
//! `Content-Length`, and percent-decoded path segments and query parameters.
//!
//! Runs on the admin connection threads; touches nothing of the shards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest request head we read; anything longer is refused.
pub const REQUEST_HEAD_MAX_BYTES: usize = 8 * 1024;
/// Largest request body we read (the write endpoints take none or a small one).
pub const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to read the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// Not HTTP we understand; answered with 400.
    Malformed(&'static str),
    /// The body is longer than [`REQUEST_BODY_MAX_BYTES`]; answered with 413.
    BodyTooLarge,
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

pub struct Request {
    pub method: String,
    /// The path, not decoded (segments are decoded one by one with [`segments`]).
    pub path: String,
    /// Decoded `name=value` pairs of the query string, in order.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of the query parameter `name`, if any (empty counts as absent).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// The path's segments, percent-decoded (`/v1/topics/a%2Fb` -> `v1`, `topics`, `a/b`).
    pub fn segments(&self) -> Vec<String> {
        self.path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect()
    }
}

/// Reads one request from `stream`.
pub fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = vec![0u8; REQUEST_HEAD_MAX_BYTES];
    let mut len = 0;
    let head_end = loop {
        if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if len == buf.len() {
            return Err(ReadError::Malformed("request head too long"));
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(ReadError::Malformed("connection closed before the end of the request head"));
        }
        len += n;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => return Err(ReadError::Malformed("no request line")),
    };
    let mut content_length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().map_err(|_| ReadError::Malformed("bad Content-Length"))?;
            }
        }
    }
    if content_length > REQUEST_BODY_MAX_BYTES {
        return Err(ReadError::BodyTooLarge);
    }
    let mut body = buf[head_end..len].to_vec();
    body.truncate(content_length);
    while body.len() < content_length {
        let mut chunk = vec![0u8; content_length - body.len()];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ReadError::Malformed("connection closed before the end of the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_query(q)),
        None => (target, Vec::new()),
    };
    Ok(Request { method, path, query, body })
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Start this node's controlled shutdown once the response is written.
    pub shutdown_after: bool,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: String) -> Response {
        Response { status, content_type, body, shutdown_after: false }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.to_string())
    }

    pub fn json(status: u16, doc: &serde_json::Value) -> Response {
        Response::new(status, "application/json", format!("{doc}\n"))
    }

    pub fn html(status: u16, body: String) -> Response {
        Response::new(status, "text/html; charset=utf-8", body)
    }

    /// `{"error": message, "status": status}`.
    pub fn json_error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({"error": message, "status": status}))
    }
}

pub fn write_response(stream: &mut TcpStream, r: &Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(r.body.as_bytes())?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Service Unavailable",
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(kv), String::new()),
        })
        .collect()
}

/// `%XX` and `+` (a space, in query strings and form values) decoded; bad escapes kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The inverse for building links: everything but unreserved characters escaped.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escapes decode, bad ones survive, and encoding round-trips.
    #[test]
    fn percent_coding_round_trips() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        let s = "topic.with_odd-chars/ü &=?";
        assert_eq!(percent_decode(&percent_encode(s)), s);
        assert_eq!(parse_query("a=1&b=&c"), vec![("a".into(), "1".into()), ("b".into(), "".into()), ("c".into(), "".into())]);
    }
}
