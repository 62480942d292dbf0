//! Every name that `README.md` and `docs/*.md` state as fact is checked against the code,
//! the `Makefile`, the template and the tree, so a rename that forgets the docs fails
//! here. Needs no stack: it only reads files.
//!
//! What counts as a stated name (in the prose; code blocks only for `make` commands):
//!
//! - an **environment variable**: an `UPPER_SNAKE` name in backticks (or `NAME=value`). It
//!   must occur in the code, the template, `infra/local/` or the `Makefile`. In the first
//!   column of a table headed `| variable | default |` (the variables the service reads),
//!   it must be a string literal of the library's, a function's or a tool's code outside
//!   its tests, and every such literal must be named in `docs/configuration.md`;
//! - a **metric**: the first column of a table headed `| metric |`. Each must be a string
//!   literal of the code outside its tests, and every metric the code emits (the name given
//!   to a `count`, `measure` or `values_line` call) must be in such a table;
//! - a **make target**: `make <target>` in backticks, or a `make` command in a code block.
//!   It must be a target of the `Makefile`, and every target `make help` lists must be named;
//! - a **route**: `METHOD /path` in backticks (alone or as a route rule, `ROUTE=scopes`),
//!   or a bare path under `/auth/` or `/.well-known/`. It must be a route of the template's
//!   HTTP API unless it is one of the made-up routes of the route-rule examples
//!   ([`EXAMPLE_ROUTES`]), and every route of the template must be in `docs/api.md`'s table;
//! - a **template parameter**: the first column of a table headed `| parameter |`. It must
//!   be a parameter of `infra/template.yaml`, and every parameter must be in
//!   `docs/configuration.md`'s table;
//! - a **file path**: a backticked path whose first folder is one of the repository's. It
//!   must exist. A bare file name (`verify.rs`, `keys/live.rs`) must end the path of
//!   a file: a library or function source for `.rs`, any file of the tree otherwise. Paths
//!   with placeholders (`<name>`) or globs, and generated ones (`.local/`, `target/`), are
//!   skipped. Every sample event of `events/` must be in `docs/local-stack.md`;
//! - an **identifier** (`CamelCase`, `snake_case`, `Type::item`) in backticks must occur in
//!   the code or the template, so a type, an AWS action, an audit outcome or a metric
//!   that no longer exists cannot stay named;
//! - a **link** between the docs must reach a file, and its `#anchor` a heading there.
//!
//! And no table may be cut in two by a blank line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tokenauth_tests::repo_root;

/// Variables the docs name that no code of ours reads or sets: the SDK, the Lambda runtime
/// and the logging layer read them.
const EXTERNAL_VARIABLES: [&str; 2] = [
    // Set by Lambda for the runtime's JSON logs; lambda_runtime reads them, not our code.
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL",
];

/// Variables the docs name as gone (`decisions.md`, `performance.md`): they must stay gone.
const REMOVED_VARIABLES: [&str; 3] = ["SIGNING_KEY_ID", "TRUSTED_KEY_IDS", "TRUSTED_JWKS"];

/// The made-up routes that `docs/authorizer.md`, `docs/api.md` and `docs/configuration.md`
/// use to explain route rules; no API of ours has them.
const EXAMPLE_ROUTES: [&str; 10] = [
    "GET /api/items",
    "GET /api/item42",
    "GET /api/admin/x",
    "GET /api/admin/export",
    "GET /api/a/b",
    "GET /api/{id}",
    "POST /api/admin/x",
    "POST /api/{proxy+}",
    "ANY /api/{proxy+}",
    "ANY /api/admin/{proxy+}",
];

const METHODS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"];

/// Folders never read: build output, installed tools, generated files.
const SKIPPED_DIRS: [&str; 5] = ["target", ".local", ".git", "node_modules", ".aws-sam"];

// ------------------------------------------------------------------------------ reading

/// A doc, by its path from the repository root.
struct Doc {
    path: String,
    text: String,
}

