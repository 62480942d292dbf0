//! Route rules: which scopes a route needs, matched against the execute-api ARN of the
//! request, the policies built from them, and how the authorizer answers (simple or IAM).

use serde::Serialize;

use crate::rules::scope::Scope;

/// How HTTP API payload 2.0 events are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStyle {
    /// `{"isAuthorized": .., "context": ..}` (the route's own decision).
    Simple,
    /// An IAM policy document, as for REST APIs and payload 1.0.
    Iam,
}

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// Allow and deny statements.
    #[serde(rename = "Statement")]
    pub statement: Vec<Statement>,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Always `execute-api:Invoke`.
    #[serde(rename = "Action")]
    pub action: &'static str,
    /// `Allow` or `Deny`.
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    /// execute-api ARNs (patterns).
    #[serde(rename = "Resource")]
    pub resource: Vec<String>,
}

impl PolicyDocument {
    /// A policy of these statements.
    pub(crate) fn of(statement: Vec<Statement>) -> Self {
        Self { version: "2012-10-17", statement }
    }

    /// Deny every route: the answer to a request that is not authorized.
    pub(crate) fn deny_all() -> Self {
        Self::of(vec![Statement::invoke("Deny", vec!["*".to_owned()])])
    }
}

impl Statement {
    /// `execute-api:Invoke` with `effect` on `resource`.
    pub(crate) fn invoke(effect: &'static str, resource: Vec<String>) -> Self {
        Self { action: "execute-api:Invoke", effect, resource }
    }
}

/// A route's scope requirement, in API Gateway's route-key syntax: `METHOD /path` needs
/// every scope listed, where the method may be `ANY` and path segments `{name}` or
/// `{name+}`; `$default` names every request no other rule matches.
///
/// Semantics are IAM's, so that a simple answer and a policy (cached by API Gateway and
/// applied to other routes) always agree: a path parameter or `*` matches any run of
/// characters, slashes included; a request needs the scopes of **every** rule that
/// matches it; a request no rule matches needs the `$default` rule's scopes, and is denied
/// when there is none. Matching is exact otherwise (case, trailing slash, encoding,
/// method), so a request spelled differently from every rule falls to the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// `None` for `$default`; else the method (`None` inside for `ANY`) and the path
    /// pattern with `*` for parameters.
    route: Option<(Option<String>, String)>,
    scopes: Scope,
}

/// Methods a route may name.
const METHODS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"];

impl RouteRule {
    /// Parses `AUTHORIZER_ROUTE_SCOPES`: rules separated by `;`, each `ROUTE=scope scope`,
    /// e.g. `GET /api/items=read;ANY /api/admin/{proxy+}=admin;$default=`.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        let rules = raw
            .split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|rule| {
                let (route, scopes) = rule.split_once('=').ok_or_else(|| format!("rule {rule:?} lacks '='"))?;
                let scopes = Scope::from_tokens(scopes.split_whitespace());
                let route = route.trim();
                if route == "$default" {
                    return Ok(Self { route: None, scopes });
                }
                let (method, path) =
                    route.split_once(' ').ok_or_else(|| format!("route {route:?} must be 'METHOD /path'"))?;
                let method = method.trim().to_ascii_uppercase();
                if !METHODS.contains(&method.as_str()) {
                    return Err(format!("method {method:?} is not one API Gateway routes"));
                }
                Ok(Self { route: Some(((method != "ANY").then_some(method), path_pattern(path.trim())?)), scopes })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if rules.iter().filter(|r| r.route.is_none()).count() > 1 {
            return Err("`$default` may have one rule only".to_owned());
        }
        Ok(rules)
    }

    /// Whether the rule covers `method` and `path`, the path given without its leading `/`
    /// (as it follows the method in an execute-api ARN). `$default` covers nothing itself.
    fn matches(&self, method: &str, path: &str) -> bool {
        match &self.route {
            Some((rule_method, pattern)) => {
                rule_method.as_deref().is_none_or(|m| m == method) && glob(&pattern[1..], path)
            }
            None => false,
        }
    }

