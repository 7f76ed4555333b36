//! The simulated printer, sans-IO: fed requests and clock steps, it returns the messages to
//! publish on `device/<serial>/report`.
//!
//! A driver (see `sim.rs`) calls [`Printer::step`] every layer interval, [`Printer::report`]
//! every report interval and [`Printer::handle_request`] for each request; nothing in here
//! touches a socket or a clock, so the state machine is tested directly.
//!
//! Job life cycle: `IDLE` → `PREPARE` (one step per stage of [`PREPARE_STAGES`], heaters
//! ramping) → `RUNNING` (one layer per step) → `FINISH`. `print.pause` → `PAUSE` (`stg_cur`
//! 16), `print.resume` → back, `print.stop` → `FAILED` with `print_error` 0x0300400C reported
//! once. `FINISH`/`FAILED` persist until the next job.

mod commands;
mod report;
pub(crate) mod template;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::{
    Family, Fault, FaultKind, HMS_COMMAND_VERIFICATION_FAILED, HMS_FILAMENT_RUNOUT, Hms, JobSpec,
    Model, PRINT_ERROR_CANCELLED, PrinterSerial, ReportStyle,
};

/// Preparation stages a job goes through, in order (`stg_cur` ids, doc §3.8):
/// 2 heatbed preheating, 1 auto bed leveling, 7 heating hotend.
pub const PREPARE_STAGES: [i64; 3] = [2, 1, 7];
/// `gcode_file` of a job whose request names none (and of jobs started through the API).
pub const DEFAULT_GCODE_FILE: &str = "Metadata/plate_1.gcode";
/// `stg_cur` while paused by the user.
pub const STAGE_PAUSED_BY_USER: i64 = 16;
/// `stg_cur` while paused for a filament runout.
pub const STAGE_FILAMENT_RUNOUT: i64 = 6;
/// Steps between the end of a job and the start of the next when jobs loop.
const LOOP_PAUSE_STEPS: u32 = 3;
/// Heater targets while printing PLA.
const NOZZLE_TARGET: u32 = 220;
const BED_TARGET: u32 = 55;
/// Room temperature the heaters cool down to.
const AMBIENT: f64 = 26.0;

/// What the printer wants published, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A `push_status` report (full or delta).
    Report(Value),
    /// A reply to a request: an ACK, or the `get_version` answer.
    Reply(Value),
}

impl Outgoing {
    /// The message, whatever its kind.
    pub fn message(&self) -> &Value {
        match self {
            Outgoing::Report(message) | Outgoing::Reply(message) => message,
        }
    }
}

/// The fixed facts about the simulated printer.
#[derive(Debug, Clone)]
pub struct PrinterSettings {
    /// The serial (for `get_version`).
    pub serial: PrinterSerial,
    /// The model.
    pub model: Model,
    /// Full or delta reports.
    pub report_style: ReportStyle,
    /// Duration of one step, to compute `mc_remaining_time`.
    pub layer_interval: Duration,
    /// Layers of a job started by a `print.project_file` request.
    pub project_file_layers: u32,
    /// The SD card the FTPS server writes: a `project_file` request starts only a file on
    /// it, as a printer does. `None` (no FTPS served): any file name starts.
    pub card: Option<crate::ftps::Card>,
    /// What the AMS's trays hold (material, `RRGGBB`), in order; `None`: the template's.
    pub trays: Option<Vec<(String, String)>>,
    /// Start another job a few steps after each one ends.
    pub loop_jobs: bool,
}

/// `gcode_state` values the simulation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcodeState {
    /// No job since power-on.
    Idle,
    /// Heating, levelling.
    Prepare,
    /// Printing layers.
    Running,
    /// Paused (by the user or for a runout).
    Pause,
    /// The last job completed.
    Finish,
    /// The last job failed or was stopped.
    Failed,
}

impl GcodeState {
    /// The string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GcodeState::Idle => "IDLE",
            GcodeState::Prepare => "PREPARE",
            GcodeState::Running => "RUNNING",
            GcodeState::Pause => "PAUSE",
            GcodeState::Finish => "FINISH",
            GcodeState::Failed => "FAILED",
        }
    }

    /// Whether a job is in progress (a new one cannot start).
    pub fn is_busy(self) -> bool {
        matches!(self, GcodeState::Prepare | GcodeState::Running | GcodeState::Pause)
    }
}