fn docs() -> Vec<Doc> {
    let root = repo_root();
    let mut paths = vec!["README.md".to_owned()];
    let mut names: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    paths.extend(names.into_iter().map(|n| format!("docs/{n}")));
    paths.into_iter().map(|path| Doc { text: std::fs::read_to_string(root.join(&path)).unwrap(), path }).collect()
}

/// A backticked span of a doc's prose: where it is, and, in a table, the table's header
/// cells (lower-case, backticks removed) and the span's column.
struct Span {
    doc: String,
    line: usize,
    text: String,
    table: Option<(Vec<String>, usize)>,
}

impl Span {
    fn at(&self) -> String {
        format!("{}:{}", self.doc, self.line)
    }

    /// In the first column of a table whose header starts with `header`.
    fn in_first_column_of(&self, header: &[&str]) -> bool {
        matches!(&self.table, Some((cells, 0)) if cells.len() >= header.len() && cells.iter().zip(header).all(|(c, h)| c == h))
    }
}

/// A line of a code block.
struct CodeLine {
    doc: String,
    line: usize,
    text: String,
}

/// Whether `line` opens or closes a code block.
fn is_fence(line: &str) -> bool {
    line.trim_start().starts_with("```")
}

fn is_table_row(line: &str) -> bool {
    line.trim_start().starts_with('|')
}

/// The cells of a table row, split at unescaped `|`.
fn cells(row: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut previous = ' ';
    for c in row.trim().chars() {
        if c == '|' && previous != '\\' {
            cells.push(std::mem::take(&mut cell));
        } else {
            cell.push(c);
        }
        previous = c;
    }
    cells.push(cell);
    // The pieces before the first `|` and after the last one are not cells.
    cells.remove(0);
    cells.pop();
    cells
}

/// The backticked spans of `text`, with the line (0-based, within `text`) each starts on.
fn backticked(text: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(open) = rest.find('`') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('`') else { break };
        let line = text[..offset + open].matches('\n').count();
        spans.push((line, after[..close].replace('\n', " ")));
        offset += open + 1 + close + 1;
        rest = &after[close + 1..];
    }
    spans
}

/// The spans of every doc's prose, and the lines of its code blocks.
fn scan(docs: &[Doc]) -> (Vec<Span>, Vec<CodeLine>) {
    let mut spans = Vec::new();
    let mut code = Vec::new();
    for doc in docs {
        let lines: Vec<&str> = doc.text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if is_fence(lines[i]) {
                i += 1;
                while i < lines.len() && !is_fence(lines[i]) {
                    code.push(CodeLine { doc: doc.path.clone(), line: i + 1, text: lines[i].to_owned() });
                    i += 1;
                }
                i += 1;
            } else if is_table_row(lines[i]) {
                let header: Vec<String> =
                    cells(lines[i]).iter().map(|c| c.trim().replace('`', "").to_lowercase()).collect();
                while i < lines.len() && is_table_row(lines[i]) {
                    for (column, cell) in cells(lines[i]).iter().enumerate() {
                        for (_, text) in backticked(cell) {
                            let table = Some((header.clone(), column));
                            spans.push(Span { doc: doc.path.clone(), line: i + 1, text, table });
                        }
                    }
                    i += 1;
                }
            } else {
                // A paragraph: a code span may run over its lines, never past it.
                let start = i;
                while i < lines.len() && !lines[i].trim().is_empty() && !is_fence(lines[i]) && !is_table_row(lines[i]) {
                    i += 1;
                }
                if i == start {
                    i += 1;
                    continue;
                }
                for (line, text) in backticked(&lines[start..i].join("\n")) {
                    spans.push(Span { doc: doc.path.clone(), line: start + line + 1, text, table: None });
                }
            }
        }
    }
    (spans, code)
}