    fn granted(&self, scope: &str) -> bool {
        self.scopes.is_granted_by(scope)
    }

    /// The execute-api ARN pattern of the rule under `base`.
    fn resource(&self, base: &str) -> String {
        match &self.route {
            Some((method, pattern)) => format!("{base}/{}{pattern}", method.as_deref().unwrap_or("*")),
            None => format!("{base}/*/*"),
        }
    }
}

/// A route path as an ARN pattern: `{name}` and `{name+}` become `*`.
fn path_pattern(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    let segments = path[1..].split('/').collect::<Vec<_>>();
    let mut pattern = String::with_capacity(path.len());
    for (i, segment) in segments.iter().enumerate() {
        pattern.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if name.ends_with('+') && i + 1 == segments.len() => pattern.push('*'),
            Some(name) if !name.is_empty() && !name.ends_with('+') => pattern.push('*'),
            Some(_) => return Err(format!("path {path:?}: a greedy {{name+}} must be the last segment")),
            None if segment.contains(['{', '}']) => return Err(format!("path {path:?}: braces only around a segment")),
            None => pattern.push_str(segment),
        }
    }
    Ok(pattern)
}

/// Whether a token with `scope` may call `method /path` (path without its leading `/`).
pub fn decide(rules: &[RouteRule], method: &str, path: &str, scope: &str) -> bool {
    let mut matched = false;
    for rule in rules.iter().filter(|r| r.matches(method, path)) {
        if !rule.granted(scope) {
            return false;
        }
        matched = true;
    }
    matched || rules.iter().any(|r| r.route.is_none() && r.granted(scope))
}

/// An IAM policy for the whole API that evaluates, for every route, to what [`decide`]
/// answers there: an allow for each rule the scope satisfies (the whole API for a
/// satisfied `$default`), an explicit deny for each it does not (a deny wins). Correct
/// for any route if API Gateway caches it.
pub fn policy(rules: &[RouteRule], base: &str, scope: &str) -> PolicyDocument {
    let (granted, denied): (Vec<&RouteRule>, Vec<&RouteRule>) = rules.iter().partition(|r| r.granted(scope));
    let mut statement = Vec::new();
    if !granted.is_empty() {
        statement.push(Statement::invoke("Allow", granted.iter().map(|r| r.resource(base)).collect()));
    }
    let denied: Vec<String> = denied.iter().filter(|r| r.route.is_some()).map(|r| r.resource(base)).collect();
    if !denied.is_empty() {
        statement.push(Statement::invoke("Deny", denied));
    }
    if statement.is_empty() {
        return PolicyDocument::deny_all();
    }
    PolicyDocument::of(statement)
}

