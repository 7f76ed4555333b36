//! The API fields the dashboard reads, as `hub/assets/schema.js` declares them, and a check
//! of them against an OpenAPI document's schemas.
//!
//! The convention (stated in `schema.js` too):
//! - `schema.js` holds `export const FIELDS = {…};`, whose object literal is strict JSON:
//!   resource name → field name → type. A type is `string`, `integer`, `number`, `boolean`,
//!   `any` or another resource's name; `T[]` is a list, `T{}` a map with string keys, and a
//!   trailing `?` means null or absent. Resource names are the schema names the API's
//!   document is expected to use (`Printer`, `PrinterState`, `LiveCamera`, …).
//! - The dashboard passes every answer, request body and WebSocket message through
//!   `shape(resource, value)`, which keeps only declared fields, so a page cannot read (or
//!   send) an undeclared one. The tests below check that every resource the modules name
//!   (`resource: 'X'`, `request: 'X'`, `LIVE`) is declared and that every `.snake_case`
//!   property the modules read is a declared field.
//!
//! [`dashboard_fields`] reads the declaration; [`check_against_openapi`] lists where an
//! OpenAPI 3 document (`components.schemas`) lacks what the dashboard reads. Once the API's
//! document has full schemas, a test can assert that list is empty.

use std::collections::BTreeMap;

use serde_json::Value;

const SCHEMA_JS: &str = include_str!("../../assets/schema.js");

/// A field's type as `schema.js` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    /// `string`, `integer`, `number`, `boolean`, `any` or a resource name.
    pub base: String,
    pub shape: Shape,
    /// Null or absent allowed (`?`).
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    One,
    /// `T[]`
    List,
    /// `T{}`
    Map,
}

impl FieldType {
    pub fn parse(text: &str) -> FieldType {
        let (rest, optional) = text.strip_suffix('?').map_or((text, false), |rest| (rest, true));
        let (base, shape) = if let Some(base) = rest.strip_suffix("[]") {
            (base, Shape::List)
        } else if let Some(base) = rest.strip_suffix("{}") {
            (base, Shape::Map)
        } else {
            (rest, Shape::One)
        };
        FieldType { base: base.to_owned(), shape, optional }
    }

    /// Whether the base names a resource rather than a JSON scalar.
    pub fn is_resource(&self) -> bool {
        !SCALARS.contains(&self.base.as_str())
    }
}

const SCALARS: &[&str] = &["string", "integer", "number", "boolean", "any"];

/// Resource → field → type.
pub type Fields = BTreeMap<String, BTreeMap<String, FieldType>>;

/// What the dashboard reads, from the embedded `schema.js`.
pub fn dashboard_fields() -> Fields {
    parse_fields(SCHEMA_JS).expect("hub/assets/schema.js: FIELDS is strict JSON")
}

/// The `FIELDS` object of a `schema.js` text.
pub fn parse_fields(source: &str) -> Result<Fields, String> {
    let start = source.find("export const FIELDS = ").ok_or("no `export const FIELDS = `")?;
    let object = &source[start + "export const FIELDS = ".len()..];
    let end = object.find("\n};").ok_or("FIELDS does not end with a line `};`")?;
    let value: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&object[..end + 2]).map_err(|e| format!("FIELDS: {e}"))?;
    Ok(value
        .into_iter()
        .map(|(resource, fields)| {
            let fields = fields.into_iter().map(|(f, t)| (f, FieldType::parse(&t))).collect();
            (resource, fields)
        })
        .collect())
}