/// The files under `dir` (recursively, skipping [`SKIPPED_DIRS`]) whose names end in one
/// of `endings` (every file when empty).
fn files_under(dir: &Path, endings: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if entry.file_type().unwrap().is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                found.extend(files_under(&entry.path(), endings));
            }
        } else if endings.is_empty() || endings.iter().any(|e| name.ends_with(e)) {
            found.push(entry.path());
        }
    }
    found
}

/// `path` relative to the repository root, with `/`.
fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap().to_string_lossy().replace('\\', "/")
}

/// The Rust sources of the library, the functions and the tools (not the tests crate, not
/// benches), each cut at its first `#[cfg(test)]`: the code that runs in a deployment.
fn shipped_code() -> Vec<(String, String)> {
    let root = repo_root();
    let mut dirs = vec![root.join("shared/src")];
    for parent in ["functions", "tools"] {
        for entry in std::fs::read_dir(root.join(parent)).unwrap() {
            dirs.push(entry.unwrap().path().join("src"));
        }
    }
    let mut sources = Vec::new();
    for dir in dirs {
        for path in files_under(&dir, &[".rs"]) {
            let text = std::fs::read_to_string(&path).unwrap();
            let shipped = match text.lines().position(|l| l.trim() == "#[cfg(test)]") {
                Some(n) => text.lines().take(n).collect::<Vec<_>>().join("\n"),
                None => text,
            };
            sources.push((relative(&path), shipped));
        }
    }
    assert!(sources.len() > 20, "the library's, the functions' and the tools' sources are found");
    sources
}

/// Every word (`[A-Za-z0-9_]+`) of the code, the template, the local stack's scripts, the
/// `Makefile` and CI: where a name the docs state must occur. This file is left out, so
/// that a name written here does not count as known.
fn known_words() -> BTreeSet<String> {
    let root = repo_root();
    let this_file = Path::new(file!()).file_name().unwrap().to_owned();
    let mut files = vec![root.join("Makefile")];
    for dir in ["shared", "functions", "tools", "tests", "infra", ".ci"] {
        files.extend(files_under(&root.join(dir), &[]));
    }
    let mut words = BTreeSet::new();
    for path in files {
        if path.file_name() == Some(this_file.as_os_str()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        words.extend(
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).map(str::to_owned),
        );
    }
    words
}

/// The string literals of `code` that are `UPPER_SNAKE` names.
fn upper_snake_literals(code: &str) -> BTreeSet<String> {
    code.split('"').filter(|piece| is_upper_snake(piece)).map(str::to_owned).collect()
}

fn is_upper_snake(s: &str) -> bool {
    s.contains('_')
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.split('_').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
}

/// `CamelCase` (two humps at least), `snake_case` (one underscore at least) or a Rust path
/// of identifiers (`Type::item`): the names the identifier check covers.
fn identifier_parts(s: &str) -> Option<Vec<&str>> {
    let is_ident = |p: &str| {
        !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_alphabetic())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if s.contains("::") {
        let parts: Vec<&str> = s.split("::").collect();
        return parts.iter().all(|p| is_ident(p)).then_some(parts);
    }
    let camel = s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.chars().nth(1).is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().skip(1).any(|c| c.is_ascii_uppercase());
    let snake = s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.contains('_')
        && s.split('_').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    (camel || snake).then(|| vec![s])
}

/// The variable a span names: `NAME`, or `NAME=value ...`.
fn variable_of(span: &str) -> Option<&str> {
    let name = span.split('=').next().unwrap_or_default();
    (is_upper_snake(name) && (name == span || span[name.len()..].starts_with('='))).then_some(name)
}

/// The make target of a command (`make dev`, `GATEWAY_PORT=3001 make dev`,
/// `make package ARCH=x86_64`), if it is one.
fn make_target(command: &str) -> Option<&str> {
    let mut words = command.split_whitespace().skip_while(|w| w.contains('='));
    (words.next() == Some("make")).then(|| words.next()).flatten().filter(|t| !t.starts_with('-') && !t.contains('='))
}

