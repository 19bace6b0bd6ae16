//! Best-effort source positions for key paths such as `policies[2].require[0].duration.max`.
//!
//! Parsed YAML values forget where they came from, yet an operator fixing a rule at 3 a.m. needs a
//! line number. This walks the block structure of the text (indentation, `- ` items, `key:` lines,
//! and keys inside one-line flow values) far enough to point at the right line; when it cannot follow
//! the whole path it returns the deepest position it found, never a wrong file.

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Splits `policies[2].require[0].duration` into keys and indexes.
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        let key_end = rest.find('[').unwrap_or(rest.len());
        let (key, tail) = rest.split_at(key_end);
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        rest = tail;
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(close) = stripped.find(']') else {
                break;
            };
            let (number, after) = stripped.split_at(close);
            if let Ok(index) = number.parse() {
                out.push(Segment::Index(index));
            }
            rest = after.get(1..).unwrap_or("");
        }
    }
    out
}

#[derive(Debug)]
struct Line<'a> {
    /// 1-based line number in the file.
    number: usize,
    indent: usize,
    /// Column where the content starts once leading `- ` item markers are stripped.
    content_col: usize,
    text: &'a str,
}

impl Line<'_> {
    fn content(&self) -> &str {
        self.text.get(self.content_col..).unwrap_or("")
    }

    fn starts_item(&self) -> bool {
        self.text
            .get(self.indent..)
            .is_some_and(|rest| rest == "-" || rest.starts_with("- "))
    }
}

fn lines(source: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (index, text) in source.lines().enumerate() {
        let trimmed = text.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            continue;
        }
        let indent = text.len() - trimmed.len();
        let mut content_col = indent;
        let mut rest = trimmed;
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            let after_trimmed = after.trim_start_matches(' ');
            content_col += rest.len() - after_trimmed.len();
            rest = after_trimmed;
            if rest.is_empty() {
                break;
            }
        }
        out.push(Line {
            number: index + 1,
            indent,
            content_col,
            text,
        });
    }
    out
}

/// The key a block line starts with (`name: x` → `name`, `"a b": 1` → `a b`), and the byte offset just
/// after its colon.
fn key_of(content: &str) -> Option<(&str, usize)> {
    if let Some(quote) = content.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let inner = content.get(1..)?;
        let close = inner.find(quote)?;
        let key = inner.get(..close)?;
        let after = inner.get(close + 1..)?.trim_start();
        let colon = after.strip_prefix(':')?;
        return Some((key, content.len() - colon.len()));
    }
    let bytes = content.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b':' && bytes.get(index + 1).is_none_or(|next| *next == b' ') {
            return Some((content.get(..index)?.trim_end(), index + 1));
        }
    }
    None
}

/// Finds `key:` inside a flow value (`{ max: PT2H }`) from byte `from` on.
fn find_flow_key(text: &str, from: usize, key: &str) -> Option<usize> {
    let mut start = from;
    while let Some(found) = text.get(start..).and_then(|rest| rest.find(key)) {
        let at = start + found;
        let before_ok = text
            .get(..at)
            .and_then(|head| head.chars().last())
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
        let after_ok = text
            .get(at + key.len()..)
            .is_some_and(|tail| tail.trim_start().starts_with(':'));
        if before_ok && after_ok {
            return Some(at);
        }
        start = at + key.len().max(1);
    }
    None
}

/// `(line, column)`, both 1-based, of the deepest part of `path` found in `source`.
pub(crate) fn locate(source: &str, path: &str) -> Option<(usize, usize)> {
    let lines = lines(source);
    let mut low = 0;
    let mut high = lines.len();
    let mut best: Option<(usize, usize)> = None;
    // Set once the path enters a one-line flow value: (line index, byte offset to search from).
    let mut inline: Option<(usize, usize)> = None;
    for segment in segments(path) {
        if let Some((line_index, from)) = inline {
            let line = lines.get(line_index)?;
            if let Segment::Key(key) = &segment {
                match find_flow_key(line.text, from, key) {
                    Some(at) => {
                        best = Some((line.number, at + 1));
                        inline = Some((line_index, at + key.len()));
                    }
                    None => return best,
                }
            }
            continue;
        }
        let block = lines.get(low..high).unwrap_or(&[]);
        let Some(first) = block.first() else {
            return best;
        };
        match &segment {
            Segment::Key(key) => {
                let level = first.content_col;
                let found = block.iter().enumerate().find(|(_, line)| {
                    line.content_col == level
                        && key_of(line.content()).is_some_and(|(k, _)| k == key)
                });
                let Some((offset, line)) = found else {
                    return best;
                };
                let index = low + offset;
                best = Some((line.number, line.content_col + 1));
                let after_colon = key_of(line.content()).map(|(_, end)| end).unwrap_or(0);
                let value = line.content().get(after_colon..).unwrap_or("").trim();
                if !value.is_empty() && !value.starts_with('#') {
                    inline = Some((index, line.content_col + after_colon));
                    continue;
                }
                let key_col = line.content_col;
                let end = lines
                    .iter()
                    .enumerate()
                    .skip(index + 1)
                    .find(|(_, next)| {
                        next.indent < key_col || (next.indent == key_col && !next.starts_item())
                    })
                    .map(|(position, _)| position)
                    .unwrap_or(lines.len())
                    .min(high);
                low = index + 1;
                high = end;
            }
            Segment::Index(wanted) => {
                if !first.starts_item() {
                    return best;
                }
                let dash = first.indent;
                let items: Vec<usize> = block
                    .iter()
                    .enumerate()
                    .filter(|(_, line)| line.indent == dash && line.starts_item())
                    .map(|(offset, _)| low + offset)
                    .collect();
                let Some(&index) = items.get(*wanted) else {
                    return best;
                };
                let line = lines.get(index)?;
                best = Some((line.number, line.content_col + 1));
                let end = items.get(wanted + 1).copied().unwrap_or(high);
                // The item's first key shares the dash's line: start the block there.
                low = index;
                high = end;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::locate;

    const SOURCE: &str = "\
# comment
policies:
  - name: first
    match:
      roles: [Global Administrator]
    require:
      - duration: { max: PT2H }
      - justification:
          min_length: 10

  - name: second
    decide: Denied
lists:
  break-glass:
  - 0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d
";

    #[test]
    fn block_keys_and_items_are_located() {
        assert_eq!(locate(SOURCE, "policies"), Some((2, 1)));
        assert_eq!(locate(SOURCE, "policies[1]"), Some((11, 5)));
        assert_eq!(locate(SOURCE, "policies[1].decide"), Some((12, 5)));
        assert_eq!(
            locate(SOURCE, "policies[0].require[1].justification.min_length"),
            Some((9, 11))
        );
        assert_eq!(locate(SOURCE, "lists.break-glass[0]"), Some((15, 5)));
    }

    #[test]
    fn keys_inside_flow_values_are_located() {
        assert_eq!(
            locate(SOURCE, "policies[0].require[0].duration.max"),
            Some((7, 21))
        );
        assert_eq!(locate(SOURCE, "policies[0].match.roles[0]"), Some((5, 7)));
    }

    #[test]
    fn a_missing_key_falls_back_to_the_deepest_parent_found() {
        assert_eq!(locate(SOURCE, "policies[1].require"), Some((11, 5)));
        assert_eq!(locate(SOURCE, "windows.x"), None);
    }
}
