//! The layering test: each layer imports only the layers below it, and the
//! layers of one level (runtime, net, image) never import each other:
//!
//! sys ← store, notice, context ← runtime, net, image ← engine ← cli (the binary)
//!
//! It reads the `crate::…` paths of every source file, so a new upward
//! import fails `cargo test` with the file and the edge.
//!
//! Inside net, the modules (a file or dir directly under src/net) form a
//! graph without a circle: managers (manage, service, heal, overlay, wire)
//! above the drivers and the firewall, which imports only plain types.

use std::collections::{BTreeMap, BTreeSet};
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
    // The CNI plugin: over net, beside engine (it never runs containers).
    ("cni", 3),
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

// --- inside net: its modules import each other without a circle ------------------------------------------

/// src/net's module graph: importer → imported → a file (relative to src/net) that makes the edge.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// A module of net is a file or a dir directly under src/net (`x.rs` with `x/` is one module, `firewall/*`
/// is `firewall`); `mod.rs` is net's root, named `net`.
fn top_module(rel: &Path) -> String {
    let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    match first.strip_suffix(".rs") {
        Some("mod") => "net".into(),
        Some(m) => m.into(),
        None => first,
    }
}

/// The module path inside net of a file: `firewall/iptables/live.rs` is [firewall, iptables, live].
fn file_module_path(rel: &Path) -> Vec<String> {
    let mut path: Vec<String> = rel.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// An inline `mod NAME {` line (rustfmt closes it with `}` at the same indent): its indent and name.
fn inline_mod(line: &str) -> Option<(usize, String)> {
    let t = line.trim_start();
    let indent = line.len() - t.len();
    let t = if t.starts_with("pub") { t.split_once(' ')?.1 } else { t };
    let name = t.strip_prefix("mod ")?.strip_suffix(" {")?;
    name.chars().all(|c| c.is_alphanumeric() || c == '_').then(|| (indent, name.to_string()))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first segment of each item of the `{…}` group that starts `text` (nested groups and line breaks
/// included); None when `text` starts no group.
fn group_heads(text: &str) -> Option<Vec<String>> {
    let inner = text.strip_prefix('{')?;
    let (mut depth, mut item, mut heads) = (0, String::new(), Vec::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => heads.push(std::mem::take(&mut item)),
            _ => item.push(c),
        }
    }
    heads.push(item);
    Some(
        heads.iter().map(|i| i.trim().split("::").next().unwrap_or("").to_string()).filter(|h| !h.is_empty()).collect(),
    )
}

/// The top modules of net that `text` (a file at module path `path`) names through `super::`, `self::`
/// or `crate::net::`; a name that is no module stands for net's root. Comments are left out; inline
/// modules (`mod tests {`) shift what `super` means.
fn net_mentions(text: &str, path: &[String]) -> Vec<String> {
    let mut code = String::new();
    let mut line_paths = Vec::new();
    let mut inline: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        if let Some(&(indent, _)) = inline.last() {
            if line.len() == indent + 1 && line.ends_with('}') && line[..indent].trim().is_empty() {
                inline.pop();
            }
        }
        let here: Vec<String> = path.iter().cloned().chain(inline.iter().map(|(_, n)| n.clone())).collect();
        let stripped = line.split("//").next().unwrap_or("");
        for _ in 0..=stripped.len() {
            line_paths.push(here.clone());
        }
        code.push_str(stripped);
        code.push('\n');
        if let Some(m) = inline_mod(line) {
            inline.push(m);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let boundary = !code[..i].chars().next_back().is_some_and(|c| is_ident(c) || c == ':');
        if !boundary || !(rest.starts_with("crate::net::") || rest.starts_with("super::") || rest.starts_with("self::"))
        {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let mut base = line_paths[i].clone();
        let mut tail = rest;
        let mut outside = false;
        if let Some(t) = tail.strip_prefix("crate::net::") {
            base.clear();
            tail = t;
        } else if let Some(t) = tail.strip_prefix("self::") {
            tail = t;
        } else {
            while let Some(t) = tail.strip_prefix("super::") {
                outside |= base.pop().is_none();
                tail = t;
            }
        }
        i = code.len() - tail.len();
        if outside {
            continue; // `super` of net's root is the crate: the layers test's business
        }
        match base.first() {
            Some(top) => out.push(top.clone()),
            None => match group_heads(tail) {
                Some(heads) => out.extend(heads),
                None => out.push(tail.chars().take_while(|c| is_ident(*c) || *c == '*').collect()),
            },
        }
    }
    out
}

/// The graph of net's modules, from (path relative to src/net, text) of each of its files.
fn net_graph(files: &[(std::path::PathBuf, String)]) -> Graph {
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| top_module(p)).collect();
    let mut g = Graph::new();
    for (rel, text) in files {
        let from = top_module(rel);
        g.entry(from.clone()).or_default();
        for to in net_mentions(text, &file_module_path(rel)) {
            // A name that is no module is an item of net's root (`super::short_hash`, `super::*`).
            let to = if modules.contains(&to) { to } else { "net".to_string() };
            if to != from {
                g.entry(from.clone()).or_default().entry(to).or_insert_with(|| rel.display().to_string());
            }
        }
    }
    g
}

/// A circle in `g`, as the modules along it with the first one again at the end.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit<'a>(
        g: &'a Graph,
        m: &'a str,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            return Some(stack[at..].iter().chain([&m]).map(|s| s.to_string()).collect());
        }
        if !done.insert(m) {
            return None;
        }
        stack.push(m);
        for next in g.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(g, next, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|m| visit(g, m, &mut done, &mut Vec::new()))
}

