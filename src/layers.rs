//! The layering test: each layer imports only the layers below it, and the
//! layers of one level (runtime, net, image) never import each other:
//!
//! sys ← store, notice, context ← runtime, net, image ← engine ← cli (the binary)
//!
//! It reads the `crate::…` paths of every source file, so a new upward
//! import fails `cargo test` with the file and the edge.

use std::collections::BTreeSet;
use std::path::Path;

/// Each layer's level; a file may import only lower levels (and its own layer).
const LEVELS: &[(&str, u8)] = &[
    ("sys", 0),
    ("error", 0),
    ("store", 1),
    ("notice", 1),
    ("context", 1),
    ("runtime", 2),
    ("net", 2),
    ("image", 2),
    ("engine", 3),
];

/// Edges still to be cut (issue 19), each with why it is there. The test
/// fails when one is gone, so that the list shrinks with the code.
const KNOWN: &[(&str, &str, &str)] = &[];

fn level(m: &str) -> Option<u8> {
    LEVELS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l)
}

/// The layers a source text names through `crate::`, comments left out.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                out.extend(inner.split(',').filter_map(|p| p.trim().split("::").next()).map(first_layer));
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.insert(first_layer(&name));
            }
        }
    }
    out.retain(|m| level(m).is_some());
    out
}

/// `Context` is re-exported at the crate root from `context`.
fn first_layer(name: &str) -> String {
    match name.trim() {
        "Context" => "context".into(),
        n => n.to_string(),
    }
}

/// Every .rs file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn layers_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    let mut seen_known = BTreeSet::new();
    for &(layer, lvl) in LEVELS {
        let mut paths = Vec::new();
        if src.join(layer).is_dir() {
            files(&src.join(layer), &mut paths);
        }
        if src.join(format!("{layer}.rs")).is_file() {
            paths.push(src.join(format!("{layer}.rs")));
        }
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap();
            for dep in imports(&text) {
                let ok = dep == layer || level(&dep).is_some_and(|d| d < lvl);
                if ok {
                    continue;
                }
                if KNOWN.iter().any(|(a, b, _)| *a == layer && *b == dep) {
                    seen_known.insert((layer, dep));
                    continue;
                }
                bad.push(format!("{} ({layer}) imports {dep}", p.strip_prefix(&src).unwrap().display()));
            }
        }
    }
    assert!(bad.is_empty(), "imports against the layers:\n{}", bad.join("\n"));
    for (a, b, why) in KNOWN {
        assert!(
            seen_known.iter().any(|(x, y)| x == a && y == b),
            "{a} no longer imports {b} ({why}): drop it from KNOWN"
        );
    }
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let t = "use crate::{store, Context};\nuse crate::net::link::Netlink; // crate::engine in a comment\nlet x = crate::sys::time::now_rfc3339();";
    let got: Vec<String> = imports(t).into_iter().collect();
    assert_eq!(got, ["context", "net", "store", "sys"]);
}
