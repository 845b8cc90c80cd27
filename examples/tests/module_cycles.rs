//! No top-level module of a workspace crate imports from a module that imports it back.
//!
//! A cycle between two modules means neither can be understood, tested or moved
//! behind a feature without the other (issue 14 found `state` importing
//! `engine::FailureCause` while the engine imported `state`, which is why records
//! stored strings instead of typed values). This test reads every crate's sources the
//! way a reviewer would: it strips comments (doc links do not make a dependency) and
//! `#[cfg(test)]` code (a test may reach anywhere), collects the paths that name
//! another top-level module (`crate::x`, `super::x` from the top, grouped
//! `crate::{x, y}`), and fails naming every pair of modules that reach each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The library crates of the workspace (the examples crate has no modules).
const CRATES: &[&str] = &["deploy-core", "deploy-k8s", "deploy-docker", "deploy-security", "deploy-cache"];

#[test]
fn no_top_level_module_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    for krate in CRATES {
        let graph = module_graph(&root.join(krate).join("src"));
        assert!(graph.len() > 2, "{krate}: read too few modules ({}); is the layout still src/?", graph.len());
        for (a, b) in cycles(&graph) {
            problems.push(format!("{krate}: `{a}` and `{b}` import each other"));
        }
    }
    assert!(problems.is_empty(), "module cycles:\n{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_through_groups_supers_comments_and_test_code() {
    let source = r#"
        //! Links to [`X`](crate::doc_only::X) in docs are not dependencies.
        use crate::{alpha::A, beta::{B, C}};
        use super::gamma;
        /* crate::in_block_comment */
        fn f() -> char { let _ = "crate::in_string"; '{' }
        fn g() { crate::delta::run(); }
        #[cfg(test)]
        mod tests {
            use crate::test_only::T;
            fn h() { let _ = '}'; }
        }
        fn k() { crate::epsilon::go(); }
    "#;
    let refs = references(source, 1);
    let expected: BTreeSet<String> =
        ["alpha", "beta", "gamma", "delta", "epsilon"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(refs, expected);

    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["a".to_owned(), "c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(cycles(&graph), vec![("a".to_owned(), "b".to_owned())]);
}

/// Each top-level module and the top-level modules its non-test code names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect_rs_files(src, &mut files);
    let test_only = test_only_files(src, &files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let path = module_path(src, file);
        let Some(top) = path.first().cloned() else { continue };
        if test_only.contains(file) {
            continue;
        }
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let refs = references(&text, path.len());
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != top));
    }
    graph
}

/// Pairs of modules that name each other, each pair once, sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (a, targets) in graph {
        for b in targets {
            if a < b && graph.get(b).is_some_and(|back| back.contains(a)) {
                pairs.push((a.clone(), b.clone()));
            }
        }
    }
    pairs
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/a.rs` and `src/a/mod.rs` are `[a]`, `src/a/b.rs` is
/// `[a, b]`; `lib.rs` is the crate root (`[]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// Files that only `#[cfg(test)] mod x;` declarations bring in, and everything below them.
fn test_only_files(src: &Path, files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut test_dirs = Vec::new();
    for file in files {
        let text = strip_comments(&fs::read_to_string(file).unwrap_or_default());
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs") => file.parent().map(Path::to_path_buf),
            _ => file.parent().map(|p| p.join(file.file_stem().unwrap_or_default())),
        };
        let Some(dir) = dir else { continue };
        let mut rest = text.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            rest = &rest[at + "#[cfg(test)]".len()..];
            let after = skip_attributes(rest);
            if let Some(decl) = after.strip_prefix("mod ").or_else(|| after.strip_prefix("pub(crate) mod ")) {
                let name: String = decl.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if decl[name.len()..].trim_start().starts_with(';') {
                    test_dirs.push(dir.join(&name));
                }
            }
        }
    }
    files
        .iter()
        .filter(|f| test_dirs.iter().any(|d| f.with_extension("") == *d || f.starts_with(d)) && f.starts_with(src))
        .cloned()
        .collect()
}

fn skip_attributes(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if text.starts_with("#[") {
            match text.find(']') {
                Some(end) => text = &text[end + 1..],
                None => return text,
            }
        } else {
            return text;
        }
    }
}

/// The top-level modules `source` names from outside its own, for a file `depth`
/// modules below the crate root.
fn references(source: &str, depth: usize) -> BTreeSet<String> {
    let code = strip_test_blocks(&strip_comments(source));
    let mut refs = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let boundary = rest[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        rest = &rest[at + "crate::".len()..];
        if boundary {
            refs.extend(names_at(rest));
        }
    }
    // `super::x` from a file `depth` deep reaches the crate root after `depth` supers.
    let supers = "super::".repeat(depth);
    let mut rest = code.as_str();
    while let Some(at) = rest.find(&supers) {
        rest = &rest[at + supers.len()..];
        if !rest.starts_with("super::") {
            refs.extend(names_at(rest));
        }
    }
    refs
}

/// The module names at the start of a path tail: `x::..` gives `x`, `{x::A, y}` gives both.
fn names_at(tail: &str) -> Vec<String> {
    let ident =
        |s: &str| -> String { s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    if let Some(group) = tail.strip_prefix('{') {
        let mut names = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    names.push(ident(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.push(ident(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        names.into_iter().filter(|n| !n.is_empty() && n != "self").collect()
    } else {
        let name = ident(tail);
        if name.is_empty() || name == "self" { Vec::new() } else { vec![name] }
    }
}

/// The source without comments, with string and char literals emptied (so neither a
/// `crate::` nor a brace inside them is read as code).
fn strip_comments(source: &str) -> String {
    let bytes: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i] == '/' && bytes.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if bytes[i] == '*' && bytes.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&bytes, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while bytes.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if bytes.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < bytes.len() {
                if bytes[j] == '"' && (0..hashes).all(|k| bytes.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&bytes, i) {
            // '{', '\'', '\u{7d}': skip to the closing quote.
            i += 1;
            while i < bytes.len() && bytes[i] != '\'' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Whether the quote at `i` opens a char literal rather than a lifetime (`'a`).
fn is_char_literal(chars: &[char], i: usize) -> bool {
    matches!((chars.get(i + 1), chars.get(i + 2)), (Some('\\'), _) | (Some(_), Some('\'')))
}

/// The code without `#[cfg(test)]` items written inline (`mod tests { .. }`, functions).
fn strip_test_blocks(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its first `;` before any brace, or at the brace matching its first `{`.
        let open = item.find('{');
        let semi = item.find(';');
        let end = match (open, semi) {
            (Some(o), Some(s)) if s < o => s + 1,
            (Some(o), _) => matching_brace(item, o).map_or(item.len(), |c| c + 1),
            (None, Some(s)) => s + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}
