//! What the scheduler runs, pure: the actions, the built-in jobs with their default
//! schedules, and a stored job read back into a schedule the decisions understand.

use serde::{Deserialize, Serialize};

use super::{CronSchedule, Misfire, Schedule};
use crate::db::scheduler::JobRow;

/// What a job does when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The queue's dispatcher, once: catches what no change woke it for.
    QueueSweep,
    /// Success rates and the success estimate's accuracy, measured from the outcomes.
    MeasureOutcomes,
    /// Telemetry downsampling and retention, snapshot retention.
    TelemetryRetention,
    /// Agents whose certificate runs out soon without a renewal; expired enrollment tokens
    /// and sessions removed.
    CertificateSweep,
    /// Filaments below the low-stock threshold or running out at their pace.
    LowStock,
    /// The farm's day in one report, kept in `health_reports`.
    HealthReport,
    /// The database's own upkeep, and the scheduler's history pruned.
    Maintenance,
    /// Writes one row into `scheduler_marks` in the transaction that ends its run: a canary
    /// that shows in its side effect whether each occurrence ran exactly once.
    Mark,
    /// Sends a printer a command (`{"printer": …, "command": {"action": …}}`), its id
    /// derived from the job and the occurrence.
    Command,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::QueueSweep,
        Action::MeasureOutcomes,
        Action::TelemetryRetention,
        Action::CertificateSweep,
        Action::LowStock,
        Action::HealthReport,
        Action::Maintenance,
        Action::Mark,
        Action::Command,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::QueueSweep => "queue_sweep",
            Action::MeasureOutcomes => "measure_outcomes",
            Action::TelemetryRetention => "telemetry_retention",
            Action::CertificateSweep => "certificate_sweep",
            Action::LowStock => "low_stock",
            Action::HealthReport => "health_report",
            Action::Maintenance => "maintenance",
            Action::Mark => "mark",
            Action::Command => "command",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether a person may make a job of this action (the others are the hub's own, one
    /// job each).
    pub fn user_creatable(self) -> bool {
        matches!(self, Action::Mark | Action::Command)
    }
}

/// When a job runs, as an API request or a configuration states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A cron expression (five fields, or six with seconds first; `@daily` and the other
    /// nicknames; names of days and months; `L`, `W`, `#`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// A fixed interval, milliseconds (at least 1000): the first run when the job is added,
    /// then one per interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<i64>,
    /// Once, at this time (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// The IANA time zone a cron expression's wall clock is read in; UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `run_latest` (the default), `run_all` or `skip`: what happens to occurrences missed
    /// while no hub ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<String>,
}

/// The shortest interval a job may have.
pub const MIN_EVERY_MS: i64 = 1_000;
/// The lease a run holds unless its job says otherwise.
pub const DEFAULT_LEASE_MS: i64 = 30_000;

/// A stored job read back: its schedule and policy, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub action: Action,
    pub schedule: Schedule,
    pub misfire: Misfire,
    pub lease_ms: i64,
    pub paused: bool,
    pub created_at: i64,
    pub last_occurrence: Option<i64>,
}

impl Job {
    /// Reads a stored job; the error says what is wrong with it.
    pub fn from_row(row: &JobRow) -> Result<Job, String> {
        let action =
            Action::parse(&row.action).ok_or_else(|| format!("unknown action {:?}", row.action))?;
        let schedule =
            schedule(row.cron.as_deref(), row.every_ms, row.at_ms, &row.time_zone, row.created_at)?;
        let misfire = Misfire::parse(&row.misfire)
            .ok_or_else(|| format!("unknown misfire policy {:?}", row.misfire))?;
        Ok(Job {
            name: row.name.clone(),
            action,
            schedule,
            misfire,
            lease_ms: row.lease_ms.max(1_000),
            paused: row.paused,
            created_at: row.created_at,
            last_occurrence: row.last_occurrence,
        })
    }
}

