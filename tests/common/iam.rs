//! A small IAM evaluator for the shipped identity policies: Allow statements, action
//! and resource patterns, and the condition operators these policies use, applied to
//! the request contexts the emulator records (`tests/emulator/authorization.py`) the
//! way AWS documents it: a request is allowed when one statement matches its action,
//! its resource and every condition; a condition on a key the request lacks fails,
//! except `Null`. An operator the evaluator does not know fails the test, so a policy
//! cannot pass by using one.

use std::collections::BTreeMap;

use serde_json::Value;

/// One action on one resource, with the request's condition keys.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Request {
    /// `ecs:StopTask`.
    pub action: String,
    /// The resource ARN, or `*` for an action without resource-level permissions.
    pub resource: String,
    /// Condition keys and their values (a string, or a list for multi-valued keys).
    pub context: BTreeMap<String, Value>,
    /// The access key id that signed the call.
    #[serde(default)]
    pub principal: String,
    /// The emulator does not know what AWS would evaluate for this call.
    #[serde(default)]
    pub unmodelled: bool,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        if !self.context.is_empty() {
            let keys: Vec<String> = self
                .context
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, " [{}]", keys.join(", "))?;
        }
        Ok(())
    }
}

/// A policy document's Allow statements, its `${VARIABLES}` filled in.
#[derive(Debug)]
pub struct PolicyDocument {
    /// The file it came from, for messages.
    pub name: String,
    /// Its statements, in order.
    pub statements: Vec<Statement>,
}

/// One Allow statement.
#[derive(Debug)]
pub struct Statement {
    /// Its Sid.
    pub sid: String,
    /// Its actions.
    pub actions: Vec<String>,
    /// Its resource patterns.
    pub resources: Vec<String>,
    /// Operator -> condition key -> the values any of which may match.
    pub condition: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a string or a list, got {other}"),
    }
}

/// `text` with every `${NAME}` replaced from `values`; a name without a value panics.
pub fn fill(text: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closing brace") + start;
        let name = &rest[start + 2..end];
        let value = values
            .get(name)
            .unwrap_or_else(|| panic!("no value for ${{{name}}}"));
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

impl PolicyDocument {
    /// Parses a policy document with its variables filled from `values`.
    pub fn parse(name: &str, text: &str, values: &BTreeMap<&str, String>) -> PolicyDocument {
        let doc: Value = serde_json::from_str(&fill(text, values))
            .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        let statements = doc["Statement"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no Statement list"))
            .iter()
            .map(|s| {
                assert_eq!(s["Effect"], "Allow", "{name}: only Allow statements");
                for absent in ["NotAction", "NotResource", "NotPrincipal"] {
                    assert!(s.get(absent).is_none(), "{name}: {absent} grants too much");
                }
                let condition = s["Condition"]
                    .as_object()
                    .map(|ops| {
                        ops.iter()
                            .map(|(op, keys)| {
                                let keys = keys
                                    .as_object()
                                    .unwrap_or_else(|| panic!("{name}: {op} is not an object"))
                                    .iter()
                                    .map(|(k, v)| (k.clone(), strings(v)))
                                    .collect();
                                (op.clone(), keys)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let statement = Statement {
                    sid: s["Sid"].as_str().unwrap_or("(no Sid)").to_owned(),
                    actions: strings(&s["Action"]),
                    resources: strings(&s["Resource"]),
                    condition,
                };
                assert!(
                    !statement.actions.is_empty() && !statement.resources.is_empty(),
                    "{name}: statement {} has no Action or no Resource",
                    statement.sid
                );
                statement
            })
            .collect();
        PolicyDocument {
            name: name.to_owned(),
            statements,
        }
    }

    /// Every action the policy names.
    pub fn actions(&self) -> std::collections::BTreeSet<String> {
        self.statements
            .iter()
            .flat_map(|s| s.actions.iter().cloned())
            .collect()
    }

    /// The Sid of the statement that allows `request`, if one does.
    pub fn allowing(&self, request: &Request) -> Option<&str> {
        self.statements
            .iter()
            .find(|s| {
                s.actions.iter().any(|a| glob(a, &request.action))
                    && s.resources.iter().any(|r| glob(r, &request.resource))
                    && s.condition.iter().all(|(op, keys)| {
                        keys.iter().all(|(key, expected)| {
                            condition(op, request.context.get(key), expected)
                        })
                    })
            })
            .map(|s| s.sid.as_str())
    }
}

/// Whether any of `policies` allows `request`.
pub fn allowed_by(policies: &[&PolicyDocument], request: &Request) -> bool {
    policies.iter().any(|p| p.allowing(request).is_some())
}

fn condition(op: &str, actual: Option<&Value>, expected: &[String]) -> bool {
    let values: Vec<&str> = match actual {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    match op {
        "Null" => {
            let absent = values.is_empty();
            expected.iter().any(|e| (e == "true") == absent)
        }
        "StringEquals" => values.iter().any(|v| expected.iter().any(|e| e == v)),
        // AWS: ArnEquals and ArnLike both take wildcards.
        "StringLike" | "ArnEquals" | "ArnLike" => {
            values.iter().any(|v| expected.iter().any(|e| glob(e, v)))
        }
        other => panic!("the evaluator does not know the condition operator {other}; teach it"),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one, case-sensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}
