//! Putting a file on a Bambu printer: FTPS as the printers run it (vsftpd behind implicit TLS
//! on port 990; user `bblp`, the LAN access code as password; `PBSZ 0`, `PROT P`, binary,
//! passive mode). The printer's certificate is checked as for MQTT ([`super::tls`]).
//!
//! The printers require the data connection to resume the control connection's TLS session
//! (vsftpd's `require_ssl_reuse`): a client that opens it with a fresh handshake gets `522`
//! and, on some firmware, a transfer that hangs. Both connections therefore share one
//! `rustls::ClientConfig`, whose session cache holds the ticket the control connection
//! received, and name the same server. As clients that work with every model do, the
//! address in the `PASV` answer is ignored and the control connection's host used: printers
//! behind NAT or with several interfaces announce one the client cannot reach.
//!
//! Bambu printers expose no way to ask for free space (the research behind this is in
//! docs/research/print-files.md); a full card shows as the printer's `452`/`552` answer to
//! the upload, which [`FtpsError::Full`] carries.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::link::AccessCode;
use super::tls::{PrinterCertVerifier, Trust};

/// The printer's FTPS port.
pub const FTPS_PORT: u16 = 990;
/// How long connecting, and each answer, may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// How long the printer may take to confirm a whole file (it syncs the card first).
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where and how to upload.
#[derive(Debug, Clone)]
pub struct FtpsTarget {
    pub host: String,
    pub port: u16,
    /// The printer's serial: its certificate must name it.
    pub serial: String,
    pub access_code: AccessCode,
    pub trust: Trust,
    /// Resume the control connection's TLS session on the data connection (always, but for
    /// tests of a printer's refusal).
    pub reuse_session: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FtpsError {
    #[error("cannot reach the printer's FTPS server at {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("the printer's certificate was refused: {0}")]
    Certificate(String),
    #[error("the printer refused the access code for FTPS")]
    Login,
    #[error("the printer's storage is full: it answered \"{0}\"")]
    Full(String),
    #[error("the printer refused the data connection: \"{0}\"")]
    DataRefused(String),
    #[error("the printer answered \"{answer}\" to {command}")]
    Refused { command: String, answer: String },
    #[error("the FTPS session failed: {0}")]
    Io(String),
    #[error("the printer took longer than {0:?} to answer")]
    Timeout(Duration),
}

fn io(error: std::io::Error) -> FtpsError {
    FtpsError::Io(error.to_string())
}

type Control = BufReader<TlsStream<TcpStream>>;

/// Uploads `source` as `remote` (a path on the card, `/name.gcode.3mf`); `progress` is told
/// the bytes sent so far. Returns the bytes sent.
pub async fn upload(
    target: &FtpsTarget,
    remote: &str,
    mut source: impl AsyncRead + Unpin,
    mut progress: impl FnMut(u64),
) -> Result<u64, FtpsError> {
    let (connector, verifier) = tls_connector(target)?;
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| FtpsError::Connect { address: target.host.clone(), detail: e.to_string() })?;
    let mut control = login(&connector, &verifier, target, name.clone()).await?;
    command(&mut control, "PBSZ 0", &[200]).await?;
    command(&mut control, "PROT P", &[200]).await?;
    command(&mut control, "TYPE I", &[200]).await?;
    let (_, passive) = command(&mut control, "PASV", &[227]).await?;
    let port = passive_port(&passive)
        .ok_or_else(|| FtpsError::Refused { command: "PASV".into(), answer: passive.clone() })?;
    send(&mut control, &format!("STOR {remote}")).await?;
    // A fresh configuration has no ticket to resume with (tests of a printer's refusal).
    let data_connector =
        if target.reuse_session { connector.clone() } else { tls_connector(target)?.0 };
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect((target.host.as_str(), port)))
        .await
        .map_err(|_| FtpsError::Timeout(TIMEOUT))?
        .map_err(|e| FtpsError::Connect {
            address: format!("{}:{port}", target.host),
            detail: e.to_string(),
        })?;
    match read_reply(&mut control).await? {
        (150 | 125, _) => {}
        (code, text) if code == 452 || code == 552 => return Err(FtpsError::Full(text)),
        (_, text) => return Err(FtpsError::Refused { command: "STOR".into(), answer: text }),
    }
    let mut data = match tokio::time::timeout(TIMEOUT, data_connector.connect(name, tcp)).await {
        Ok(Ok(data)) => data,
        Ok(Err(error)) => return Err(refused_data(&mut control, error.to_string()).await),
        Err(_) => return Err(FtpsError::Timeout(TIMEOUT)),
    };
    let mut sent = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    let copied: Result<(), std::io::Error> = async {
        loop {
            let n = source.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            data.write_all(&buffer[..n]).await?;
            sent += n as u64;
            progress(sent);
        }
        data.shutdown().await?;
        // Read what the printer still sends (session tickets, its close) until it closes:
        // closing with unread bytes would reset the connection under the file's last bytes.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(TIMEOUT, async {
            while let Ok(n) = data.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }
    .await;
    drop(data);
    let answer = tokio::time::timeout(COMPLETE_TIMEOUT, read_reply(&mut control))
        .await
        .map_err(|_| FtpsError::Timeout(COMPLETE_TIMEOUT))?;
    match answer {
        Ok((226 | 250, _)) if copied.is_ok() => {}
        Ok((452 | 552, text)) => return Err(FtpsError::Full(text)),
        Ok((522, text)) => return Err(FtpsError::DataRefused(text)),
        Ok((_, text)) => return Err(FtpsError::Refused { command: "STOR".into(), answer: text }),
        Err(error) => return Err(copied.err().map_or(error, io)),
    }
    let _ = send(&mut control, "QUIT").await;
    Ok(sent)
}

