//! The documented response shapes (`tests/azure/documented_shapes.json`) and the comparison of the
//! fake's answers with them: the same field names and JSON types.

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// The documented responses of example `name` (`{"responses": {status: {"body" | "headers"}}}`),
/// as far as the provider relies on them: field paths and JSON types, from
/// `tests/azure/documented_shapes.json`.
pub fn example(name: &str) -> Result<Value> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("azure/documented_shapes.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let shapes: Value = serde_json::from_str(&text)?;
    let responses = shapes
        .get(name)
        .with_context(|| format!("{name}: not in {}", path.display()))?;
    Ok(serde_json::json!({ "responses": responses }))
}

/// The documented response body `status` of example `name`.
pub fn documented(name: &str, status: &str) -> Result<Value> {
    let example = example(name)?;
    Ok(example["responses"][status]["body"].clone())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where `fake` and `documented` disagree in JSON type, recursively over the keys both have (for
/// arrays, their first elements).
fn type_mismatches(documented: &Value, fake: &Value, at: &str, out: &mut Vec<String>) {
    if kind(documented) != kind(fake) {
        out.push(format!(
            "{at}: documented {}, fake {}",
            kind(documented),
            kind(fake)
        ));
        return;
    }
    match (documented, fake) {
        (Value::Object(doc), Value::Object(ours)) => {
            for (key, value) in doc {
                if let Some(other) = ours.get(key) {
                    type_mismatches(value, other, &format!("{at}/{key}"), out);
                }
            }
        }
        (Value::Array(doc), Value::Array(ours)) => {
            if let (Some(first), Some(other)) = (doc.first(), ours.first()) {
                type_mismatches(first, other, &format!("{at}/0"), out);
            }
        }
        _ => {}
    }
}

/// `fake` has the documented shape: every JSON pointer in `relied_on` (the fields the provider
/// reads) is present in both, and no field both have differs in JSON type.
pub fn assert_shape(documented: &Value, fake: &Value, relied_on: &[&str]) -> Result<()> {
    let mut problems = Vec::new();
    for pointer in relied_on {
        if documented.pointer(pointer).is_none() {
            problems.push(format!("{pointer}: not in the documented example"));
        }
        if fake.pointer(pointer).is_none() {
            problems.push(format!("{pointer}: missing from the fake's answer"));
        }
    }
    type_mismatches(documented, fake, "", &mut problems);
    ensure!(
        problems.is_empty(),
        "the fake's answer differs from the documented one:\n  {}\nfake: {fake:#}",
        problems.join("\n  ")
    );
    Ok(())
}
