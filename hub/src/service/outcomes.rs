//! Outcomes: every print that ended (made by the ingest, `db::outcomes`), an operator's
//! review (the reason confirmed or corrected, a quality score and per-aspect scores, notes;
//! scores stored exactly as given), analytics by printer, material, user and period, and a
//! success estimate that is offered only when enough reviewed outcomes exist to measure it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Principal, Role, ServiceError};
use crate::db::Db;
use crate::db::outcomes::{OutcomeRow, Review};
use crate::outcomes::Reason;
use proto::UnixMillis;

/// Reviewed outcomes an estimate needs before it is offered.
pub const ESTIMATE_MIN_REVIEWED: usize = 20;

#[derive(Debug, Clone)]
pub struct Outcomes {
    db: Db,
}

/// What a print used from one slot.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageView {
    /// The AMS or MMU unit; `null` for a slot outside any unit.
    pub unit: Option<u8>,
    pub slot: u8,
    /// The spool it was deducted from; `null` when no spool was known to be there.
    pub spool_id: Option<i64>,
    pub material: Option<String>,
    pub color: Option<String>,
    pub grams: f64,
    pub cost: Option<f64>,
    /// Taken off the spool by the hub; `false` when there was no spool, or when the printer's
    /// own Spoolman client (its Moonraker) reports the usage itself.
    pub deducted: bool,
}

/// A print that ended, with what it used, cost and why it failed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutcomeView {
    pub id: i64,
    pub printer_id: String,
    /// The queue's job, when the queue sent it.
    pub job_id: Option<i64>,
    pub name: Option<String>,
    /// `success`, `failed` or `cancelled`.
    pub result: String,
    /// The reason: the review's if reviewed, else the inferred one; `null` for a success.
    pub reason: Option<String>,
    /// What the printer's words gave, and the row of the table that decided it.
    pub inferred_reason: Option<String>,
    pub reason_rule: Option<String>,
    /// What the printer said while it printed: print errors, HMS alerts, pauses, messages.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    pub started_at: Option<i64>,
    pub ended_at: i64,
    pub duration_s: Option<i64>,
    /// 0–1: how much of the print was made.
    pub progress: Option<f64>,
    pub material: Option<String>,
    /// Who queued it.
    pub requested_by: Option<String>,
    pub filament_g: f64,
    pub filament_cost: Option<f64>,
    pub energy_kwh: Option<f64>,
    pub energy_cost: Option<f64>,
    /// Filament and energy together, where either is known.
    pub cost: Option<f64>,
    pub reviewed: bool,
    pub review_reason: Option<String>,
    /// 0–100, as given.
    pub quality: Option<i64>,
    /// Aspect → 0–100, as given.
    pub aspects: BTreeMap<String, i64>,
    pub notes: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<i64>,
    pub usage: Vec<UsageView>,
    /// Snapshots of the print, oldest first (`GET /api/v1/snapshots/{id}`).
    pub snapshots: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutcomeList {
    pub outcomes: Vec<OutcomeView>,
    /// All that matched, before `limit`.
    pub total: usize,
}

/// Which outcomes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutcomeQuery {
    pub printer: Option<String>,
    /// `success`, `failed` or `cancelled`.
    pub result: Option<String>,
    /// A reason of the taxonomy.
    pub reason: Option<String>,
    /// `false`: the review queue (ended prints not reviewed yet).
    pub reviewed: Option<bool>,
    /// Ended at or after (Unix ms).
    pub from: Option<i64>,
    /// Ended before (Unix ms).
    pub to: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// An operator's review.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// The reason, confirmed or corrected; `null` for a print that succeeded.
    pub reason: Option<String>,
    /// 0–100.
    pub quality: Option<i64>,
    /// Aspect (such as `surface`, `dimensions`, `adhesion`) → 0–100; at most 16.
    #[serde(default)]
    pub aspects: BTreeMap<String, i64>,
    pub notes: Option<String>,
}