/// Where `document` (OpenAPI 3.x) lacks what the dashboard reads: a resource with no schema
/// of its name in `components.schemas`, a field that is not among its properties, a field
/// read as always present that the schema does not require, a field whose schema does not
/// refer to the resource the dashboard expects there. `$ref` and `allOf` are followed.
pub fn check_against_openapi(fields: &Fields, document: &Value) -> Vec<String> {
    let schemas = &document["components"]["schemas"];
    let mut problems = Vec::new();
    for (resource, wanted) in fields {
        let Some(schema) = schemas.get(resource) else {
            problems.push(format!("{resource}: no schema of that name"));
            continue;
        };
        let (properties, required) = properties_of(schemas, schema);
        for (field, field_type) in wanted {
            let Some(property) = properties.get(field) else {
                problems.push(format!("{resource}.{field}: not a property of the schema"));
                continue;
            };
            if !field_type.optional && !required.contains(field) {
                problems.push(format!("{resource}.{field}: read as always present, not required"));
            }
            if field_type.is_resource() {
                let inner = match field_type.shape {
                    Shape::One => Some(*property),
                    Shape::List => property.get("items"),
                    Shape::Map => property.get("additionalProperties"),
                };
                let refers =
                    inner.is_some_and(|inner| refers_to(schemas, inner, &field_type.base, 3));
                if !refers {
                    problems.push(format!(
                        "{resource}.{field}: does not refer to the schema {}",
                        field_type.base
                    ));
                }
            }
        }
    }
    problems
}

const REF_PREFIX: &str = "#/components/schemas/";

fn resolve<'a>(schemas: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(REF_PREFIX)) {
        Some(name) => schemas.get(name).unwrap_or(schema),
        None => schema,
    }
}

/// The properties and required names of a schema, through `$ref` and `allOf`; for
/// alternatives (`oneOf`, `anyOf`: a tagged enum's variants), the properties of any of them,
/// required only where every alternative requires them.
fn properties_of<'a>(
    schemas: &'a Value,
    schema: &'a Value,
) -> (BTreeMap<String, &'a Value>, Vec<String>) {
    let schema = resolve(schemas, schema);
    let mut properties = BTreeMap::new();
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(own) = schema["properties"].as_object() {
        properties.extend(own.iter().map(|(k, v)| (k.clone(), v)));
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (more, more_required) = properties_of(schemas, part);
        properties.extend(more);
        required.extend(more_required);
    }
    for key in ["oneOf", "anyOf"] {
        let Some(alternatives) = schema[key].as_array() else { continue };
        let mut in_every: Option<Vec<String>> = None;
        for alternative in alternatives {
            let (more, more_required) = properties_of(schemas, alternative);
            for (name, property) in more {
                properties.entry(name).or_insert(property);
            }
            in_every = Some(match in_every {
                None => more_required,
                Some(so_far) => so_far.into_iter().filter(|n| more_required.contains(n)).collect(),
            });
        }
        required.extend(in_every.unwrap_or_default());
    }
    (properties, required)
}