/// The routes a span names: `METHOD /path`, or the rules of `ROUTE=scopes;ROUTE=...`.
fn routes_of(span: &str) -> Vec<(String, String)> {
    span.split(';')
        .filter_map(|rule| {
            let route = rule.split('=').next().unwrap_or_default().trim();
            let (method, path) = route.split_once(' ')?;
            (METHODS.contains(&method) && path.starts_with('/') && !path.contains(' '))
                .then(|| (method.to_owned(), path.to_owned()))
        })
        .collect()
}

/// The template's HTTP API routes (`METHOD /path`), by the one template reader.
fn template_routes() -> BTreeSet<String> {
    let template = tokenauth_tests::template_with(&[("TokenIssuer", "https://auth.example.com")]);
    let routes: BTreeSet<String> =
        template.http_api().expect("the HTTP API reads").routes.iter().map(|r| r.key()).collect();
    assert!(routes.len() > 3, "the template's routes are found: {routes:?}");
    routes
}

/// The names of the template's `Parameters`: the keys two spaces in, under the top-level
/// `Parameters:` line. (The template reader has no accessor for them yet.)
fn template_parameters() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let section = text
        .lines()
        .skip_while(|l| *l != "Parameters:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'));
    let parameters: BTreeSet<String> = section
        .filter_map(|l| l.strip_prefix("  ").filter(|k| k.starts_with(|c: char| c.is_ascii_alphabetic())))
        .filter_map(|l| l.split(':').next())
        .map(str::to_owned)
        .collect();
    assert!(parameters.len() > 5, "the template's parameters are found: {parameters:?}");
    parameters
}

/// The Makefile's targets, and the ones `make help` lists.
fn make_targets() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    let mut targets = BTreeSet::new();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("@echo \"make ") {
            helped.insert(rest.split_whitespace().next().unwrap_or_default().to_owned());
        }
        if line.starts_with(|c: char| c.is_whitespace() || c == '#' || c == '.') {
            continue;
        }
        let Some((head, tail)) = line.split_once(':') else { continue };
        if tail.starts_with('=') || head.contains(['=', '$', '%']) {
            continue;
        }
        targets.extend(head.split_whitespace().map(str::to_owned));
    }
    assert!(targets.contains("test") && !helped.is_empty(), "the Makefile's targets are found");
    (targets, helped)
}

/// The names a metric is emitted under: the second argument of each `count(`,
/// `count_per_client(`, `measure(` and `values_line(` call of `code` that is a string
/// literal.
fn emitted_metrics(code: &str) -> BTreeSet<String> {
    let mut metrics = BTreeSet::new();
    for call in ["count(", "count_per_client(", "measure(", "values_line("] {
        for (at, _) in code.match_indices(call) {
            let before = &code[..at];
            if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') || before.trim_end().ends_with("fn") {
                continue;
            }
            let arguments = &code[at + call.len()..];
            let end = arguments.find(')').unwrap_or(arguments.len());
            let Some(second) = arguments[..end].split(',').nth(1) else { continue };
            let second = second.trim();
            if let Some(name) = second.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                if name.starts_with(|c: char| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphabetic()) {
                    metrics.insert(name.to_owned());
                }
            }
        }
    }
    metrics
}

/// GitHub's anchor of a heading: lower-case, punctuation dropped, spaces to hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a doc: its headings' (a repeated one gets `-1`, `-2`...) and explicit
/// `<a id="...">`s.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_code = false;
    for line in text.lines() {
        if is_fence(line) {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if let Some(heading) = line.strip_prefix('#').map(|h| h.trim_start_matches('#')).filter(|h| h.starts_with(' '))
        {
            let anchor = anchor_of(heading);
            let n = seen.entry(anchor.clone()).or_default();
            anchors.insert(if *n == 0 { anchor.clone() } else { format!("{anchor}-{n}") });
            *n += 1;
        }
        for (at, _) in line.match_indices("<a id=\"") {
            let id = &line[at + 7..];
            anchors.insert(id[..id.find('"').unwrap_or(id.len())].to_owned());
        }
    }
    anchors
}

