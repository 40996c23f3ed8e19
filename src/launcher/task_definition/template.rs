//! `${NAME}` templates, rendered strictly: the task definition template is JSON whose
//! string values hold `${NAME}` placeholders.
//!
//! The old `envsubst` step turned an unset variable into an empty string and passed
//! any other `$` through, so a typo produced a task definition that registered and
//! then failed at start. Here every unset variable is an error (all of them listed at
//! once), and a `$` that is not part of a well-formed `${NAME}` (`$$`, `$NAME`, `${}`,
//! an unclosed `${`) is an error too: nothing is ever silently empty.
//!
//! Substitution happens inside parsed JSON strings, so a value holding `"` or `\`
//! cannot break the document, and a placeholder outside a string is a JSON error.

use std::fmt;

use serde_json::Value;

/// One part of a template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// A `${NAME}` placeholder.
    Variable(&'a str),
}

/// Splits `text` into literal text and placeholders. The error says what is wrong with
/// the first malformed `$`.
pub fn parse(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        if at > 0 {
            pieces.push(Piece::Text(&rest[..at]));
        }
        let after = &rest[at + 1..];
        let Some(body) = after.strip_prefix('{') else {
            let shown: String = rest[at..].chars().take(12).collect();
            return Err(format!(
                "`{shown}`: a `$` must start a ${{NAME}} placeholder (`$$` and `$NAME` are not supported)"
            ));
        };
        let Some(end) = body.find('}') else {
            let shown: String = rest[at..].chars().take(24).collect();
            return Err(format!("`{shown}`: the `${{` is never closed with `}}`"));
        };
        let name = &body[..end];
        if !is_name(name) {
            return Err(format!(
                "`${{{name}}}`: a placeholder name is letters, digits and `_`, not starting with a digit"
            ));
        }
        pieces.push(Piece::Variable(name));
        rest = &body[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a template could not be rendered; every problem is listed, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RenderError {
    /// The template is not JSON.
    NotJson(String),
    /// Malformed placeholders, each with where it is (a JSON path).
    Syntax(Vec<String>),
    /// Variables without a value, each named once.
    Unset(Vec<String>),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::NotJson(error) => write!(
                f,
                "is not valid JSON ({error}); placeholders belong inside JSON strings"
            ),
            RenderError::Syntax(problems) => {
                write!(f, "has malformed placeholders: {}", problems.join("; "))
            }
            RenderError::Unset(names) => write!(
                f,
                "needs variables that are not set (or empty): {}",
                names.join(", ")
            ),
        }
    }
}

/// Renders a JSON template: every string value (keys stay literal) has its
/// placeholders replaced by `lookup`'s values.
pub(crate) fn render_json(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, RenderError> {
    let mut document: Value =
        serde_json::from_str(text).map_err(|e| RenderError::NotJson(e.to_string()))?;
    let mut renderer = Renderer {
        lookup,
        syntax: Vec::new(),
        unset: Vec::new(),
    };
    renderer.walk(&mut document, "");
    if !renderer.syntax.is_empty() {
        return Err(RenderError::Syntax(renderer.syntax));
    }
    if !renderer.unset.is_empty() {
        // Sorted, so the message reads the same from one run to the next.
        renderer.unset.sort();
        return Err(RenderError::Unset(renderer.unset));
    }
    Ok(document)
}

struct Renderer<'l> {
    lookup: &'l dyn Fn(&str) -> Option<String>,
    syntax: Vec<String>,
    unset: Vec<String>,
}

impl Renderer<'_> {
    fn walk(&mut self, value: &mut Value, path: &str) {
        match value {
            Value::String(text) => {
                if let Some(rendered) = self.render(text, path) {
                    *text = rendered;
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.walk(item, &format!("{path}[{index}]"));
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    if key.contains('$') {
                        self.syntax
                            .push(format!("{path}: placeholders are not allowed in keys"));
                    }
                    self.walk(item, &path);
                }
            }
            _ => {}
        }
    }

    fn render(&mut self, text: &str, path: &str) -> Option<String> {
        let pieces = match parse(text) {
            Ok(pieces) => pieces,
            Err(problem) => {
                self.syntax.push(format!("{path}: {problem}"));
                return None;
            }
        };
        let mut out = String::with_capacity(text.len());
        for piece in pieces {
            match piece {
                Piece::Text(literal) => out.push_str(literal),
                Piece::Variable(name) => match (self.lookup)(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        if !self.unset.iter().any(|n| n == name) {
                            self.unset.push(name.to_owned());
                        }
                    }
                },
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn splits_text_and_placeholders() {
        assert_eq!(
            parse("${A}/x:${B_2}").unwrap(),
            vec![
                Piece::Variable("A"),
                Piece::Text("/x:"),
                Piece::Variable("B_2")
            ]
        );
        assert_eq!(parse("plain").unwrap(), vec![Piece::Text("plain")]);
    }

    #[test]
    fn malformed_dollars_are_errors() {
        for bad in ["$$", "cost $5", "$NAME", "${}", "${1A}", "${A-B}", "${OPEN"] {
            assert!(parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn renders_inside_strings_and_escapes_values() {
        let doc = render_json(
            r#"{"image": "${REG}/app:${TAG}", "n": 1, "list": ["${TAG}"]}"#,
            &lookup(&[("REG", "r.example"), ("TAG", "a\"b")]),
        )
        .unwrap();
        assert_eq!(doc["image"], "r.example/app:a\"b");
        assert_eq!(doc["list"][0], "a\"b");
        assert_eq!(doc["n"], 1);
    }

    #[test]
    fn lists_every_unset_variable_once() {
        let err = render_json(
            r#"{"a": "${B}", "b": "${A}-${B}", "c": "${SET}"}"#,
            &lookup(&[("SET", "x")]),
        )
        .unwrap_err();
        let RenderError::Unset(names) = &err else {
            panic!("{err:?}")
        };
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["A", "B"]);
    }

    #[test]
    fn syntax_errors_name_their_place() {
        let err = render_json(r#"{"x": [{"y": "$$HOME"}]}"#, &lookup(&[])).unwrap_err();
        assert!(err.to_string().contains("x[0].y"), "{err}");
        let err = render_json(r#"{"cpu": ${CPU}}"#, &lookup(&[])).unwrap_err();
        assert!(matches!(err, RenderError::NotJson(_)), "{err:?}");
    }
}
