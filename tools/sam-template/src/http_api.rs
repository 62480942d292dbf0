//! The template's HTTP API as API Gateway builds it: its routes, the function behind each,
//! and the Lambda authorizer in front of it with its identity sources and result-cache
//! TTL. The local gateway serves what this reads, so it cannot drift from what `sam
//! deploy` creates.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_norway::Value;

use crate::{invalid, Template, TemplateError};

/// One HTTP API: its routes and the authorizers they name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpApi {
    /// The template's logical id of the `AWS::Serverless::HttpApi`.
    pub name: String,
    pub routes: Vec<Route>,
    pub authorizers: BTreeMap<String, LambdaAuthorizer>,
}

/// A route: `method` is an HTTP method or `ANY`; `path` a path with `{name}` and
/// `{name+}` variables, or `$default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub method: String,
    pub path: String,
    /// The Lambda binary behind the route (`Metadata.BuildProperties.Binary`).
    pub function: String,
    /// The authorizer in front of it, by name; `None` for `Authorizer: NONE`.
    pub authorizer: Option<String>,
}

impl Route {
    /// The route key API Gateway puts in events: `GET /api/whoami`, or `$default`.
    pub fn key(&self) -> String {
        if self.path == "$default" {
            "$default".to_owned()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

/// A Lambda authorizer as the template configures it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LambdaAuthorizer {
    /// The Lambda binary that answers.
    pub function: String,
    /// In API Gateway's notation: `$request.header.Authorization`, `$context.httpMethod`...
    pub identity_sources: Vec<String>,
    /// `ReauthorizeEvery`: how long an answer is cached per identity (0: never).
    pub result_ttl_secs: u64,
}

impl Template {
    /// The template's single `AWS::Serverless::HttpApi`.
    pub fn http_api(&self) -> Result<HttpApi, TemplateError> {
        let apis: Vec<(&str, &Value)> = self.resources_of_type("AWS::Serverless::HttpApi").collect();
        let [(api_name, api)] = apis.as_slice() else {
            return Err(TemplateError::Unsupported(format!(
                "{} AWS::Serverless::HttpApi resources (one expected)",
                apis.len()
            )));
        };
        let auth = api.get("Properties").and_then(|p| p.get("Auth"));
        let default_authorizer = match auth.and_then(|a| a.get("DefaultAuthorizer")) {
            None => None,
            Some(name) => Some(self.string(name)?),
        };
        let mut authorizers = BTreeMap::new();
        if let Some(declared) = auth.and_then(|a| a.get("Authorizers")).and_then(Value::as_mapping) {
            for (name, spec) in declared {
                let name = name.as_str().ok_or_else(|| invalid("an authorizer name is not a string"))?;
                authorizers.insert(name.to_owned(), self.authorizer(name, spec)?);
            }
        }

        let mut routes = Vec::new();
        for (id, resource) in self.resources_of_type("AWS::Serverless::Function") {
            let events = resource.get("Properties").and_then(|p| p.get("Events")).and_then(Value::as_mapping);
            for event in events.into_iter().flat_map(|e| e.values()) {
                if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                    continue;
                }
                let props = event.get("Properties");
                let api_of_event = match props.and_then(|p| p.get("ApiId")) {
                    Some(api_id) => self.string(api_id)?,
                    None => return Err(TemplateError::Unsupported(format!("{id}: an HttpApi event without ApiId"))),
                };
                if api_of_event != *api_name {
                    continue;
                }
                let field = |name| props.and_then(|p| p.get(name)).map(|v| self.string(v)).transpose();
                let (path, method) = (field("Path")?, field("Method")?);
                let (method, path) = match (method, path) {
                    (Some(method), Some(path)) => (normalise_method(&method), path),
                    (None, None) => ("ANY".to_owned(), "$default".to_owned()),
                    _ => return Err(invalid(format!("{id}: an HttpApi event needs both Path and Method, or neither"))),
                };
                let authorizer = match props.and_then(|p| p.get("Auth")).and_then(|a| a.get("Authorizer")) {
                    Some(name) => match self.string(name)?.as_str() {
                        "NONE" => None,
                        name => Some(name.to_owned()),
                    },
                    None => default_authorizer.clone(),
                };
                if let Some(name) = &authorizer {
                    if !authorizers.contains_key(name) {
                        return Err(invalid(format!("{id}: authorizer {name} is not declared on {api_name}")));
                    }
                }
                routes.push(Route { method, path, function: self.binary(id)?, authorizer });
            }
        }
        routes.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
        if let Some(twice) = routes.windows(2).find(|w| w[0].key() == w[1].key()) {
            return Err(invalid(format!("route {} is declared twice", twice[0].key())));
        }
        Ok(HttpApi { name: (*api_name).to_owned(), routes, authorizers })
    }

    fn authorizer(&self, name: &str, spec: &Value) -> Result<LambdaAuthorizer, TemplateError> {
        let field = |key| spec.get(key).map(|v| self.string(v)).transpose();
        let function_id = field("FunctionArn")?.ok_or_else(|| {
            TemplateError::Unsupported(format!("authorizer {name} without FunctionArn (JWT authorizers)"))
        })?;
        if field("AuthorizerPayloadFormatVersion")?.as_deref() != Some("2.0") {
            return Err(TemplateError::Unsupported(format!("authorizer {name}: a payload format other than 2.0")));
        }
        if field("EnableSimpleResponses")?.as_deref() != Some("true") {
            return Err(TemplateError::Unsupported(format!("authorizer {name}: IAM policy responses")));
        }
        let identity = spec.get("Identity");
        let list = |key: &str, prefix: &str| -> Result<Vec<String>, TemplateError> {
            let items = identity.and_then(|i| i.get(key)).and_then(Value::as_sequence);
            items.into_iter().flatten().map(|v| Ok(format!("{prefix}{}", self.string(v)?))).collect()
        };
        // SAM's order: headers, query strings, stage variables, context.
        let mut identity_sources = list("Headers", "$request.header.")?;
        identity_sources.extend(list("QueryStrings", "$request.querystring.")?);
        identity_sources.extend(list("StageVariables", "$stageVariables.")?);
        identity_sources.extend(list("Context", "$context.")?);
        let ttl = identity.and_then(|i| i.get("ReauthorizeEvery")).map(|v| self.string(v)).transpose()?;
        let result_ttl_secs = match ttl {
            None => 0,
            Some(secs) => secs.parse().map_err(|_| invalid(format!("authorizer {name}: ReauthorizeEvery {secs}")))?,
        };
        Ok(LambdaAuthorizer { function: self.binary(&function_id)?, identity_sources, result_ttl_secs })
    }
}

fn normalise_method(method: &str) -> String {
    match method.to_ascii_uppercase().as_str() {
        "X-AMAZON-APIGATEWAY-ANY-METHOD" | "ANY" => "ANY".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  CacheSecs: { Type: Number, Default: 5 }
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Tokens
        Authorizers:
          Tokens:
            FunctionArn: !GetAtt AuthFn.Arn
            AuthorizerPayloadFormatVersion: "2.0"
            EnableSimpleResponses: true
            Identity:
              Headers: [Authorization]
              Context: [httpMethod, path]
              ReauthorizeEvery: !Ref CacheSecs
  AuthFn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: authorizer } }
  Open:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: open } }
    Properties:
      Events:
        Login: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /auth/login, Method: post, Auth: { Authorizer: NONE } } }
        Items: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: "/items/{id}", Method: GET } }
        Schedule: { Type: Schedule, Properties: { Schedule: rate(1 hour) } }
