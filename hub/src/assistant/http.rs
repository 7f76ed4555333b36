//! The HTTP the assistant's upstreams need: a JSON POST over HTTP/1.1 (TLS with the system's
//! trust roots for `https`), its answer read frame by frame, and server-sent events parsed
//! as they arrive (`SseParser`, pure).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

/// An answer whose body is read as it comes.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The `Content-Type`, lowercase, without parameters.
    pub content_type: String,
    body: Incoming,
}

impl Answer {
    /// The next piece of the body; `None` at its end.
    pub async fn next(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }

    /// The whole body, at most `limit` bytes.
    pub async fn text(mut self, limit: usize) -> Result<String, String> {
        let mut all = Vec::new();
        while let Some(piece) = self.next().await {
            all.extend_from_slice(&piece?);
            if all.len() > limit {
                return Err(format!("the answer is over {limit} bytes"));
            }
        }
        Ok(String::from_utf8_lossy(&all).into_owned())
    }
}

fn tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trust roots on this system (Debian: ca-certificates)".to_owned());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// POSTs `body` as JSON to `url` with `headers`.
pub async fn post_json(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url:?}: only http:// and https:// URLs")),
    };
    let host = uri.host().ok_or_else(|| format!("{url:?} names no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let address = format!("{}:{port}", host.trim_start_matches('[').trim_end_matches(']'));
    let tcp = TcpStream::connect(&address).await.map_err(|e| format!("{address}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or(host.clone());
    let mut request = hyper::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
    let response = if https {
        let name =
            ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
                .map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {address}: {e}"))?;
        send(TokioIo::new(stream), request).await?
    } else {
        send(TokioIo::new(tcp), request).await?
    };
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(Answer { status: response.status().as_u16(), content_type, body: response.into_body() })
}

async fn send<T>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| e.to_string())
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty for the default `message`.
    pub event: String,
    pub data: String,
}

/// Server-sent events from bytes as they arrive (the WHATWG rules: lines end in `\n`,
/// `\r\n` or `\r`; `data:` lines join with `\n`; a blank line ends an event; `:` starts a
/// comment; one space after the colon is dropped).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: SseEvent,
    has_data: bool,
    after_cr: bool,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, &mut out);
                }
                b => self.line.push(b),
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.event));
            }
            self.event = SseEvent::default();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_and_in_any_line_ending_come_out_whole() {
        let stream = b": comment\r\nevent: message_start\r\ndata: {\"a\":\r\n\r\ndata: 1\ndata:2\n\ndata: [DONE]\r\r";
        for split in 0..stream.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&stream[..split]);
            events.extend(parser.push(&stream[split..]));
            assert_eq!(
                events,
                vec![
                    SseEvent { event: "message_start".into(), data: "{\"a\":".into() },
                    SseEvent { event: String::new(), data: "1\n2".into() },
                    SseEvent { event: String::new(), data: "[DONE]".into() },
                ],
                "split at {split}"
            );
        }
    }
}
