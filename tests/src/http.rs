//! A minimal blocking HTTP/1.1 client for talking to a hub process from tests (one request
//! per connection, `Connection: close`).

use std::io::{Read, Write};
use std::net::SocketAddr;

/// A response: status, headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends one request; `headers` are extra `Name: value` lines; a body is JSON.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    let body = body.map(|body| ("application/json", body.as_bytes()));
    request_bytes(addr, method, path, headers, body)
}

/// Like [`request`], with a body of any content type: `(content type, bytes)`.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> std::io::Result<Response> {
    let (content_type, body) = match body {
        Some((content_type, body)) => (Some(content_type), body),
        None => (None, &[][..]),
    };
    Partial::send(addr, method, path, headers, content_type, body, body.len())?.finish(&[])
}

/// A request sent in two parts: its head and the start of its body now, the rest (and the
/// answer) when the test says, so that something can happen while it is under way.
#[derive(Debug)]
pub struct Partial {
    stream: std::net::TcpStream,
}

impl Partial {
    /// Sends the head, announcing a body of `length` bytes (a `content_type` one, or none),
    /// and the body's first part, `start`.
    pub fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        start: &[u8],
        length: usize,
    ) -> std::io::Result<Partial> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(content_type) = content_type {
            text.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {length}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes())?;
        stream.write_all(start)?;
        Ok(Partial { stream })
    }

    /// Sends the rest of the body and reads the answer.
    pub fn finish(mut self, rest: &[u8]) -> std::io::Result<Response> {
        self.stream.write_all(rest)?;
        read_response(&mut self.stream)
    }
}

/// Reads the head, then exactly the body its headers announce: some servers keep the
/// connection open whatever the request said.
fn read_response(stream: &mut std::net::TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break raw.len();
        }
        raw.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut rest = raw.get(head_end + 4..).map(<[u8]>::to_vec).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    loop {
        let complete = match length {
            Some(length) => rest.len() >= length,
            None if chunked => rest.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&buffer[..n]);
    }
    if let Some(length) = length {
        rest.truncate(length);
    }
    let body = String::from_utf8_lossy(&rest).into_owned();
    let body = if chunked { dechunk(&body) } else { body };
    Ok(Response { status, headers, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
