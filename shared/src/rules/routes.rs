//! Route rules: which scopes a route needs, matched against the execute-api ARN of the
//! request as API Gateway's HTTP API selects routes, the policies built from them, and how
//! the authorizer answers (simple or IAM).

use std::cmp::Ordering;

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

    /// What API Gateway makes of the policy for `resource`: an explicit Deny wins, then an
    /// Allow; nothing matching is a deny. Patterns are IAM's (`*` spans `/`).
    pub fn allows(&self, resource: &str) -> bool {
        let matching = |effect: &str| {
            self.statement.iter().filter(|s| s.effect == effect).flat_map(|s| &s.resource).any(|r| glob(r, resource))
        };
        !matching("Deny") && matching("Allow")
    }
}

impl Statement {
    /// `execute-api:Invoke` with `effect` on `resource`.
    pub(crate) fn invoke(effect: &'static str, resource: Vec<String>) -> Self {
        Self { action: "execute-api:Invoke", effect, resource }
    }
}

/// Methods API Gateway routes by name; `ANY` in a rule stands for each of them. A request
/// with any other method matches no rule, not even `$default`: it is denied.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Equal byte for byte.
    Literal(String),
    /// `{name}`: exactly one segment, not empty.
    Param,
    /// `{name+}`, last only: the rest of the path, one segment or more, not empty.
    Greedy,
}

impl Segment {
    /// API Gateway's preference at one position: a literal, then a parameter, then greedy.
    fn rank(&self) -> u8 {
        match self {
            Self::Literal(_) => 0,
            Self::Param => 1,
            Self::Greedy => 2,
        }
    }

    /// The segment in an execute-api ARN pattern (IAM's `*` spans `/`: see [`Route::strays`]).
    fn pattern(&self) -> &str {
        match self {
            Self::Literal(literal) => literal,
            Self::Param | Self::Greedy => "*",
        }
    }
}

/// The route of a rule: its method (`None` for `ANY`) and path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    method: Option<&'static str>,
    segments: Vec<Segment>,
}

impl Route {
    /// Whether the route catches `method` and `path` (without its leading `/`).
    fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.is_some_and(|m| m != method) {
            return false;
        }
        let mut parts = path.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Greedy => return !matches!((parts.next(), parts.next()), (None | Some(""), None)),
                Segment::Param if parts.next().is_none_or(str::is_empty) => return false,
                Segment::Literal(literal) if parts.next() != Some(literal.as_str()) => return false,
                Segment::Param | Segment::Literal(_) => {}
            }
        }
        parts.next().is_none()
    }

    fn is_greedy(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::Greedy))
    }

    /// API Gateway's choice between two routes that both match a request, `Less` for the
    /// one it takes ("Working with routes for HTTP APIs": a full match before a greedy
    /// variable; `ANY` for the methods a path does not name): a route without a greedy
    /// variable first; then, segment by segment from the left, a literal before a
    /// parameter before a greedy variable; then a named method before `ANY`.
    fn precedence(&self, other: &Self) -> Ordering {
        self.is_greedy()
            .cmp(&other.is_greedy())
            .then_with(|| self.segments.iter().map(Segment::rank).cmp(other.segments.iter().map(Segment::rank)))
            .then_with(|| self.method.is_none().cmp(&other.method.is_none()))
    }

    fn methods(&self) -> &[&'static str] {
        match &self.method {
            Some(method) => std::slice::from_ref(method),
            None => &METHODS,
        }
    }

    /// The execute-api ARN patterns of the route under `base`, one per method, with the
    /// segment at `swap.0` written `swap.1`. A pattern covers every request of the route
    /// and more: `*` also spans `/` and matches nothing.
    fn patterns(&self, base: &str, swap: Option<(usize, &str)>) -> Vec<String> {
        let path = self
            .segments
            .iter()
            .enumerate()
            .map(|(i, segment)| match swap {
                Some((at, with)) if at == i => with,
                _ => segment.pattern(),
            })
            .collect::<Vec<_>>()
            .join("/");
        self.methods().iter().map(|method| format!("{base}/{method}/{path}")).collect()
    }

    /// Patterns of what [`Route::patterns`] covers beyond the route: a parameter that spans
    /// `/` (`*/*` in its place) or is empty, a greedy variable that is empty. None of them
    /// matches a request of the route itself, which has exactly its number of `/`.
    fn strays(&self, base: &str) -> Vec<String> {
        let mut strays = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            if *segment == Segment::Param {
                strays.extend(self.patterns(base, Some((i, "*/*"))));
            }
            if matches!(segment, Segment::Param | Segment::Greedy) {
                strays.extend(self.patterns(base, Some((i, ""))));
            }
        }
        strays
    }
}

