//! Recorded reports to publish instead of the simulated printer's own.
//!
//! Format: JSON lines. Each non-blank line is either a bare message (`{"print":{…}}`) or a
//! fixture object whose `message` key holds the message (other keys, such as `_meta`, are
//! ignored). Lines whose first non-blank character is `#` are comments. The messages are
//! published in file order, one per report interval, once, and only while at least one client
//! subscribes to the report topic (so nothing is lost before the first client arrives); after
//! the last one the simulator publishes no more reports (commands are still ACKed).

use std::path::Path;

use serde_json::{Map, Value};

/// A loaded replay: the messages in publishing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    messages: Vec<Value>,
}

impl Replay {
    /// Reads and parses a JSON-lines file.
    pub fn from_file(path: &Path) -> Result<Replay, ReplayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ReplayError::Read { path: path.display().to_string(), source })?;
        Replay::from_lines(&text)
    }

    /// Parses JSON lines.
    pub fn from_lines(text: &str) -> Result<Replay, ReplayError> {
        let mut messages = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let value: Value = serde_json::from_str(line)
                .map_err(|source| ReplayError::Json { line: number, source })?;
            messages.push(message_of(value).ok_or(ReplayError::NotAMessage { line: number })?);
        }
        Ok(Replay { messages })
    }

    /// Builds a replay from messages already in memory.
    pub fn from_messages(messages: Vec<Value>) -> Replay {
        Replay { messages }
    }

    /// The messages, in publishing order.
    pub fn messages(&self) -> &[Value] {
        &self.messages
    }

    /// Consumes the replay into its messages.
    pub fn into_messages(self) -> Vec<Value> {
        self.messages
    }
}

/// The message a line stands for: its `message` key when present, else the line itself.
fn message_of(value: Value) -> Option<Value> {
    let Value::Object(mut object) = value else { return None };
    let message = match object.remove("message") {
        Some(Value::Object(message)) => message,
        Some(_) => return None,
        None => object,
    };
    non_empty(message).map(Value::Object)
}

fn non_empty(object: Map<String, Value>) -> Option<Map<String, Value>> {
    (!object.is_empty()).then_some(object)
}

/// A replay file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("cannot read replay file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not JSON.
    #[error("replay line {line}: invalid JSON")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A line is JSON but not a message object.
    #[error("replay line {line}: expected a JSON object (a message, or a fixture with `message`)")]
    NotAMessage {
        /// 1-based line number.
        line: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_fixture_lines_become_messages_in_order() {
        let text = r#"
# a comment
{"print":{"gcode_state":"IDLE","sequence_id":"1"}}
{"_meta":{"source":"test"},"message":{"print":{"gcode_state":"RUNNING","sequence_id":"2"}}}
"#;
        let replay = Replay::from_lines(text).unwrap();
        assert_eq!(replay.messages().len(), 2);
        assert_eq!(replay.messages()[0]["print"]["gcode_state"], "IDLE");
        assert_eq!(replay.messages()[1]["print"]["gcode_state"], "RUNNING");
        assert!(replay.messages()[1].get("_meta").is_none());
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let error = Replay::from_lines("{\"print\":{}}\nnot json").unwrap_err();
        assert!(matches!(error, ReplayError::Json { line: 2, .. }), "{error}");
        let error = Replay::from_lines("[1,2]").unwrap_err();
        assert!(matches!(error, ReplayError::NotAMessage { line: 1 }), "{error}");
    }
}