/// How analytics group outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Printer,
    Material,
    User,
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// `printer`, `material`, `user`, `day`, `week` or `month`.
    #[param(inline)]
    pub by: GroupBy,
    /// Ended at or after (Unix ms); 30 days ago when absent.
    pub from: Option<i64>,
    /// Ended before (Unix ms); now when absent.
    pub to: Option<i64>,
    pub printer: Option<String>,
}

/// One group's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Bucket {
    /// The printer, material, user or period (`2026-12-03`, `2026-W49`, `2026-12`).
    pub key: String,
    pub prints: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Succeeded over prints, 0–1.
    pub success_rate: f64,
    pub hours: f64,
    pub filament_g: f64,
    pub cost: f64,
    /// Failure reason → prints.
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Analytics {
    pub from: i64,
    pub to: i64,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EstimateQuery {
    pub printer: Option<String>,
    pub material: Option<String>,
}

/// A success estimate, or why there is none yet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Estimate {
    /// `false` while too few reviewed outcomes exist: no number is offered then.
    pub available: bool,
    /// How it is made.
    pub model: String,
    /// Reviewed outcomes it learned from.
    pub reviewed_outcomes: usize,
    /// Reviewed outcomes needed before an estimate is offered.
    pub needed: usize,
    /// Right/all, predicting each reviewed outcome from all the others (leave-one-out).
    pub accuracy: Option<f64>,
    /// 0–1, for the printer and material asked about.
    pub success_probability: Option<f64>,
    pub message: String,
}

fn view(row: OutcomeRow, usage: Vec<UsageView>, snapshots: Vec<String>) -> OutcomeView {
    let cost = match (row.filament_cost, row.energy_cost) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    let reviewed = row.reviewed_at.is_some();
    OutcomeView {
        id: row.id,
        printer_id: row.printer_id,
        job_id: row.job_id,
        name: row.name,
        reason: if reviewed { row.review_reason.clone() } else { row.reason.clone() },
        result: row.result,
        inferred_reason: row.reason,
        reason_rule: row.reason_rule,
        evidence: serde_json::from_str(&row.evidence).unwrap_or(serde_json::Value::Null),
        started_at: row.started_at,
        ended_at: row.ended_at,
        duration_s: row.duration_s,
        progress: row.progress,
        material: row.material,
        requested_by: row.requested_by,
        filament_g: row.filament_g,
        filament_cost: row.filament_cost,
        energy_kwh: row.energy_kwh,
        energy_cost: row.energy_cost,
        cost,
        reviewed,
        review_reason: row.review_reason,
        quality: row.quality,
        aspects: row.aspects.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_default(),
        notes: row.notes,
        reviewed_by: row.reviewed_by,
        reviewed_at: row.reviewed_at,
        usage,
        snapshots,
    }
}

/// The reason that counts: the review's, else the inferred one.
fn effective_reason(row: &OutcomeRow) -> Option<&str> {
    if row.reviewed_at.is_some() { row.review_reason.as_deref() } else { row.reason.as_deref() }
}

/// A period's key of a time (UTC).
fn period(at: i64, by: GroupBy) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(at.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    match by {
        GroupBy::Month => format!("{:04}-{:02}", time.year(), u8::from(time.month())),
        GroupBy::Week => {
            let (year, week, _) = time.to_iso_week_date();
            format!("{year:04}-W{week:02}")
        }
        _ => format!("{:04}-{:02}-{:02}", time.year(), u8::from(time.month()), time.day()),
    }
}

