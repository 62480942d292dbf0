//! The docs stay true to the tree: the module map in `docs/architecture.md` names exactly
//! the library's source files, and every function crate it promises exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use tokenauth_tests::repo_root;

/// The files of the tree drawn in the first code block after `heading`, as paths relative
/// to the drawing's root (`├── `, `└── ` and `│   ` mark the depth, four columns a level).
fn drawn_files(markdown: &str, heading: &str) -> BTreeSet<String> {
    let section = &markdown[markdown.find(heading).expect("the heading")..];
    let block = section.split("```").nth(1).expect("a code block after the heading");
    let mut stack: Vec<String> = Vec::new();
    let mut files = BTreeSet::new();
    for line in block.lines() {
        let Some(marker) = line.find("├── ").or_else(|| line.find("└── ")) else { continue };
        let depth = line[..marker].chars().count() / 4;
        let name = line[marker..].chars().skip(4).collect::<String>();
        let name = name.split_whitespace().next().unwrap().to_owned();
        stack.truncate(depth);
        if let Some(dir) = name.strip_suffix('/') {
            stack.push(dir.to_owned());
        } else {
            files.insert(stack.iter().cloned().chain([name]).collect::<Vec<_>>().join("/"));
        }
    }
    files
}

fn rust_files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = format!("{prefix}{name}");
        if entry.file_type().unwrap().is_dir() {
            rust_files(&entry.path(), &format!("{path}/"), out);
        } else if name.ends_with(".rs") {
            out.insert(path);
        }
    }
}

#[test]
fn the_module_map_names_exactly_the_library_source_files() {
    let doc = std::fs::read_to_string(repo_root().join("docs/architecture.md")).unwrap();
    let drawn: BTreeSet<String> = drawn_files(&doc, "### The library crate")
        .into_iter()
        .filter_map(|f| f.strip_prefix("src/").map(str::to_owned))
        .collect();
    let mut actual = BTreeSet::new();
    rust_files(&repo_root().join("shared/src"), "", &mut actual);
    assert_eq!(drawn, actual, "docs/architecture.md's module map against shared/src");
}

#[test]
fn every_function_and_tool_the_docs_name_is_a_crate() {
    for name in ["login", "refresh", "revoke", "introspect", "account", "authorizer", "jwks", "key-rotation", "whoami"]
    {
        assert!(repo_root().join("functions").join(name).join("src/main.rs").is_file(), "{name}");
    }
    for tool in ["authctl", "gateway", "loadgen", "sam-template", "api-client"] {
        assert!(repo_root().join("tools").join(tool).join("Cargo.toml").is_file(), "{tool}");
    }
}
