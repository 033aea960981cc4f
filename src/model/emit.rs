//! Writing a [`ModelSpec`] back out: as TOML that `parse`
//! reads to the same spec (`--print-spec`), and as the canonical JSON a
//! checkpoint's metadata records.

use super::spec::{Layout, ModelSpec, Rule, TensorSpec};
use crate::rng::dist::Dist;
use serde_json::{json, Map, Value};

/// The rule keys of `t` that differ from the defaults, in a fixed order.
fn rule_keys(t: &TensorSpec) -> Vec<(&'static str, Value)> {
    let mut keys = Vec::new();
    match &t.rule {
        Rule::Const(v) if *v == 0.0 && v.is_sign_positive() => keys.push(("init", json!("zeros"))),
        Rule::Const(v) if *v == 1.0 => keys.push(("init", json!("ones"))),
        Rule::Const(v) => {
            keys.push(("init", json!("constant")));
            keys.push(("value", json!(f64::from(*v))));
        }
        Rule::Draw { init, layout } => {
            keys.push(("init", json!(init.scheme().name())));
            if let Some(m) = init.mode() {
                keys.push(("mode", json!(m.name())));
            }
            if let Some(g) = init.gain() {
                keys.push(("gain", json!(g)));
            }
            if init.multiplier() != 1.0 {
                keys.push(("multiplier", json!(init.multiplier())));
            }
            if init.dist() != Dist::Normal {
                keys.push(("dist", json!(init.dist().name())));
            }
            if init.groups() != 1 {
                keys.push(("groups", json!(init.groups())));
            }
            if *layout == Layout::InOut {
                keys.push(("layout", json!("in_out")));
            }
        }
    }
    if let Some(s) = &t.split {
        keys.push(("split", json!(s.axis.name())));
        if !s.parts.is_empty() {
            keys.push(("split_parts", json!(s.parts)));
        }
        if s.unit != 1 {
            keys.push(("split_unit", json!(s.unit)));
        }
    }
    if !t.zero_rows.is_empty() {
        keys.push(("zero_rows", json!(t.zero_rows)));
    }
    if let Some(n) = &t.note {
        keys.push(("note", json!(n)));
    }
    keys
}

/// The spec as TOML, after `comment` (each line prefixed with `# `).
pub(crate) fn to_toml(spec: &ModelSpec, comment: &str) -> String {
    let mut out = String::new();
    for line in comment.lines() {
        out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
    out.push_str(&format!("seed = {}\n", spec.seed));
    for t in &spec.tensors {
        out.push_str("\n[[tensor]]\n");
        out.push_str(&format!("name = {}\n", json!(t.name)));
        out.push_str(&format!("shape = {}\n", json!(t.shape.0)).replace(',', ", "));
        for (k, v) in rule_keys(t) {
            let v = match v {
                // TOML floats need a point or an exponent; JSON prints 1.0 as 1.0 already.
                Value::Number(n) if n.is_f64() => format!("{:?}", n.as_f64().unwrap_or(0.0)),
                other => other.to_string(),
            };
            let v = if v.starts_with('[') {
                v.replace(',', ", ")
            } else {
                v
            };
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    if !spec.tied.is_empty() {
        out.push_str(
            "\n# Weights the model shares instead of storing: name = the tensor it is.\n[tied]\n",
        );
        for (target, source) in &spec.tied {
            out.push_str(&format!("{} = {}\n", json!(target), json!(source)));
        }
    }
    out
}

/// The canonical JSON of the spec (every tensor with its non-default keys,
/// in the spec's order): what a checkpoint's metadata records.
pub(crate) fn to_json(spec: &ModelSpec) -> Value {
    let tensors: Vec<Value> = spec
        .tensors
        .iter()
        .map(|t| {
            let mut m = Map::new();
            m.insert("name".into(), json!(t.name));
            m.insert("shape".into(), json!(t.shape.0));
            for (k, v) in rule_keys(t) {
                m.insert(k.into(), v);
            }
            Value::Object(m)
        })
        .collect();
    if spec.tied.is_empty() {
        json!({ "seed": spec.seed, "tensor": tensors })
    } else {
        json!({ "seed": spec.seed, "tensor": tensors, "tied": spec.tied })
    }
}