/// The account routes (`docs/api.md`), behind the authorizer: any valid access token of
/// the API reaches them, and the account function decides whose account it is.
pub const ACCOUNT_ROUTES: &str = "POST /auth/password=;GET /auth/sessions=;DELETE /auth/sessions=;\
                                  DELETE /auth/sessions/{sid}=;DELETE /auth/account=";

/// A route's scope requirement, in API Gateway's route-key syntax: `METHOD /path` needs
/// every scope listed, where the method may be `ANY` and path segments `{name}` or
/// `{name+}`; `$default` covers every request no other rule matches.
///
/// A request is decided by the one rule API Gateway's HTTP API would route it to: the
/// most specific rule that matches it (see `Route::precedence`), else `$default`, else
/// none (denied). `{name}` matches exactly one non-empty segment, `{name+}` the rest of
/// the path; everything else is exact (case, trailing slash, encoding, method), so a
/// request spelled differently from every rule falls to the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// `None` for `$default`.
    route: Option<Route>,
    scopes: Scope,
}

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
                let method = match METHODS.iter().find(|m| **m == method) {
                    Some(named) => Some(*named),
                    None if method == "ANY" => None,
                    None => return Err(format!("method {method:?} is not one API Gateway routes")),
                };
                Ok(Self { route: Some(Route { method, segments: path_segments(path.trim())? }), scopes })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if rules.iter().filter(|r| r.route.is_none()).count() > 1 {
            return Err("`$default` may have one rule only".to_owned());
        }
        for (i, rule) in rules.iter().enumerate() {
            if rule.route.is_some() && rules[..i].iter().any(|earlier| earlier.route == rule.route) {
                return Err(format!("rule {} names the route of an earlier rule", i + 1));
            }
        }
        Ok(rules)
    }

    /// `rules` and the account routes ([`ACCOUNT_ROUTES`]) that no rule of them names: the
    /// account function checks its caller itself, so they need a valid token of the API and
    /// no scope, unless the deployment's rules say otherwise.
    pub fn with_account_routes(mut rules: Vec<Self>) -> Vec<Self> {
        let account = Self::parse_list(ACCOUNT_ROUTES).unwrap_or_default();
        for rule in account {
            if !rules.iter().any(|r| r.route == rule.route) {
                rules.push(rule);
            }
        }
        rules
    }

    fn granted(&self, scope: &str) -> bool {
        self.scopes.is_granted_by(scope)
    }
}

/// A route path's segments: `{name}` a parameter, a last `{name+}` greedy. Refused: no
/// leading `/`, an empty segment (but the root `/`), braces or IAM wildcards (`*`, `?`)
/// inside a literal, a greedy variable before the end.
fn path_segments(path: &str) -> Result<Vec<Segment>, String> {
    let rest = path.strip_prefix('/').ok_or_else(|| format!("path {path:?} must start with /"))?;
    if rest.is_empty() {
        return Ok(vec![Segment::Literal(String::new())]);
    }
    let parts = rest.split('/').collect::<Vec<_>>();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let variable = part.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
        segments.push(match variable {
            Some(name) if name.contains(['{', '}']) => return Err(format!("path {path:?}: a bad variable name")),
            Some(name) if name.len() > 1 && name.ends_with('+') && i + 1 == parts.len() => Segment::Greedy,
            Some(name) if !name.is_empty() && !name.ends_with('+') => Segment::Param,
            Some(_) => return Err(format!("path {path:?}: a greedy {{name+}} must be the last segment")),
            None if part.is_empty() => return Err(format!("path {path:?}: an empty segment")),
            None if part.contains(['{', '}']) => return Err(format!("path {path:?}: braces only around a segment")),
            None if part.contains(['*', '?']) => return Err(format!("path {path:?}: `*` and `?` are IAM wildcards")),
            None => Segment::Literal((*part).to_owned()),
        });
    }
    Ok(segments)
}

