//! Printers managed from the hub (since wire version 6): the hub sends an agent the whole
//! list of printers it should drive, versioned; the agent answers with a durable record of
//! the version it applied and each printer's outcome, and reports what it found on its LAN.
//!
//! The list is the hub's whole desire for that agent, never a delta, so a lost or repeated
//! message changes nothing: the agent applies a version above the one it holds and answers
//! every one it receives. Printers from the agent's own `agent.toml` are not in it and stay
//! as they are ("managed locally").

use serde::{Deserialize, Serialize};

use crate::{PrinterId, Vendor};

/// The printers the hub wants the agent to drive.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DesiredPrinters {
    /// Increases with every change the hub makes for this agent.
    pub version: u64,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub printers: Vec<ManagedPrinter>,
}

impl std::fmt::Debug for DesiredPrinters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredPrinters")
            .field("version", &self.version)
            .field("printers", &self.printers)
            .finish()
    }
}

/// One printer the hub manages. Its secret (access code, API key) travels only here, inside
/// the TLS session; `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ManagedPrinter {
    pub id: PrinterId,
    pub name: Option<String>,
    pub model: Option<String>,
    pub link: ManagedLink,
    /// Watch the printer's own camera (Bambu's built-in one, a Klipper printer's first
    /// listed webcam).
    pub camera: bool,
}

impl std::fmt::Debug for ManagedPrinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedPrinter")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("model", &self.model)
            .field("link", &self.link)
            .field("camera", &self.camera)
            .finish()
    }
}

/// How to reach a managed printer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ManagedLink {
    /// Bambu Lab LAN MQTT; the printer's key is pinned on first use.
    Bambu { host: String, port: u16, access_code: String },
    /// A Klipper printer's Moonraker.
    Moonraker { url: String, api_key: Option<String>, web_port: u16 },
}

impl ManagedLink {
    pub fn vendor(&self) -> Vendor {
        match self {
            ManagedLink::Bambu { .. } => Vendor::BambuLab,
            ManagedLink::Moonraker { .. } => Vendor::Moonraker,
        }
    }
}

impl std::fmt::Debug for ManagedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagedLink::Bambu { host, port, .. } => f
                .debug_struct("Bambu")
                .field("host", host)
                .field("port", port)
                .field("access_code", &"***")
                .finish(),
            ManagedLink::Moonraker { url, api_key, web_port } => f
                .debug_struct("Moonraker")
                .field("url", url)
                .field("api_key", &api_key.as_ref().map(|_| "***"))
                .field("web_port", web_port)
                .finish(),
        }
    }
}

/// The agent applied (or refused) a version of its desired printers: a durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrintersApplied {
    /// The version now in force.
    pub version: u64,
    /// Each managed printer of that version, and why it does not run if it does not.
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub printers: Vec<PrinterApplied>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterApplied {
    pub id: PrinterId,
    /// `None`: running. Otherwise the reason, for the person who entered it.
    pub error: Option<String>,
}

/// What the agent heard on its LAN (`kitt-agent discover`'s findings), a durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DiscoveredPrinters {
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub printers: Vec<DiscoveredPrinter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DiscoveredPrinter {
    pub vendor: Vendor,
    /// What identifies it: a Bambu printer's serial, a Moonraker's URL.
    pub key: String,
    pub name: Option<String>,
    pub model: Option<String>,
    /// Where it is: an IP address.
    pub address: String,
    /// For a Moonraker, its URL.
    pub url: Option<String>,
    /// Bambu: `lan` or `cloud`.
    pub connection: Option<String>,
    /// Bambu: `free` or `occupied`.
    pub bind: Option<String>,
}
