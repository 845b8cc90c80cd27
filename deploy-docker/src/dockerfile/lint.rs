//! A Dockerfile linter with rule ids in the spirit of hadolint, for the mistakes
//! that matter most in service images.
//!
//! | rule | finds |
//! |---|---|
//! | DL3006 | a base image without a tag |
//! | DL3007 | a base image tagged `latest` |
//! | DL3002 | the last `USER` of the final stage is root |
//! | DL3015 | `apt-get install` without `--no-install-recommends` |
//! | DL3009 | `apt-get install` in the final stage without removing `/var/lib/apt/lists` |
//! | DL3020 | `ADD` for local files or folders, where `COPY` serves |
//! | DRS001 | the final stage sets no `USER`, so it runs as root |
//! | DRS002 | the final stage has no `HEALTHCHECK` |
//!
//! The `DL` ids mean what they mean in hadolint; `DRS` ids are this crate's own.
//!
//! Findings are deploy-core's [`Finding`] (subject `Dockerfile`, with the line of
//! the instruction), rated on its [`Severity`] scale: what hadolint calls an error
//! is [`Severity::High`], a warning [`Severity::Medium`], an info [`Severity::Low`].

use std::collections::BTreeSet;

use deploy_core::scan::{Finding, Severity};

/// The subject of every lint finding.
const SUBJECT: &str = "Dockerfile";

#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

/// Joins continuation lines, drops comments and blank lines.
fn parse(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if current.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if current.is_some() && trimmed.starts_with('#') {
            continue;
        }
        let (continued, body) = match trimmed.strip_suffix('\\') {
            Some(body) => (true, body),
            None => (false, trimmed),
        };
        let entry = current.get_or_insert_with(|| (index + 1, String::new()));
        if !entry.1.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body.trim());
        if !continued && let Some((line, joined)) = current.take() {
            let (keyword, args) = joined.split_once(char::is_whitespace).unwrap_or((joined.as_str(), ""));
            instructions.push(Instruction {
                line,
                keyword: keyword.to_ascii_uppercase(),
                args: args.trim().to_owned(),
            });
        }
    }
    if let Some((line, joined)) = current {
        let (keyword, args) = joined.split_once(char::is_whitespace).unwrap_or((joined.as_str(), ""));
        instructions.push(Instruction { line, keyword: keyword.to_ascii_uppercase(), args: args.trim().to_owned() });
    }
    instructions
}

/// Lints Dockerfile text; findings in line order.
///
/// ```
/// use deploy_docker::dockerfile::lint;
/// let findings = lint("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\nADD app.py /app/\nUSER root\nCMD [\"python\", \"/app/app.py\"]\n");
/// let rules: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
/// assert_eq!(rules, ["DL3006", "DRS002", "DL3015", "DL3009", "DL3020", "DL3002"]);
/// ```
pub fn lint(text: &str) -> Vec<Finding> {
    let instructions = parse(text);
    let mut findings = Vec::new();
    let mut stages: BTreeSet<String> = BTreeSet::new();
    let final_from = instructions.iter().rposition(|i| i.keyword == "FROM").unwrap_or(0);
    let mut push = |rule: &str, severity, line, message: String| {
        findings.push(Finding::new(rule, severity, SUBJECT, message, "").at_line(line));
    };

    for (index, instruction) in instructions.iter().enumerate() {
        let in_final = index >= final_from;
        match instruction.keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> =
                    instruction.args.split_whitespace().filter(|w| !w.starts_with("--platform")).collect();
                let Some(image) = words.first().copied() else { continue };
                if let [_, alias_kw, alias] = words[..]
                    && alias_kw.eq_ignore_ascii_case("as")
                {
                    stages.insert(alias.to_ascii_lowercase());
                }
                if image == "scratch" || image.contains('$') || stages.contains(&image.to_ascii_lowercase()) {
                    continue;
                }
                let after_slash = image.rsplit('/').next().unwrap_or(image);
                if image.contains('@') {
                    continue;
                }
                match after_slash.split_once(':') {
                    None => push(
                        "DL3006",
                        Severity::Medium,
                        instruction.line,
                        format!("always tag the version of an image explicitly: {image}"),
                    ),
                    Some((_, "latest")) => push(
                        "DL3007",
                        Severity::Medium,
                        instruction.line,
                        format!("using latest is prone to errors; pin a version of {image}"),
                    ),
                    Some(_) => {}
                }
            }
            "RUN" => {
                let installs = instruction.args.split(['&', ';', '|']).any(|part| {
                    let words: Vec<&str> = part.split_whitespace().collect();
                    words.windows(2).any(|w| w[0] == "apt-get" && w[1] == "install")
                        || words.windows(3).any(|w| w[0] == "apt-get" && w[2] == "install")
                });
                if installs {
                    if !instruction.args.contains("--no-install-recommends") {
                        push(
                            "DL3015",
                            Severity::Low,
                            instruction.line,
                            "avoid additional packages by specifying --no-install-recommends".to_owned(),
                        );
                    }
                    if in_final && !instruction.args.contains("/var/lib/apt/lists") {
                        push(
                            "DL3009",
                            Severity::Low,
                            instruction.line,
                            "delete the apt-get lists after installing something (rm -rf /var/lib/apt/lists/*)"
                                .to_owned(),
                        );
                    }
                }
            }
            "ADD" => {
                let sources = add_sources(&instruction.args);
                let archive_or_url = |s: &str| {
                    s.contains("://")
                        || [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst"]
                            .iter()
                            .any(|ext| s.ends_with(ext))
                };
                if !sources.is_empty() && !sources.iter().all(|s| archive_or_url(s)) {
                    push(
                        "DL3020",
                        Severity::High,
                        instruction.line,
                        "use COPY instead of ADD for files and folders".to_owned(),
                    );
                }
            }
            _ => {}
        }
    }

    let final_stage = &instructions[final_from.min(instructions.len())..];
    match final_stage.iter().rev().find(|i| i.keyword == "USER") {
        Some(user) => {
            let name = user.args.split(':').next().unwrap_or("").trim();
            if name == "root" || name == "0" {
                push("DL3002", Severity::Medium, user.line, "last USER should not be root".to_owned());
            }
        }
        None if !final_stage.is_empty() => push(
            "DRS001",
            Severity::Medium,
            final_stage[0].line,
            "the final stage sets no USER and runs as root; add a non-root USER".to_owned(),
        ),
        None => {}
    }
    let has_healthcheck = final_stage.iter().any(|i| i.keyword == "HEALTHCHECK");
    if !final_stage.is_empty() && !has_healthcheck {
        push(
            "DRS002",
            Severity::Low,
            final_stage[0].line,
            "the final stage has no HEALTHCHECK; Docker cannot tell when the service is ready".to_owned(),
        );
    }
    findings.sort_by_key(|f| f.line);
    findings
}

