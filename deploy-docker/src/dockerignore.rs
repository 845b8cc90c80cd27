//! `.dockerignore` with Docker's own semantics, which differ from `.gitignore`:
//! patterns are anchored at the context root (`foo` excludes `./foo` only, not
//! `a/foo`), `*` never crosses a `/`, `**` matches any number of directories, a
//! match on a directory excludes everything below it, `!` re-includes, and the
//! last matching pattern wins.

use globset::{GlobBuilder, GlobMatcher};

/// A pattern that could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("invalid .dockerignore pattern {pattern:?} on line {line}: {source}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// Its line number, from 1.
    pub line: usize,
    /// Why it is invalid.
    #[source]
    source: globset::Error,
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    include: bool,
}

/// The compiled rules of one `.dockerignore` file.
///
/// ```
/// use deploy_docker::dockerignore::DockerIgnore;
/// let ignore = DockerIgnore::parse("target\n*.log\n!keep.log\n**/node_modules\n").unwrap();
/// assert!(ignore.is_excluded("target/debug/app"));
/// assert!(ignore.is_excluded("build.log"));
/// assert!(!ignore.is_excluded("keep.log"));
/// assert!(!ignore.is_excluded("logs/build.log")); // `*` does not cross `/`
/// assert!(ignore.is_excluded("web/node_modules/x.js"));
/// assert!(!ignore.is_excluded("src/target")); // anchored at the root
/// ```
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

impl DockerIgnore {
    /// Compiles the text of a `.dockerignore` file. Blank lines and lines starting
    /// with `#` are skipped; a leading `/` and `./` are dropped, as Docker cleans
    /// each pattern.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| PatternError { pattern: pattern.to_owned(), line: index + 1, source })?;
            rules.push(Rule { matcher: glob.compile_matcher(), include });
        }
        Ok(Self { rules })
    }

    /// Whether no pattern excludes anything.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some pattern re-includes paths (`!pattern`); then an excluded
    /// directory must still be walked, because something below it may come back.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|rule| rule.include)
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of
    /// the context: the last pattern that matches the path or one of its parent
    /// directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = path.trim_start_matches("./").trim_matches('/');
        let mut excluded = false;
        for rule in &self.rules {
            if rule.include == excluded && matches_self_or_parent(&rule.matcher, path) {
                excluded = !rule.include;
            }
        }
        excluded
    }
}

fn matches_self_or_parent(matcher: &GlobMatcher, path: &str) -> bool {
    if matcher.is_match(path) {
        return true;
    }
    path.match_indices('/').any(|(end, _)| matcher.is_match(&path[..end]))
}

/// Go's `filepath.Clean` for the cases that occur in ignore files, and the
/// leading `/` Docker strips.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_match_wins_and_exceptions_reinclude() {
        let ignore = DockerIgnore::parse("*.md\n!README.md\nREADME-secret.md\n").unwrap();
        assert!(ignore.is_excluded("CHANGES.md"));
        assert!(!ignore.is_excluded("README.md"));
        assert!(ignore.is_excluded("README-secret.md"));
        assert!(ignore.has_exceptions());
    }

    #[test]
    fn directory_match_excludes_its_contents_and_patterns_are_cleaned() {
        let ignore = DockerIgnore::parse("# comment\n\n/build/\n./docs/../tmp\n").unwrap();
        assert!(ignore.is_excluded("build"));
        assert!(ignore.is_excluded("build/a/b.o"));
        assert!(ignore.is_excluded("tmp/x"));
        assert!(!ignore.is_excluded("docs/x"));
        assert!(!ignore.is_excluded("src/build"));
        assert!(!ignore.has_exceptions());
    }

    #[test]
    fn double_star_crosses_directories() {
        let ignore = DockerIgnore::parse("**/*.tmp\nsrc/**/generated\n").unwrap();
        assert!(ignore.is_excluded("a.tmp"));
        assert!(ignore.is_excluded("a/b/c.tmp"));
        assert!(ignore.is_excluded("src/x/y/generated/file.rs"));
        assert!(!ignore.is_excluded("src/x/y/file.rs"));
    }

    #[test]
    fn an_invalid_pattern_names_its_line() {
        let err = DockerIgnore::parse("ok\n[unclosed\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("[unclosed"), "{err}");
    }

    #[test]
    fn empty_file_excludes_nothing() {
        let ignore = DockerIgnore::parse("").unwrap();
        assert!(ignore.is_empty());
        assert!(!ignore.is_excluded("anything"));
    }
}