/// A job could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobRejected {
    /// Another job is in progress.
    #[error("printer is busy ({0})")]
    Busy(&'static str),
    /// A job needs at least one layer.
    #[error("a job needs at least one layer")]
    NoLayers,
}

/// The simulated printer.
#[derive(Debug)]
pub struct Printer {
    settings: PrinterSettings,
    state: State,
    job: Option<Job>,
    faults: Faults,
    /// The printer's own push counter (`sequence_id` of reports).
    push_counter: u64,
    /// The dynamic fields as last published, to compute deltas.
    last_published: Option<Map<String, Value>>,
    /// `print_error` is a one-shot cancel code, to clear after it was published once.
    print_error_transient: bool,
    /// Steps since the last job ended (for looping jobs).
    steps_since_end: u32,
    /// The first job started, the template of looped ones, and how many ran.
    loop_template: Option<JobSpec>,
    jobs_started: u32,
}

#[derive(Debug, Clone)]
struct State {
    gcode_state: GcodeState,
    stg_cur: i64,
    stg: Vec<i64>,
    layer_num: u32,
    total_layer_num: u32,
    mc_percent: u32,
    mc_remaining_time: u32,
    subtask_name: String,
    gcode_file: String,
    print_type: &'static str,
    print_error: u32,
    hms: Vec<Hms>,
    nozzle: Heater,
    bed: Heater,
    cooling_fan: u8,
    aux_fan: u8,
    chamber_fan: u8,
    spd_lvl: u8,
    lights: Vec<(String, String)>,
    tray_now: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Heater {
    current: f64,
    target: u32,
}

impl Heater {
    /// Moves halfway to the target each step, settling within half a degree.
    fn step(&mut self) {
        let goal = if self.target == 0 { AMBIENT } else { f64::from(self.target) };
        let next = self.current + (goal - self.current) * 0.5;
        self.current = if (goal - next).abs() < 0.5 { goal } else { (next * 4.0).round() / 4.0 };
    }
}

#[derive(Debug, Clone)]
struct Job {
    phase: Phase,
    paused: Option<PauseReason>,
    runout_done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Index into [`PREPARE_STAGES`].
    Preparing(usize),
    Printing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PauseReason {
    User,
    Runout,
}

#[derive(Debug, Clone, Default)]
struct Faults {
    fail_at: Option<(u32, Hms, u32)>,
    runout_at: Option<u32>,
    silent: bool,
    refuse_control: bool,
}

impl Printer {
    /// A printer, idle, with the given faults armed.
    pub fn new(settings: PrinterSettings, faults: &[Fault]) -> Printer {
        let idle_stage = idle_stage(settings.model);
        let state = State {
            gcode_state: GcodeState::Idle,
            stg_cur: idle_stage,
            stg: Vec::new(),
            layer_num: 0,
            total_layer_num: 0,
            mc_percent: 0,
            mc_remaining_time: 0,
            subtask_name: String::new(),
            gcode_file: String::new(),
            print_type: "idle",
            print_error: 0,
            hms: Vec::new(),
            nozzle: Heater { current: AMBIENT, target: 0 },
            bed: Heater { current: AMBIENT, target: 0 },
            cooling_fan: 0,
            aux_fan: 0,
            chamber_fan: 0,
            spd_lvl: 2,
            lights: template::lights(settings.model),
            tray_now: "255",
        };
        let mut printer = Printer {
            settings,
            state,
            job: None,
            faults: Faults::default(),
            push_counter: 0,
            last_published: None,
            print_error_transient: false,
            steps_since_end: 0,
            loop_template: None,
            jobs_started: 0,
        };
        for fault in faults {
            printer.set_fault(fault.clone());
        }
        printer.last_published = Some(printer.fields());
        printer
    }

    /// The current `gcode_state`.
    pub fn gcode_state(&self) -> GcodeState {
        self.state.gcode_state
    }

    /// The current layer (`layer_num`) and the job's layers (`total_layer_num`).
    pub fn layers(&self) -> (u32, u32) {
        (self.state.layer_num, self.state.total_layer_num)
    }

    /// Progress in percent (`mc_percent`).
    pub fn percent(&self) -> u32 {
        self.state.mc_percent
    }

    /// The job's name (`subtask_name`); empty before the first job.
    pub fn job_name(&self) -> &str {
        &self.state.subtask_name
    }