/// Deletes `remote` (a path on the card) from the printer: room for the next file. A file
/// that is not there is no error.
pub async fn delete(target: &FtpsTarget, remote: &str) -> Result<(), FtpsError> {
    let (connector, verifier) = tls_connector(target)?;
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| FtpsError::Connect { address: target.host.clone(), detail: e.to_string() })?;
    let mut control = login(&connector, &verifier, target, name).await?;
    match command_raw(&mut control, &format!("DELE {remote}")).await? {
        (250 | 550, _) => {}
        (_, text) => return Err(FtpsError::Refused { command: "DELE".into(), answer: text }),
    }
    let _ = send(&mut control, "QUIT").await;
    Ok(())
}

/// The control connection, greeted and logged in as `bblp` with the access code.
async fn login(
    connector: &TlsConnector,
    verifier: &PrinterCertVerifier,
    target: &FtpsTarget,
    name: ServerName<'static>,
) -> Result<Control, FtpsError> {
    let mut control = connect(connector, verifier, target, target.port, name).await?;
    expect(&mut control, "the greeting", &[220]).await?;
    let answer = command(&mut control, "USER bblp", &[331, 230]).await?;
    if answer.0 == 331 {
        let pass = format!("PASS {}", target.access_code.expose());
        match command_raw(&mut control, &pass).await? {
            (230, _) => {}
            (530, _) => return Err(FtpsError::Login),
            (_, text) => return Err(FtpsError::Refused { command: "PASS".into(), answer: text }),
        }
    }
    Ok(control)
}

/// After a failed data handshake, the printer's own words if it says any.
async fn refused_data(control: &mut Control, detail: String) -> FtpsError {
    match tokio::time::timeout(Duration::from_secs(2), read_reply(control)).await {
        Ok(Ok((_, text))) => FtpsError::DataRefused(text),
        _ => FtpsError::DataRefused(detail),
    }
}

