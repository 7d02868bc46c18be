//! The documentation holds together: every relative link in README.md and docs/*.md points
//! at a file that exists (and, for a link into a Markdown file with `#anchor`, at one of
//! its headings, as GitHub names them), and the README stays a front door.
//!
//! No network: links with a scheme (`https:`, `mailto:`) are not followed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text outside fenced code blocks and inline code spans, line by line (links in code
/// are examples, not links).
fn prose(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push(String::new());
            continue;
        }
        if fenced {
            out.push(String::new());
            continue;
        }
        let mut kept = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                kept.push(c);
            }
        }
        out.push(kept);
    }
    out
}

/// Targets of `[text](target)`, `![alt](target)` and `[label]: target`, with their line numbers.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text).iter().enumerate() {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(j) = after.find(')') else { break };
            // `[a](b "title")`: the target is the first word.
            let target = after[..j].split_whitespace().next().unwrap_or("").to_string();
            out.push((n + 1, target));
            rest = &after[j + 1..];
        }
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some((_, target)) = t.split_once("]: ") {
                out.push((n + 1, target.split_whitespace().next().unwrap_or("").to_string()));
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `-`,
/// `_` and spaces kept), spaces as `-`; a repeated heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut k = 1;
        while seen.contains(&candidate) {
            candidate = format!("{slug}-{k}");
            k += 1;
        }
        seen.insert(candidate);
    }
    seen
}

/// What is wrong with one link from `doc`, if anything.
fn broken(doc: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("empty link".into());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() { doc.to_path_buf() } else { doc.parent().unwrap().join(path) };
    if !file.exists() {
        return Some(format!("{} does not exist", file.strip_prefix(root()).unwrap_or(&file).display()));
    }
    if let (Some(anchor), Some("md")) = (anchor, file.extension().and_then(|e| e.to_str())) {
        let text = std::fs::read_to_string(&file).unwrap();
        if !anchors(&text).contains(anchor) {
            return Some(format!("no heading #{anchor} in {}", file.strip_prefix(root()).unwrap().display()));
        }
    }
    None
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (line, target) in link_targets(&text) {
            checked += 1;
            if let Some(why) = broken(&doc, &target) {
                problems.push(format!("{}:{line}: ({target}) {why}", doc.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(checked >= 20, "found only {checked} links: is the link parser still reading the docs?");
    assert!(problems.is_empty(), "broken links:\n  {}", problems.join("\n  "));
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines: reference material belongs in docs/ (at most 250)");
    for command in ["scripts/demo", "scripts/test"] {
        assert!(readme.contains(command), "README.md shows {command}");
    }
    assert!(readme.contains("](docs/report.png)"), "README.md shows the report");
    let linked: BTreeSet<String> = link_targets(&readme)
        .into_iter()
        .filter_map(|(_, t)| t.strip_prefix("docs/").map(|p| p.split('#').next().unwrap().to_string()))
        .collect();
    for doc in documents().iter().skip(1) {
        let name = doc.file_name().unwrap().to_string_lossy().into_owned();
        assert!(linked.contains(&name), "README.md links to docs/{name}");
    }
}

#[test]
fn the_link_checker_finds_what_is_broken() {
    let doc = root().join("README.md");
    assert_eq!(broken(&doc, "docs/rules.md"), None);
    assert_eq!(broken(&doc, "https://example.com/x"), None);
    assert!(broken(&doc, "docs/no-such-file.md").is_some());
    assert!(broken(&doc, "docs/rules.md#no-such-heading").is_some());
    assert!(broken(&doc, "").is_some());
    let text = "# Top\n## The auditor's report (`scan --format html`)\n## Top\n```\n# not a heading\n```\n";
    let found = anchors(text);
    assert!(found.contains("top") && found.contains("top-1"), "{found:?}");
    assert!(found.contains("the-auditors-report-scan---format-html"), "{found:?}");
    assert!(!found.contains("not-a-heading"));
    let links = link_targets("see [a](x.md) and `[b](y.md)` and ![c](z.png \"t\")\n```\n[d](w.md)\n```\n[e]: v.md\n");
    let targets: Vec<&str> = links.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, ["x.md", "z.png", "v.md"]);
}
