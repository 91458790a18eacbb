//! The library's modules form layers that point down: a module may use the modules below it,
//! never a sibling of its own layer or one above. The order, ground floor first, is the one
//! ARCHITECTURE.md describes; this test reads every file under `src/` and checks each
//! `crate::` path against it.

use std::collections::BTreeSet;
use std::path::Path;

/// Layers from the ground floor up; a module in layer N may use layers 0..N only.
const LAYERS: &[&[&str]] = &[
    &["api", "stream", "identity"],
    &["governance"],
    &["routing"],
    &["config"],
    &["telemetry"],
    &["shared"],
    &["edge"],
    &["proxy", "admin"],
    &["ops"],
    &["app"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top module a file under `src/` belongs to (`src/proxy/ctx.rs` and `src/proxy.rs`:
/// `proxy`); `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib").then_some(name)
}

/// Every `crate::NAME` a file mentions outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            // `crate::{a::X, b}` names several modules at once.
            let group = after
                .strip_prefix('{')
                .map_or(after, |g| g.split('}').next().unwrap_or_default());
            for part in group.split(',') {
                let name: String = part
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
                if !after.starts_with('{') {
                    break;
                }
            }
            rest = after;
        }
    }
    found
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let own = layer(&module)
            .unwrap_or_else(|| panic!("{module} (from {}) is in no layer", file.display()));
        for used in uses(&std::fs::read_to_string(file).unwrap()) {
            if used == module {
                continue;
            }
            let Some(theirs) = layer(&used) else {
                wrong.push(format!("{}: crate::{used} is in no layer", file.display()));
                continue;
            };
            if theirs >= own {
                wrong.push(format!(
                    "{}: `{module}` (layer {own}) uses `{used}` (layer {theirs})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses that point up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_uses_and_skips_comments() {
    let found = uses(
        "use crate::config::Config;\n// crate::proxy\nlet x = crate::api::classify(p);\nuse crate::{shared::S, ops};",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["api", "config", "ops", "shared"]
    );
}