/// A TLS connector of its own (with its own session cache), checking the printer's
/// certificate as the MQTT link does.
fn tls_connector(
    target: &FtpsTarget,
) -> Result<(TlsConnector, Arc<PrinterCertVerifier>), FtpsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PrinterCertVerifier::new(
        &target.serial,
        target.trust.clone(),
        provider.signature_verification_algorithms,
    ));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FtpsError::Io(format!("TLS set-up failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((TlsConnector::from(Arc::new(config)), verifier))
}

async fn connect(
    connector: &TlsConnector,
    verifier: &PrinterCertVerifier,
    target: &FtpsTarget,
    port: u16,
    name: ServerName<'static>,
) -> Result<Control, FtpsError> {
    let address = format!("{}:{port}", target.host);
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect((target.host.as_str(), port)))
        .await
        .map_err(|_| FtpsError::Timeout(TIMEOUT))?
        .map_err(|e| FtpsError::Connect { address: address.clone(), detail: e.to_string() })?;
    match tokio::time::timeout(TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => Ok(BufReader::new(tls)),
        Ok(Err(error)) => {
            let problem = verifier.problem_slot().lock().unwrap_or_else(|p| p.into_inner()).take();
            match problem {
                Some(problem) => Err(FtpsError::Certificate(problem.to_string())),
                None => Err(FtpsError::Connect { address, detail: error.to_string() }),
            }
        }
        Err(_) => Err(FtpsError::Timeout(TIMEOUT)),
    }
}

async fn send(control: &mut Control, line: &str) -> Result<(), FtpsError> {
    let stream = control.get_mut();
    stream.write_all(line.as_bytes()).await.map_err(io)?;
    stream.write_all(b"\r\n").await.map_err(io)?;
    stream.flush().await.map_err(io)
}

async fn command_raw(control: &mut Control, line: &str) -> Result<(u16, String), FtpsError> {
    send(control, line).await?;
    read_reply(control).await
}

/// Sends `line` and expects one of `codes`.
async fn command(
    control: &mut Control,
    line: &str,
    codes: &[u16],
) -> Result<(u16, String), FtpsError> {
    let verb = line.split(' ').next().unwrap_or(line).to_owned();
    let (code, text) = command_raw(control, line).await?;
    if codes.contains(&code) {
        Ok((code, text))
    } else {
        Err(FtpsError::Refused { command: verb, answer: text })
    }
}

async fn expect(
    control: &mut Control,
    what: &str,
    codes: &[u16],
) -> Result<(u16, String), FtpsError> {
    let (code, text) = read_reply(control).await?;
    if codes.contains(&code) {
        Ok((code, text))
    } else {
        Err(FtpsError::Refused { command: what.into(), answer: text })
    }
}

/// One reply, multi-line ones (`211-…` to `211 …`) whole: its code and its last line.
async fn read_reply(control: &mut Control) -> Result<(u16, String), FtpsError> {
    let mut first: Option<u16> = None;
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(TIMEOUT, control.read_line(&mut line))
            .await
            .map_err(|_| FtpsError::Timeout(TIMEOUT))?
            .map_err(io)?;
        if n == 0 {
            return Err(FtpsError::Io("the printer closed the FTPS connection".into()));
        }
        if line.len() > 4096 {
            return Err(FtpsError::Io("an FTP reply line over 4 KiB".into()));
        }
        let line = line.trim_end().to_owned();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let separator = line.as_bytes().get(3).copied();
        match (first, code, separator) {
            (None, Some(code), Some(b'-')) => first = Some(code),
            (None, Some(code), _) => return Ok((code, line)),
            (Some(open), Some(code), Some(b' ')) if open == code => return Ok((code, line)),
            (Some(_), _, _) => {}
            (None, None, _) => return Err(FtpsError::Io(format!("not an FTP reply: {line:?}"))),
        }
    }
}

/// The port of a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` answer.
fn passive_port(answer: &str) -> Option<u16> {
    let inner = answer.split('(').nth(1)?.split(')').next()?;
    let numbers: Vec<u16> =
        inner.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>()?;
    match numbers[..] {
        [_, _, _, _, high, low] if high <= 255 && low <= 255 => Some(high * 256 + low),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_answers() {
        assert_eq!(passive_port("227 Entering Passive Mode (192,168,1,20,195,80)."), Some(50000));
        assert_eq!(passive_port("227 Entering Passive Mode (10,0,0,1,0,21)"), Some(21));
        assert_eq!(passive_port("227 nonsense"), None);
        assert_eq!(passive_port("227 (1,2,3,4,999,1)"), None);
    }
}
