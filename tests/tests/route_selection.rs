//! The authorizer's route rules pick the route the local gateway picks: one table of
//! overlapping routes, every request of a table, the same route key from
//! `tokenauth::rules::routes::select` and `gateway::routing::select` (both follow API
//! Gateway's HTTP API, "Working with routes for HTTP APIs"). Pure logic: the unit tier.
#![allow(clippy::unwrap_used)]

use sam_template::Route;
use tokenauth::rules::routes::{select, RouteRule};

/// Route keys that overlap every way the selection has to settle.
const ROUTES: [&str; 14] = [
    "GET /pets/dog/1",
    "GET /pets/dog/{id}",
    "GET /pets/{proxy+}",
    "ANY /{proxy+}",
    "GET /api/{id}",
    "ANY /api/admin/{proxy+}",
    "GET /api/admin/health",
    "POST /api/{id}/x",
    "GET /a/{x}/c",
    "GET /{y}/b/c",
    "ANY /a/b/c",
    "ANY /a/b/{z}",
    "GET /a/{proxy+}",
    "GET /",
];

const REQUESTS: [(&str, &str); 24] = [
    ("GET", "/pets/dog/1"),
    ("GET", "/pets/dog/2"),
    ("GET", "/pets/cat/1"),
    ("POST", "/pets/cat/53"),
    ("GET", "/pets"),
    ("GET", "/api/item42"),
    ("GET", "/api/admin/export"),
    ("GET", "/api/admin/health"),
    ("DELETE", "/api/admin/health"),
    ("POST", "/api/7/x"),
    ("POST", "/api/7/y"),
    ("GET", "/api/"),
    ("GET", "/api//x"),
    ("GET", "/a/b/c"),
    ("GET", "/a/q/c"),
    ("GET", "/q/b/c"),
    ("PUT", "/a/b/d"),
    ("GET", "/a/q/d"),
    ("GET", "/a/b/c/d"),
    ("HEAD", "/a"),
    ("GET", "/"),
    ("POST", "/"),
    ("GET", "/x/"),
    ("OPTIONS", "/zz/top"),
];

#[test]
fn the_rules_and_the_gateway_select_the_same_route_for_every_request() {
    for default in [false, true] {
        let mut keys: Vec<&str> = ROUTES.to_vec();
        if default {
            keys.push("$default");
        }
        let rules =
            RouteRule::parse_list(&keys.iter().map(|key| format!("{key}=")).collect::<Vec<_>>().join(";")).unwrap();
        let routes: Vec<Route> = keys
            .iter()
            .map(|key| {
                let (method, path) = key.split_once(' ').unwrap_or(("ANY", key));
                Route { method: method.into(), path: path.into(), function: (*key).to_owned(), authorizer: None }
            })
            .collect();
        let mut defaulted = 0;
        for (method, path) in REQUESTS {
            let by_gateway = gateway::routing::select(&routes, method, path).map(|m| m.route.function.clone());
            let by_rules = select(&rules, method, &path[1..])
                .map(|chosen| keys[rules.iter().position(|rule| std::ptr::eq(rule, chosen)).unwrap()].to_owned());
            assert_eq!(by_rules, by_gateway, "$default {default}: {method} {path}");
            defaulted += usize::from(by_rules.as_deref() == Some("$default"));
        }
        assert_eq!(defaulted > 0, default, "the table reaches $default when there is one");
    }
}
