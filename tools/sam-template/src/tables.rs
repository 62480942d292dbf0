//! The template's DynamoDB tables: the one definition of their keys, indexes, TTL and
//! billing. `infra/local/stack.py` creates the local stack's tables from the same
//! resources, and the tests create their own tables from these, so neither can drift from
//! what `sam deploy` creates.

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::{invalid, Template, TemplateError};

/// The parts of a table definition that code and data depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// (attribute, `HASH`|`RANGE`), in order.
    pub key_schema: Vec<(String, String)>,
    /// Attribute → `S`|`N`|`B`.
    pub attributes: BTreeMap<String, String>,
    /// The global secondary indexes, by name.
    pub indexes: BTreeMap<String, Index>,
    /// The TTL attribute, where TTL is enabled.
    pub ttl_attribute: Option<String>,
    /// `PAY_PER_REQUEST` or `PROVISIONED`.
    pub billing_mode: String,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// (attribute, `HASH`|`RANGE`), in order.
    pub key_schema: Vec<(String, String)>,
    /// `KEYS_ONLY` or `ALL`.
    pub projection: String,
}

impl Template {
    /// Every `AWS::DynamoDB::Table`, by the variable of `Globals.Function.Environment`
    /// that names it (`USERS_TABLE: !Ref UsersTable`), as `stack.py` maps them. A table no
    /// variable names is an error: the functions could not find it.
    pub fn tables(&self) -> Result<BTreeMap<String, Table>, TemplateError> {
        let variables = self
            .root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        let named: BTreeMap<&str, &str> = variables
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| Some((Self::ref_target(value)?, name.as_str()?)))
            .collect();
        let mut tables = BTreeMap::new();
        for (id, resource) in self.resources_of_type("AWS::DynamoDB::Table") {
            let variable = named
                .get(id)
                .ok_or_else(|| invalid(format!("no variable of Globals.Function.Environment names table {id}")))?;
            let table = self.table(resource).map_err(|e| e.within(&format!("table {id}")))?;
            tables.insert((*variable).to_owned(), table);
        }
        Ok(tables)
    }

    fn table(&self, resource: &Value) -> Result<Table, TemplateError> {
        let properties = resource.get("Properties").ok_or_else(|| invalid("no Properties"))?;
        for unsupported in ["LocalSecondaryIndexes", "ProvisionedThroughput"] {
            if properties.get(unsupported).is_some() {
                return Err(TemplateError::Unsupported(unsupported.to_owned()));
            }
        }
        let required = |value: Option<&Value>, what: &str| -> Result<String, TemplateError> {
            self.string(value.ok_or_else(|| invalid(format!("no {what}")))?)
        };
        let attributes = sequence(properties, "AttributeDefinitions")?
            .iter()
            .map(|a| {
                Ok((
                    required(a.get("AttributeName"), "AttributeName")?,
                    required(a.get("AttributeType"), "AttributeType")?,
                ))
            })
            .collect::<Result<_, TemplateError>>()?;
        let mut indexes = BTreeMap::new();
        for index in properties.get("GlobalSecondaryIndexes").and_then(Value::as_sequence).into_iter().flatten() {
            let name = required(index.get("IndexName"), "IndexName")?;
            let projection = index.get("Projection");
            if projection.and_then(|p| p.get("NonKeyAttributes")).is_some() {
                return Err(TemplateError::Unsupported(format!("index {name}: NonKeyAttributes")));
            }
            let projection = required(projection.and_then(|p| p.get("ProjectionType")), "ProjectionType")?;
            indexes.insert(name, Index { key_schema: self.key_schema(index)?, projection });
        }
        let ttl_attribute = match properties.get("TimeToLiveSpecification") {
            Some(ttl) if required(ttl.get("Enabled"), "TimeToLiveSpecification.Enabled")? == "true" => {
                Some(required(ttl.get("AttributeName"), "TimeToLiveSpecification.AttributeName")?)
            }
            _ => None,
        };
        // Required here although CloudFormation defaults to PROVISIONED: the local stack
        // creates every table on demand, so a table must say so.
        let billing_mode = required(properties.get("BillingMode"), "BillingMode")?;
        Ok(Table { key_schema: self.key_schema(properties)?, attributes, indexes, ttl_attribute, billing_mode })
    }

    /// The `KeySchema` of a table or an index.
    fn key_schema(&self, of: &Value) -> Result<Vec<(String, String)>, TemplateError> {
        sequence(of, "KeySchema")?
            .iter()
            .map(|k| {
                let field = |name| self.string(k.get(name).ok_or_else(|| invalid(format!("KeySchema: no {name}")))?);
                Ok((field("AttributeName")?, field("KeyType")?))
            })
            .collect()
    }
}

fn sequence<'v>(of: &'v Value, name: &str) -> Result<&'v Vec<Value>, TemplateError> {
    of.get(name).and_then(Value::as_sequence).ok_or_else(|| invalid(format!("no {name} list")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Globals:
  Function:
    Environment:
      Variables:
        FAMILIES_TABLE: !Ref FamiliesTable
        LEVEL: INFO
Resources:
  FamiliesTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - { AttributeName: family_id, AttributeType: S }
        - { AttributeName: user_id, AttributeType: S }
        - { AttributeName: created_at, AttributeType: N }
      KeySchema: [{ AttributeName: family_id, KeyType: HASH }]
      GlobalSecondaryIndexes:
        - IndexName: by_user
          KeySchema: [{ AttributeName: user_id, KeyType: HASH }, { AttributeName: created_at, KeyType: RANGE }]
          Projection: { ProjectionType: KEYS_ONLY }
      TimeToLiveSpecification: { AttributeName: expires_at, Enabled: true }
"#;

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn a_table_is_read_by_the_variable_that_names_it_with_keys_index_and_ttl() {
        let tables = Template::parse(TEMPLATE, &BTreeMap::new()).unwrap().tables().unwrap();
        let families = &tables["FAMILIES_TABLE"];
        assert_eq!(families.key_schema, [pair("family_id", "HASH")]);
        assert_eq!(families.attributes["created_at"], "N");
        assert_eq!(families.indexes["by_user"].key_schema, [pair("user_id", "HASH"), pair("created_at", "RANGE")]);
        assert_eq!(families.indexes["by_user"].projection, "KEYS_ONLY");
        assert_eq!(families.ttl_attribute.as_deref(), Some("expires_at"));
        assert_eq!(families.billing_mode, "PAY_PER_REQUEST");
        let without_ttl = TEMPLATE.replace("Enabled: true", "Enabled: false");
        let tables = Template::parse(&without_ttl, &BTreeMap::new()).unwrap().tables().unwrap();
        assert_eq!(tables["FAMILIES_TABLE"].ttl_attribute, None);
    }

    #[test]
    fn a_table_no_variable_names_and_what_the_stack_cannot_create_are_refused() {
        let unnamed = TEMPLATE.replace("FAMILIES_TABLE: !Ref FamiliesTable", "FAMILIES_TABLE: families");
        assert!(Template::parse(&unnamed, &BTreeMap::new()).unwrap().tables().is_err());
        let provisioned = TEMPLATE.replace("BillingMode: PAY_PER_REQUEST", "ProvisionedThroughput: {}");
        assert!(Template::parse(&provisioned, &BTreeMap::new()).unwrap().tables().is_err());
    }
}