/// A circle written out with the file that makes each edge.
fn show_cycle(g: &Graph, cycle: &[String]) -> String {
    let edges: Vec<String> =
        cycle.windows(2).map(|w| format!("{} → {} (in {})", w[0], w[1], g[&w[0]][&w[1]])).collect();
    format!("{}\n  {}", cycle.join(" → "), edges.join("\n  "))
}

/// Every file of src/net, relative to it, with its text.
fn net_files() -> Vec<(std::path::PathBuf, String)> {
    let net = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/net");
    let mut paths = Vec::new();
    files(&net, &mut paths);
    paths
        .into_iter()
        .map(|p| (p.strip_prefix(&net).unwrap().to_path_buf(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

#[test]
fn net_modules_import_without_a_circle() {
    let g = net_graph(&net_files());
    assert!(g.contains_key("manage") && g["manage"].contains_key("firewall"), "the graph reads no edges: {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("src/net's modules import each other in a circle: {}", show_cycle(&g, &c));
    }
}

/// The firewall renders and applies rules from plain inputs: it knows the port and service types, not the
/// records or the managers above it.
#[test]
fn net_firewall_imports_only_plain_types() {
    let g = net_graph(&net_files());
    let bad: Vec<String> = g["firewall"]
        .iter()
        .filter(|(to, _)| !["ports", "service_types"].contains(&to.as_str()))
        .map(|(to, file)| format!("{file} imports {to}"))
        .collect();
    assert!(bad.is_empty(), "the firewall imports from above it:\n{}", bad.join("\n"));
}

#[test]
fn net_graph_sees_super_groups_and_inline_modules() {
    let f = |p: &str, t: &str| (std::path::PathBuf::from(p), t.to_string());
    let files = [
        f("mod.rs", "pub mod a;\npub fn short_hash() {}\n"),
        f("a.rs", "use super::{b,\n    c::{X, Y}};\nfn f() { super::short_hash() } // super::d in a comment\n"),
        f("b.rs", "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::d::Z;\n}\n"),
        f("c/mod.rs", "use self::inner::Q;\nuse crate::net::d;\nmod inner;\n"),
        f("c/inner.rs", "use super::super::a::T;\n"),
        f("d.rs", "use std::net::Ipv4Addr;\n"),
    ];
    let g = net_graph(&files);
    let edges = |m: &str| g[m].keys().cloned().collect::<Vec<_>>();
    assert_eq!(edges("a"), ["b", "c", "net"]);
    assert_eq!(edges("b"), ["d"], "a test module's super is its file");
    assert_eq!(edges("c"), ["a", "d"]);
    assert_eq!(edges("d"), Vec::<String>::new());
    let cycle = find_cycle(&g).expect("a → c → a is a circle");
    assert_eq!(cycle, ["a", "c", "a"]);
    assert!(show_cycle(&g, &cycle).contains("c → a (in c/inner.rs)"), "{}", show_cycle(&g, &cycle));
}