/// The schedule a job's columns describe; an interval counts from the job's creation.
pub fn schedule(
    cron: Option<&str>,
    every_ms: Option<i64>,
    at: Option<i64>,
    time_zone: &str,
    created_at: i64,
) -> Result<Schedule, String> {
    match (cron, every_ms, at) {
        (Some(cron), None, None) => {
            Ok(Schedule::Cron(Box::new(CronSchedule::parse(cron, time_zone)?)))
        }
        (None, Some(every), None) if every >= MIN_EVERY_MS => {
            super::cron::time_zone(time_zone)?;
            Ok(Schedule::Every { start: created_at, period_ms: every })
        }
        (None, Some(every), None) => {
            Err(format!("every_ms must be at least {MIN_EVERY_MS} (it is {every})"))
        }
        (None, None, Some(at)) => {
            super::cron::time_zone(time_zone)?;
            Ok(Schedule::Once { at })
        }
        _ => Err("a schedule is exactly one of cron, every_ms and at".into()),
    }
}

/// A schedule checked, as its columns are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub cron: Option<String>,
    pub every_ms: Option<i64>,
    pub at: Option<i64>,
    pub time_zone: String,
    pub misfire: String,
}

impl ScheduleSpec {
    /// Checks the spec (an interval counting from `created_at`).
    pub fn check(&self, created_at: i64) -> Result<Checked, String> {
        let time_zone = self.time_zone.clone().unwrap_or_else(|| "UTC".into());
        let misfire = self.misfire.clone().unwrap_or_else(|| Misfire::RunLatest.name().into());
        if Misfire::parse(&misfire).is_none() {
            return Err(format!("misfire must be run_latest, run_all or skip, not {misfire:?}"));
        }
        let cron = self.cron.as_ref().map(|c| c.trim().to_owned());
        schedule(cron.as_deref(), self.every_ms, self.at, &time_zone, created_at)?;
        Ok(Checked { cron, every_ms: self.every_ms, at: self.at, time_zone, misfire })
    }
}

/// A built-in job: its name, action, description and default schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub action: Action,
    pub description: &'static str,
    pub cron: Option<&'static str>,
    pub every_ms: Option<i64>,
    pub misfire: Misfire,
}

/// The hub's own jobs. Their cron times are read in `[scheduler] time_zone`.
pub const BUILTINS: [Builtin; 7] = [
    Builtin {
        name: "queue-sweep",
        action: Action::QueueSweep,
        description: "Runs the queue's dispatcher once, for anything no change woke it for.",
        cron: None,
        every_ms: Some(30_000),
        misfire: Misfire::Skip,
    },
    Builtin {
        name: "outcome-measurement",
        action: Action::MeasureOutcomes,
        description: "Measures each printer's success rate over 7 and 30 days and the success estimate's accuracy.",
        cron: None,
        every_ms: Some(15 * 60_000),
        misfire: Misfire::RunLatest,
    },
    Builtin {
        name: "telemetry-retention",
        action: Action::TelemetryRetention,
        description: "Downsamples telemetry and removes what is past its retention, snapshots too.",
        cron: None,
        every_ms: Some(60_000),
        misfire: Misfire::RunLatest,
    },
    Builtin {
        name: "certificate-sweep",
        action: Action::CertificateSweep,
        description: "Finds agents whose certificate runs out within two days without a renewal; removes expired enrollment tokens and sessions, and lapsed login failures.",
        cron: None,
        every_ms: Some(3_600_000),
        misfire: Misfire::RunLatest,
    },
    Builtin {
        name: "low-stock-check",
        action: Action::LowStock,
        description: "Lists filaments below the low-stock threshold.",
        cron: None,
        every_ms: Some(15 * 60_000),
        misfire: Misfire::RunLatest,
    },
    Builtin {
        name: "daily-health-report",
        action: Action::HealthReport,
        description: "The farm's last day in one report: printers, agents, prints and failures, low stock, the scheduler.",
        cron: Some("0 7 * * *"),
        every_ms: None,
        misfire: Misfire::RunLatest,
    },
    Builtin {
        name: "database-maintenance",
        action: Action::Maintenance,
        description: "Refreshes the database's statistics (and checkpoints SQLite's log); prunes the scheduler's history past 30 days.",
        cron: Some("30 3 * * *"),
        every_ms: None,
        misfire: Misfire::RunLatest,
    },
];