/// The rule API Gateway routes `method /path` (path without its leading `/`) to: the most
/// specific rule that matches, else `$default`; `None` when neither exists or the method is
/// not one API Gateway routes.
pub fn select<'a>(rules: &'a [RouteRule], method: &str, path: &str) -> Option<&'a RouteRule> {
    if !METHODS.contains(&method) {
        return None;
    }
    rules
        .iter()
        .filter_map(|rule| rule.route.as_ref().filter(|route| route.matches(method, path)).map(|route| (route, rule)))
        .min_by(|(a, _), (b, _)| a.precedence(b))
        .map(|(_, rule)| rule)
        .or_else(|| rules.iter().find(|rule| rule.route.is_none()))
}

/// Whether a token with `scope` may call `method /path` (path without its leading `/`): the
/// scopes of the rule [`select`] picks, denied where it picks none.
pub fn decide(rules: &[RouteRule], method: &str, path: &str, scope: &str) -> bool {
    select(rules, method, path).is_some_and(|rule| rule.granted(scope))
}

/// The IAM policy answering `method /path` for a token with `scope`. It allows nothing
/// [`decide`] denies on any route, so it may be cached across routes, and it answers this
/// request as `decide` does. It is the policy for the whole API (`whole_api_policy`)
/// where that allows this request; IAM's patterns cannot say "one segment" everywhere (a
/// denied `{id}` under an allowed `$default`, an allowed route under a denied broader one),
/// and where they fall short the policy allows this request's resource alone, or nothing
/// when its path holds an IAM wildcard character (`*`, `?`) that cannot be written literally.
pub fn policy(rules: &[RouteRule], base: &str, method: &str, path: &str, scope: &str) -> PolicyDocument {
    let resource = format!("{base}/{method}/{path}");
    let whole = whole_api_policy(rules, base, scope);
    let allowed = decide(rules, method, path, scope);
    if whole.allows(&resource) == allowed {
        whole
    } else if allowed && !resource.contains(['*', '?']) {
        PolicyDocument::of(vec![Statement::invoke("Allow", vec![resource])])
    } else {
        PolicyDocument::deny_all()
    }
}