/// Groups outcomes into buckets (sorted by key).
pub fn group(rows: &[OutcomeRow], by: GroupBy) -> Vec<Bucket> {
    let mut buckets: BTreeMap<String, Bucket> = BTreeMap::new();
    for row in rows {
        let key = match by {
            GroupBy::Printer => row.printer_id.clone(),
            GroupBy::Material => row.material.clone().unwrap_or_else(|| "unknown".into()),
            GroupBy::User => row.requested_by.clone().unwrap_or_else(|| "(not queued)".into()),
            _ => period(row.ended_at, by),
        };
        let bucket = buckets.entry(key.clone()).or_insert_with(|| Bucket {
            key,
            prints: 0,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            success_rate: 0.0,
            hours: 0.0,
            filament_g: 0.0,
            cost: 0.0,
            reasons: BTreeMap::new(),
        });
        bucket.prints += 1;
        match row.result.as_str() {
            "success" => bucket.succeeded += 1,
            "cancelled" => bucket.cancelled += 1,
            _ => bucket.failed += 1,
        }
        if let Some(reason) = effective_reason(row) {
            *bucket.reasons.entry(reason.to_owned()).or_default() += 1;
        }
        bucket.hours += row.duration_s.unwrap_or(0) as f64 / 3600.0;
        bucket.filament_g += row.filament_g;
        bucket.cost += row.filament_cost.unwrap_or(0.0) + row.energy_cost.unwrap_or(0.0);
    }
    buckets
        .into_values()
        .map(|mut b| {
            b.success_rate = b.succeeded as f64 / b.prints as f64;
            b
        })
        .collect()
}

/// A reviewed outcome as the estimate learns it: printer, material, succeeded.
type Example = (String, String, bool);

/// The success probability for a printer and material, learned from `examples`: the
/// printer-and-material rate, shrunk towards the material's, shrunk towards everything's
/// (each with the weight of two outcomes: an additive prior, so a pair seen once is not
/// taken at its word).
fn predict(examples: &[&Example], printer: Option<&str>, material: Option<&str>) -> f64 {
    let rate = |filter: &dyn Fn(&Example) -> bool, prior: f64| {
        let (n, wins) = examples
            .iter()
            .filter(|e| filter(e))
            .fold((0.0, 0.0), |(n, w), e| (n + 1.0, w + if e.2 { 1.0 } else { 0.0 }));
        (wins + 2.0 * prior) / (n + 2.0)
    };
    let overall = rate(&|_| true, 0.5);
    let by_material = match material {
        Some(m) => rate(&|e| e.1.eq_ignore_ascii_case(m), overall),
        None => overall,
    };
    match printer {
        Some(p) => {
            rate(&|e| e.0 == p && material.is_none_or(|m| e.1.eq_ignore_ascii_case(m)), by_material)
        }
        None => by_material,
    }
}

/// The estimate, with its accuracy measured leave-one-out; `None` accuracy when there are
/// too few examples.
pub fn estimate(examples: &[Example], printer: Option<&str>, material: Option<&str>) -> Estimate {
    let model = "success rate of the printer and material, shrunk towards the material's and \
                 then the farm's (additive prior of two outcomes), learned from reviewed outcomes"
        .to_owned();
    if examples.len() < ESTIMATE_MIN_REVIEWED {
        return Estimate {
            available: false,
            model,
            reviewed_outcomes: examples.len(),
            needed: ESTIMATE_MIN_REVIEWED,
            accuracy: None,
            success_probability: None,
            message: format!(
                "not enough reviewed outcomes to measure an estimate: {} of {} so far",
                examples.len(),
                ESTIMATE_MIN_REVIEWED
            ),
        };
    }
    let mut right = 0usize;
    for (i, held_out) in examples.iter().enumerate() {
        let others: Vec<&Example> =
            examples.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, e)| e).collect();
        let p = predict(&others, Some(&held_out.0), Some(&held_out.1));
        if (p >= 0.5) == held_out.2 {
            right += 1;
        }
    }
    let all: Vec<&Example> = examples.iter().collect();
    let accuracy = right as f64 / examples.len() as f64;
    Estimate {
        available: true,
        model,
        reviewed_outcomes: examples.len(),
        needed: ESTIMATE_MIN_REVIEWED,
        accuracy: Some(accuracy),
        success_probability: Some(predict(&all, printer, material)),
        message: format!(
            "learned from {} reviewed outcomes; right on {:.0}% of them when each was held out",
            examples.len(),
            accuracy * 100.0
        ),
    }
}

