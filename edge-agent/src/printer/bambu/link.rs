//! The async driver of one printer's MQTT session: connects, feeds the [`Session`], carries
//! out its actions, and reconnects with jittered backoff.

use std::sync::Arc;
use std::time::Duration;

use proto::{
    CommandAction, CommandOutcome, PrinterEventKind, PrinterId, PrinterStateV2, UnixMillis,
};

pub use crate::printer::link::{LinkHandle, LinkOutput, LinkProblem, LinkRequest};
use crate::printer::link::{next_attempt, report};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::merge::MAX_REPORT_BYTES;
use super::session::{Action, Input, Session, SessionConfig, Ticket};
use super::tls::{CertificateProblem, PrinterCertVerifier, Trust};
use crate::backoff::Backoff;

/// The printer's LAN access code: 8 characters, shown on the printer's screen.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessCode(String);

impl AccessCode {
    pub fn new(code: &str) -> Result<AccessCode, String> {
        let code = code.trim();
        if code.is_empty() || code.len() > 32 || !code.chars().all(|c| c.is_ascii_graphic()) {
            return Err(
                "the access code must be the 8 characters shown on the printer's screen".into()
            );
        }
        Ok(AccessCode(code.to_owned()))
    }

    /// The code itself, for the protocols that send it (MQTT login, camera login, RTSPS URL).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessCode(***)")
    }
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub host: String,
    pub port: u16,
    pub serial: PrinterId,
    pub access_code: AccessCode,
    pub trust: Trust,
    pub session: SessionConfig,
    /// First and largest delay between reconnection attempts (jittered).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The delay after a refused access code or certificate: slow, so a misconfigured agent
    /// never hammers the printer.
    pub refused_retry: Duration,
    pub keep_alive: Duration,
}

impl LinkConfig {
    pub fn new(
        host: String,
        serial: PrinterId,
        access_code: AccessCode,
        trust: Trust,
    ) -> LinkConfig {
        LinkConfig {
            host,
            port: 8883,
            serial,
            access_code,
            trust,
            session: SessionConfig::default(),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            refused_retry: Duration::from_secs(60),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Starts the link in a task. Outputs arrive on the returned receiver.
pub fn spawn(
    config: LinkConfig,
    shutdown: CancellationToken,
) -> (LinkHandle, mpsc::Receiver<LinkOutput>, tokio::task::JoinHandle<()>) {
    let (commands_tx, commands) = mpsc::channel(16);
    let (outputs, outputs_rx) = mpsc::channel(256);
    let link =
        Link { config, outputs, commands, replies: Vec::new(), next_ticket: 1, session: None };
    let span = tracing::info_span!("printer", serial = %link.config.serial);
    let task = tokio::spawn(tracing::Instrument::instrument(link.run(shutdown), span));
    (LinkHandle::new(commands_tx), outputs_rx, task)
}

struct Link {
    config: LinkConfig,
    outputs: mpsc::Sender<LinkOutput>,
    commands: mpsc::Receiver<(CommandAction, oneshot::Sender<CommandOutcome>)>,
    replies: Vec<(Ticket, oneshot::Sender<CommandOutcome>)>,
    next_ticket: Ticket,
    session: Option<Session>,
}

enum Ending {
    Shutdown,
    Retry { delay: Duration, problem: Option<LinkProblem>, reset_backoff: bool },
}

impl Link {
    async fn run(mut self, shutdown: CancellationToken) {
        self.session = Some(Session::new(self.config.session.clone()));
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        loop {
            let (delay, problem) = match self.connection(&shutdown).await {
                Ending::Shutdown => return,
                Ending::Retry { delay, problem, reset_backoff } => {
                    let delay = (!delay.is_zero()).then_some(delay);
                    next_attempt(&mut backoff, delay, problem, reset_backoff)
                }
            };
            if !report(&self.outputs, problem).await {
                return;
            }
            if !self.wait(delay, &shutdown).await {
                return;
            }
        }
    }

    /// Waits between connections while the watchdog and command replies keep working.
    async fn wait(&mut self, delay: Duration, shutdown: &CancellationToken) -> bool {
        let until = Instant::now() + delay;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                () = shutdown.cancelled() => return false,
                _ = tick.tick() => { if !self.feed(Input::Tick, None).await { return false; } }
                Some((action, reply)) = self.commands.recv() => {
                    let ticket = self.ticket(reply);
                    if !self.feed(Input::Submit { ticket, action }, None).await { return false; }
                }
            }
        }
    }

    fn ticket(&mut self, reply: oneshot::Sender<CommandOutcome>) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.replies.push((ticket, reply));
        ticket
    }

