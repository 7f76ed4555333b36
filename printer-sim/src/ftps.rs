//! The printer's FTPS server, as a Bambu printer runs it (vsftpd behind implicit TLS, port
//! 990 on the printer): user `bblp` with the LAN access code as password, `PBSZ 0` and
//! `PROT P`, binary passive transfers (`PASV`, `EPSV`), and data connections that must resume
//! the control connection's TLS session. A data connection that does not is refused the way
//! vsftpd refuses it (`522 SSL connection failed: session reuse required`), which is what
//! makes naive clients hang or fail against real printers.
//!
//! Nothing is written to disk: each stored file is hashed as it arrives, and the simulator
//! keeps its name, size and MD5 ([`StoredFile`]), which is what tests check and what a
//! `project_file` request needs to find. The card's capacity is configurable, so a full card
//! answers `452` mid-transfer as vsftpd does when a write fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use md5::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::AccessCode;

/// The FTPS server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpsConfig {
    /// Where to listen; `None`: the MQTT server's address with a port the OS chooses (the
    /// printer's own is 990; `kitt-printer-sim` uses that by default).
    pub bind: Option<SocketAddr>,
    /// Bytes the card holds (all files together).
    pub capacity_bytes: u64,
    /// Refuse data connections that do not resume the control session (a real printer does).
    pub require_session_reuse: bool,
    /// Files on the card from the start, as if uploaded before, with their sizes (names as
    /// `project_file` requests give them, e.g. `/model/next.gcode.3mf`).
    pub card_files: Vec<(String, u64)>,
    /// The first this many sessions are greeted with `421` and closed (a printer whose FTP
    /// service is not up yet).
    pub refuse_sessions: u32,
}

impl Default for FtpsConfig {
    fn default() -> FtpsConfig {
        FtpsConfig {
            bind: None,
            capacity_bytes: 32 << 30,
            require_session_reuse: true,
            card_files: Vec::new(),
            refuse_sessions: 0,
        }
    }
}

/// A file the printer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub size: u64,
    /// Lowercase hex.
    pub md5: String,
}

/// The card: files by path (`/name` or `/sdcard/name`, as stored).
pub type Card = Arc<Mutex<BTreeMap<String, StoredFile>>>;

pub(crate) struct FtpsServer {
    pub listener: TcpListener,
    pub acceptor: TlsAcceptor,
    pub config: FtpsConfig,
    pub access_code: AccessCode,
    pub card: Card,
    /// While set, every new session is greeted with `421` and closed (a printer whose FTP
    /// service is down: no card, a firmware busy).
    pub refusing: Arc<std::sync::atomic::AtomicBool>,
    /// Sessions still to refuse (`FtpsConfig::refuse_sessions` at the start).
    pub refuse_left: std::sync::atomic::AtomicU32,
}