impl Outcomes {
    pub fn new(db: Db) -> Outcomes {
        Outcomes { db }
    }

    async fn full(&self, row: OutcomeRow) -> Result<OutcomeView, ServiceError> {
        let usage = self
            .db
            .outcome_usage(row.id)
            .await?
            .into_iter()
            .map(|u| UsageView {
                unit: u.unit,
                slot: u.slot,
                spool_id: u.spool_id,
                material: u.material,
                color: u.color,
                grams: u.grams,
                cost: u.cost,
                deducted: u.deducted,
            })
            .collect();
        let from = row.started_at.unwrap_or(row.ended_at);
        // The end's own snapshot is taken just after it.
        let snapshots =
            self.db.snapshots_between(&row.printer_id, from, row.ended_at + 120_000).await?;
        Ok(view(row, usage, snapshots))
    }

    pub async fn list(
        &self,
        principal: &Principal,
        query: &OutcomeQuery,
    ) -> Result<OutcomeList, ServiceError> {
        principal.require(Role::Viewer)?;
        if let Some(reason) = &query.reason
            && Reason::parse(reason).is_none()
        {
            return Err(ServiceError::Invalid(format!("no reason {reason:?}; {}", reasons())));
        }
        let rows = self
            .db
            .outcomes(
                query.printer.as_deref(),
                query.from.unwrap_or(i64::MIN),
                query.to.unwrap_or(i64::MAX),
            )
            .await?;
        let matching: Vec<OutcomeRow> = rows
            .into_iter()
            .filter(|r| query.result.as_ref().is_none_or(|want| &r.result == want))
            .filter(|r| query.reason.as_ref().is_none_or(|want| effective_reason(r) == Some(want)))
            .filter(|r| query.reviewed.is_none_or(|want| r.reviewed_at.is_some() == want))
            .collect();
        let total = matching.len();
        let limit = query.limit.unwrap_or(100).min(1000) as usize;
        let mut outcomes = Vec::new();
        for row in matching.into_iter().take(limit) {
            outcomes.push(self.full(row).await?);
        }
        Ok(OutcomeList { outcomes, total })
    }

    pub async fn get(&self, principal: &Principal, id: i64) -> Result<OutcomeView, ServiceError> {
        principal.require(Role::Viewer)?;
        let row = self.db.outcome(id).await?.ok_or_else(|| not_found(id))?;
        self.full(row).await
    }

