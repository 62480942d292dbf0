//! The library's layers, as `lib.rs` draws them, hold in the code: every path from one
//! top-level module or folder to another (`crate::x`, `super::…` that leaves a folder)
//! runs downwards, so there is no import cycle between them. `make lint` and `make unit`
//! run this.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers, top first, from the diagram in `lib.rs`'s docs (the ```` ```text ```` block:
/// the first word of each line).
fn layers_drawn() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let block = lib.split("//! ```text").nth(1).expect("a ```text block in lib.rs").split("//! ```").next().unwrap();
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("//!"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The module path of a source file: `services/keys/live.rs` is `[services, keys, live]`,
/// `services/mod.rs` is `[services]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" && last != "lib.rs" {
        parts.push(last.trim_end_matches(".rs").to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment after `at` in `code` (skipping `{` and spaces of a group), and
/// for a group every first segment inside it.
fn first_segments(code: &str, at: usize) -> Vec<String> {
    let rest = &code[at..];
    if let Some(group) = rest.strip_prefix('{') {
        let inner = &group[..group.find('}').unwrap_or(group.len())];
        return inner
            .split(',')
            .filter_map(|item| {
                let name: String = item.trim().chars().take_while(|c| is_ident_char(*c)).collect();
                (!name.is_empty()).then_some(name)
            })
            .collect();
    }
    let name: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
    vec![name]
}

/// Every top-level module a file refers to by path, with the line it does so on. Comment
/// lines (docs included) are skipped: a doc link to a higher layer is no dependency.
fn references(file: &Path, module: &[String]) -> Vec<(String, usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    // Comment lines blanked (line numbers kept), trailing comments cut.
    let code: String = text
        .lines()
        .map(|line| if line.trim_start().starts_with("//") { "" } else { line.split(" // ").next().unwrap() })
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let text_of = |at: usize| code.lines().nth(line_of(at) - 1).unwrap_or("").trim().to_owned();
    let mut found = Vec::new();
    for (start, _) in code.match_indices("crate::") {
        if start > 0 && code[..start].ends_with(|c: char| is_ident_char(c) || c == '$') {
            continue;
        }
        for segment in first_segments(&code, start + "crate::".len()) {
            found.push((segment, line_of(start), text_of(start)));
        }
    }
    // `super::super::x` climbs out of the file's own folder.
    let mut search = 0;
    while let Some(offset) = code[search..].find("super::") {
        let at = search + offset;
        if at > 0 && code[..at].ends_with(|c: char| is_ident_char(c) || c == ':') {
            search = at + 1;
            continue;
        }
        let mut cursor = at;
        let mut depth = 0;
        while code[cursor..].starts_with("super::") {
            depth += 1;
            cursor += "super::".len();
        }
        search = cursor;
        if depth >= module.len() {
            for segment in first_segments(&code, cursor) {
                found.push((segment, line_of(at), text_of(at)));
            }
        }
    }
    found
}

#[test]
fn every_top_level_module_is_a_layer_of_the_diagram() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    let drawn: BTreeSet<String> = layers_drawn().into_iter().collect();
    assert_eq!(declared, drawn, "lib.rs's modules against the layers its diagram draws");
}

#[test]
fn imports_run_only_downwards_between_layers() {
    let layers = layers_drawn();
    let rank = |name: &str| layers.iter().position(|l| l == name).map(|top_first| layers.len() - top_first);
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut upward = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src()).unwrap().to_owned();
        let module = module_path(&relative);
        let Some(own) = module.first() else { continue }; // lib.rs: re-exports only
        let own_rank = rank(own).unwrap_or_else(|| panic!("{} is in no layer", relative.display()));
        for (target, line, text) in references(&file, &module) {
            if &target == own || target == "self" {
                continue;
            }
            match rank(&target) {
                Some(r) if r < own_rank => {}
                Some(_) => upward.push(format!("{}:{line}: {own} -> {target}: {text}", relative.display())),
                None => upward.push(format!("{}:{line}: {own} -> `{target}`, no layer: {text}", relative.display())),
            }
        }
    }
    assert!(upward.is_empty(), "imports that do not run downwards:\n{}", upward.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_climbing_paths() {
    let dir = std::env::temp_dir().join(format!("layers-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sample.rs");
    std::fs::write(
        &file,
        "use crate::{\n    edge::http,\n    store::DynamoKeys,\n};\n// use crate::services::x;\nlet x = super::super::platform::clock;\n",
    )
    .unwrap();
    let found: Vec<String> =
        references(&file, &["rules".to_owned(), "login".to_owned()]).into_iter().map(|(t, _, _)| t).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, vec!["edge", "store", "platform"]);
}