    /// Whether the silent fault is armed (publish nothing, ignore requests).
    pub fn is_silent(&self) -> bool {
        self.faults.silent
    }

    /// The current stage (`stg_cur`).
    pub fn stage(&self) -> i64 {
        self.state.stg_cur
    }

    /// The HMS entries raised now, in the order they appeared.
    pub fn hms(&self) -> &[Hms] {
        &self.state.hms
    }

    /// The `print_error` reported now; 0 when none.
    pub fn print_error(&self) -> u32 {
        self.state.print_error
    }

    /// How many jobs have started since power-on.
    pub fn jobs_started(&self) -> u32 {
        self.jobs_started
    }

    /// Starts a job if none is in progress.
    pub fn start_job(&mut self, spec: JobSpec, gcode_file: &str) -> Result<(), JobRejected> {
        if self.state.gcode_state.is_busy() {
            return Err(JobRejected::Busy(self.state.gcode_state.as_str()));
        }
        if spec.layers == 0 {
            return Err(JobRejected::NoLayers);
        }
        if self.loop_template.is_none() {
            self.loop_template = Some(spec.clone());
        }
        self.jobs_started += 1;
        let state = &mut self.state;
        state.gcode_state = GcodeState::Prepare;
        state.stg = PREPARE_STAGES.to_vec();
        state.stg_cur = PREPARE_STAGES[0];
        state.layer_num = 0;
        state.total_layer_num = spec.layers;
        state.mc_percent = 0;
        state.subtask_name = spec.name;
        state.gcode_file = gcode_file.to_owned();
        state.print_type = "local";
        state.print_error = 0;
        state.hms.retain(|hms| *hms == HMS_COMMAND_VERIFICATION_FAILED);
        state.bed.target = BED_TARGET;
        state.tray_now = "0";
        self.print_error_transient = false;
        self.job = Some(Job { phase: Phase::Preparing(0), paused: None, runout_done: false });
        self.update_remaining_time();
        Ok(())
    }

    /// Arms a fault (replacing one of the same kind).
    pub fn set_fault(&mut self, fault: Fault) {
        match fault {
            Fault::FailAtLayer { layer, hms, print_error } => {
                self.faults.fail_at = Some((layer, hms, print_error));
            }
            Fault::RunoutAtLayer { layer } => self.faults.runout_at = Some(layer),
            Fault::Silent => self.faults.silent = true,
            Fault::RefuseControl => self.faults.refuse_control = true,
        }
    }

    /// Disarms a fault. Clearing `RefuseControl` also clears its HMS entry.
    pub fn clear_fault(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::FailAtLayer => self.faults.fail_at = None,
            FaultKind::RunoutAtLayer => self.faults.runout_at = None,
            FaultKind::Silent => self.faults.silent = false,
            FaultKind::RefuseControl => {
                self.faults.refuse_control = false;
                self.state.hms.retain(|hms| *hms != HMS_COMMAND_VERIFICATION_FAILED);
            }
        }
    }

    /// Advances the simulation by one step: a preparation stage or a layer.
    pub fn step(&mut self) {
        self.state.nozzle.step();
        self.state.bed.step();
        let Some(job) = self.job.as_mut() else {
            self.step_idle();
            return;
        };
        if job.paused.is_some() {
            return;
        }
        match job.phase {
            Phase::Preparing(index) => match PREPARE_STAGES.get(index + 1) {
                Some(stage) => {
                    job.phase = Phase::Preparing(index + 1);
                    self.state.stg_cur = *stage;
                    if *stage == 7 {
                        self.state.nozzle.target = NOZZLE_TARGET;
                    }
                }
                None => {
                    job.phase = Phase::Printing;
                    self.state.gcode_state = GcodeState::Running;
                    self.state.stg_cur = 0;
                    self.state.nozzle.target = NOZZLE_TARGET;
                }
            },
            Phase::Printing => self.step_printing(),
        }
        self.update_remaining_time();
        self.update_fans();
    }

