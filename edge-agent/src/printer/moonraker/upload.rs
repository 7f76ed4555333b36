//! Putting a file on a Klipper printer: Moonraker's `POST /server/files/upload`
//! (`multipart/form-data`, the file in the part `file`, `root` `gcodes`), streamed from
//! disk in 64 KiB pieces, the API key as `X-Api-Key`. Moonraker answers `201` with the
//! stored item (`{"item": {"path", "root", "size", …}, "action": "create_file"}`); a full
//! disk, a refused key or a bad name come back as its error, which [`UploadError`] carries.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;

use super::link::{ApiKey, MoonrakerUrl};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadError {
    #[error("cannot reach Moonraker at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("Moonraker refused the API key ({0})")]
    Refused(String),
    #[error("Moonraker refused the file: {0}")]
    Failed(String),
}

/// What Moonraker stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Its path under `gcodes`, as `printer.print.start` names it.
    pub path: String,
    pub size: u64,
}

/// Uploads `size` bytes of `source` as `name` (a file name, no folders) to the `gcodes`
/// root; `progress` is told the bytes sent so far.
pub async fn upload(
    url: &MoonrakerUrl,
    key: Option<&ApiKey>,
    name: &str,
    source: impl AsyncRead + Send + Unpin + 'static,
    size: u64,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<Uploaded, UploadError> {
    let safe: String = name
        .chars()
        .map(|c| if c == '"' || c == '\\' || c.is_control() || c == '/' { '_' } else { c })
        .collect();
    let boundary = format!("kitt{:016x}", rand::random::<u64>());
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"root\"\r\n\r\ngcodes\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + size + tail.len() as u64;
    let mut sent = 0u64;
    let mut progress = progress;
    let file = tokio_util::io::ReaderStream::with_capacity(source, 64 * 1024).map(move |chunk| {
        if let Ok(chunk) = &chunk {
            sent += chunk.len() as u64;
            progress(sent);
        }
        chunk
    });
    let frames = futures_util::stream::iter([Ok(Bytes::from(head))])
        .chain(file)
        .chain(futures_util::stream::iter([Ok(Bytes::from(tail))]))
        .map(|chunk| chunk.map(Frame::data));
    let body = StreamBody::new(frames);

    let failed = |detail: String| UploadError::Connect { url: url.to_string(), detail };
    let tcp =
        TcpStream::connect((url.host(), url.port())).await.map_err(|e| failed(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(connection));
    let mut request = Request::post("/server/files/upload")
        .header(header::HOST, url.authority(url.port()))
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .header(header::CONTENT_LENGTH, length);
    if let Some(key) = key {
        let mut value = HeaderValue::from_str(key.expose())
            .map_err(|_| UploadError::Refused("the API key is not valid in a header".into()))?;
        value.set_sensitive(true);
        request = request.header("x-api-key", value);
    }
    let request =
        request.body(body).map_err(|e| failed(format!("cannot build the upload: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(format!("the upload was cut off: {e}")))?;
    let status = response.status();
    let answer = Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    drop(driver);
    let json: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let message = || {
        json["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| {
            format!("HTTP {status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(200)]))
        })
    };
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(UploadError::Refused(message()));
    }
    if !status.is_success() {
        return Err(UploadError::Failed(message()));
    }
    let item = json.get("item").or_else(|| json.get("result").and_then(|r| r.get("item")));
    let path =
        item.and_then(|i| i["path"].as_str()).map(str::to_owned).unwrap_or_else(|| safe.clone());
    let stored = item.and_then(|i| i["size"].as_u64()).unwrap_or(size);
    if stored != size {
        return Err(UploadError::Failed(format!("Moonraker stored {stored} bytes of {size}")));
    }
    Ok(Uploaded { path, size: stored })
}
