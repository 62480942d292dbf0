//! The local tables must be the tables `infra/template.yaml` deploys, and the code must
//! use the keys, index and TTL attribute the template declares. Drift fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_yaml::Value;
use tokenauth::store::schema;
use tokenauth_tests::*;

/// The parts of a table definition that code and data depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableSpec {
    /// (attribute, HASH|RANGE), in order.
    key_schema: Vec<(String, String)>,
    /// attribute -> S|N|B
    attributes: BTreeMap<String, String>,
    /// index -> (key schema, projection type)
    indexes: BTreeMap<String, (Vec<(String, String)>, String)>,
    ttl_attribute: Option<String>,
    billing_mode: String,
}

fn template() -> Value {
    let text = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("template parses")
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v:?}")).to_owned()
}

fn key_schema_of(v: &Value) -> Vec<(String, String)> {
    v.as_sequence().unwrap().iter().map(|k| (str_of(&k["AttributeName"]), str_of(&k["KeyType"]))).collect()
}

/// Table specs of the template, by the environment variable that names the table
/// (`Globals.Function.Environment.Variables`, `USERS_TABLE: !Ref UsersTable`).
fn template_tables(template: &Value) -> BTreeMap<String, TableSpec> {
    let variables = template["Globals"]["Function"]["Environment"]["Variables"].as_mapping().unwrap();
    let mut out = BTreeMap::new();
    for (name, value) in variables {
        let Value::Tagged(tagged) = value else { continue };
        if tagged.tag != "!Ref" {
            continue;
        }
        let logical = str_of(&tagged.value);
        let resource = &template["Resources"][logical.as_str()];
        if resource["Type"].as_str() != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let p = &resource["Properties"];
        let indexes = p["GlobalSecondaryIndexes"]
            .as_sequence()
            .map(|seq| {
                seq.iter()
                    .map(|i| {
                        (
                            str_of(&i["IndexName"]),
                            (key_schema_of(&i["KeySchema"]), str_of(&i["Projection"]["ProjectionType"])),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ttl = &p["TimeToLiveSpecification"];
        out.insert(
            str_of(name),
            TableSpec {
                key_schema: key_schema_of(&p["KeySchema"]),
                attributes: p["AttributeDefinitions"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|a| (str_of(&a["AttributeName"]), str_of(&a["AttributeType"])))
                    .collect(),
                indexes,
                ttl_attribute: (ttl["Enabled"].as_bool() == Some(true)).then(|| str_of(&ttl["AttributeName"])),
                billing_mode: str_of(&p["BillingMode"]),
            },
        );
    }
    out
}

async fn local_table(clients: &Clients, name: &str) -> TableSpec {
    let table = clients.dynamodb.describe_table().table_name(name).send().await.unwrap().table.unwrap();
    let ks = |k: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        k.iter().map(|e| (e.attribute_name().to_owned(), e.key_type().as_str().to_owned())).collect::<Vec<_>>()
    };
    let ttl = clients.dynamodb.describe_time_to_live().table_name(name).send().await.unwrap();
    let ttl = ttl.time_to_live_description().filter(|d| {
        matches!(
            d.time_to_live_status(),
            Some(
                aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled
                    | aws_sdk_dynamodb::types::TimeToLiveStatus::Enabling
            )
        )
    });
    TableSpec {
        key_schema: ks(table.key_schema()),
        attributes: table
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
            .collect(),
        indexes: table
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                let projection =
                    i.projection().and_then(|p| p.projection_type()).map(|t| t.as_str().to_owned()).unwrap_or_default();
                (i.index_name().unwrap().to_owned(), (ks(i.key_schema()), projection))
            })
            .collect(),
        ttl_attribute: ttl.and_then(|d| d.attribute_name()).map(str::to_owned),
        billing_mode: table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str().to_owned())
            .unwrap_or_else(|| "PAY_PER_REQUEST".to_owned()),
    }
}

async fn drift(clients: &Clients, expected: &BTreeMap<String, TableSpec>) -> Vec<String> {
    let mut found = Vec::new();
    for (variable, spec) in expected {
        let name = std::env::var(variable).unwrap_or_else(|_| panic!("{variable} not set by the stack"));
        let local = local_table(clients, &name).await;
        if &local != spec {
            found.push(format!("{variable} ({name}): template {spec:?} != local {local:?}"));
        }
    }
    found
}

#[tokio::test]
async fn local_tables_match_the_template() {
    let clients = clients().await;
    let expected = template_tables(&template());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        ["FAMILIES_TABLE", "KEYS_TABLE", "REVOCATIONS_TABLE", "USERS_TABLE"]
    );
    let found = drift(&clients, &expected).await;
    assert!(found.is_empty(), "local stack drifted from infra/template.yaml:\n{}", found.join("\n"));
}

#[tokio::test]
async fn drift_detection_notices_a_changed_template() {
    let clients = clients().await;
    let pristine = template_tables(&template());
    type Mutation = Box<dyn Fn(&mut TableSpec)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("renamed partition key", Box::new(|t| t.key_schema[0].0 = "id".into())),
        ("dropped index", Box::new(|t| t.indexes.clear())),
        ("other TTL attribute", Box::new(|t| t.ttl_attribute = Some("ttl".into()))),
        (
            "attribute type",
            Box::new(|t| {
                t.attributes.insert("created_at".into(), "S".into());
            }),
        ),
    ];
    for (what, mutate) in mutations {
        let mut changed = pristine.clone();
        mutate(changed.get_mut("FAMILIES_TABLE").unwrap());
        assert_eq!(drift(&clients, &changed).await.len(), 1, "{what} went unnoticed");
    }
}

#[test]
fn code_uses_the_keys_index_and_ttl_the_template_declares() {
    let tables = template_tables(&template());
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        tables["USERS_TABLE"].key_schema,
        [pair(schema::USERS_PARTITION_KEY, "HASH"), pair(schema::USERS_SORT_KEY, "RANGE")]
    );
    assert_eq!(tables["FAMILIES_TABLE"].key_schema, [pair(schema::FAMILIES_PARTITION_KEY, "HASH")]);
    assert_eq!(
        tables["FAMILIES_TABLE"].indexes[schema::FAMILIES_BY_USER_INDEX].0,
        [pair(schema::FAMILIES_BY_USER_PARTITION_KEY, "HASH"), pair(schema::FAMILIES_BY_USER_SORT_KEY, "RANGE")]
    );
    assert_eq!(
        tables["REVOCATIONS_TABLE"].key_schema,
        [pair(schema::REVOCATIONS_PARTITION_KEY, "HASH"), pair(schema::REVOCATIONS_SORT_KEY, "RANGE")]
    );
    assert_eq!(tables["KEYS_TABLE"].key_schema, [pair(schema::KEYS_PARTITION_KEY, "HASH")]);
    // The key set never expires: a TTL on it would delete every key at once.
    assert_eq!(tables["KEYS_TABLE"].ttl_attribute, None);
    for (name, table) in &tables {
        if name != "KEYS_TABLE" {
            assert_eq!(table.ttl_attribute.as_deref(), Some(schema::TTL_ATTRIBUTE), "{name}");
        }
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST", "{name}");
    }
}
