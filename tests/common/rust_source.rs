//! Reading the crate's own Rust source in tests (the operator policy's coverage, the
//! module layering): comments and string contents blanked, so a comment or a message
//! that mentions code demands nothing.

/// Whether `c` can be part of an identifier.
pub fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The code of a Rust source with comments and string contents blanked (line breaks
/// kept), so a comment or a message that mentions `.run_task()` demands nothing and
/// line numbers stay right.
pub fn code_only(source: &str) -> String {
    fn blank(out: &mut String, c: char) {
        out.push(if c == '\n' { '\n' } else { ' ' });
    }
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        let raw_start = c == 'r'
            && (!prev_ident || (chars[i - 1] == 'b' && (i < 2 || !is_ident(chars[i - 2]))));
        if raw_start && matches!(next, Some('"' | '#')) {
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                let hashes = j - i - 1;
                out.extend(&chars[i..=j]);
                let mut end = j + 1;
                while end < chars.len()
                    && !(chars[end] == '"'
                        && (0..hashes).all(|h| chars.get(end + 1 + h) == Some(&'#')))
                {
                    blank(&mut out, chars[end]);
                    end += 1;
                }
                let stop = (end + 1 + hashes).min(chars.len());
                out.extend(&chars[end.min(stop)..stop]);
                i = stop;
                continue;
            }
        }
        match (c, next) {
            ('"', _) => {
                out.push('"');
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        blank(&mut out, chars[i]);
                        i += 1;
                    }
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    out.push('"');
                    i += 1;
                }
            }
            ('\'', Some('\\')) => {
                // An escaped char literal (`'\''`, `'\n'`): copy through its closing quote.
                let end = (i + 3..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .unwrap_or(chars.len() - 1);
                out.extend(&chars[i..=end]);
                i = end + 1;
            }
            ('\'', Some(_)) if chars.get(i + 2) == Some(&'\'') => {
                out.extend(&chars[i..i + 3]);
                i += 3;
            }
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}
