//! What the memory remembers, as text, pure: each remembered thing (an outcome with its
//! review, a document, a conversation, a printer's notable events of one day) becomes an
//! [`Item`] with a stable key, the fields searches filter on and a hash of everything it says,
//! so that a sync re-indexes exactly what changed. [`chunks`] cuts an item's text into the
//! pieces that are embedded: each starts with the item's title, so a piece of a long manual
//! still says which manual it is from.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// What kind of record an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Outcome,
    Document,
    Conversation,
    Events,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Outcome, Kind::Document, Kind::Conversation, Kind::Events];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Outcome => "outcome",
            Kind::Document => "document",
            Kind::Conversation => "conversation",
            Kind::Events => "events",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One remembered thing.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `kind:id`, stable across syncs.
    pub key: String,
    pub kind: Kind,
    pub title: String,
    pub text: String,
    pub printer: Option<String>,
    /// Upper case (`PETG`).
    pub material: Option<String>,
    /// When it happened (an outcome's end, a document's last change), Unix ms.
    pub at: i64,
    /// Where the dashboard shows it (a path on the hub).
    pub link: String,
    /// Only this user may find it (conversations are private).
    pub owner: Option<String>,
}

impl Item {
    /// A digest of everything the item says: when it changes, the item is indexed again.
    pub fn hash(&self) -> String {
        let mut digest = Sha256::new();
        for part in [
            self.key.as_str(),
            self.title.as_str(),
            self.text.as_str(),
            self.printer.as_deref().unwrap_or(""),
            self.material.as_deref().unwrap_or(""),
            &self.at.to_string(),
            self.link.as_str(),
            self.owner.as_deref().unwrap_or(""),
        ] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part.as_bytes());
        }
        let bytes = digest.finalize();
        bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The longest piece embedded, in characters (all-MiniLM-L6-v2 reads 256 tokens; a token is
/// about four characters of English).
pub const CHUNK_CHARS: usize = 700;

/// An item's text in pieces of at most about [`CHUNK_CHARS`], cut at paragraph, then line,
/// then sentence, then word boundaries; each piece starts with the title. At least one piece,
/// also for an empty text.
pub fn chunks(item: &Item) -> Vec<String> {
    let room = CHUNK_CHARS.saturating_sub(item.title.chars().count()).max(200);
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    for unit in units(&item.text, room) {
        if !current.is_empty() && current.chars().count() + unit.chars().count() + 1 > room {
            pieces.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(unit.trim());
    }
    if !current.trim().is_empty() || pieces.is_empty() {
        pieces.push(current);
    }
    pieces
        .into_iter()
        .map(
            |piece| {
                if piece.is_empty() {
                    item.title.clone()
                } else {
                    format!("{}\n{piece}", item.title)
                }
            },
        )
        .collect()
}

/// The text's smallest pieces that fit `room`: paragraphs, or their lines, sentences or words
/// when a paragraph is longer.
fn units(text: &str, room: usize) -> Vec<&str> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        split_to_fit(paragraph, room, &["\n", ". ", " "], &mut out);
    }
    out
}

fn split_to_fit<'a>(text: &'a str, room: usize, separators: &[&str], out: &mut Vec<&'a str>) {
    if text.chars().count() <= room {
        out.push(text);
        return;
    }
    let Some((separator, rest)) = separators.split_first() else {
        // One word longer than the room: cut it at character boundaries.
        let mut start = 0;
        let indices: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        while start < indices.len() {
            let end = (start + room).min(indices.len());
            let to = indices.get(end).copied().unwrap_or(text.len());
            out.push(&text[indices[start]..to]);
            start = end;
        }
        return;
    };
    let mut from = 0;
    for (at, _) in text.match_indices(separator) {
        let end = at + separator.len();
        split_to_fit(&text[from..end], room, rest, out);
        from = end;
    }
    if from < text.len() {
        split_to_fit(&text[from..], room, rest, out);
    }
}

fn day(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at.div_euclid(1000))
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// An ended print, with its operator's review.
pub fn outcome(row: &crate::db::outcomes::OutcomeRow) -> Item {
    let name = row.name.as_deref().unwrap_or("a print");
    let mut text = format!(
        "Print {name:?} on printer {} ended {} on {}",
        row.printer_id,
        row.result,
        day(row.ended_at)
    );
    if let Some(material) = &row.material {
        text.push_str(&format!(", in {material}"));
    }
    if let Some(progress) = row.progress.filter(|_| row.result != "success") {
        text.push_str(&format!(", at {:.0}%", progress * 100.0));
    }
    if let Some(reason) = &row.reason {
        text.push_str(&format!(". Reason: {reason}"));
    }
    if !row.evidence.trim().is_empty() && row.evidence != "[]" {
        text.push_str(&format!(". Evidence: {}", row.evidence));
    }
    text.push('.');
    if let Some(reason) = &row.review_reason {
        text.push_str(&format!(" Reviewed reason: {reason}."));
    }
    if let Some(quality) = row.quality {
        text.push_str(&format!(" Quality {quality}/100."));
    }
    if let Some(aspects) = &row.aspects {
        text.push_str(&format!(" Aspects: {aspects}."));
    }
    if let Some(notes) = &row.notes {
        text.push_str(&format!(" Operator's notes: {notes}"));
    }
    Item {
        key: format!("outcome:{}", row.id),
        kind: Kind::Outcome,
        title: format!("Outcome #{}: {name} ({})", row.id, row.result),
        text,
        printer: Some(row.printer_id.clone()),
        material: row.material.as_deref().map(normal_material),
        at: row.ended_at,
        link: format!("/outcomes?id={}", row.id),
        owner: None,
    }
}

/// A material's name as searches compare it.
pub fn normal_material(material: &str) -> String {
    material.trim().to_uppercase()
}

