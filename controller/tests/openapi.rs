//! `docs/openapi.yaml` cannot silently fall behind the router: every `.route("/api/...", ...)`
//! in `src/http/mod.rs` must be documented with each of its methods, and every documented `/api`
//! path must exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The routes of `router()` in the source text: path → methods of its handler expression.
fn routes(src: &str) -> BTreeMap<String, BTreeSet<String>> {
    let body = src
        .split_once("pub fn router(")
        .expect("http/mod.rs has pub fn router(")
        .1;
    let mut out = BTreeMap::new();
    let mut rest = body;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        // The call's arguments, up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("unbalanced .route(");
        let args = &rest[..end];
        let path = args
            .trim_start()
            .strip_prefix('"')
            .and_then(|s| s.split_once('"'))
            .map(|(p, _)| p.to_owned())
            .unwrap_or_else(|| panic!("route without a literal path: {args}"));
        let handler = &args[args.find(',').expect("route without a handler")..];
        let methods: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| {
                handler.match_indices(&format!("{m}(")).any(|(at, _)| {
                    // A whole word: `get(`, `.post(`, `routing::delete(`, not `target(`.
                    !handler[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            })
            .map(|m| m.to_string())
            .collect();
        assert!(!methods.is_empty(), "no method found for {path}: {handler}");
        out.insert(path, methods);
        rest = &rest[end..];
    }
    out
}

/// The `paths:` of the document: path → methods (read from the indentation, no YAML parser).
fn documented(yaml: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut in_paths = false;
    let mut current: Option<String> = None;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line.trim_end() == "paths:";
            current = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            let p = p
                .trim_end()
                .strip_suffix(':')
                .expect("path line ends with ':'");
            let p = format!("/{}", p.trim_matches('"'));
            out.entry(p.clone()).or_default();
            current = Some(p);
        } else if let (Some(p), Some(m)) = (&current, line.strip_prefix("    ")) {
            if let Some(m) = m.trim_end().strip_suffix(':') {
                if METHODS.contains(&m) {
                    out.get_mut(p).unwrap().insert(m.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn every_api_route_is_documented_with_its_methods() {
    let routes = routes(&read("src/http/mod.rs"));
    let doc = documented(&read("../docs/openapi.yaml"));
    assert!(
        routes.len() >= 20 && routes.contains_key("/api/stations/{id}/commands"),
        "the route parser found too little: {routes:?}"
    );
    assert_eq!(
        routes["/api/stations/{id}/commands"],
        BTreeSet::from(["get".to_owned(), "post".to_owned()])
    );
    let mut missing = Vec::new();
    for (path, methods) in routes.iter().filter(|(p, _)| p.starts_with("/api/")) {
        for m in methods {
            if !doc.get(path).is_some_and(|d| d.contains(m)) {
                missing.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes of controller/src/http/mod.rs missing from docs/openapi.yaml: {missing:?}"
    );
    let stale: Vec<_> = doc
        .iter()
        .flat_map(|(p, ms)| ms.iter().map(move |m| (p, m)))
        .filter(|(p, m)| !routes.get(*p).is_some_and(|r| r.contains(*m)))
        .map(|(p, m)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/openapi.yaml documents routes the router does not have: {stale:?}"
    );
}

#[test]
fn the_document_is_openapi_3_0_and_served() {
    let yaml = read("../docs/openapi.yaml");
    assert!(yaml.starts_with("openapi: 3.0."), "not OpenAPI 3.0");
    assert!(yaml.contains("name: sw_session") && yaml.contains("scheme: bearer"));
    assert!(
        read("src/http/mod.rs").contains(r#"include_str!("../../../docs/openapi.yaml")"#),
        "/api/openapi.yaml no longer serves docs/openapi.yaml"
    );
}