    fn step_printing(&mut self) {
        let state = &mut self.state;
        if state.layer_num >= state.total_layer_num {
            state.mc_percent = 100;
            self.end_job(GcodeState::Finish);
            return;
        }
        state.layer_num += 1;
        state.mc_percent = state.layer_num * 100 / state.total_layer_num.max(1);
        let layer = state.layer_num;
        if let Some((fail_layer, hms, print_error)) = self.faults.fail_at
            && fail_layer == layer
        {
            self.state.hms.push(hms);
            self.state.print_error = print_error;
            self.end_job(GcodeState::Failed);
            return;
        }
        let runout = self.faults.runout_at == Some(layer);
        if let Some(job) = self.job.as_mut()
            && runout
            && !job.runout_done
        {
            job.runout_done = true;
            job.paused = Some(PauseReason::Runout);
            self.state.gcode_state = GcodeState::Pause;
            self.state.stg_cur = STAGE_FILAMENT_RUNOUT;
            self.state.hms.push(HMS_FILAMENT_RUNOUT);
        }
    }

    fn step_idle(&mut self) {
        if !self.settings.loop_jobs
            || !matches!(self.state.gcode_state, GcodeState::Finish | GcodeState::Failed)
        {
            return;
        }
        self.steps_since_end += 1;
        if self.steps_since_end < LOOP_PAUSE_STEPS {
            return;
        }
        if let Some(template) = self.loop_template.clone() {
            let spec = JobSpec {
                name: format!("{} #{}", template.name, self.jobs_started + 1),
                layers: template.layers,
            };
            let gcode_file = self.state.gcode_file.clone();
            // Cannot be busy here: the state is FINISH or FAILED.
            let _ = self.start_job(spec, &gcode_file);
        }
    }

    fn end_job(&mut self, outcome: GcodeState) {
        let state = &mut self.state;
        state.gcode_state = outcome;
        state.stg_cur = idle_stage(self.settings.model);
        state.nozzle.target = 0;
        state.bed.target = 0;
        state.mc_remaining_time = 0;
        state.tray_now = "255";
        self.job = None;
        self.steps_since_end = 0;
        self.update_fans();
    }

    fn pause(&mut self) -> Result<(), &'static str> {
        let Some(job) = self.job.as_mut() else { return Err("no print in progress") };
        if job.paused.is_some() {
            return Err("already paused");
        }
        job.paused = Some(PauseReason::User);
        self.state.gcode_state = GcodeState::Pause;
        self.state.stg_cur = STAGE_PAUSED_BY_USER;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), &'static str> {
        let Some(job) = self.job.as_mut() else { return Err("no print in progress") };
        let Some(reason) = job.paused.take() else { return Err("not paused") };
        if reason == PauseReason::Runout {
            self.state.hms.retain(|hms| *hms != HMS_FILAMENT_RUNOUT);
        }
        match job.phase {
            Phase::Preparing(index) => {
                self.state.gcode_state = GcodeState::Prepare;
                self.state.stg_cur = PREPARE_STAGES.get(index).copied().unwrap_or(0);
            }
            Phase::Printing => {
                self.state.gcode_state = GcodeState::Running;
                self.state.stg_cur = 0;
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), &'static str> {
        if self.job.is_none() {
            return Err("no print in progress");
        }
        self.state.hms.retain(|hms| *hms != HMS_FILAMENT_RUNOUT);
        self.state.print_error = PRINT_ERROR_CANCELLED;
        self.print_error_transient = true;
        self.end_job(GcodeState::Failed);
        Ok(())
    }

    fn update_remaining_time(&mut self) {
        let state = &mut self.state;
        let remaining_layers = state.total_layer_num.saturating_sub(state.layer_num);
        let seconds = self.settings.layer_interval.as_secs_f64() * f64::from(remaining_layers);
        // Minutes, rounded up so an unfinished job never claims 0.
        state.mc_remaining_time = (seconds / 60.0).ceil() as u32;
    }

    fn update_fans(&mut self) {
        let printing = self.state.gcode_state == GcodeState::Running;
        self.state.cooling_fan = if printing && self.state.layer_num > 1 { 15 } else { 0 };
        self.state.aux_fan = match self.settings.model.family() {
            Family::A1 => 0,
            Family::P1 | Family::X1 if printing => 10,
            Family::P1 | Family::X1 => 0,
        };
        self.state.chamber_fan = match self.settings.model.family() {
            Family::X1 if printing => 7,
            _ => 0,
        };
    }
}

/// `stg_cur` of an idle printer: -1 on X1, 255 on P1, 0 on A1 (doc §3.6).
fn idle_stage(model: Model) -> i64 {
    match model.family() {
        Family::X1 => -1,
        Family::P1 => 255,
        Family::A1 => 0,
    }
}

#[cfg(test)]
mod tests;