    /// An operator's review: the reason confirmed or corrected, scores exactly as given.
    pub async fn review(
        &self,
        principal: &Principal,
        id: i64,
        request: &ReviewRequest,
    ) -> Result<OutcomeView, ServiceError> {
        principal.require(Role::Operator)?;
        let row = self.db.outcome(id).await?.ok_or_else(|| not_found(id))?;
        if let Some(reason) = &request.reason
            && Reason::parse(reason).is_none()
        {
            return Err(ServiceError::Invalid(format!("no reason {reason:?}; {}", reasons())));
        }
        if request.reason.is_none() && row.result != "success" {
            return Err(ServiceError::Invalid(format!(
                "a print that {} needs a reason; {}",
                if row.result == "cancelled" { "was cancelled" } else { "failed" },
                reasons()
            )));
        }
        let score = |what: &str, value: i64| {
            if (0..=100).contains(&value) {
                Ok(())
            } else {
                Err(ServiceError::Invalid(format!("{what} = {value}: a score is 0 to 100")))
            }
        };
        if let Some(quality) = request.quality {
            score("quality", quality)?;
        }
        if request.aspects.len() > 16 {
            return Err(ServiceError::Invalid("at most 16 aspects".into()));
        }
        for (aspect, value) in &request.aspects {
            if aspect.is_empty()
                || aspect.len() > 32
                || !aspect.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ServiceError::Invalid(format!(
                    "aspect {aspect:?}: 1 to 32 letters, digits, '_' or '-'"
                )));
            }
            score(&format!("aspects.{aspect}"), *value)?;
        }
        if request.notes.as_ref().is_some_and(|n| n.chars().count() > 4000) {
            return Err(ServiceError::Invalid("notes: at most 4000 characters".into()));
        }
        let review = Review {
            reason: request.reason.clone(),
            quality: request.quality,
            aspects: (!request.aspects.is_empty())
                .then(|| serde_json::to_string(&request.aspects).unwrap_or_default()),
            notes: request.notes.clone().filter(|n| !n.trim().is_empty()),
            by: principal.name().to_owned(),
            at: UnixMillis::now().0,
        };
        if !self.db.review_outcome(id, &review).await? {
            return Err(not_found(id));
        }
        let detail = format!("via {}", principal.via());
        self.db
            .audit(
                principal.name(),
                &format!("review outcome {id}"),
                200,
                Some(&detail),
                UnixMillis::now(),
            )
            .await?;
        self.get(principal, id).await
    }

    pub async fn analytics(
        &self,
        principal: &Principal,
        query: &AnalyticsQuery,
    ) -> Result<Analytics, ServiceError> {
        principal.require(Role::Viewer)?;
        let to = query.to.unwrap_or_else(|| UnixMillis::now().0);
        let from = query.from.unwrap_or(to.saturating_sub(30 * 86_400_000));
        if from >= to {
            return Err(ServiceError::Invalid("from must be before to".into()));
        }
        let rows = self.db.outcomes(query.printer.as_deref(), from, to).await?;
        Ok(Analytics { from, to, buckets: group(&rows, query.by) })
    }

    pub async fn estimate(
        &self,
        principal: &Principal,
        query: &EstimateQuery,
    ) -> Result<Estimate, ServiceError> {
        principal.require(Role::Viewer)?;
        let rows = self.db.outcomes(None, i64::MIN, i64::MAX).await?;
        let examples: Vec<Example> = rows
            .iter()
            .filter(|r| r.reviewed_at.is_some())
            .map(|r| {
                let succeeded = r.result == "success" && effective_reason(r).is_none();
                (r.printer_id.clone(), r.material.clone().unwrap_or_default(), succeeded)
            })
            .collect();
        Ok(estimate(&examples, query.printer.as_deref(), query.material.as_deref()))
    }
}

fn not_found(id: i64) -> ServiceError {
    ServiceError::NotFound(format!("no outcome {id}; GET /api/v1/outcomes lists them"))
}

fn reasons() -> String {
    format!("one of {}", Reason::ALL.map(Reason::as_str).join(", "))
}

