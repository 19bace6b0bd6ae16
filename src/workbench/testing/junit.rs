//! The JUnit XML report of a `rules test` run (`--junit FILE`), the format CI systems (GitLab,
//! Jenkins, Azure Pipelines, GitHub test reporters) read: one `<testsuite>` per test file, one
//! `<testcase>` per case that ran, a `<failure>` with what differed.
//!
//! Hand-written rather than a crate: the format needs five elements and attribute/text escaping,
//! which is less code than adapting a crate's model, and adds nothing to build on two cores.

use std::fmt::Write;
use std::path::PathBuf;

use super::{CaseResult, TestReport};

/// The report as a JUnit XML document.
pub fn to_junit_xml(report: &TestReport) -> String {
    let mut suites: Vec<(PathBuf, Vec<&CaseResult>)> = Vec::new();
    for case in &report.cases {
        match suites.iter_mut().find(|(file, _)| *file == case.file) {
            Some((_, cases)) => cases.push(case),
            None => suites.push((case.file.clone(), vec![case])),
        }
    }
    let total_time: f64 = report.cases.iter().map(|case| case.duration_ms).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        xml,
        "<testsuites name=\"pimgate rules test\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        report.cases.len(),
        report.failed,
        report.filtered_out,
        total_time / 1000.0
    );
    for (file, cases) in &suites {
        let failures = cases.iter().filter(|case| case.failure.is_some()).count();
        let time: f64 = cases.iter().map(|case| case.duration_ms).sum();
        let file = file.display().to_string();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
            escape(&file),
            cases.len(),
            time / 1000.0
        );
        for case in cases {
            let _ = write!(
                xml,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\"",
                escape(&case.name),
                escape(&file),
                escape(&file),
                case.line,
                case.duration_ms / 1000.0
            );
            match &case.failure {
                None => xml.push_str("/>\n"),
                Some(failure) => {
                    let _ = writeln!(
                        xml,
                        ">\n      <failure message=\"{}\" type=\"expectation\">{}:{}:{}: {}</failure>\n    </testcase>",
                        escape(failure),
                        escape(&file),
                        case.line,
                        case.column,
                        escape(failure)
                    );
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Text made safe for an XML attribute or element: the five special characters as entities, and
/// the control characters XML 1.0 cannot carry at all (a case name can hold anything YAML can)
/// replaced by U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn the_special_characters_become_entities_and_controls_become_replacement_characters() {
        assert_eq!(
            escape("a<b>&\"c\"'d'\n\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;&#10;\u{FFFD}"
        );
        assert_eq!(escape("plain words"), "plain words");
    }
}