/// Fails with every problem found, one a line.
fn assert_none(problems: &[String], what: &str) {
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

// -------------------------------------------------------------------------------- tests

#[test]
fn every_variable_the_docs_name_exists_and_every_variable_the_code_reads_is_documented() {
    let (spans, _) = scan(&docs());
    let words = known_words();
    let code = shipped_code();
    let literals: BTreeSet<String> = code.iter().flat_map(|(_, text)| upper_snake_literals(text)).collect();
    let mut problems = Vec::new();
    for span in &spans {
        let Some(name) = variable_of(&span.text) else { continue };
        if REMOVED_VARIABLES.contains(&name) || EXTERNAL_VARIABLES.contains(&name) {
            continue;
        }
        if span.in_first_column_of(&["variable", "default"]) && !literals.contains(name) {
            problems
                .push(format!("{}: `{name}` is in a table of the variables we read, but no code reads it", span.at()));
        } else if !words.contains(name) {
            problems.push(format!(
                "{}: `{name}` occurs nowhere in the code, the template, infra/local or the Makefile",
                span.at()
            ));
        }
    }
    for name in REMOVED_VARIABLES {
        if let Some((file, _)) = code.iter().find(|(_, text)| text.contains(&format!("\"{name}\""))) {
            problems.push(format!("`{name}` is documented as gone, but {file} reads it"));
        }
    }
    let configuration: BTreeSet<&str> =
        spans.iter().filter(|s| s.doc == "docs/configuration.md").filter_map(|s| variable_of(&s.text)).collect();
    for name in &literals {
        if !configuration.contains(name.as_str()) {
            let file = &code.iter().find(|(_, text)| upper_snake_literals(text).contains(name)).unwrap().0;
            problems.push(format!("{file} reads `{name}`, which docs/configuration.md does not name"));
        }
    }
    assert_none(&problems, "environment variables in the docs against the code");
}

#[test]
fn every_metric_the_docs_name_is_emitted_and_every_emitted_metric_is_documented() {
    let (spans, _) = scan(&docs());
    let code = shipped_code();
    let emitted: BTreeSet<String> = code.iter().flat_map(|(_, text)| emitted_metrics(text)).collect();
    assert!(emitted.len() >= 5, "the metrics the code emits are found: {emitted:?}");
    let documented: Vec<&Span> = spans.iter().filter(|s| s.in_first_column_of(&["metric"])).collect();
    assert!(!documented.is_empty(), "a table headed `| metric |` lists the metrics");
    let mut problems = Vec::new();
    for span in &documented {
        let literal = format!("\"{}\"", span.text);
        if !code.iter().any(|(_, text)| text.contains(&literal)) {
            problems.push(format!("{}: the metric `{}` is emitted nowhere in the code", span.at(), span.text));
        }
    }
    for metric in &emitted {
        if !documented.iter().any(|s| &s.text == metric) {
            let file = &code.iter().find(|(_, text)| emitted_metrics(text).contains(metric)).unwrap().0;
            problems.push(format!("{file} emits the metric `{metric}`, which no `| metric |` table lists"));
        }
    }
    assert_none(&problems, "metrics in the docs against the code");
}

#[test]
fn every_make_target_the_docs_name_exists_and_every_target_of_make_help_is_documented() {
    let (spans, code_lines) = scan(&docs());
    let (targets, helped) = make_targets();
    let mut named = BTreeSet::new();
    let mut problems = Vec::new();
    let commands = spans
        .iter()
        .map(|s| (s.at(), s.text.as_str()))
        .chain(code_lines.iter().map(|c| (format!("{}:{}", c.doc, c.line), c.text.as_str())));
    for (at, command) in commands {
        let Some(target) = make_target(command) else { continue };
        named.insert(target.to_owned());
        if !targets.contains(target) {
            problems.push(format!("{at}: `make {target}`: the Makefile has no target `{target}`"));
        }
    }
    for target in helped.difference(&named) {
        problems.push(format!("`make help` lists `make {target}`, which no doc names"));
    }
    assert_none(&problems, "make targets in the docs against the Makefile");
}

#[test]
fn every_route_the_docs_name_is_in_the_template_and_every_route_is_in_the_api_doc() {
    let (spans, _) = scan(&docs());
    let routes = template_routes();
    let paths: BTreeSet<&str> = routes.iter().filter_map(|r| r.split_once(' ')).map(|(_, p)| p).collect();
    let mut problems = Vec::new();
    for span in &spans {
        for (method, path) in routes_of(&span.text) {
            let route = format!("{method} {path}");
            if !routes.contains(&route) && !EXAMPLE_ROUTES.contains(&route.as_str()) {
                problems.push(format!("{}: `{route}` is not a route of infra/template.yaml", span.at()));
            }
        }
        let bare = span.text.as_str();
        if (bare.starts_with("/auth/") || bare.starts_with("/.well-known/")) && !paths.contains(bare) {
            problems.push(format!("{}: `{bare}` is not a path of infra/template.yaml's routes", span.at()));
        }
    }
    for route in &routes {
        let listed =
            spans.iter().any(|s| s.doc == "docs/api.md" && s.in_first_column_of(&["route"]) && &s.text == route);
        if !listed {
            problems
                .push(format!("infra/template.yaml routes `{route}`, which docs/api.md's route table does not list"));
        }
    }
    assert_none(&problems, "routes in the docs against the template");
}

#[test]
fn every_template_parameter_the_docs_name_exists_and_every_parameter_is_documented() {
    let (spans, _) = scan(&docs());
    let parameters = template_parameters();
    let mut problems = Vec::new();
    let documented: Vec<&Span> = spans.iter().filter(|s| s.in_first_column_of(&["parameter"])).collect();
    for span in &documented {
        if !parameters.contains(&span.text) {
            problems.push(format!("{}: `{}` is not a parameter of infra/template.yaml", span.at(), span.text));
        }
    }
    for parameter in &parameters {
        if !documented.iter().any(|s| s.doc == "docs/configuration.md" && &s.text == parameter) {
            problems.push(format!(
                "infra/template.yaml has the parameter `{parameter}`, which docs/configuration.md does not list"
            ));
        }
    }
    assert_none(&problems, "template parameters in the docs against the template");
}

#[test]
fn every_path_the_docs_name_exists_and_every_sample_event_is_documented() {
    let docs = docs();
    let (spans, _) = scan(&docs);
    let root = repo_root();
    let top_level: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !SKIPPED_DIRS.contains(&n.as_str()))
        .collect();
    let all_files: Vec<String> = files_under(&root, &[]).iter().map(|p| relative(p)).collect();
    let code_files: Vec<String> = shipped_code().into_iter().map(|(path, _)| path).collect();
    let mut problems = Vec::new();
    for span in &spans {
        let path = span.text.split_whitespace().next().unwrap_or_default();
        if path.contains(['<', '*', '{', '$', '…']) || path.starts_with(".local/") || path.starts_with("target/") {
            continue;
        }
        let first = path.split('/').next().unwrap_or_default();
        if path.contains('/') && top_level.contains(first) {
            if !root.join(path).exists() {
                problems.push(format!("{}: `{path}` does not exist", span.at()));
            }
            continue;
        }
        let is_file_name = path.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
            && [".rs", ".py", ".sh", ".mjs", ".toml", ".yaml"].iter().any(|e| path.ends_with(e));
        if !is_file_name {
            continue;
        }
        let candidates = if path.ends_with(".rs") { &code_files } else { &all_files };
        if !candidates.iter().any(|f| f == path || f.ends_with(&format!("/{path}"))) {
            problems.push(format!("{}: no file of the tree ends in `{path}`", span.at()));
        }
    }
    let local_stack = &docs.iter().find(|d| d.path == "docs/local-stack.md").expect("docs/local-stack.md").text;
    for event in files_under(&root.join("events"), &[".json"]) {
        let event = relative(&event);
        if !local_stack.contains(&format!("`{event}`")) {
            problems.push(format!("`{event}` is not in docs/local-stack.md's table of sample events"));
        }
    }
    assert_none(&problems, "paths in the docs against the tree");
}

