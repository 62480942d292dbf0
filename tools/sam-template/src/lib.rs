//! `infra/template.yaml` as SAM and CloudFormation read it: the one reader of the template
//! on the Rust side (the local gateway, the tests); `infra/local/stack.py`'s
//! `load_template` is the one on the Python side. Parameters take their defaults unless
//! overridden (as `sam deploy --parameter-overrides`); `!Ref` and `!GetAtt` of a resource
//! resolve to its logical id. What a reader here cannot read faithfully is refused by name.

mod http_api;
mod tables;

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::{Mapping, Value};

pub use http_api::{HttpApi, LambdaAuthorizer, Route};
pub use tables::{Index, Table};

/// Why the template could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: this reader does not support it")]
    Unsupported(String),
}

impl TemplateError {
    /// The same error, saying where in the template it is.
    fn within(self, place: &str) -> Self {
        match self {
            Self::Invalid(what) => Self::Invalid(format!("{place}: {what}")),
            Self::Unsupported(what) => Self::Unsupported(format!("{place}: {what}")),
            other => other,
        }
    }
}

fn invalid(what: impl Into<String>) -> TemplateError {
    TemplateError::Invalid(what.into())
}

/// A template, with the parameter values it is read with.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
    overrides: BTreeMap<String, String>,
}