impl FtpsServer {
    pub fn spawn(self, shutdown: &CancellationToken, tracker: &TaskTracker) {
        let shutdown = shutdown.clone();
        let tracker_inner = tracker.clone();
        let server = Arc::new(self);
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = server.listener.accept() => accepted,
                };
                let Ok((stream, peer)) = accepted else { continue };
                let server = server.clone();
                let shutdown = shutdown.clone();
                tracker_inner.spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        result = server.session(stream, peer) => {
                            if let Err(error) = result {
                                debug!(%peer, %error, "FTPS session ended.");
                            }
                        }
                    }
                });
            }
        });
    }

    async fn session(&self, stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let local = stream.local_addr()?;
        let tls = self.acceptor.accept(stream).await?;
        let (reader, mut writer) = tokio::io::split(tls);
        let scripted = self
            .refuse_left
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |left| left.checked_sub(1),
            )
            .is_ok();
        if scripted || self.refusing.load(std::sync::atomic::Ordering::Relaxed) {
            warn!(%peer, "FTPS session refused: the service is down (as told).");
            reply(&mut writer, "421 Service not available, remote server has closed connection.")
                .await?;
            return Ok(());
        }
        let mut lines = BufReader::new(reader).lines();
        reply(&mut writer, "220 (vsFTPd 3.0.3)").await?;
        let mut user = false;
        let mut logged_in = false;
        let mut protected = false;
        let mut passive: Option<TcpListener> = None;
        while let Some(line) = lines.next_line().await? {
            let (verb, argument) = match line.split_once(' ') {
                Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim().to_owned()),
                None => (line.trim().to_ascii_uppercase(), String::new()),
            };
            debug!(%peer, %verb, "FTPS command.");
            if !logged_in
                && !matches!(
                    verb.as_str(),
                    "USER" | "PASS" | "QUIT" | "FEAT" | "SYST" | "AUTH" | "PBSZ" | "PROT"
                )
            {
                reply(&mut writer, "530 Please login with USER and PASS.").await?;
                continue;
            }
            match verb.as_str() {
                "USER" => {
                    user = argument == "bblp";
                    reply(&mut writer, "331 Please specify the password.").await?;
                }
                "PASS" => {
                    if user && argument == self.access_code.as_str() {
                        logged_in = true;
                        reply(&mut writer, "230 Login successful.").await?;
                    } else {
                        warn!(%peer, "FTPS login refused.");
                        reply(&mut writer, "530 Login incorrect.").await?;
                    }
                }
                "FEAT" => {
                    reply(&mut writer, "211-Features:\r\n EPSV\r\n PASV\r\n PBSZ\r\n PROT\r\n SIZE\r\n UTF8\r\n211 End").await?;
                }
                "SYST" => reply(&mut writer, "215 UNIX Type: L8").await?,
                "PBSZ" => reply(&mut writer, "200 PBSZ set to 0.").await?,
                "PROT" => {
                    protected = argument.eq_ignore_ascii_case("P");
                    if protected {
                        reply(&mut writer, "200 PROT now Private.").await?;
                    } else {
                        reply(&mut writer, "536 PROT must be P.").await?;
                    }
                }
                "TYPE" => reply(&mut writer, "200 Switching to Binary mode.").await?,
                "PWD" => reply(&mut writer, "257 \"/\" is the current directory").await?,
                "CWD" => reply(&mut writer, "250 Directory successfully changed.").await?,
                "NOOP" => reply(&mut writer, "200 NOOP ok.").await?,
                "PASV" | "EPSV" => {
                    let listener = TcpListener::bind(SocketAddr::new(local.ip(), 0)).await?;
                    let port = listener.local_addr()?.port();
                    passive = Some(listener);
                    if verb == "EPSV" {
                        reply(
                            &mut writer,
                            &format!("229 Entering Extended Passive Mode (|||{port}|)"),
                        )
                        .await?;
                    } else {
                        let ip = match local.ip() {
                            std::net::IpAddr::V4(v4) => v4.octets(),
                            std::net::IpAddr::V6(_) => [127, 0, 0, 1],
                        };
                        reply(
                            &mut writer,
                            &format!(
                                "227 Entering Passive Mode ({},{},{},{},{},{}).",
                                ip[0],
                                ip[1],
                                ip[2],
                                ip[3],
                                port >> 8,
                                port & 0xff
                            ),
                        )
                        .await?;
                    }
                }
                "SIZE" => {
                    let size = self
                        .card
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&path(&argument))
                        .map(|f| f.size);
                    match size {
                        Some(size) => reply(&mut writer, &format!("213 {size}")).await?,
                        None => reply(&mut writer, "550 Could not get file size.").await?,
                    }
                }
                "DELE" => {
                    let removed = self
                        .card
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&path(&argument));
                    match removed {
                        Some(_) => reply(&mut writer, "250 Delete operation successful.").await?,
                        None => reply(&mut writer, "550 Delete operation failed.").await?,
                    }
                }
                "STOR" => {
                    let Some(listener) = passive.take() else {
                        reply(&mut writer, "425 Use PORT or PASV first.").await?;
                        continue;
                    };
                    if !protected {
                        reply(&mut writer, "521 Data connections must be encrypted.").await?;
                        continue;
                    }
                    let (data, _) = listener.accept().await?;
                    reply(&mut writer, "150 Ok to send data.").await?;
                    let mut data = match self.acceptor.accept(data).await {
                        Ok(data) => data,
                        Err(error) => {
                            reply(&mut writer, &format!("522 SSL connection failed: {error}"))
                                .await?;
                            continue;
                        }
                    };
                    let resumed =
                        data.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    if self.config.require_session_reuse && !resumed {
                        warn!(%peer, "FTPS data connection without session reuse refused.");
                        drop(data);
                        reply(&mut writer, "522 SSL connection failed: session reuse required")
                            .await?;
                        continue;
                    }
                    let name = path(&argument);
                    match self.receive(&mut data, &name).await {
                        Ok(file) => {
                            let _ = data.shutdown().await;
                            info!(%peer, file = %name, size = file.size, "FTPS file stored.");
                            self.card.lock().unwrap_or_else(|p| p.into_inner()).insert(name, file);
                            reply(&mut writer, "226 Transfer complete.").await?;
                        }
                        Err(Refused::Full) => {
                            reply(&mut writer, "452 Failure writing to local file.").await?
                        }
                        Err(Refused::Io(error)) => {
                            reply(
                                &mut writer,
                                &format!("426 Failure reading network stream: {error}"),
                            )
                            .await?;
                        }
                    }
                }
                "LIST" | "NLST" => {
                    let Some(listener) = passive.take() else {
                        reply(&mut writer, "425 Use PORT or PASV first.").await?;
                        continue;
                    };
                    let (data, _) = listener.accept().await?;
                    reply(&mut writer, "150 Here comes the directory listing.").await?;
                    let mut data = match self.acceptor.accept(data).await {
                        Ok(data) => data,
                        Err(_) => {
                            reply(&mut writer, "522 SSL connection failed").await?;
                            continue;
                        }
                    };
                    let listing: String = self
                        .card
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .map(|(name, file)| {
                            if verb == "NLST" {
                                format!("{}\r\n", name.trim_start_matches('/'))
                            } else {
                                format!(
                                    "-rw-r--r--    1 0        0        {} Jan 01 00:00 {}\r\n",
                                    file.size,
                                    name.trim_start_matches('/')
                                )
                            }
                        })
                        .collect();
                    data.write_all(listing.as_bytes()).await?;
                    data.shutdown().await?;
                    reply(&mut writer, "226 Directory send OK.").await?;
                }
                "QUIT" => {
                    reply(&mut writer, "221 Goodbye.").await?;
                    return Ok(());
                }
                _ => reply(&mut writer, "502 Command not implemented.").await?,
            }
        }
        Ok(())
    }

    /// Reads a file off a data connection, hashing it, within the card's free space.
    async fn receive(
        &self,
        data: &mut tokio_rustls::server::TlsStream<TcpStream>,
        name: &str,
    ) -> Result<StoredFile, Refused> {
        let used: u64 = {
            let card = self.card.lock().unwrap_or_else(|p| p.into_inner());
            card.iter().filter(|(n, _)| n.as_str() != name).map(|(_, f)| f.size).sum()
        };
        let free = self.config.capacity_bytes.saturating_sub(used);
        let mut md5 = md5::Md5::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match data.read(&mut buffer).await {
                Ok(n) => n,
                // A client that closes without close_notify has still sent everything it
                // meant to; what it sent counts.
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(error) => return Err(Refused::Io(error.to_string())),
            };
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > free {
                return Err(Refused::Full);
            }
            md5.update(&buffer[..n]);
        }
        Ok(StoredFile { size, md5: hex(&md5.finalize()) })
    }
}

enum Refused {
    Full,
    Io(String),
}

/// A path as stored: absolute, `/` for the card's root.
fn path(argument: &str) -> String {
    let trimmed = argument.trim();
    if trimmed.starts_with('/') { trimmed.to_owned() } else { format!("/{trimmed}") }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn reply<W: AsyncWriteExt + Unpin>(writer: &mut W, line: &str) -> std::io::Result<()> {
    writer.write_all(line.as_bytes()).await?;
    writer.write_all(b"\r\n").await?;
    writer.flush().await
}
