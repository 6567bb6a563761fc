//! The shape of `src/`, checked (`make check` runs this file):
//!
//! * floors, arrows only downward: the leaves (files directly in `src/`)
//!   import no floor; `wire/` and `relay/` import only leaves; `server/` and
//!   `agent/` import wire, relay and leaves, and never each other;
//! * no import cycle between modules, a folder's `mod.rs` and its files
//!   included;
//! * no file over 450 lines before its unit tests, no function over 80.
//!
//! Imports are read from the source text: `crate::a::b` paths, and inside a
//! folder `super::x` and a `mod.rs`'s uses of its own files. Unit-test
//! modules are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FLOORS: [(&str, u8); 4] = [("wire", 1), ("relay", 1), ("server", 2), ("agent", 2)];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library source file as (module path like `server::registry`, text
/// before its unit tests).
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                if !p.ends_with("bin") {
                    dirs.push(p);
                }
                continue;
            }
            let rel = p
                .strip_prefix(src())
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            let Some(rel) = rel.strip_suffix(".rs") else {
                continue;
            };
            if rel == "lib" {
                continue;
            }
            let name = rel.trim_end_matches("/mod").replace('/', "::");
            let text = std::fs::read_to_string(&p).expect("read");
            let before_tests = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or("")
                .to_string();
            out.insert(name, before_tests);
        }
    }
    out
}

fn floor(module: &str) -> (&str, u8) {
    let top = module.split("::").next().unwrap_or("");
    FLOORS
        .iter()
        .find(|(f, _)| *f == top)
        .map_or(("leaf", 0), |(f, r)| (*f, *r))
}

/// The identifiers after each occurrence of `prefix` in `text`, split on `::`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    text.match_indices(prefix)
        .filter(|(i, _)| {
            // A whole word: not `xcrate::` or `foo_super::`.
            !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            rest[..end].split("::").filter(|s| !s.is_empty()).collect()
        })
        .collect()
}

/// Module → the modules it imports.
fn graph(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let known = |m: &str| mods.contains_key(m);
    let mut g = BTreeMap::new();
    for (name, text) in mods {
        let mut deps = BTreeSet::new();
        // `crate::a::b…`: the longest known module prefix.
        for parts in paths_after(text, "crate::") {
            let mut best = None;
            for k in 1..=parts.len() {
                let m = parts[..k].join("::");
                if known(&m) {
                    best = Some(m);
                }
            }
            if let Some(m) = best {
                deps.insert(m);
            }
        }
        // Inside a folder: `super::x` is the sibling x, else the parent.
        let parent = name.rsplit_once("::").map(|(p, _)| p.to_string());
        if let Some(parent) = &parent {
            for parts in paths_after(text, "super::") {
                let sib = format!("{parent}::{}", parts.first().unwrap_or(&""));
                deps.insert(if known(&sib) { sib } else { parent.clone() });
            }
        }
        // A folder's mod.rs using its own files by their short names.
        let children: Vec<&String> = mods
            .keys()
            .filter(|k| k.rsplit_once("::").map(|(p, _)| p) == Some(name.as_str()))
            .collect();
        for child in children {
            let short = child.rsplit("::").next().unwrap_or("");
            let used = text.lines().any(|l| {
                let l = l.trim_start();
                !l.starts_with("pub mod ")
                    && !l.starts_with("mod ")
                    && !paths_after(l, &format!("{short}::")).is_empty()
            });
            if used {
                deps.insert(child.clone());
            }
        }
        deps.remove(name);
        g.insert(name.clone(), deps);
    }
    g
}

#[test]
fn arrows_only_go_down() {
    let mods = modules();
    let mut wrong = Vec::new();
    for (m, deps) in graph(&mods) {
        let (fm, rm) = floor(&m);
        for d in deps {
            let (fd, rd) = floor(&d);
            if fd != fm && rd >= rm {
                wrong.push(format!("{m} ({fm}) imports {d} ({fd})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that do not go down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycle() {
    let g = graph(&modules());
    // Depth-first search for a back edge.
    fn visit(
        u: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(u.to_string(), 1);
        stack.push(u.to_string());
        for v in g.get(u).into_iter().flatten() {
            match state.get(v.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == v).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(v.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(v, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(u.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in g.keys() {
        if !state.contains_key(u.as_str()) {
            if let Some(c) = visit(u, &g, &mut state, &mut Vec::new()) {
                panic!("import cycle: {}", c.join(" -> "));
            }
        }
    }
}

#[test]
fn files_and_functions_stay_small() {
    let mut wrong = Vec::new();
    for (m, text) in modules() {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > 450 {
            wrong.push(format!("{m}: {} lines before its unit tests", lines.len()));
        }
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i].trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "const fn ",
            ]
            .iter()
            .any(|p| l.starts_with(p));
            if is_fn && !l.trim_end().ends_with(';') {
                let (mut depth, mut seen, mut j) = (0i32, false, i);
                while j < lines.len() {
                    let code = lines[j].split("//").next().unwrap_or("");
                    depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
                    seen |= code.contains('{');
                    if seen && depth <= 0 {
                        break;
                    }
                    j += 1;
                }
                if j + 1 - i > 80 {
                    let name = l
                        .split("fn ")
                        .nth(1)
                        .unwrap_or("")
                        .split('(')
                        .next()
                        .unwrap_or("");
                    wrong.push(format!("{m}::{name}: {} lines", j + 1 - i));
                }
            }
            i += 1;
        }
    }
    assert!(wrong.is_empty(), "too large:\n{}", wrong.join("\n"));
}

/// Every thread the crate starts goes through `threads` (named, with the
/// crate's stack size): no `thread::Builder` or `thread::spawn` elsewhere.
#[test]
fn every_thread_is_started_by_threads() {
    let wrong: Vec<String> = modules()
        .into_iter()
        .filter(|(m, _)| m != "threads")
        .filter(|(_, text)| text.contains("thread::Builder") || text.contains("thread::spawn("))
        .map(|(m, _)| m)
        .collect();
    assert!(
        wrong.is_empty(),
        "threads started outside threads: {wrong:?}"
    );
}
