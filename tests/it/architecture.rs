//! The map in ARCHITECTURE.md, checked: every module of the library sits in one layer of
//! the table below; the `crate::`/`super::` paths of the library and the `idnode::` paths of
//! the binary must not cross a forbidden edge, and the top-level modules form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, from the bottom up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// Pure domain types: no I/O, no storage, no protocol.
    Domain,
    /// `trait Store` and its implementations.
    Store,
    /// Concepts shared by the core and the audit: the operation log, credentials, secret files.
    Shared,
    /// What transports need besides the core: TLS identities, the metrics registry.
    Support,
    /// The rules: the secondary node's core, the top-level node's, forwarding, bulk loads, audit.
    Core,
    /// Protocol adapters (gRPC, DNS, HTTP) and the gRPC client.
    Adapter,
    /// Wiring: configuration, metrics, TLS identities, opening and serving a node.
    Wiring,
    /// The `idnode` binary (`src/main.rs`, `src/cli/`).
    Binary,
}

use Layer::*;

/// Every top-level module and its layer (ARCHITECTURE.md, "Code map").
const LAYERS: &[(&str, Layer)] = &[
    ("identifier", Domain),
    ("record", Domain),
    ("template", Domain),
    ("auth", Domain),
    ("error", Domain),
    ("dataset", Domain),
    ("failpoint", Domain),
    ("store", Store),
    ("oplog", Shared),
    ("credentials", Shared),
    ("secrets", Shared),
    ("limits", Shared),
    ("blocking", Shared),
    ("resolver", Core),
    ("toplevel", Core),
    ("upstream", Core),
    ("site", Core),
    ("bulk", Core),
    ("audit", Core),
    ("api", Adapter),
    ("telemetry", Support),
    ("tls", Support),
    ("config", Wiring),
    ("node", Wiring),
    ("cli", Binary),
];

/// Forbidden edges (ARCHITECTURE.md, "Invariants"): from a layer, to these layers.
const FORBIDDEN: &[(Layer, &[Layer], &str)] = &[
    (
        Domain,
        &[Store, Shared, Support, Core, Adapter, Wiring, Binary],
        "domain modules import no store, core or adapter",
    ),
    (
        Store,
        &[Shared, Support, Core, Adapter, Wiring, Binary],
        "store never imports resolver or api",
    ),
    (
        Shared,
        &[Support, Core, Adapter, Wiring, Binary],
        "shared concepts sit below the core",
    ),
    (
        Support,
        &[Store, Core, Adapter, Wiring, Binary],
        "TLS and metrics know no core (the node hands them figures)",
    ),
    (
        Core,
        &[Support, Adapter, Wiring, Binary],
        "the core never imports api, node or cli, nor TLS or metrics",
    ),
    (
        Adapter,
        &[Store, Wiring, Binary],
        "adapters never import store",
    ),
    (Wiring, &[Binary], "nothing imports cli"),
];

/// `a` imports `b` (top-level modules), with the file that does it.
type Edge = (String, String, String);

/// Forbidden edges and cycles in `edges` under `layers`.
fn check(edges: &[Edge], layers: &[(&str, Layer)]) -> Vec<String> {
    let layer: BTreeMap<&str, Layer> = layers.iter().copied().collect();
    let mut problems = Vec::new();
    for (from, to, file) in edges {
        let (Some(a), Some(b)) = (layer.get(from.as_str()), layer.get(to.as_str())) else {
            problems.push(format!("{file}: {from} → {to}: a module without a layer"));
            continue;
        };
        for (l, banned, rule) in FORBIDDEN {
            if a == l && banned.contains(b) {
                problems.push(format!("{file}: {from} → {to}: {rule}"));
            }
        }
    }
    for cycle in cycles(edges) {
        problems.push(format!("cycle: {}", cycle.join(" → ")));
    }
    problems
}

/// The strongly connected sets of more than one module (Tarjan's algorithm).
fn cycles(edges: &[Edge]) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, b, _) in edges {
        if a != b {
            graph.entry(a).or_default().insert(b);
            graph.entry(b).or_default();
        }
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &g[v] {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                set.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if set.len() > 1 {
                set.sort();
                s.out.push(set);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, &graph, &mut s);
        }
    }
    s.out
}

/// The module path of a library file: `src/resolver/oplog.rs` → `[resolver, oplog]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The first segment of each path that `text` names after `root` (`crate::`, `idnode::`,
/// `super::`), `{a, b::c}` groups included. Comments are skipped.
fn referenced(text: &str, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // Items at depth 0 of the group: `{a::{b, c}, d}` names `a` and `d`.
                let (mut depth, mut start) = (0usize, true);
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            out.push(first_segment(&group[j..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                out.push(first_segment(rest));
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The edges between top-level modules of this crate, as its sources name them.
fn edges() -> Vec<Edge> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let name = rel.display().to_string();
        let binary = name == "main.rs" || rel.starts_with("cli");
        if binary {
            for to in referenced(&text, "idnode::") {
                edges.insert(("cli".to_owned(), to, name.clone()));
            }
            continue;
        }
        let module = module_of(rel);
        let Some(top) = module.first().cloned() else {
            continue; // lib.rs declares the modules
        };
        for to in referenced(&text, "crate::") {
            edges.insert((top.clone(), to, name.clone()));
        }
        // `super::` from a file whose module is [top] reaches the crate root.
        let super_reaches_root = module.len() == 1
            || (module.len() == 2 && rel.file_name().is_some_and(|f| f == "mod.rs"));
        if super_reaches_root {
            for to in referenced(&text, "super::") {
                edges.insert((top.clone(), to, name.clone()));
            }
        }
    }
    edges.into_iter().filter(|(a, b, _)| a != b).collect()
}

#[test]
fn the_code_follows_the_map() {
    let edges = edges();
    assert!(
        edges.len() > 20,
        "the scan found the modules' imports: {edges:?}"
    );
    let problems = check(&edges, LAYERS);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_finds_a_forbidden_edge_and_a_cycle() {
    let e = |a: &str, b: &str| (a.to_owned(), b.to_owned(), format!("{a}.rs"));
    let layers = [
        ("identifier", Domain),
        ("store", Store),
        ("resolver", Core),
        ("upstream", Core),
        ("site", Core),
        ("api", Adapter),
    ];
    let edges = [
        e("resolver", "store"),
        e("resolver", "identifier"),
        e("api", "resolver"),
        // Forbidden: an adapter reaching the store.
        e("api", "store"),
        // A cycle inside one layer.
        e("resolver", "upstream"),
        e("upstream", "resolver"),
    ];
    let problems = check(&edges, &layers);
    assert_eq!(
        problems,
        [
            "api.rs: api → store: adapters never import store".to_owned(),
            "cycle: resolver → upstream".to_owned(),
        ]
    );
    assert!(check(&edges[..3], &layers).is_empty());
    // Paths as the scan reads them.
    assert_eq!(
        referenced(
            "use crate::{auth::Caller, error::{Error, Result}};\n// crate::api in a comment\nlet x = crate::store::codec::f();",
            "crate::"
        ),
        ["auth", "error", "store"]
    );
    assert_eq!(
        module_of(Path::new("resolver/oplog.rs")),
        ["resolver", "oplog"]
    );
}