/// A policy for every route that never allows what [`decide`] denies:
/// - with a `$default` rule the scope satisfies: Allow every method on everything, Deny the
///   patterns of every rule it does not satisfy;
/// - otherwise: Allow the patterns of every satisfied rule, Deny their strays (a parameter
///   spanning `/` or empty, [`Route::strays`]), and Deny the patterns of an unsatisfied
///   rule where a satisfied one that is not more specific overlaps it (a more specific one
///   never reaches the unsatisfied rule's requests but through its strays).
///
/// A Deny pattern may cover requests allowed elsewhere (IAM's `*` is wider than a segment):
/// then this policy denies them too, and [`policy`] narrows the answer to the request.
fn whole_api_policy(rules: &[RouteRule], base: &str, scope: &str) -> PolicyDocument {
    let (granted, denied): (Vec<&Route>, Vec<&Route>) = {
        let routes = rules.iter().filter_map(|rule| rule.route.as_ref().map(|route| (route, rule.granted(scope))));
        let (granted, denied): (Vec<_>, Vec<_>) = routes.partition(|(_, granted)| *granted);
        (granted.into_iter().map(|(r, _)| r).collect(), denied.into_iter().map(|(r, _)| r).collect())
    };
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    if rules.iter().any(|rule| rule.route.is_none() && rule.granted(scope)) {
        allow.extend(METHODS.iter().map(|method| format!("{base}/{method}/*")));
        deny.extend(denied.iter().flat_map(|route| route.patterns(base, None)));
    } else {
        for route in &granted {
            allow.extend(route.patterns(base, None));
            deny.extend(route.strays(base));
        }
        for route in denied {
            let patterns = route.patterns(base, None);
            let reached = granted
                .iter()
                .filter(|other| other.precedence(route) != Ordering::Less)
                .flat_map(|other| other.patterns(base, None))
                .any(|other| patterns.iter().any(|pattern| overlap(pattern, &other)));
            if reached {
                deny.extend(patterns);
            }
        }
    }
    if allow.is_empty() {
        return PolicyDocument::deny_all();
    }
    let mut statement = vec![Statement::invoke("Allow", allow)];
    if !deny.is_empty() {
        statement.push(Statement::invoke("Deny", deny));
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

/// Whether some text matches both glob patterns: a walk over pairs of positions, where a
/// `*` of either side may end or swallow the other side's next character.
fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut seen = vec![false; (a.len() + 1) * (b.len() + 1)];
    let mut pending = vec![(0, 0)];
    while let Some((i, j)) = pending.pop() {
        if i == a.len() && j == b.len() {
            return true;
        }
        let visit = &mut seen[i * (b.len() + 1) + j];
        if *visit {
            continue;
        }
        *visit = true;
        let (x, y) = (a.get(i), b.get(j));
        if x == Some(&b'*') {
            pending.push((i + 1, j));
            if y.is_some() {
                pending.push((i, j + 1));
            }
        }
        if y == Some(&b'*') {
            pending.push((i, j + 1));
            if x.is_some() {
                pending.push((i + 1, j));
            }
        }
        if let (Some(x), Some(y)) = (x, y) {
            if x == y && *x != b'*' {
                pending.push((i + 1, j + 1));
            }
        }
    }
    false
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
    fn overlapping_patterns_are_found_and_disjoint_ones_are_not() {
        assert!(overlap("a/*", "*/b"));
        assert!(overlap("a/*/c", "a/b/*"));
        assert!(overlap("GET/api/*", "GET/api/admin/*"));
        assert!(overlap("*", ""));
        assert!(!overlap("GET/api/*", "POST/api/*"));
        assert!(!overlap("a/*/c", "a/*/d"));
        assert!(!overlap("a/b", "a/b/*"), "`a/b/` at least");
        assert!(overlap("a/b*", "a/b/*"));
    }

    #[test]
    fn parses_route_keys_and_refuses_nonsense() {
        let rules = RouteRule::parse_list("GET /api/items=read; ANY /api/{id}/x/{rest+}=write admin; $default=")
            .expect("valid");
        assert_eq!(rules.len(), 3);
        let route = |i: usize| rules[i].route.as_ref().expect("a route");
        assert!(route(1).matches("POST", "api/7/x/a/b"));
        assert!(!route(1).matches("POST", "api/7/8/x/a"), "a parameter is one segment");
        assert!(!route(0).matches("GET", "api/items/3"));
        assert!(rules[1].granted("admin write read"));
        assert!(!rules[1].granted("write"));
        assert!(rules[2].granted(""), "`$default=` asks for no scope");
        assert_eq!(route(1).patterns("B", None).len(), METHODS.len(), "ANY is every method by name");
        assert_eq!(route(1).patterns("B", None)[0], "B/GET/api/*/x/*");
        assert_eq!(route(0).patterns("B", None), ["B/GET/api/items"]);
        assert_eq!(
            RouteRule::parse_list("GET /=").expect("the root")[0].route.as_ref().map(|r| r.matches("GET", "")),
            Some(true)
        );
        for bad in [
            "GET api=read",
            "/api=read",
            "FETCH /api=read",
            "GET /api/{a+}/b=read",
            "GET /a{b}=x",
            "GET /a/{}=x",
            "GET /a/{+}=x",
            "GET /a//b=x",
            "GET /a/=x",
            "GET /a/b*=x",
            "GET /a/b?=x",
            "$default",
            "GET /a/{x}=r;GET /a/{y}=w",
        ] {
            assert!(RouteRule::parse_list(bad).is_err(), "{bad}");
        }
        assert!(RouteRule::parse_list("$default=a;$default=b").is_err());
        assert!(RouteRule::parse_list("GET /a/{x}=r;ANY /a/{y}=w").is_ok(), "a method and ANY are two routes");
        assert_eq!(RouteRule::parse_list("").expect("empty"), vec![]);
        assert_eq!(RouteRule::parse_list(ACCOUNT_ROUTES).expect("the account routes parse").len(), 5);
    }

    const BASE: &str = "arn:aws:execute-api:eu-west-1:1:api/prod";

    fn rules(raw: &str) -> Vec<RouteRule> {
        RouteRule::parse_list(raw).expect("valid")
    }

    /// The route key of the rule `select` picks, as written in `raw`.
    fn selected(raw: &str, method: &str, path: &str) -> Option<String> {
        let rules = rules(raw);
        let keys = raw.split(';').map(|rule| rule.split_once('=').expect("a rule").0.trim().to_owned());
        let chosen = select(&rules, method, path)?;
        rules.iter().zip(keys).find(|(rule, _)| std::ptr::eq(*rule, chosen)).map(|(_, key)| key)
    }

    #[test]
    fn a_parameter_is_one_segment_and_a_route_added_later_falls_to_the_default() {
        let table = rules("GET /api/{id}=;$default=admin");
        assert!(decide(&table, "GET", "api/item42", ""));
        assert!(!decide(&table, "GET", "api/admin/export", ""), "not `{{id}}`: the default's admin");
        assert!(decide(&table, "GET", "api/admin/export", "admin"));
        assert!(!decide(&table, "GET", "api/", ""), "an empty segment is no parameter");
        for (path, allowed) in [("api/item42", true), ("api/admin/export", false), ("api/", false)] {
            let answer = policy(&table, BASE, "GET", path, "");
            assert_eq!(answer.allows(&format!("{BASE}/GET/{path}")), allowed, "{path}: {answer:?}");
            assert!(!answer.allows(&format!("{BASE}/GET/api/admin/export")), "cached, {path}'s policy: {answer:?}");
        }
    }

    #[test]
    fn the_rule_api_gateway_would_route_to_decides() {
        // The example of AWS's "Working with routes for HTTP APIs".
        let pets = "GET /pets/dog/1=a;GET /pets/dog/{id}=b;GET /pets/{proxy+}=c;ANY /{proxy+}=d;$default=e";
        for (method, path, route) in [
            ("GET", "pets/dog/1", "GET /pets/dog/1"),
            ("GET", "pets/dog/2", "GET /pets/dog/{id}"),
            ("GET", "pets/cat/1", "GET /pets/{proxy+}"),
            ("POST", "pets/cat/53", "ANY /{proxy+}"),
            ("GET", "", "$default"),
        ] {
            assert_eq!(selected(pets, method, path).as_deref(), Some(route), "{method} /{path}");
        }
        // Literal before parameter before greedy, from the left; a method before ANY.
        let table = "GET /a/{x}/c=1;GET /{y}/b/c=2;ANY /a/b/c=3;GET /a/{proxy+}=4;GET /{proxy+}=5;ANY /a/b/{z}=6";
        for (method, path, route) in [
            ("GET", "a/b/c", "ANY /a/b/c"),
            ("GET", "a/q/c", "GET /a/{x}/c"),
            ("GET", "q/b/c", "GET /{y}/b/c"),
            ("GET", "a/b/d", "ANY /a/b/{z}"),
            ("GET", "a/q/d", "GET /a/{proxy+}"),
            ("GET", "a/b/c/d", "GET /a/{proxy+}"),
            ("GET", "q", "GET /{proxy+}"),
            ("PUT", "a/q/c", "$default"),
        ] {
            assert_eq!(
                selected(&format!("{table};$default="), method, path).as_deref(),
                Some(route),
                "{method} /{path}"
            );
        }
        assert_eq!(selected("GET /a=;$default=", "FOO", "a"), None, "a method API Gateway does not route");
        assert_eq!(selected("GET /a=", "GET", "b"), None, "no rule, no default");
    }

    #[test]
    fn a_request_no_rule_matches_is_denied_unless_a_default_rule_allows_it() {
        let table =
            rules("GET /api/items=read; POST /api/items=write; ANY /api/admin/{proxy+}=admin; GET /api/public=");
        for (method, path) in [
            ("GET", "api/ITEMS"),
            ("GET", "api/items/"),
            ("GET", "api/%69tems"),
            ("FOO", "api/items"),
            ("get", "api/items"),
            ("DELETE", "api/items"),
            ("GET", "api/admin/"),
            ("GET", "other"),
        ] {
            assert!(!decide(&table, method, path, "read write admin"), "{method} /{path} matches no rule");
        }
        let mut open = table.clone();
        open.extend(rules("$default=read"));
        assert!(decide(&open, "GET", "other", "read"));
        assert!(!decide(&open, "GET", "other", "write"), "the default's own scopes");
        assert!(!decide(&open, "POST", "api/items", "read"), "a matching rule decides, not the default");
        assert!(!decide(&open, "FOO", "other", "read"), "nor for a method API Gateway does not route");
    }

    /// Rule tables with overlapping routes: carve-outs under broader rules both ways round,
    /// parameters beside greedy variables and literals, `ANY` beside methods.
    const TABLES: [&str; 6] = [
        "GET /api/items=read; POST /api/items=write; ANY /api/admin/{proxy+}=admin; GET /api/public=; ANY /api/{proxy+}=read",
        "GET /api/{id}=",
        "GET /api/{id}=read; GET /api/{id}/detail=; GET /api/admin/{proxy+}=admin; GET /api/admin/health=",
        "ANY /api/{proxy+}=admin; GET /api/public=; GET /api/{id}=read; POST /api/{id}/x=write",
        "ANY /{proxy+}=read; GET /api/admin/export=admin; ANY /api/admin/{id}=admin; GET /=",
        "GET /pets/dog/1=admin; GET /pets/dog/{id}=read; GET /pets/{proxy+}=write; ANY /{proxy+}=read",
    ];

    const REQUESTS: [(&str, &str); 30] = [
        ("GET", "api/items"),
        ("POST", "api/items"),
        ("GET", "api/items/7"),
        ("GET", "api/item42"),
        ("GET", "api/admin/export"),
        ("POST", "api/admin/export"),
        ("GET", "api/admin/x"),
        ("POST", "api/admin/x/y"),
        ("GET", "api/admin/health"),
        ("GET", "api/admin/"),
        ("GET", "api/public"),
        ("GET", "api/public/x"),
        ("GET", "api/7/detail"),
        ("GET", "api/7/8/detail"),
        ("POST", "api/7/x"),
        ("POST", "api/7/8/x"),
        ("GET", "api/other/deep/path"),
        ("GET", "api/"),
        ("GET", "api//x"),
        ("GET", "api/a*"),
        ("GET", "api/ITEMS"),
        ("FOO", "api/items"),
        ("GET", "pets/dog/1"),
        ("GET", "pets/dog/2"),
        ("GET", "pets/cat/1"),
        ("POST", "pets/cat/53"),
        ("GET", "x/api/items"),
        ("GET", "elsewhere"),
        ("DELETE", "elsewhere/deep"),
        ("GET", ""),
    ];

    #[test]
    fn policies_answer_their_request_as_the_rules_do_and_never_allow_what_they_deny_elsewhere() {
        let mut narrowed = 0;
        let mut answers = 0;
        for table in TABLES {
            for default in ["", "$default=", "$default=admin", "$default=read"] {
                let rules = rules(&format!("{table};{default}"));
                for scope in ["", "read", "write", "read write", "admin", "read write admin"] {
                    for (method, path) in REQUESTS {
                        // The policy answered for one request, then cached and applied to every route.
                        let cached = policy(&rules, BASE, method, path, scope);
                        let resource = format!("{BASE}/{method}/{path}");
                        let simple = decide(&rules, method, path, scope);
                        // A path holding an IAM wildcard cannot be named alone: its policy may
                        // deny what the rules allow (never the other way round).
                        let literal = !path.contains(['*', '?']);
                        assert!(
                            cached.allows(&resource) == simple || (!literal && simple),
                            "{table};{default} {scope:?}: {method} /{path}: {cached:?}"
                        );
                        answers += 1;
                        narrowed += usize::from(simple && cached.statement[0].resource == [resource]);
                        for (other_method, other_path) in REQUESTS {
                            let elsewhere = format!("{BASE}/{other_method}/{other_path}");
                            assert!(
                                !cached.allows(&elsewhere) || decide(&rules, other_method, other_path, scope),
                                "{table};{default} {scope:?}: the policy for {method} /{path} allows \
                                 {other_method} /{other_path}, which the rules deny: {cached:?}"
                            );
                        }
                    }
                }
            }
        }
        // Most answers are policies for the whole API; this notices if that changes.
        println!("{narrowed} of {answers} answers narrowed to their request");
        assert!(narrowed * 5 < answers, "{narrowed} of {answers} answers narrowed to their request");
    }

    #[test]
    fn without_conflicting_overlaps_a_cached_policy_answers_every_route_exactly() {
        for table in [
            "GET /api/{id}=;$default=admin",
            "GET /api/items=read; POST /api/items=write; ANY /api/admin/{proxy+}=admin; GET /api/public=",
            "ANY /api/{proxy+}=read; ANY /api/admin/{proxy+}=admin; GET /api/admin/{id}/public=",
        ] {
            let rules = rules(table);
            for scope in ["", "read", "admin", "read admin"] {
                let cached = policy(&rules, BASE, REQUESTS[0].0, REQUESTS[0].1, scope);
                // Empty segments aside (`api/admin/` is `ANY /api/{proxy+}`'s, and IAM's
                // `api/admin/*` cannot leave it out).
                for (method, path) in REQUESTS.into_iter().filter(|(_, path)| !path.split('/').any(str::is_empty)) {
                    let resource = format!("{BASE}/{method}/{path}");
                    let simple = decide(&rules, method, path, scope);
                    assert_eq!(cached.allows(&resource), simple, "{table} {scope:?}: {method} /{path}: {cached:?}");
                }
            }
        }
    }
}
