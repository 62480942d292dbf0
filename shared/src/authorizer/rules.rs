//! Route rules: which scopes a route needs, matched against the execute-api ARN of the
//! request, and the policies built from them.

use super::answer::{PolicyDocument, Statement};

/// A route's scope requirement: `METHOD /path` (both may use `*`) needs every scope listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    method: String,
    path: String,
    scopes: Vec<String>,
}

impl RouteRule {
    /// Parses `AUTHORIZER_ROUTE_SCOPES`: rules separated by `;`, each
    /// `METHOD /path=scope scope`, e.g. `GET /api/items=read;POST /api/items/*=write`.
    /// The first matching rule applies; a route no rule matches needs no scope.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        raw.split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|rule| {
                let (route, scopes) = rule.split_once('=').ok_or_else(|| format!("rule {rule:?} lacks '='"))?;
                let (method, path) =
                    route.trim().split_once(' ').ok_or_else(|| format!("route {route:?} must be 'METHOD /path'"))?;
                if !path.starts_with('/') {
                    return Err(format!("path {path:?} must start with /"));
                }
                Ok(Self {
                    method: method.trim().to_ascii_uppercase(),
                    path: path.trim().to_owned(),
                    scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                })
            })
            .collect()
    }

    /// Whether the rule covers `method` and `path`, the path given without its leading `/`
    /// (as it follows the method in an execute-api ARN).
    pub(super) fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method)) && glob(&self.path[1..], path)
    }

    pub(super) fn granted(&self, scope: &str) -> bool {
        self.scopes.iter().all(|s| scope.split(' ').any(|t| t == s))
    }
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

/// An IAM policy for the whole API: allow everything, except an explicit deny for each
/// rule whose scopes `scope` lacks. Correct for any route if API Gateway caches it.
pub(super) fn policy(rules: &[RouteRule], base: &str, scope: &str) -> PolicyDocument {
    let mut statement = vec![Statement::invoke("Allow", vec![format!("{base}/*/*")])];
    let denied: Vec<String> =
        rules.iter().filter(|r| !r.granted(scope)).map(|r| format!("{base}/{}{}", r.method, r.path)).collect();
    if !denied.is_empty() {
        statement.push(Statement::invoke("Deny", denied));
    }
    PolicyDocument::of(statement)
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
    fn parses_route_rules_and_refuses_nonsense() {
        let rules = RouteRule::parse_list("GET /api/items=read; POST /api/items/*=write admin").expect("valid");
        assert_eq!(rules.len(), 2);
        assert!(rules[1].matches("post", "api/items/3"));
        assert!(!rules[0].matches("GET", "api/items/3"));
        assert!(rules[1].granted("admin write read"));
        assert!(!rules[1].granted("write"));
        assert!(RouteRule::parse_list("GET api=read").is_err());
        assert!(RouteRule::parse_list("/api=read").is_err());
        assert_eq!(RouteRule::parse_list("").expect("empty"), vec![]);
    }
}
