//! `.dockerignore` read and applied as Docker reads and applies it, so the replay starts from the build
//! context a `docker build .` would send, not from the repository.
//!
//! Followed line by line: moby/patternmatcher `ignorefile.ReadAll` (comments only at column 0, trimmed
//! lines, `!` exceptions, `filepath.Clean`, a leading `/` dropped), `NewPatternMatcher` + `compile`
//! (`*` and `?` never cross `/`, `**` crosses any number of folders, `[...]` classes, `\` escapes) and
//! `MatchesOrParentMatches` (a pattern that matches a parent folder matches everything in it; the last
//! matching pattern wins). The context walk is the archive walker's: a folder that is excluded is
//! entered only if an exception pattern starts with that folder's path.

use std::path::Path;

use regex::Regex;

/// One cleaned pattern: `text` is what Docker keeps as the pattern's string (used by the walker).
#[derive(Debug)]
struct Pattern {
    text: String,
    exception: bool,
    regex: Regex,
}

/// The patterns of one `.dockerignore`, in file order.
#[derive(Debug)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Reads a `.dockerignore` as Docker does; an invalid pattern is an error, as it is for Docker.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            // Only a `#` in the first column starts a comment (ReadAll tests before trimming).
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            if pattern.is_empty() {
                return Err(format!("illegal exclusion pattern: `{line}`"));
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let regex = Regex::new(&compile(&cleaned))
                .map_err(|error| format!("invalid .dockerignore pattern `{line}`: {error}"))?;
            patterns.push(Pattern {
                text: cleaned,
                exception,
                regex,
            });
        }
        Ok(Self { patterns })
    }

    /// Whether `path` (relative to the context, `/`-separated) stays out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // As Docker: an exception only matters once excluded, an exclusion only while included.
            if pattern.exception != excluded {
                continue;
            }
            let matched = pattern.regex.is_match(path)
                || (1..parents.len())
                    .any(|depth| pattern.regex.is_match(&parents[..depth].join("/")));
            if matched {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether the walker enters an excluded folder: only when an exception pattern starts with it.
    fn may_hold_exceptions(&self, folder: &str) -> bool {
        let prefix = format!("{folder}/");
        self.patterns
            .iter()
            .any(|pattern| pattern.exception && format!("{}/", pattern.text).starts_with(&prefix))
    }

    /// Copies the build context of `source` into `into` (an empty folder) and returns the files sent,
    /// relative and sorted.
    pub fn assemble_context(&self, source: &Path, into: &Path) -> Result<Vec<String>, String> {
        let mut sent = Vec::new();
        self.walk(source, "", into, &mut sent)?;
        sent.sort();
        Ok(sent)
    }

    fn walk(
        &self,
        source: &Path,
        relative: &str,
        into: &Path,
        sent: &mut Vec<String>,
    ) -> Result<(), String> {
        let folder = source.join(relative);
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .map_err(|error| format!("cannot list `{}`: {error}", folder.display()))?
            .collect::<Result<_, _>>()
            .map_err(|error| format!("cannot list `{}`: {error}", folder.display()))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(|error| format!("cannot stat `{path}`: {error}"))?;
            let excluded = self.excludes(&path);
            if kind.is_dir() {
                if !excluded {
                    std::fs::create_dir_all(into.join(&path)).map_err(|e| e.to_string())?;
                }
                if !excluded || self.may_hold_exceptions(&path) {
                    self.walk(source, &path, into, sent)?;
                }
            } else if !excluded {
                let target = into.join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                if kind.is_symlink() {
                    let link = std::fs::read_link(entry.path()).map_err(|e| e.to_string())?;
                    std::os::unix::fs::symlink(link, &target).map_err(|e| e.to_string())?;
                } else {
                    std::fs::copy(entry.path(), &target)
                        .map_err(|error| format!("cannot copy `{path}`: {error}"))?;
                }
                sent.push(path);
            }
        }
        Ok(())
    }
}

/// Go's `path.Clean` for `/`-separated paths: no empty, `.` or resolvable `..` elements, no trailing `/`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// patternmatcher's `compile`: the pattern as an anchored regular expression.
fn compile(pattern: &str) -> String {
    let mut regex = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is `**`: the `/` is eaten.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    regex.push_str(".*");
                } else {
                    // Any number of folders, even none.
                    regex.push_str("(.*/)?");
                }
            }
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                regex.push('\\');
                regex.push(ch);
            }
            // An escaped character stands for itself.
            '\\' => match chars.next() {
                Some(next) => regex.push_str(&regex::escape(&next.to_string())),
                None => regex.push_str("\\\\"),
            },
            other => regex.push(other),
        }
    }
    regex.push('$');
    regex
}

/// The source of a `COPY` with wildcards, as Go's `filepath.Match` reads it (no `**`; `[...]` classes).
pub fn copy_source_regex(pattern: &str) -> Result<Regex, String> {
    let mut regex = String::from("^");
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        match ch {
            ']' if in_class => {
                in_class = false;
                regex.push(ch);
            }
            '[' if !in_class => {
                in_class = true;
                regex.push(ch);
            }
            '*' if !in_class => regex.push_str("[^/]*"),
            '?' if !in_class => regex.push_str("[^/]"),
            '\\' => match chars.next() {
                Some(next) => regex.push_str(&regex::escape(&next.to_string())),
                None => return Err(format!("`{pattern}`: a trailing `\\`")),
            },
            other if in_class => regex.push(other),
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
    }
    regex.push('$');
    Regex::new(&regex).map_err(|error| format!("`{pattern}`: {error}"))
}
