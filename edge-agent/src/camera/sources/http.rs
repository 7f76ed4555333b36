//! The small HTTP/1.1 client the MJPEG and snapshot sources share: one GET per connection,
//! plain TCP, hyper's `client::conn::http1` for the message framing (chunked bodies, keep-alive
//! rules, header parsing), basic authentication from the URL's userinfo.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::task::AbortOnDropHandle;

use super::{percent_decode, redact_url, userinfo_span};
use crate::camera::CameraError;

const USER_AGENT: &str = concat!("kitt-agent/", env!("CARGO_PKG_VERSION"));

/// A parsed `http://` URL. Its `Debug` and `shown` leave out the password.
#[derive(Clone)]
pub(crate) struct HttpUrl {
    host: String,
    port: u16,
    /// `Host` header value: the authority without userinfo.
    host_header: String,
    path_and_query: String,
    /// `Basic …`, from `user:password@` in the URL.
    authorization: Option<String>,
    /// The URL without its userinfo, for logs and errors.
    pub(crate) shown: String,
}

impl std::fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl HttpUrl {
    pub(crate) fn parse(url: &str) -> Result<HttpUrl, String> {
        let shown = redact_url(url);
        let uri: Uri = url.parse().map_err(|error| format!("invalid URL {shown}: {error}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{shown}: https camera URLs are not supported; cameras on the LAN serve \
                     plain http"
                ));
            }
            _ => return Err(format!("{shown} is not an http:// URL")),
        }
        let Some(authority) = uri.authority() else {
            return Err(format!("{shown} has no host"));
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(format!("{shown} has no host"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let host_header = match authority.as_str().rsplit_once('@') {
            Some((_, without_userinfo)) => without_userinfo.to_owned(),
            None => authority.as_str().to_owned(),
        };
        let authorization = userinfo_span(url).map(|(start, end)| {
            let userinfo = &url[start..end];
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let credentials = format!("{}:{}", percent_decode(user), percent_decode(password));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
        });
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(HttpUrl { host, port, host_header, path_and_query, authorization, shown })
    }
}

/// A response whose status was 200, with its body still to read.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) content_type: String,
    pub(crate) content_length: Option<u64>,
    pub(crate) body: Incoming,
    /// The task driving the connection; dropping the response closes it.
    _connection: AbortOnDropHandle<()>,
}

/// Connects to `url` and sends a GET; everything up to the response head must arrive within
/// `timeout`. A status other than 200 is an error naming it.
pub(crate) async fn get(
    url: &HttpUrl,
    accept: &'static str,
    timeout: Duration,
) -> Result<Response, CameraError> {
    match tokio::time::timeout(timeout, get_inner(url, accept)).await {
        Ok(result) => result,
        Err(_) => Err(CameraError::Timeout(timeout)),
    }
}

async fn get_inner(url: &HttpUrl, accept: &'static str) -> Result<Response, CameraError> {
    let target = format!("{}:{}", url.host, url.port);
    let connect_error = |detail: String| CameraError::Connect { target: target.clone(), detail };
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|error| connect_error(error.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|error| connect_error(error.to_string()))?;
    let connection = AbortOnDropHandle::new(tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "Camera HTTP connection ended.");
        }
    }));
    let mut request = Request::get(url.path_and_query.as_str())
        .header(header::HOST, url.host_header.as_str())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, accept)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|error| connect_error(format!("cannot build the request: {error}")))?;
    if let Some(authorization) = &url.authorization {
        let mut value = HeaderValue::from_str(authorization).map_err(|_| {
            connect_error("the user name or password in the URL is not valid in a header".into())
        })?;
        value.set_sensitive(true);
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let response = sender.send_request(request).await.map_err(|error| {
        connect_error(format!("no HTTP response to GET {}: {error}", url.shown))
    })?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let detail = format!("GET {} answered {status}", url.shown);
        return Err(CameraError::AuthRejected { detail });
    }
    if status != StatusCode::OK {
        let hint = if status == StatusCode::NOT_FOUND { "; check the URL's path" } else { "" };
        let detail = format!("GET {} answered {status}{hint}", url.shown);
        return Err(CameraError::Unavailable { detail });
    }
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &HeaderValue| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
    };
    let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
    let content_length = header_text(header::CONTENT_LENGTH).and_then(|text| text.parse().ok());
    Ok(Response {
        content_type,
        content_length,
        body: response.into_body(),
        _connection: connection,
    })
}

impl Response {
    /// The next piece of the body, `None` at its end.
    pub(crate) async fn chunk(&mut self, url: &HttpUrl) -> Result<Option<Bytes>, CameraError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
                Some(Err(error)) => {
                    return Err(CameraError::Connect {
                        target: url.shown.clone(),
                        detail: format!("reading the response failed: {error}"),
                    });
                }
            }
        }
    }
}

/// The media type of a `Content-Type` value, lowercase, without parameters.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// A parameter of a `Content-Type` value (`boundary` in `multipart/…; boundary="x"`).
pub(crate) fn media_parameter(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_path_and_credentials() {
        let url = HttpUrl::parse("http://kitt:p%40ss@pi.local:8080/?action=stream").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("pi.local", 8080));
        assert_eq!(url.host_header, "pi.local:8080");
        assert_eq!(url.path_and_query, "/?action=stream");
        // base64("kitt:p@ss")
        assert_eq!(url.authorization.as_deref(), Some("Basic a2l0dDpwQHNz"));
        assert_eq!(url.shown, "http://***@pi.local:8080/?action=stream");
        assert_eq!(format!("{url:?}"), "http://***@pi.local:8080/?action=stream");

        let url = HttpUrl::parse("http://[::1]/snapshot").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.host_header.as_str()), ("::1", 80, "[::1]"));
        assert_eq!(url.authorization, None);

        let url = HttpUrl::parse("http://pi").unwrap();
        assert_eq!(url.path_and_query, "/");
    }

    #[test]
    fn content_type_parameters() {
        let value = "Multipart/X-Mixed-Replace ; Boundary=\"--frame\"";
        assert_eq!(media_type(value), "multipart/x-mixed-replace");
        assert_eq!(media_parameter(value, "boundary").as_deref(), Some("--frame"));
        assert_eq!(media_parameter("image/jpeg", "boundary"), None);
    }
}