/// Buckets as CSV, a row each.
pub fn analytics_csv(analytics: &Analytics) -> String {
    let mut out = String::from(
        "key,prints,succeeded,failed,cancelled,success_rate,hours,filament_g,cost,reasons\r\n",
    );
    for b in &analytics.buckets {
        let reasons: Vec<String> = b.reasons.iter().map(|(r, n)| format!("{r}:{n}")).collect();
        let key = if b.key.contains([',', '"', '\n']) {
            format!("\"{}\"", b.key.replace('"', "\"\""))
        } else {
            b.key.clone()
        };
        out.push_str(&format!(
            "{key},{},{},{},{},{:.4},{:.3},{:.2},{:.2},{}\r\n",
            b.prints,
            b.succeeded,
            b.failed,
            b.cancelled,
            b.success_rate,
            b.hours,
            b.filament_g,
            b.cost,
            reasons.join(";")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        id: i64,
        printer: &str,
        material: &str,
        result: &str,
        reason: Option<&str>,
    ) -> OutcomeRow {
        OutcomeRow {
            id,
            printer_id: printer.into(),
            job_id: None,
            name: None,
            result: result.into(),
            reason: reason.map(Into::into),
            reason_rule: None,
            evidence: "{}".into(),
            started_at: Some(0),
            ended_at: 1_764_720_000_000 + id * 86_400_000,
            duration_s: Some(3600),
            progress: Some(1.0),
            material: Some(material.into()),
            requested_by: Some("ann".into()),
            filament_g: 10.0,
            filament_cost: Some(0.5),
            energy_kwh: Some(0.1),
            energy_cost: Some(0.05),
            review_reason: None,
            quality: None,
            aspects: None,
            notes: None,
            reviewed_by: None,
            reviewed_at: None,
        }
    }

    #[test]
    fn buckets_add_up_by_material_with_the_reviewed_reason_winning() {
        let mut corrected = row(3, "p2", "PETG", "failed", Some("other"));
        corrected.reviewed_at = Some(1);
        corrected.review_reason = Some("warping".into());
        let rows = [
            row(1, "p1", "PLA", "success", None),
            row(2, "p1", "PETG", "failed", Some("filament_runout")),
            corrected,
        ];
        let buckets = group(&rows, GroupBy::Material);
        assert_eq!(buckets.len(), 2);
        let petg = &buckets[0];
        assert_eq!((petg.key.as_str(), petg.prints, petg.failed), ("PETG", 2, 2));
        assert_eq!(
            petg.reasons,
            BTreeMap::from([("filament_runout".into(), 1), ("warping".into(), 1)])
        );
        assert_eq!(petg.success_rate, 0.0);
        assert!((petg.cost - 1.1).abs() < 1e-9 && petg.hours == 2.0);
        let days = group(&rows, GroupBy::Day);
        assert_eq!(days[0].key, "2025-12-04");
        assert_eq!(group(&rows, GroupBy::Week)[0].key, "2025-W49");
        assert_eq!(group(&rows, GroupBy::Month)[0].key, "2025-12");
    }

    #[test]
    fn no_estimate_until_enough_reviews_then_one_with_its_measured_accuracy() {
        let few: Vec<Example> = (0..5).map(|_| ("p1".into(), "PLA".into(), true)).collect();
        let none = estimate(&few, Some("p1"), Some("PLA"));
        assert!(!none.available && none.success_probability.is_none() && none.accuracy.is_none());
        assert!(none.message.contains("5 of 20"), "{}", none.message);
        // PLA on p1 always works; PETG on p2 always fails.
        let mut many: Vec<Example> = (0..12).map(|_| ("p1".into(), "PLA".into(), true)).collect();
        many.extend((0..12).map(|_| ("p2".into(), "PETG".into(), false)));
        let got = estimate(&many, Some("p2"), Some("PETG"));
        assert!(got.available);
        assert_eq!(got.accuracy, Some(1.0));
        assert!(got.success_probability.unwrap() < 0.2, "{got:?}");
        let pla = estimate(&many, Some("p1"), Some("pla")).success_probability.unwrap();
        assert!(pla > 0.8, "{pla}");
        // A coin: the accuracy says the estimate knows nothing.
        let coin: Vec<Example> = (0..30).map(|i| ("p".into(), "PLA".into(), i % 2 == 0)).collect();
        assert!(estimate(&coin, None, None).accuracy.unwrap() <= 0.5);
    }

    #[test]
    fn analytics_csv_has_a_header_and_a_row_per_bucket() {
        let analytics = Analytics {
            from: 0,
            to: 1,
            buckets: group(&[row(1, "a,b", "PLA", "success", None)], GroupBy::Printer),
        };
        let csv = analytics_csv(&analytics);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("\"a,b\",1,1,0,0,1.0000,1.000,10.00,0.55,"), "{csv}");
    }
}