"#;

    fn parse(text: &str, overrides: &BTreeMap<String, String>) -> Result<HttpApi, TemplateError> {
        Template::parse(text, overrides)?.http_api()
    }

    #[test]
    fn routes_authorizers_and_parameters_are_read_as_sam_builds_them() {
        let api = parse(TEMPLATE, &BTreeMap::new()).unwrap();
        assert_eq!(api.name, "Api");
        let keys: Vec<_> = api.routes.iter().map(|r| (r.key(), r.authorizer.clone())).collect();
        assert_eq!(
            keys,
            vec![("POST /auth/login".to_owned(), None), ("GET /items/{id}".to_owned(), Some("Tokens".to_owned()))]
        );
        let tokens = &api.authorizers["Tokens"];
        assert_eq!(tokens.function, "authorizer");
        assert_eq!(tokens.identity_sources, ["$request.header.Authorization", "$context.httpMethod", "$context.path"]);
        assert_eq!(tokens.result_ttl_secs, 5);
    }

    #[test]
    fn a_parameter_override_wins_over_the_default() {
        let overrides = BTreeMap::from([("CacheSecs".to_owned(), "0".to_owned())]);
        assert_eq!(parse(TEMPLATE, &overrides).unwrap().authorizers["Tokens"].result_ttl_secs, 0);
    }

    #[test]
    fn what_the_gateway_cannot_imitate_is_refused_by_name() {
        let jwt = TEMPLATE.replace("FunctionArn: !GetAtt AuthFn.Arn", "JwtConfiguration: {}");
        assert!(matches!(parse(&jwt, &BTreeMap::new()), Err(TemplateError::Unsupported(_))));
        let iam = TEMPLATE.replace("EnableSimpleResponses: true", "EnableSimpleResponses: false");
        assert!(matches!(parse(&iam, &BTreeMap::new()), Err(TemplateError::Unsupported(_))));
        let unknown = TEMPLATE.replace("Auth: { Authorizer: NONE }", "Auth: { Authorizer: Other }");
        assert!(matches!(parse(&unknown, &BTreeMap::new()), Err(TemplateError::Invalid(_))));
    }
}
