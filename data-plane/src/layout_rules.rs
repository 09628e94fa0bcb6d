//! The dependency rules between the crate's parts (ARCHITECTURE.md, "Data
//! plane: what may import what"), held by scanning `src/` for the paths of
//! ours each file names (`crate::…`, in `use` lines and in code; comments
//! are not imports).
//!
//! A rule lists what a part may import besides itself; anything else fails
//! the test, naming the file, the line and the path.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What each part of the crate may import besides itself, lowest first. A
/// part is a top-level module (a file or a folder); `providers::target` is a
/// leaf of its own inside `providers`, so the config can hold a deployment's
/// targets without depending on the providers.
const RULES: &[(&str, &[&str])] = &[
    // Leaves: plumbing every part may use.
    ("body", &[]),
    ("headers", &[]),
    ("backoff", &[]),
    ("metrics", &[]),
    ("tls", &[]),
    // Pure wire formats.
    ("formats", &[]),
    // How a config arrives and is held: nothing of the request path, the
    // providers (but the targets' leaf), the upstream or the server.
    (
        "config",
        &["backoff", "metrics", "tls", "formats", "providers::target"],
    ),
    ("providers::target", &["formats"]),
    // The request path, in order.
    ("request", &["config", "formats", "headers"]),
    (
        "providers",
        &["config", "request", "formats", "headers", "body"],
    ),
    ("upstream", &["body", "formats", "providers::target"]),
    (
        "forward",
        &[
            "body",
            "headers",
            "metrics",
            "formats",
            "config",
            "request",
            "providers",
            "upstream",
        ],
    ),
    (
        "router",
        &[
            "body",
            "headers",
            "backoff",
            "metrics",
            "formats",
            "config",
            "request",
            "providers",
            "upstream",
            "forward",
            "meter",
        ],
    ),
    (
        "meter",
        &["body", "headers", "metrics", "formats", "config", "request"],
    ),
    // Metering, budgets and credits: beside the meter, below the server.
    (
        "usage",
        &["body", "headers", "metrics", "formats", "config", "request"],
    ),
    // The top: the server imports the request path; nothing imports it but
    // the serving machinery (and `main`).
    (
        "http",
        &[
            "body",
            "headers",
            "backoff",
            "metrics",
            "tls",
            "formats",
            "config",
            "request",
            "providers",
            "upstream",
            "forward",
            "router",
            "meter",
            "usage",
        ],
    ),
    (
        "serve",
        &[
            "body",
            "headers",
            "backoff",
            "metrics",
            "tls",
            "formats",
            "config",
            "request",
            "providers",
            "upstream",
            "forward",
            "router",
            "meter",
            "usage",
            "http",
        ],
    ),
];

/// The part a file under `src/` belongs to; `None` for the crate's roots.
fn part_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.as_slice() {
        // The roots, and this file (its rules are written as strings).
        [root] if root == "lib" || root == "main" || root == "layout_rules" => None,
        [folder, leaf, ..] if folder == "providers" && leaf == "target" => {
            Some("providers::target".to_owned())
        }
        [first, ..] => Some(first.clone()),
        [] => None,
    }
}

/// Whether `path` (after `crate::`) is `part` or inside it.
fn within(path: &str, part: &str) -> bool {
    path == part
        || path
            .strip_prefix(part)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// The paths of ours a line names: what follows each `crate::`, up to the
/// first character that is not part of a path (`crate::a::{b, c}` is read as
/// `a`; a group at the root, `crate::{a, b}`, cannot be read and is
/// reported). Lines that are comments name nothing; a comment after code is
/// read with it.
fn paths_in(line: &str) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` in a macro, or an identifier ending in `crate`.
        if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        let mut end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        if rest[end..].starts_with('{') {
            end += 1;
        }
        let path = &rest[..end];
        found.push(if path.ends_with('{') {
            path.to_owned()
        } else {
            path.trim_end_matches(':').to_owned()
        });
    }
    found
}

/// Every rule broken in `source`, the text of `file` (relative to `src/`).
fn violations(file: &Path, source: &str) -> Vec<String> {
    let Some(part) = part_of(file) else {
        return Vec::new();
    };
    let allowed = RULES
        .iter()
        .find(|(name, _)| *name == part)
        .map(|(_, allowed)| *allowed);
    let Some(allowed) = allowed else {
        return vec![format!(
            "src/{}: part {part:?} has no rule in layout_rules::RULES; add one",
            file.display()
        )];
    };
    // `providers::target` is inside `providers` but may not import the rest
    // of it.
    let own = |path: &str| {
        if part == "providers::target" {
            within(path, "providers::target")
        } else {
            within(path, &part)
        }
    };
    let mut broken = Vec::new();
    for (n, line) in source.lines().enumerate() {
        for path in paths_in(line) {
            if path.starts_with('{') {
                broken.push(format!(
                    "src/{}:{}: `crate::{{…}}`: name each part imported on its own \
                     (`use crate::a::b;`), so the layout rules can read it",
                    file.display(),
                    n + 1
                ));
                continue;
            }
            let path = path.trim_end_matches("::{");
            if own(path) || allowed.iter().any(|a| within(path, a)) {
                continue;
            }
            broken.push(format!(
                "src/{}:{}: `crate::{path}`: {part} may not import it (it may import {})",
                file.display(),
                n + 1,
                if allowed.is_empty() {
                    "nothing of this crate".to_owned()
                } else {
                    allowed.join(", ")
                }
            ));
        }
    }
    broken
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("an entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_imports_only_what_its_part_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found the sources: {files:?}");
    let mut report = String::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable");
        let relative = file.strip_prefix(&src).expect("under src/");
        for broken in violations(relative, &source) {
            let _ = writeln!(report, "{broken}");
        }
    }
    assert!(
        report.is_empty(),
        "imports that break the layout rules (ARCHITECTURE.md):\n{report}"
    );
}

#[test]
fn the_rules_catch_what_they_forbid() {
    let file = Path::new("config/snapshot.rs");
    let broken = violations(
        file,
        "use crate::config::keys::KeyIndex;\n\
         // [`crate::upstream`] in a comment is no import\n\
         use crate::providers::target::Targets;\n\
         use crate::upstream::Targets;\n\
         \x20   let x = crate::http::full(b);\n\
         use crate::{http, body};\n\
         use crate::upstream::{Upstream, UpstreamError};\n\
         use crate::config::snapshot::{Config, ModelGroup};\n",
    );
    assert_eq!(broken.len(), 4, "{broken:#?}");
    assert!(
        broken[3].starts_with("src/config/snapshot.rs:7: `crate::upstream`"),
        "{broken:#?}"
    );
    assert!(broken[0].starts_with("src/config/snapshot.rs:4: `crate::upstream::Targets`"));
    assert!(broken[1].starts_with("src/config/snapshot.rs:5: `crate::http::full`"));
    assert!(broken[2].contains("name each part"), "{}", broken[2]);
    // The targets' leaf may not reach back into the providers.
    let broken = violations(
        Path::new("providers/target.rs"),
        "use crate::providers::ProviderError;\nuse crate::formats::Format;\n",
    );
    assert_eq!(broken.len(), 1, "{broken:#?}");
    // A part without a rule is reported, so a new folder gets one.
    assert_eq!(violations(Path::new("quotas/mod.rs"), "").len(), 1);
    assert!(violations(Path::new("main.rs"), "use crate::http;").is_empty());
    assert_eq!(
        paths_in("x = $crate::a; y = crate::b::c(); // crate::d"),
        ["b::c", "d"]
    );
}