/// Whether `schema` is a `$ref` to `name`, directly, as one alternative of a nullable
/// `oneOf`/`anyOf`, or through a schema that is itself such an alternative (an event body
/// that is a known event or anything newer).
fn refers_to(schemas: &Value, schema: &Value, name: &str, depth: u8) -> bool {
    let target = format!("{REF_PREFIX}{name}");
    let reference = schema.get("$ref").and_then(Value::as_str);
    if reference == Some(target.as_str()) {
        return true;
    }
    if depth == 0 {
        return false;
    }
    if let Some(other) = reference.and_then(|r| r.strip_prefix(REF_PREFIX)) {
        return schemas.get(other).is_some_and(|s| refers_to(schemas, s, name, depth - 1));
    }
    ["oneOf", "anyOf", "allOf"].iter().any(|key| {
        schema[*key].as_array().is_some_and(|alternatives| {
            alternatives.iter().any(|alternative| refers_to(schemas, alternative, name, depth - 1))
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
        super::super::ASSETS
            .iter()
            .filter(|a| a.content_type == super::super::JS && !a.name.starts_with("vendor/"))
            .map(|a| (a.name, std::str::from_utf8(a.body).unwrap()))
    }

    #[test]
    fn every_field_type_names_a_scalar_or_a_declared_resource() {
        let fields = dashboard_fields();
        assert!(fields.len() > 30, "{} resources", fields.len());
        for (resource, wanted) in &fields {
            for (field, field_type) in wanted {
                assert!(
                    !field_type.is_resource() || fields.contains_key(&field_type.base),
                    "{resource}.{field}: no resource {}",
                    field_type.base
                );
            }
        }
    }

    /// The quoted name after each `marker` (`resource: '`) in the modules.
    fn named_after<'a>(source: &'a str, marker: &str) -> Vec<&'a str> {
        source
            .match_indices(marker)
            .filter_map(|(at, _)| source[at + marker.len()..].split('\'').next())
            .collect()
    }

    #[test]
    fn every_resource_the_modules_name_is_declared() {
        let fields = dashboard_fields();
        let mut named = 0;
        for (name, source) in scripts() {
            for marker in ["resource: '", "request: '", "shape('"] {
                for resource in named_after(source, marker) {
                    assert!(fields.contains_key(resource), "{name} names {resource}");
                    named += 1;
                }
            }
        }
        assert!(named > 15, "only {named} resources named");
        let live = SCHEMA_JS.split("export const LIVE = {").nth(1).unwrap().split("};").next();
        for line in live.unwrap().lines().filter(|l| l.contains(':')) {
            let resource = line.split('\'').nth(1).unwrap();
            assert!(fields.contains_key(resource), "LIVE names {resource}");
        }
    }

    #[test]
    fn every_snake_case_property_the_modules_read_is_declared() {
        let fields = dashboard_fields();
        let declared: std::collections::BTreeSet<&str> =
            fields.values().flat_map(|f| f.keys()).map(String::as_str).collect();
        let mut read = 0;
        for (name, source) in scripts() {
            let bytes = source.as_bytes();
            for (at, _) in source.match_indices('.') {
                let rest = &source[at + 1..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(rest.len());
                let property = &rest[..end];
                let after_identifier = at > 0
                    && (bytes[at - 1].is_ascii_alphanumeric() || b")]?_".contains(&bytes[at - 1]));
                if !after_identifier || !property.contains('_') || property.starts_with('_') {
                    continue;
                }
                read += 1;
                assert!(
                    declared.contains(property),
                    "{name} reads .{property}, which schema.js does not declare"
                );
            }
        }
        assert!(read > 50, "only {read} snake_case reads found");
    }

    #[test]
    fn types_parse_with_their_shape_and_optionality() {
        assert_eq!(
            FieldType::parse("Tray[]?"),
            FieldType { base: "Tray".into(), shape: Shape::List, optional: true }
        );
        assert_eq!(
            FieldType::parse("integer{}"),
            FieldType { base: "integer".into(), shape: Shape::Map, optional: false }
        );
        assert!(!FieldType::parse("string?").is_resource());
        assert!(FieldType::parse("Printer").is_resource());
    }

    #[test]
    fn a_document_is_checked_for_schemas_properties_requirements_and_references() {
        let fields = parse_fields(
            r#"export const FIELDS = {
  "PrinterList": { "printers": "Printer[]" },
  "Printer": { "id": "string", "name": "string?", "state": "PrinterState?", "agent_online": "boolean" },
  "PrinterState": { "state": "string", "fans": "integer{}" },
  "Camera": { "fps": "number" }
};"#,
        )
        .unwrap();
        let document = json!({ "components": { "schemas": {
            "PrinterList": { "type": "object", "required": ["printers"], "properties": {
                "printers": { "type": "array", "items": { "$ref": "#/components/schemas/Printer" } } } },
            "Printer": { "allOf": [
                { "type": "object", "required": ["id"], "properties": {
                    "id": { "type": "string" }, "name": { "type": ["string", "null"] } } },
                { "type": "object", "properties": {
                    "state": { "oneOf": [{ "$ref": "#/components/schemas/PrinterState" }, { "type": "null" }] },
                    "agent_online": { "type": "boolean" } } }
            ] },
            "PrinterState": { "type": "object", "required": ["state"], "properties": {
                "state": { "type": "string" } } }
        } } });
        assert_eq!(
            check_against_openapi(&fields, &document),
            vec![
                "Camera: no schema of that name",
                "Printer.agent_online: read as always present, not required",
                "PrinterState.fans: not a property of the schema",
            ]
        );
    }
}

#[cfg(test)]
mod against_the_document {
    use super::*;

    #[test]
    fn every_field_the_dashboard_reads_or_sends_is_in_the_openapi_document() {
        let document = serde_json::to_value(crate::api::spec()).expect("the document");
        let problems = check_against_openapi(&dashboard_fields(), &document);
        assert!(
            problems.is_empty(),
            "the dashboard and the API disagree:\n{}",
            problems.join("\n")
        );
    }
}