#[test]
fn every_identifier_the_docs_name_occurs_in_the_code() {
    let (spans, _) = scan(&docs());
    let words = known_words();
    let problems: Vec<String> = spans
        .iter()
        .filter_map(|span| {
            let parts = identifier_parts(&span.text)?;
            let missing: Vec<&str> = parts.into_iter().filter(|p| !words.contains(*p)).collect();
            (!missing.is_empty()).then(|| format!("{}: `{}`: no code names {missing:?}", span.at(), span.text))
        })
        .collect();
    assert_none(&problems, "identifiers in the docs against the code and the template");
}

#[test]
fn every_link_between_the_docs_reaches_a_file_and_a_heading() {
    let docs = docs();
    let root = repo_root();
    let mut problems = Vec::new();
    for doc in &docs {
        let dir = Path::new(&doc.path).parent().unwrap().to_owned();
        let mut in_code = false;
        for (n, line) in doc.text.lines().enumerate() {
            if is_fence(line) {
                in_code = !in_code;
            }
            if in_code {
                continue;
            }
            for (at, _) in line.match_indices("](") {
                let target = &line[at + 2..];
                let target = &target[..target.find(')').unwrap_or(target.len())];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').map_or((target, None), |(f, a)| (f, Some(a)));
                let path = if file.is_empty() { PathBuf::from(&doc.path) } else { dir.join(file) };
                let Ok(full) = root.join(&path).canonicalize() else {
                    problems.push(format!("{}:{}: ({target}): no such file", doc.path, n + 1));
                    continue;
                };
                let Some(anchor) = anchor else { continue };
                let text = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    problems.push(format!("{}:{}: ({target}): no heading gives #{anchor}", doc.path, n + 1));
                }
            }
        }
    }
    assert_none(&problems, "links between the docs");
}