    async fn connection(&mut self, shutdown: &CancellationToken) -> Ending {
        let config = &self.config;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PrinterCertVerifier::new(
            config.serial.as_str(),
            config.trust.clone(),
            provider.signature_verification_algorithms,
        ));
        let certificate_problem = verifier.problem_slot();
        let tls = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => {
                builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
            }
            Err(error) => {
                let detail = format!("TLS set-up failed: {error}");
                return Ending::Retry {
                    delay: config.refused_retry,
                    problem: Some(LinkProblem::Connection { detail, retry_ms: 0 }),
                    reset_backoff: false,
                };
            }
        };
        let client_id = format!("kitt-{}-{:08x}", config.serial, rand::random::<u32>());
        let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
        options.set_credentials("bblp", config.access_code.0.clone());
        options.set_keep_alive(config.keep_alive);
        options.set_clean_session(true);
        // Accept up to 4x the report limit on the wire, so an oversized report is rejected by the
        // merger with a clear error while the session stays up; only beyond that does the MQTT
        // layer drop the connection.
        options.set_max_packet_size(4 * MAX_REPORT_BYTES, 64 * 1024);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let report_topic = format!("device/{}/report", config.serial);
        let request_topic = format!("device/{}/request", config.serial);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = client.try_disconnect();
                    return Ending::Shutdown;
                }
                _ = tick.tick() => {
                    if let Some(ending) = self.act(Input::Tick, &client, &request_topic).await { return ending; }
                }
                Some((action, reply)) = self.commands.recv() => {
                    let ticket = self.ticket(reply);
                    let input = Input::Submit { ticket, action };
                    if let Some(ending) = self.act(input, &client, &request_topic).await { return ending; }
                }
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(host = %self.config.host, port = self.config.port, "Connected to the printer.");
                        if let Err(error) = client.try_subscribe(report_topic.clone(), QoS::AtMostOnce) {
                            let detail = format!("cannot subscribe: {error}");
                            return Ending::Retry { delay: Duration::ZERO, problem: Some(LinkProblem::Connection { detail, retry_ms: 0 }), reset_backoff: false };
                        }
                        if let Some(ending) = self.act(Input::Connected, &client, &request_topic).await { return ending; }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == report_topic => {
                        let input = Input::Message(&publish.payload);
                        if let Some(ending) = self.act(input, &client, &request_topic).await { return ending; }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let ending = classify(&error, &certificate_problem, &self.config);
                        let reason = error.to_string();
                        let _ = self.feed(Input::Disconnected { reason }, None).await;
                        return ending;
                    }
                }
            }
        }
    }

    /// Feeds the session and carries out its actions on `client`.
    async fn act(
        &mut self,
        input: Input<'_>,
        client: &AsyncClient,
        request_topic: &str,
    ) -> Option<Ending> {
        let actions = self.session_handle(input);
        for action in actions {
            match action {
                Action::Publish(payload) => {
                    let qos = if payload.get("pushing").is_some() || payload.get("info").is_some() {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    if let Err(error) =
                        client.try_publish(request_topic, qos, false, payload.to_string())
                    {
                        tracing::warn!(%error, "Cannot queue a request to the printer.");
                    }
                }
                Action::Reconnect { reason } => {
                    tracing::warn!(%reason, "Reconnecting to the printer.");
                    let _ = client.try_disconnect();
                    let _ = self.feed(Input::Disconnected { reason }, None).await;
                    return Some(Ending::Retry {
                        delay: Duration::ZERO,
                        problem: None,
                        reset_backoff: true,
                    });
                }
                other => {
                    if !self.emit(other).await {
                        return Some(Ending::Shutdown);
                    }
                }
            }
        }
        None
    }

    /// Feeds the session when no connection exists; publishes are impossible then.
    async fn feed(&mut self, input: Input<'_>, _client: Option<&AsyncClient>) -> bool {
        for action in self.session_handle(input) {
            match action {
                Action::Publish(_) | Action::Reconnect { .. } => {}
                other => {
                    if !self.emit(other).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn session_handle(&mut self, input: Input<'_>) -> Vec<Action> {
        let session = self.session.get_or_insert_with(|| Session::new(self.config.session.clone()));
        session.handle(Instant::now().into_std(), UnixMillis::now(), input)
    }

    /// Passes an action on to the link's user; false when nobody listens any more.
    async fn emit(&mut self, action: Action) -> bool {
        let output = match action {
            // The session speaks Bambu's terms; the rest of the agent the neutral ones.
            Action::State(state) => LinkOutput::State(Box::new(PrinterStateV2::from_v1(&state))),
            Action::Event(kind) => {
                if let PrinterEventKind::ControlChanged {
                    to: proto::ControlCapability::ReadOnly,
                    ..
                } = kind
                {
                    let _ = self
                        .outputs
                        .send(LinkOutput::Problem(LinkProblem::ReadOnly(
                            super::session::READ_ONLY_HELP,
                        )))
                        .await;
                }
                LinkOutput::Event { at: UnixMillis::now(), kind }
            }
            Action::CommandDone { ticket, outcome } => {
                if let Some(index) = self.replies.iter().position(|(t, _)| *t == ticket) {
                    let (_, reply) = self.replies.swap_remove(index);
                    let _ = reply.send(outcome);
                }
                return true;
            }
            Action::Rejected(detail) => {
                tracing::warn!(%detail, "Ignored a malformed printer report.");
                LinkOutput::Problem(LinkProblem::BadReport(detail))
            }
            Action::UnknownModel(model) => {
                tracing::warn!(%model, "The printer reports a model this agent does not know.");
                LinkOutput::Problem(LinkProblem::UnknownModel(model))
            }
            Action::Nozzle(micrometres) => LinkOutput::Nozzle(micrometres),
            Action::Publish(_) | Action::Reconnect { .. } => return true,
        };
        self.outputs.send(output).await.is_ok()
    }
}

fn classify(
    error: &ConnectionError,
    certificate_problem: &std::sync::Mutex<Option<CertificateProblem>>,
    config: &LinkConfig,
) -> Ending {
    let retry_s = config.refused_retry.as_secs();
    if let ConnectionError::ConnectionRefused(
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword,
    ) = error
    {
        let problem = LinkProblem::WrongAccessCode { retry_s };
        return Ending::Retry {
            delay: config.refused_retry,
            problem: Some(problem),
            reset_backoff: false,
        };
    }
    let problem = certificate_problem.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(problem) = problem {
        let problem = LinkProblem::Certificate { problem, retry_s };
        return Ending::Retry {
            delay: config.refused_retry,
            problem: Some(problem),
            reset_backoff: false,
        };
    }
    let detail = error.to_string();
    Ending::Retry {
        delay: Duration::ZERO,
        problem: Some(LinkProblem::Connection { detail, retry_ms: 0 }),
        reset_backoff: false,
    }
}