impl Template {
    /// Reads the template at `path`. `overrides` sets parameters (and pseudo parameters
    /// such as `AWS::StackName`) by name; the others take their defaults.
    pub fn load(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TemplateError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, overrides)
    }

    /// As [`Template::load`], from the template's text.
    pub fn parse(text: &str, overrides: &BTreeMap<String, String>) -> Result<Self, TemplateError> {
        let root: Value = serde_norway::from_str(text)?;
        if root.get("Resources").and_then(Value::as_mapping).is_none() {
            return Err(invalid("no Resources"));
        }
        Ok(Self { root, overrides: overrides.clone() })
    }

    /// The resource `id`.
    fn resource(&self, id: &str) -> Option<&Value> {
        self.root.get("Resources").and_then(|r| r.get(id))
    }

    /// The resources of type `kind` (`AWS::DynamoDB::Table`...), by logical id, in the
    /// template's order.
    fn resources_of_type<'t>(&'t self, kind: &'t str) -> impl Iterator<Item = (&'t str, &'t Value)> + 't {
        let resources: Option<&'t Mapping> = self.root.get("Resources").and_then(Value::as_mapping);
        resources
            .into_iter()
            .flatten()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
            .filter_map(|(id, r)| Some((id.as_str()?, r)))
    }

    /// The logical ids of the `AWS::Serverless::Function` resources, in the template's order.
    pub fn functions(&self) -> Vec<String> {
        self.resources_of_type("AWS::Serverless::Function").map(|(id, _)| id.to_owned()).collect()
    }

    /// The environment the function `function_id` gets: `Globals.Function.Environment`
    /// and its own `Environment` over it, every value resolved.
    pub fn environment(&self, function_id: &str) -> Result<BTreeMap<String, String>, TemplateError> {
        let function = self
            .resources_of_type("AWS::Serverless::Function")
            .find(|(id, _)| *id == function_id)
            .map(|(_, r)| r)
            .ok_or_else(|| invalid(format!("{function_id}: no such function")))?;
        let globals = self.root.get("Globals").and_then(|g| g.get("Function"));
        let own = function.get("Properties");
        let mut environment = BTreeMap::new();
        for scope in [globals, own] {
            let variables = scope.and_then(|s| s.get("Environment")).and_then(|e| e.get("Variables"));
            for (name, value) in variables.and_then(Value::as_mapping).into_iter().flatten() {
                let name = name.as_str().ok_or_else(|| invalid("a variable name is not a string"))?;
                let value = self.string(value).map_err(|e| e.within(&format!("{function_id}: variable {name}")))?;
                environment.insert(name.to_owned(), value);
            }
        }
        Ok(environment)
    }

    /// A scalar, with `!Ref Parameter` resolved to the parameter's value and `!Ref Resource`
    /// or `!GetAtt Resource.Attribute` to the resource's logical id.
    fn string(&self, value: &Value) -> Result<String, TemplateError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(tagged) => match (tagged.tag.to_string().as_str(), &tagged.value) {
                ("!Ref", Value::String(name)) => self.reference(name),
                ("!GetAtt", Value::String(path)) => Ok(path.split('.').next().unwrap_or_default().to_owned()),
                ("!Sub", Value::String(text)) => self.substitute(text),
                (tag, _) => Err(TemplateError::Unsupported(format!("{tag} {:?}", tagged.value))),
            },
            Value::Mapping(m) if m.len() == 1 => {
                let (key, inner) = m.iter().next().ok_or_else(|| invalid("empty mapping"))?;
                match (key.as_str(), inner) {
                    (Some("Ref"), Value::String(name)) => self.reference(name),
                    (Some("Fn::Sub"), Value::String(text)) => self.substitute(text),
                    (Some("Fn::GetAtt"), Value::Sequence(parts)) => {
                        parts.first().and_then(Value::as_str).map(str::to_owned).ok_or_else(|| invalid("Fn::GetAtt"))
                    }
                    _ => Err(TemplateError::Unsupported(format!("{key:?}"))),
                }
            }
            other => Err(invalid(format!("expected a scalar, found {other:?}"))),
        }
    }

    /// `!Sub` text with each `${Name}` resolved as `!Ref Name`, each `${Resource.Attribute}`
    /// as `!GetAtt` (the logical id), and the pseudo parameters no override names as an
    /// example deployment's (`aws`, `us-east-1`, `123456789012`, `amazonaws.com`).
    fn substitute(&self, text: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some((before, after)) = rest.split_once("${") {
            let (name, after) = after.split_once('}').ok_or_else(|| invalid(format!("!Sub {text}")))?;
            out.push_str(before);
            let value = match (self.overrides.get(name), name) {
                (Some(value), _) => value.clone(),
                (None, "AWS::Partition") => "aws".to_owned(),
                (None, "AWS::Region") => "us-east-1".to_owned(),
                (None, "AWS::AccountId") => "123456789012".to_owned(),
                (None, "AWS::URLSuffix") => "amazonaws.com".to_owned(),
                (None, name) if name.contains('.') => name.split('.').next().unwrap_or_default().to_owned(),
                (None, name) => self.reference(name)?,
            };
            out.push_str(&value);
            rest = after;
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The name a `Ref` names, in either spelling (`!Ref X`, `{Ref: X}`); `None` for any
    /// other value.
    fn ref_target(value: &Value) -> Option<&str> {
        match value {
            Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
            Value::Mapping(m) if m.len() == 1 => m.get("Ref").and_then(Value::as_str),
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> Result<String, TemplateError> {
        if let Some(value) = self.overrides.get(name) {
            return Ok(value.clone());
        }
        if let Some(parameter) = self.root.get("Parameters").and_then(|p| p.get(name)) {
            let default =
                parameter.get("Default").ok_or_else(|| invalid(format!("parameter {name} has no default")))?;
            return self.string(default);
        }
        if self.resource(name).is_some() {
            return Ok(name.to_owned());
        }
        Err(invalid(format!("!Ref {name}: no such parameter or resource")))
    }

    /// The binary that `sam build` builds for a function resource.
    fn binary(&self, function_id: &str) -> Result<String, TemplateError> {
        self.resource(function_id)
            .and_then(|r| r.get("Metadata"))
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .map(|b| self.string(b))
            .transpose()?
            .ok_or_else(|| invalid(format!("{function_id}: no Metadata.BuildProperties.Binary")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Issuer: { Type: String }
  Poll: { Type: Number, Default: 5 }
Globals:
  Function:
    Environment:
      Variables:
        TOKEN_ISSUER: !Ref Issuer
        POLL_SECS: !Ref Poll
        STACK: !Ref AWS::StackName
Resources:
  Key: { Type: AWS::KMS::Key }
  Login:
    Type: AWS::Serverless::Function
    Properties:
      Environment: { Variables: { POLL_SECS: 7, KEY_ID: !GetAtt Key.Arn, POLICY: !Sub '{"a":"arn:${AWS::Partition}:${Key.Arn}:${Poll}:${AWS::StackName}"}' } }
  Whoami: { Type: AWS::Serverless::Function }
"#;

    #[test]
    fn a_functions_environment_is_the_globals_with_its_own_over_them() {
        let overrides = BTreeMap::from([
            ("Issuer".to_owned(), "https://auth.example.com".to_owned()),
            ("AWS::StackName".to_owned(), "tokenauth".to_owned()),
        ]);
        let template = Template::parse(TEMPLATE, &overrides).unwrap();
        assert_eq!(template.functions(), ["Login", "Whoami"]);
        let login = template.environment("Login").unwrap();
        let pairs: Vec<(&str, &str)> = login.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("KEY_ID", "Key"),
                ("POLICY", r#"{"a":"arn:aws:Key:5:tokenauth"}"#),
                ("POLL_SECS", "7"),
                ("STACK", "tokenauth"),
                ("TOKEN_ISSUER", "https://auth.example.com")
            ]
        );
        assert_eq!(template.environment("Whoami").unwrap()["POLL_SECS"], "5");
    }

    #[test]
    fn a_parameter_without_a_default_or_a_value_is_an_error_that_names_it() {
        let template = Template::parse(TEMPLATE, &BTreeMap::new()).unwrap();
        let error = template.environment("Login").unwrap_err().to_string();
        assert!(error.contains("TOKEN_ISSUER") && error.contains("Issuer"), "{error}");
        assert!(template.environment("Nothing").is_err());
    }

    #[test]
    fn the_repositorys_template_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        let overrides = BTreeMap::from([
            ("TokenIssuer".to_owned(), "https://auth.example.com".to_owned()),
            ("AWS::StackName".to_owned(), "tokenauth".to_owned()),
        ]);
        let template = Template::load(&path, &overrides).unwrap();
        let tables: Vec<String> = template.tables().unwrap().into_keys().collect();
        assert_eq!(
            tables,
            [
                "CLIENTS_TABLE",
                "FAMILIES_TABLE",
                "KEYS_TABLE",
                "LIMITS_TABLE",
                "PROOFS_TABLE",
                "REVOCATIONS_TABLE",
                "USERS_TABLE"
            ]
        );
        let api = template.http_api().unwrap();
        assert!(api.routes.iter().any(|r| r.key() == "GET /api/whoami" && r.authorizer.is_some()));
        for function in template.functions() {
            assert!(template.environment(&function).is_ok(), "{function}");
        }
    }
}
