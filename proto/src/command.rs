//! Commands from the hub to a printer behind an agent, and their results.
//!
//! A command carries an id, an expiry and preconditions. The agent executes a command id
//! at most once (across reconnects and restarts), never after `expires_at`, and only when
//! every precondition holds at the moment of execution. Its [`CommandResult`] travels back
//! as a durable record.

use serde::{Deserialize, Serialize};

use crate::{
    CommandId, LightMode, LightNode, PrintState, PrinterId, Rgb, Seq, SlotRef, SpeedLevel,
    UnixMillis,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Command {
    pub id: CommandId,
    pub printer: PrinterId,
    pub issued_at: UnixMillis,
    /// After this instant the agent MUST NOT execute the command; it reports `Expired`.
    pub expires_at: UnixMillis,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub preconditions: Vec<Precondition>,
    pub action: CommandAction,
}

/// A condition checked by the agent against the printer's live state just before
/// executing a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Precondition {
    /// The printer's state is one of these.
    StateIn(#[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))] Vec<PrintState>),
    /// A person confirmed the build plate clear at `at` (the hub's clock), after the
    /// printer's last job ended. Retired in version 4: it compares the hub's clock with the
    /// agent's, which a Raspberry Pi without a real-time clock can have hours off. Sent only
    /// to agents of version 3 and older; an agent of version 4 checks it against the job end
    /// moved onto the hub's clock by the offset it measured.
    PlateConfirmedClear { by: String, at: UnixMillis },
    /// The printer accepts control commands.
    ControlAvailable,
    /// Since wire version 4: a person confirmed the build plate clear when the hub had this
    /// agent's records through seq `through`. The agent refuses if it recorded a job end of
    /// the printer after that (a higher seq, or one not yet in its outbox): that job ended
    /// after the confirmation, and whatever it left on the plate nobody confirmed gone.
    /// Decided by record identity, so no clock is involved.
    PlateClearThrough { by: String, through: Seq },
    /// Since wire version 7: the slot a start maps one of the file's filaments to holds
    /// `material` (compared without case; empty: any), in a colour within
    /// `tolerance_centi / 100` CIE76 ΔE of `color` (none: any colour).
    FilamentLoaded { slot: SlotRef, material: String, color: Option<Rgb>, tolerance_centi: u32 },
    /// Since wire version 7: the printer's nozzle is `micrometres` across (within 10 µm),
    /// the diameter the file was sliced for. A printer that does not say its nozzle fails it.
    NozzleDiameter { micrometres: u32 },
}

impl Precondition {
    /// The first wire version that has this precondition.
    pub fn since(&self) -> u16 {
        match self {
            Precondition::StateIn(_)
            | Precondition::PlateConfirmedClear { .. }
            | Precondition::ControlAvailable => 1,
            Precondition::PlateClearThrough { .. } => 4,
            Precondition::FilamentLoaded { .. } | Precondition::NozzleDiameter { .. } => 7,
        }
    }
}

impl Command {
    /// The first wire version that can carry this command: a hub MUST NOT deliver it in a
    /// session of an older version.
    pub fn since(&self) -> u16 {
        self.preconditions
            .iter()
            .map(Precondition::since)
            .max()
            .unwrap_or(1)
            .max(self.action.since())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CommandAction {
    Pause,
    Resume,
    Stop,
    SetLight {
        node: LightNode,
        mode: LightMode,
    },
    SetSpeed(SpeedLevel),
    /// Ask the printer for a full state report.
    RequestFullPush,
    StartPrint(StartPrint),
    /// Raw G-code lines, separated by `\n`.
    Gcode(String),
    /// Since wire version 6: restart the printer's firmware (Klipper's `FIRMWARE_RESTART`),
    /// which ends any print. The hub issues it only with a person's confirmation.
    FirmwareRestart,
    /// Since wire version 6: stop the printer at once (Klipper's `M112`: heaters and motors
    /// off, firmware shut down until restarted). The hub issues it only with a person's
    /// confirmation.
    EmergencyStop,
    /// Since wire version 7: put a file the hub delivered (see [`crate::files`]) on the
    /// printer's storage, then start it. The preconditions are checked before the upload
    /// and again just before the start.
    StartJob(StartJob),
}

impl CommandAction {
    /// The first wire version that has this action.
    pub fn since(&self) -> u16 {
        match self {
            CommandAction::Pause
            | CommandAction::Resume
            | CommandAction::Stop
            | CommandAction::SetLight { .. }
            | CommandAction::SetSpeed(_)
            | CommandAction::RequestFullPush
            | CommandAction::StartPrint(_)
            | CommandAction::Gcode(_) => 1,
            CommandAction::FirmwareRestart | CommandAction::EmergencyStop => 6,
            CommandAction::StartJob(_) => 7,
        }
    }
}

/// Start a print of a file already on the printer's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StartPrint {
    /// Path on the printer's storage, e.g. `/model/benchy.gcode.3mf`.
    pub file: String,
    /// 1-based plate number inside the project file.
    pub plate: u16,
    pub job_name: String,
    /// For each filament of the project, the global tray id to feed it from; -1 unused.
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub ams_mapping: Vec<i16>,
    pub use_ams: bool,
    pub bed_leveling: bool,
    pub timelapse: bool,
}

/// A job of the hub's queue, to be put on the printer and started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StartJob {
    /// The hub's job, for the agent's log.
    pub job: u64,
    /// The file in the agent's cache, by content.
    pub sha256: [u8; 32],
    pub size: u64,
    /// The start itself; its `file` is the name the upload gives the file on the printer's
    /// storage (no directories, e.g. `kitt-12-1.gcode.3mf`).
    pub print: StartPrint,
    /// Bambu: calibrate the flow (`flow_cali`) before printing.
    pub flow_calibration: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CommandResult {
    pub command: CommandId,
    pub printer: PrinterId,
    pub outcome: CommandOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CommandOutcome {
    /// The printer acknowledged the command.
    Succeeded,
    /// The printer answered with a refusal.
    Refused { reason: String },
    /// The printer did not acknowledge in time.
    TimedOut,
    /// The command arrived, or would have run, after its expiry; it was not executed.
    Expired,
    /// A precondition did not hold; it was not executed.
    PreconditionFailed { precondition: Precondition, detail: String },
    /// The printer refuses control (Developer Mode off); it was not executed.
    ReadOnly,
    /// This agent does not serve that printer, or cannot perform that action on it.
    Unsupported { detail: String },
    /// The agent could not deliver it (printer unreachable, connection lost mid-send).
    Failed { detail: String },
}