/// `*` matches any run of characters (including `/`, as in execute-api ARNs). Iterative,
/// with backtracking to the last star only: linear in practice, never exponential.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_execute_api_paths() {
        assert!(glob("/api/*", "/api/items/7"));
        assert!(glob("/api/items", "/api/items"));
        assert!(!glob("/api/items", "/api/items/7"));
        assert!(glob("*", "/anything"));
        assert!(glob("/a/*/c", "/a/b/c"));
        assert!(!glob("/a/*/c", "/a/b/d"));
        assert!(glob("/a*", "/a"));
        assert!(!glob("/a*b*c*d*e", &format!("/a{}", "x".repeat(8000))), "no blow-up on long paths");
    }

    #[test]
    fn parses_route_keys_and_refuses_nonsense() {
        let rules = RouteRule::parse_list("GET /api/items=read; ANY /api/{id}/x/{rest+}=write admin; $default=")
            .expect("valid");
        assert_eq!(rules.len(), 3);
        assert!(rules[1].matches("POST", "api/7/x/a/b"));
        assert!(!rules[0].matches("GET", "api/items/3"));
        assert!(rules[1].granted("admin write read"));
        assert!(!rules[1].granted("write"));
        assert!(rules[2].granted(""), "`$default=` asks for no scope");
        assert_eq!(rules[1].resource("B"), "B/*/api/*/x/*");
        for bad in ["GET api=read", "/api=read", "FETCH /api=read", "GET /api/{a+}/b=read", "GET /a{b}=x", "$default"] {
            assert!(RouteRule::parse_list(bad).is_err(), "{bad}");
        }
        assert!(RouteRule::parse_list("$default=a;$default=b").is_err());
        assert_eq!(RouteRule::parse_list("").expect("empty"), vec![]);
    }

    /// IAM's evaluation of a policy for one resource: an explicit deny wins, then an allow.
    fn iam_allows(policy: &PolicyDocument, resource: &str) -> bool {
        let matching = |effect: &str| {
            policy.statement.iter().filter(|s| s.effect == effect).flat_map(|s| &s.resource).any(|r| glob(r, resource))
        };
        !matching("Deny") && matching("Allow")
    }

    const BASE: &str = "arn:aws:execute-api:eu-west-1:1:api/prod";

    fn table() -> Vec<RouteRule> {
        RouteRule::parse_list(
            "GET /api/items=read; POST /api/items=write; ANY /api/admin/{proxy+}=admin; GET /api/public=",
        )
        .expect("valid")
    }

    #[test]
    fn a_request_no_rule_matches_is_denied_unless_a_default_rule_allows_it() {
        let rules = table();
        for (method, path) in [
            ("GET", "api/ITEMS"),
            ("GET", "api/items/"),
            ("GET", "api/%69tems"),
            ("FOO", "api/items"),
            ("DELETE", "api/items"),
            ("GET", "other"),
        ] {
            assert!(!decide(&rules, method, path, "read write admin"), "{method} /{path} matches no rule");
        }
        let mut open = rules.clone();
        open.extend(RouteRule::parse_list("$default=read").expect("valid"));
        assert!(decide(&open, "GET", "other", "read"));
        assert!(!decide(&open, "GET", "other", "write"), "the default's own scopes");
        assert!(!decide(&open, "POST", "api/items", "read"), "a matching rule still applies");
    }

    #[test]
    fn every_matching_rule_applies() {
        let rules = table();
        assert!(decide(&rules, "GET", "api/items", "read"));
        assert!(!decide(&rules, "POST", "api/items", "read"));
        assert!(decide(&rules, "PATCH", "api/admin/users/7", "admin"), "ANY and {{proxy+}}");
        assert!(!decide(&rules, "GET", "api/admin/users/7", "read write"));
        assert!(decide(&rules, "GET", "api/public", ""), "a rule asking for no scope");
    }

    #[test]
    fn simple_answers_and_policies_agree_on_every_route_for_every_scope() {
        let mut rules = table();
        rules.extend(RouteRule::parse_list("ANY /api/{proxy+}=read").expect("valid"));
        let requests = [
            ("GET", "api/items"),
            ("POST", "api/items"),
            ("GET", "api/admin/x"),
            ("POST", "api/admin/x/y"),
            ("GET", "api/public"),
            ("GET", "api/other/deep/path"),
            ("GET", "api/ITEMS"),
            ("FOO", "api/items"),
            ("GET", "elsewhere"),
            ("GET", ""),
        ];
        for default in ["", "$default=", "$default=admin"] {
            let mut rules = rules.clone();
            rules.extend(RouteRule::parse_list(default).expect("valid"));
            for scope in ["", "read", "write", "read write", "admin", "read write admin"] {
                // The policy a token gets on one route, cached, then applied to every route.
                let cached = policy(&rules, BASE, scope);
                for (method, path) in requests {
                    let simple = decide(&rules, method, path, scope);
                    let iam = iam_allows(&cached, &format!("{BASE}/{method}/{path}"));
                    assert_eq!(simple, iam, "{default:?} {scope:?}: {method} /{path}");
                }
            }
        }
    }
}
