//! Route selection as HTTP APIs do it: the most specific route wins. A route without a
//! greedy `{proxy+}` beats one with it; then, segment by segment from the left, a literal
//! beats a `{variable}`, which beats a greedy one; then a method beats `ANY`; `$default`
//! catches the rest. The authorizer's route rules pick the same way
//! (`tokenauth::rules::routes::select`; `tests/tests/route_selection.rs` compares them).

use std::collections::BTreeMap;

use sam_template::Route;

/// The route chosen for a request, with its path parameters (percent-decoded).
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub path_parameters: BTreeMap<String, String>,
}

/// The route for `method` and `path`, or `None` (API Gateway answers 404).
pub fn select<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<Matched<'a>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    routes
        .iter()
        .filter(|r| r.path != "$default" && (r.method == "ANY" || r.method.eq_ignore_ascii_case(method)))
        .filter_map(|route| {
            let (parameters, greedy) = match_path(&route.path, &segments)?;
            Some((greedy, route, Matched { route, path_parameters: parameters }))
        })
        // Lower sorts first: no greedy variable, the ranks of the segments from the left,
        // then a named method.
        .min_by(|(greedy_a, a, _), (greedy_b, b, _)| {
            greedy_a
                .cmp(greedy_b)
                .then_with(|| ranks(&a.path).cmp(ranks(&b.path)))
                .then_with(|| (a.method == "ANY").cmp(&(b.method == "ANY")))
        })
        .map(|(_, _, matched)| matched)
        .or_else(|| {
            let route = routes.iter().find(|r| r.path == "$default")?;
            Some(Matched { route, path_parameters: BTreeMap::new() })
        })
}

/// Each segment of a template path by preference: 0 a literal, 1 a variable, 2 greedy.
fn ranks(template: &str) -> impl Iterator<Item = u8> + '_ {
    template.trim_start_matches('/').split('/').map(|part| match part.strip_prefix('{') {
        Some(variable) if variable.ends_with("+}") => 2,
        Some(_) => 1,
        None => 0,
    })
}

/// Matches a template path against the request's segments: its parameters, and whether
/// it matched through a greedy variable.
fn match_path(template: &str, segments: &[&str]) -> Option<(BTreeMap<String, String>, bool)> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let mut parameters = BTreeMap::new();
    for (i, part) in parts.iter().enumerate() {
        let variable = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
        match variable {
            Some(name) if name.ends_with('+') => {
                // Greedy: the rest of the path, at least one segment, only at the end.
                let rest = segments.get(i..).filter(|rest| i + 1 == parts.len() && !rest.is_empty())?;
                let value = rest.join("/");
                if value.is_empty() {
                    return None;
                }
                parameters.insert(name.trim_end_matches('+').to_owned(), decode(&value));
                return Some((parameters, true));
            }
            Some(name) => {
                let segment = segments.get(i).filter(|s| !s.is_empty())?;
                parameters.insert(name.to_owned(), decode(segment));
            }
            None => {
                if segments.get(i) != Some(part) {
                    return None;
                }
            }
        }
    }
    (parts.len() == segments.len()).then_some((parameters, false))
}

fn decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Route {
        Route { method: method.into(), path: path.into(), function: format!("{method} {path}"), authorizer: None }
    }

    fn chosen(routes: &[Route], method: &str, path: &str) -> Option<String> {
        select(routes, method, path).map(|m| m.route.function.clone())
    }

    #[test]
    fn the_most_specific_route_wins_and_default_catches_the_rest() {
        let routes = [
            route("GET", "/items/{id}"),
            route("GET", "/items/special"),
            route("ANY", "/items/special"),
            route("ANY", "/{proxy+}"),
            route("ANY", "$default"),
            route("POST", "/auth/login"),
        ];
        assert_eq!(chosen(&routes, "GET", "/items/special").unwrap(), "GET /items/special");
        assert_eq!(chosen(&routes, "PUT", "/items/special").unwrap(), "ANY /items/special");
        assert_eq!(chosen(&routes, "GET", "/items/7").unwrap(), "GET /items/{id}");
        assert_eq!(chosen(&routes, "GET", "/auth/login").unwrap(), "ANY /{proxy+}");
        assert_eq!(chosen(&routes, "POST", "/auth/login").unwrap(), "POST /auth/login");
        assert_eq!(chosen(&routes, "GET", "/").unwrap(), "ANY $default");
    }

    #[test]
    fn a_longer_greedy_prefix_and_a_literal_further_left_win() {
        let routes = [
            route("ANY", "/{proxy+}"),
            route("GET", "/items/{proxy+}"),
            route("GET", "/{a}/b/c"),
            route("GET", "/a/{b}/c"),
        ];
        assert_eq!(chosen(&routes, "GET", "/items/x/y").unwrap(), "GET /items/{proxy+}");
        assert_eq!(chosen(&routes, "GET", "/a/b/c").unwrap(), "GET /a/{b}/c");
        assert_eq!(chosen(&routes, "GET", "/x/b/c").unwrap(), "GET /{a}/b/c");
        assert_eq!(chosen(&routes, "POST", "/items/x").unwrap(), "ANY /{proxy+}");
    }

    #[test]
    fn no_route_and_no_default_is_none() {
        let routes = [route("POST", "/auth/login")];
        assert_eq!(chosen(&routes, "GET", "/auth/login"), None);
        assert_eq!(chosen(&routes, "POST", "/auth/login/extra"), None);
        assert_eq!(chosen(&routes, "POST", "/auth"), None);
    }

    #[test]
    fn path_parameters_are_decoded_and_a_greedy_one_takes_the_rest() {
        let routes = [route("GET", "/items/{id}"), route("GET", "/files/{path+}")];
        let item = select(&routes, "GET", "/items/a%20b").unwrap();
        assert_eq!(item.path_parameters["id"], "a b");
        let file = select(&routes, "GET", "/files/x/y+z").unwrap();
        assert_eq!(file.path_parameters["path"], "x/y+z");
        assert_eq!(chosen(&routes, "GET", "/items/"), None);
        assert_eq!(chosen(&routes, "GET", "/files/"), None);
    }
}