/// A document an operator added.
pub fn document(row: &crate::db::memory::DocumentRow) -> Item {
    Item {
        key: format!("document:{}", row.id),
        kind: Kind::Document,
        title: format!("Document \"{}\"", row.title),
        text: row.content.clone(),
        printer: row.printer_id.clone(),
        material: row.material.as_deref().map(normal_material),
        at: row.updated_at,
        link: format!("/memory?document={}", row.id),
        owner: None,
    }
}

/// A conversation with the assistant: what its person asked and what they were told.
pub fn conversation(
    row: &crate::db::assistant::ConversationRow,
    said: &[(String, String)],
) -> Item {
    let text = said
        .iter()
        .map(|(speaker, content)| format!("{speaker}: {}", content.trim()))
        .collect::<Vec<_>>()
        .join("\n\n");
    Item {
        key: format!("conversation:{}", row.id),
        kind: Kind::Conversation,
        title: format!("Conversation \"{}\"", row.title),
        text,
        printer: None,
        material: None,
        at: row.updated_at,
        link: format!("/assistant?c={}", row.id),
        owner: Some(row.owner.clone()),
    }
}

/// Event kinds worth remembering: what went wrong or changed a print's course.
pub const NOTABLE_EVENTS: &[&str] = &[
    "job_paused",
    "job_resumed",
    "job_failed",
    "job_cancelled",
    "hms_raised",
    "print_error_raised",
    "printer_unreachable",
    "fault",
];

/// An event as the memory reads it: when, its kind, its body.
pub type Event = (i64, String, Value);

/// One printer's notable events of one UTC day, as lines.
pub fn events_day(printer: &str, day_start: i64, events: &[Event]) -> Item {
    let date = day(day_start);
    let lines: Vec<String> = events
        .iter()
        .map(|(at, kind, body)| {
            let time = time::OffsetDateTime::from_unix_timestamp(at.div_euclid(1000))
                .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
                .unwrap_or_default();
            format!("{time} {}", event_line(kind, body))
        })
        .collect();
    Item {
        key: format!("events:{printer}:{date}"),
        kind: Kind::Events,
        title: format!("Printer {printer}'s events on {date}"),
        text: lines.join("\n"),
        printer: Some(printer.to_owned()),
        material: None,
        at: day_start,
        link: format!("/events?printer={printer}&from={day_start}&to={}", day_start + DAY_MS),
        owner: None,
    }
}

pub const DAY_MS: i64 = 86_400_000;

fn event_line(kind: &str, body: &Value) -> String {
    let field = |name: &str| body.get(name).filter(|v| !v.is_null());
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let mut line = kind.replace('_', " ");
    for name in ["job_name", "reason", "message", "print_error"] {
        if let Some(value) = field(name) {
            line.push_str(&format!(", {}: {}", name.replace('_', " "), text(value)));
        }
    }
    if let Some(hms) = field("hms") {
        line.push_str(&format!(", HMS {}", hms.get("code").map(text).unwrap_or_else(|| text(hms))));
    }
    if let Some(error) = field("error") {
        line.push_str(&format!(", error: {error}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(title: &str, text: &str) -> Item {
        Item {
            key: "document:1".into(),
            kind: Kind::Document,
            title: title.into(),
            text: text.into(),
            printer: None,
            material: None,
            at: 0,
            link: String::new(),
            owner: None,
        }
    }

    #[test]
    fn a_long_text_is_cut_at_boundaries_and_every_piece_names_its_source() {
        let paragraph = "The nozzle must be hot before it is changed. ".repeat(30);
        let text = format!("Short intro.\n\n{paragraph}\n\n{}", "x".repeat(2000));
        let pieces = chunks(&item("Document \"X1C manual\"", &text));
        assert!(pieces.len() >= 5, "{pieces:?}");
        for piece in &pieces {
            assert!(piece.starts_with("Document \"X1C manual\"\n"), "{piece}");
            assert!(piece.chars().count() <= CHUNK_CHARS + 30, "{}", piece.len());
        }
        // Nothing lost: every sentence and every x is in some piece.
        let xs: usize = pieces.iter().map(|p| p.matches('x').count()).sum();
        assert_eq!(xs, 2000);
        let sentences: usize = pieces.iter().map(|p| p.matches("changed.").count()).sum();
        assert_eq!(sentences, 30);
    }

    #[test]
    fn an_empty_text_is_one_piece_and_the_hash_follows_every_field() {
        let empty = item("Note", "");
        assert_eq!(chunks(&empty), vec!["Note".to_owned()]);
        let a = item("Note", "PETG strings above 240 °C");
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.material = Some("PETG".into());
        assert_ne!(a.hash(), b.hash());
        let mut c = a.clone();
        c.text.push('!');
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn notable_events_read_as_lines_of_their_day() {
        let day_start = 1_764_806_400_000; // 2025-12-04 00:00 UTC
        let events = vec![
            (
                day_start + 3_600_000,
                "hms_raised".to_owned(),
                serde_json::json!({"type": "hms_raised", "hms": {"code": "0300_0100_0001_0007"}}),
            ),
            (
                day_start + 7_200_000,
                "job_failed".to_owned(),
                serde_json::json!({"type": "job_failed", "job_name": "bracket", "error": {"print_error": "0300_8003"}}),
            ),
        ];
        let item = events_day("00M09A351100002", day_start, &events);
        assert_eq!(item.key, "events:00M09A351100002:2025-12-04");
        assert!(item.text.contains("01:00 hms raised, HMS 0300_0100_0001_0007"), "{}", item.text);
        assert!(item.text.contains("02:00 job failed, job name: bracket"), "{}", item.text);
        assert!(item.text.contains("0300_8003"), "{}", item.text);
    }
}