impl Builtin {
    /// The row to store for this job, with cron times read in `zone`.
    pub fn row(&self, zone: &str, now: i64) -> JobRow {
        JobRow {
            name: self.name.into(),
            action: self.action.name().into(),
            params: "{}".into(),
            description: self.description.into(),
            cron: self.cron.map(str::to_owned),
            every_ms: self.every_ms,
            at_ms: None,
            time_zone: zone.into(),
            misfire: self.misfire.name().into(),
            lease_ms: DEFAULT_LEASE_MS,
            paused: false,
            builtin: true,
            created_by: "hub".into(),
            created_at: now,
            updated_at: now,
            last_occurrence: None,
        }
    }
}

/// Whether a name is fit for a job: 1–64 of `a-z 0-9 - _ .`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_reads_back_as_the_job_it_describes() {
        for builtin in &BUILTINS {
            let row = builtin.row("Europe/Berlin", 1_000);
            let job = Job::from_row(&row).expect("a valid built-in");
            assert_eq!(job.action, builtin.action);
            assert_eq!(job.misfire, builtin.misfire);
            assert!(!builtin.action.user_creatable(), "{} is the hub's", builtin.name);
            assert!(valid_name(builtin.name));
        }
        let names: std::collections::HashSet<_> = BUILTINS.iter().map(|b| b.action).collect();
        assert_eq!(names.len(), BUILTINS.len(), "one job per built-in action");
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
    }

    #[test]
    fn a_schedule_is_exactly_one_kind_and_each_is_checked() {
        let spec = |cron: Option<&str>, every: Option<i64>, at: Option<i64>| ScheduleSpec {
            cron: cron.map(str::to_owned),
            every_ms: every,
            at,
            time_zone: None,
            misfire: None,
        };
        assert!(spec(Some("*/5 * * * *"), None, None).check(0).is_ok());
        assert!(spec(None, Some(60_000), None).check(0).is_ok());
        assert!(spec(None, None, Some(5)).check(0).is_ok());
        assert!(spec(None, None, None).check(0).unwrap_err().contains("exactly one"));
        assert!(
            spec(Some("* * * * *"), Some(60_000), None)
                .check(0)
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(spec(None, Some(10), None).check(0).unwrap_err().contains("at least"));
        assert!(spec(Some("nope"), None, None).check(0).unwrap_err().contains("cron"));
        let zoned = ScheduleSpec {
            time_zone: Some("Nowhere/Else".into()),
            ..spec(None, Some(60_000), None)
        };
        assert!(zoned.check(0).unwrap_err().contains("time zone"));
        let misfire =
            ScheduleSpec { misfire: Some("sometimes".into()), ..spec(None, Some(60_000), None) };
        assert!(misfire.check(0).unwrap_err().contains("misfire"));
    }

    #[test]
    fn job_names_are_plain() {
        assert!(valid_name("nightly-canary.1"));
        for bad in ["", "-x", "Caps", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}

/// A `command` job's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    pub printer: String,
    pub command: crate::service::CommandSpec,
}

impl CommandParams {
    /// Reads and checks a `command` job's parameters: a printer id and a command that needs
    /// no person present (a start needs someone to confirm the plate clear; a firmware
    /// restart or an emergency stop is never routine).
    pub fn parse(params: &serde_json::Value) -> Result<CommandParams, String> {
        let parsed: CommandParams = serde_json::from_value(params.clone()).map_err(|e| {
            format!("params: {{\"printer\": …, \"command\": {{\"action\": …}}}}: {e}")
        })?;
        proto::PrinterId::new(parsed.printer.clone())
            .map_err(|e| format!("params.printer: {e}"))?;
        use crate::service::CommandSpec as Spec;
        match parsed.command {
            Spec::StartPrint { .. } | Spec::FirmwareRestart { .. } | Spec::EmergencyStop { .. } => {
                Err(format!(
                    "params.command: {} cannot be scheduled (it needs a person there)",
                    crate::service::commands::action_name(&parsed.command)
                ))
            }
            _ => Ok(parsed),
        }
    }
}
