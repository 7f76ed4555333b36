//! Tool calls a small model cannot get wrong, pure: a GBNF grammar (llama.cpp's grammar
//! language) that admits exactly one JSON object, `{"tool": NAME, "arguments": {...}}`, where
//! NAME is one of the offered tools or `none`, and each argument is what its parameter allows
//! (a printer id from the farm's own list, an integer, bounded text). The sampler masks every
//! token that would leave the grammar, so even a 135M model names only tools and printers
//! that exist. Rule names are letters, digits and `-` (llama.cpp's parser takes no `_`).

use super::llm::{ParamKind, ToolCall, ToolSpec};

/// The tool name that means "answer without a tool".
pub const NO_TOOL: &str = "none";

/// The longest free-text argument the grammar admits, in characters.
const MAX_TEXT: usize = 120;

/// The grammar for a choice among `tools`; its root rule is `root`.
pub fn tool_choice(tools: &[ToolSpec]) -> String {
    let mut rules = Vec::new();
    let mut calls = Vec::new();
    for (t, tool) in tools.iter().enumerate() {
        let rule = format!("t{t}");
        let mut body = vec![literal(&format!("{}, \"arguments\": {{", json_string(tool.name)))];
        let params: Vec<_> = tool.params.iter().filter(|p| p.required).collect();
        for (p, param) in params.iter().enumerate() {
            let separator = if p == 0 { "" } else { ", " };
            body.push(literal(&format!("{separator}{}: ", json_string(param.name))));
            let value = match &param.kind {
                ParamKind::Text { max } => {
                    let name = format!("t{t}p{p}");
                    rules.push(format!(
                        "{name} ::= \"\\\"\" char{{0,{}}} \"\\\"\"",
                        (*max).min(MAX_TEXT)
                    ));
                    name
                }
                ParamKind::Integer => "int".to_owned(),
                ParamKind::OneOf(values) if values.is_empty() => {
                    // Nothing to name (no printers yet): the tool cannot be called.
                    body.clear();
                    break;
                }
                ParamKind::OneOf(values) => {
                    let name = format!("t{t}p{p}");
                    let alternatives: Vec<String> =
                        values.iter().map(|v| literal(&json_string(v))).collect();
                    rules.push(format!("{name} ::= {}", alternatives.join(" | ")));
                    name
                }
            };
            body.push(value);
        }
        if body.is_empty() {
            continue;
        }
        body.push(literal("}"));
        rules.push(format!("{rule} ::= {}", body.join(" ")));
        calls.push(rule);
    }
    calls.push(literal(&format!("{}, \"arguments\": {{}}", json_string(NO_TOOL))));
    let mut grammar =
        format!("root ::= {} ( {} ) \"}}\"\n", literal("{\"tool\": "), calls.join(" | "));
    for rule in rules {
        grammar.push_str(&rule);
        grammar.push('\n');
    }
    grammar.push_str(
        "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n",
    );
    grammar.push_str("int ::= \"-\"? [0-9]{1,9}\n");
    grammar
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `text` as a GBNF string literal.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `text` holds a whole JSON object: its braces, outside strings, closed again.
/// Generation stops there rather than waiting for the model to end its turn.
pub fn object_complete(text: &str) -> bool {
    let (mut depth, mut in_string, mut escaped, mut opened) = (0_i32, false, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => {
                depth += 1;
                opened = true;
            }
            '}' => {
                depth -= 1;
                if opened && depth == 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// The call in a model's grammar-constrained output: `None` for `none`; `Err` for anything
/// the grammar should not have let through (checked anyway: a tool runs only by name).
pub fn parse_choice(text: &str, tools: &[ToolSpec], id: &str) -> Result<Option<ToolCall>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("not a JSON object: {e}"))?;
    let name = value["tool"].as_str().ok_or("no \"tool\"")?;
    if name == NO_TOOL {
        return Ok(None);
    }
    if !tools.iter().any(|t| t.name == name) {
        return Err(format!("no tool {name:?}"));
    }
    let arguments = value.get("arguments").cloned().unwrap_or_else(|| serde_json::json!({}));
    if !arguments.is_object() {
        return Err("\"arguments\" is not an object".into());
    }
    Ok(Some(ToolCall { id: id.to_owned(), name: name.to_owned(), arguments }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistant::llm::Param;

    fn tools(printers: &[&str]) -> Vec<ToolSpec> {
        vec![
            ToolSpec { name: "fleet_status", description: "all printers", params: vec![] },
            ToolSpec {
                name: "printer_state",
                description: "one printer",
                params: vec![Param {
                    name: "printer",
                    description: "its id",
                    kind: ParamKind::OneOf(printers.iter().map(|p| (*p).to_owned()).collect()),
                    required: true,
                }],
            },
            ToolSpec {
                name: "set_priority",
                description: "a job's priority",
                params: vec![
                    Param {
                        name: "job",
                        description: "",
                        kind: ParamKind::Integer,
                        required: true,
                    },
                    Param {
                        name: "priority",
                        description: "",
                        kind: ParamKind::Integer,
                        required: true,
                    },
                ],
            },
        ]
    }

    #[test]
    fn the_grammar_names_each_tool_and_only_the_printers_given() {
        let grammar = tool_choice(&tools(&["P1", "X1C-7"]));
        expect_test::expect![[r#"
            root ::= "{\"tool\": " ( t0 | t1 | t2 | "\"none\", \"arguments\": {}" ) "}"
            t0 ::= "\"fleet_status\", \"arguments\": {" "}"
            t1p0 ::= "\"P1\"" | "\"X1C-7\""
            t1 ::= "\"printer_state\", \"arguments\": {" "\"printer\": " t1p0 "}"
            t2 ::= "\"set_priority\", \"arguments\": {" "\"job\": " int ", \"priority\": " int "}"
            char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
            int ::= "-"? [0-9]{1,9}
        "#]]
        .assert_eq(&grammar);
        assert!(!grammar.lines().any(|l| l.split(" ::=").next().unwrap().contains('_')));
    }

    #[test]
    fn a_hostile_printer_name_stays_one_literal_and_no_printers_hides_the_tool() {
        let grammar = tool_choice(&tools(&["a\"b\\c\n } | root"]));
        assert!(grammar.contains(r#"t1p0 ::= "\"a\\\"b\\\\c\\n } | root\"""#), "{grammar}");
        let grammar = tool_choice(&tools(&[]));
        assert!(!grammar.contains("printer_state"), "{grammar}");
    }

    #[test]
    fn a_choice_is_parsed_and_checked_against_the_tools() {
        let tools = tools(&["P1"]);
        let call = parse_choice(
            r#"{"tool": "printer_state", "arguments": {"printer": "P1"}}"#,
            &tools,
            "c1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(call.name, "printer_state");
        assert_eq!(call.arguments["printer"], "P1");
        assert_eq!(parse_choice(r#"{"tool": "none", "arguments": {}}"#, &tools, "c1"), Ok(None));
        assert!(parse_choice(r#"{"tool": "format_disk"}"#, &tools, "c1").is_err());
        assert!(parse_choice("{\"tool\": ", &tools, "c1").is_err());
    }

    #[test]
    fn an_object_is_complete_when_its_braces_close_outside_strings() {
        assert!(!object_complete(r#"{"tool": "x", "arguments": {"#));
        assert!(!object_complete(r#"{"tool": "}\"}", "arguments": {}"#));
        assert!(object_complete(r#"{"tool": "}\"}", "arguments": {}}"#));
        assert!(!object_complete(""));
    }
}