#[test]
fn no_table_is_cut_in_two_by_a_blank_line() {
    let mut problems = Vec::new();
    for doc in docs() {
        let lines: Vec<&str> = doc.text.lines().collect();
        for i in 2..lines.len() {
            let separator_follows =
                lines.get(i + 1).is_some_and(|l| l.trim_start().starts_with("|-") || l.trim_start().starts_with("|:"));
            if is_table_row(lines[i])
                && lines[i - 1].trim().is_empty()
                && is_table_row(lines[i - 2])
                && !separator_follows
            {
                problems.push(format!("{}:{}: a blank line puts this row outside its table", doc.path, i + 1));
            }
        }
    }
    assert_none(&problems, "tables in the docs");
}

#[test]
fn every_function_but_whoami_reads_the_configuration_as_the_configuration_doc_says() {
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    assert!(
        doc.contains("Every function but `whoami` reads these"),
        "docs/configuration.md says who reads the variables"
    );
    for entry in std::fs::read_dir(repo_root().join("functions")).unwrap() {
        let function = entry.unwrap().path();
        let name = function.file_name().unwrap().to_string_lossy().into_owned();
        let main = std::fs::read_to_string(function.join("src/main.rs")).unwrap();
        assert_eq!(
            main.contains("Config::from_env"),
            name != "whoami",
            "functions/{name} against docs/configuration.md"
        );
    }
    let authctl = std::fs::read_to_string(repo_root().join("tools/authctl/src/main.rs")).unwrap();
    assert!(authctl.contains("Config::from_env"), "authctl reads the variables, as docs/configuration.md says");
}