/// The sources of an `ADD` (everything but flags and the destination).
fn add_sources(args: &str) -> Vec<String> {
    let words: Vec<String> = if args.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(args).unwrap_or_default()
    } else {
        args.split_whitespace().map(str::to_owned).collect()
    };
    let words: Vec<String> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
    match words.split_last() {
        Some((_, sources)) => sources.to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<String> {
        lint(text).into_iter().map(|f| f.id).collect()
    }

    const TAIL: &str = "USER 10001\nHEALTHCHECK CMD [\"true\"]\nCMD [\"app\"]\n";

    #[test]
    fn base_images_need_a_pinned_tag() {
        assert_eq!(rules(&format!("FROM ubuntu\n{TAIL}")), ["DL3006"]);
        assert_eq!(rules(&format!("FROM registry.local:5000/base:latest\n{TAIL}")), ["DL3007"]);
        assert!(
            rules(&format!("FROM registry.local:5000/base\n{TAIL}")).contains(&"DL3006".to_owned()),
            "a port is not a tag"
        );
        assert!(rules(&format!("FROM ubuntu:24.04\n{TAIL}")).is_empty());
        assert!(rules(&format!("FROM ubuntu@sha256:{}\n{TAIL}", "a".repeat(64))).is_empty());
        assert!(rules(&format!("FROM scratch\n{TAIL}")).is_empty());
        assert!(rules(&format!("ARG BASE=x:1\nFROM $BASE\n{TAIL}")).is_empty());
        assert!(rules(&format!("FROM rust:1.88 AS build\nFROM build\n{TAIL}")).is_empty(), "a stage is not an image");
    }

    #[test]
    fn root_users_are_found() {
        assert_eq!(rules("FROM a:1\nUSER app\nUSER root:root\nHEALTHCHECK NONE\nCMD x\n"), ["DL3002"]);
        assert_eq!(rules("FROM a:1\nUSER 0\nHEALTHCHECK NONE\n"), ["DL3002"]);
        assert_eq!(rules("FROM a:1\nHEALTHCHECK NONE\n"), ["DRS001"]);
        assert!(
            rules("FROM a:1 AS b\nUSER root\nFROM c:1\nUSER app\nHEALTHCHECK NONE\n").is_empty(),
            "only the final stage counts"
        );
    }

    #[test]
    fn apt_get_rules_follow_continuations_and_stages() {
        let bad = "FROM debian:12\nRUN apt-get update \\\n    && apt-get -y install curl\n";
        assert_eq!(rules(&format!("{bad}{TAIL}")), ["DL3015", "DL3009"]);
        let findings = lint(&format!("{bad}{TAIL}"));
        assert_eq!(findings[0].line, Some(2), "reported at the instruction's first line");
        assert_eq!(findings[0].severity, Severity::Low);
        assert_eq!(findings[0].subject, "Dockerfile");
        let good = "FROM debian:12\nRUN apt-get update && apt-get install -y --no-install-recommends curl \\\n  && rm -rf /var/lib/apt/lists/*\n";
        assert!(rules(&format!("{good}{TAIL}")).is_empty());
        let builder_only = "FROM debian:12 AS b\nRUN apt-get update && apt-get install -y --no-install-recommends gcc\nFROM debian:12\n";
        assert!(rules(&format!("{builder_only}{TAIL}")).is_empty(), "list clean-up only matters in the final image");
    }

    #[test]
    fn add_is_for_archives_and_urls() {
        assert_eq!(rules(&format!("FROM a:1\nADD src/ /app/\n{TAIL}")), ["DL3020"]);
        assert_eq!(rules(&format!("FROM a:1\nADD [\"a.py\", \"/app/\"]\n{TAIL}")), ["DL3020"]);
        assert!(rules(&format!("FROM a:1\nADD --chown=1:1 rootfs.tar.gz /\n{TAIL}")).is_empty());
        assert!(rules(&format!("FROM a:1\nADD https://example.com/x.bin /x\n{TAIL}")).is_empty());
        assert!(rules(&format!("FROM a:1\nCOPY src/ /app/\n{TAIL}")).is_empty());
    }

    #[test]
    fn missing_healthcheck_is_reported_once_for_the_final_stage() {
        assert_eq!(rules("FROM a:1\nUSER app\nCMD x\n"), ["DRS002"]);
        assert!(lint("").is_empty());
    }
}
