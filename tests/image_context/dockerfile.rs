//! The Dockerfile read as BuildKit's parser reads it: parser directives and comment lines dropped,
//! `\` line continuations joined (comment and empty lines inside a continuation skipped), keywords
//! case-insensitive, then instructions grouped into stages (`FROM ... AS name`).
//!
//! Anything this reader does not model (another escape character, heredocs, `$` substitution) is an
//! error, never a silent approximation.

/// One instruction: its keyword (upper case), the rest of its text, and the line it starts on.
#[derive(Debug, Clone)]
pub struct Instruction {
    pub line: usize,
    pub keyword: String,
    pub arguments: String,
}

impl std::fmt::Display for Instruction {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{} {}", self.keyword, self.arguments);
        let short: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        write!(formatter, "Dockerfile line {}: `{short}`", self.line)
    }
}

/// A build stage: its base (an image or an earlier stage's name), its name, its instructions.
#[derive(Debug, Clone)]
pub struct Stage {
    pub base: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// The Dockerfile's stages, in order.
pub fn stages(text: &str) -> Result<Vec<Stage>, String> {
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions(text)? {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction
                .arguments
                .split_whitespace()
                .filter(|word| !word.starts_with("--platform="))
                .collect();
            let (base, name) = match words.as_slice() {
                [base] => (base.to_string(), None),
                [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (base.to_string(), Some(name.to_lowercase()))
                }
                _ => return Err(format!("{instruction}: cannot read this FROM")),
            };
            stages.push(Stage {
                base,
                name,
                instructions: Vec::new(),
            });
        } else {
            match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None if instruction.keyword == "ARG" => {} // a global ARG before the first FROM
                None => {
                    return Err(format!(
                        "{instruction}: an instruction before the first FROM"
                    ));
                }
            }
        }
    }
    if stages.is_empty() {
        return Err("the Dockerfile has no FROM".into());
    }
    Ok(stages)
}

/// The instructions, continuation lines joined, comments dropped.
pub fn instructions(text: &str) -> Result<Vec<Instruction>, String> {
    let mut found = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut directives_allowed = true;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if directives_allowed {
            if let Some(directive) = trimmed.strip_prefix('#') {
                let directive = directive.trim().to_lowercase();
                if directive.starts_with("escape") && directive.contains('=') {
                    return Err(format!(
                        "Dockerfile line {number}: an `escape` directive: this reader knows only `\\`"
                    ));
                }
                continue;
            }
            directives_allowed = false;
        }
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        if trimmed.is_empty() {
            continue; // an empty line inside a continuation (BuildKit warns, then skips it)
        }
        let (start, mut text) = current.take().unwrap_or((number, String::new()));
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                text.push_str(head);
                current = Some((start, text));
            }
            None => {
                text.push_str(line);
                found.push(instruction(start, &text)?);
            }
        }
    }
    if let Some((start, _)) = current {
        return Err(format!(
            "Dockerfile line {start}: a continuation that never ends"
        ));
    }
    Ok(found)
}

fn instruction(line: usize, text: &str) -> Result<Instruction, String> {
    let text = text.trim();
    let (keyword, arguments) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let instruction = Instruction {
        line,
        keyword: keyword.to_uppercase(),
        arguments: arguments.trim().to_string(),
    };
    if instruction.arguments.contains("<<") {
        return Err(format!("{instruction}: heredocs are not modelled"));
    }
    Ok(instruction)
}
