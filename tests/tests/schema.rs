//! The local tables must be the tables `infra/template.yaml` deploys. Drift fails here.
//! (That the code uses the keys, index and TTL attribute the template declares needs no
//! stack: `template.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use sam_template::{Index, Table};
use tokenauth_tests::*;

/// A local table as DynamoDB Local describes it, in the template reader's terms.
async fn local_table(clients: &Clients, name: &str) -> Table {
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
    Table {
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
                (i.index_name().unwrap().to_owned(), Index { key_schema: ks(i.key_schema()), projection })
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

async fn drift(clients: &Clients, expected: &BTreeMap<String, Table>) -> Vec<String> {
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
    let expected = template_tables();
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
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
    let found = drift(&clients, &expected).await;
    assert!(found.is_empty(), "local stack drifted from infra/template.yaml:\n{}", found.join("\n"));
}

#[tokio::test]
async fn drift_detection_notices_a_changed_template() {
    let clients = clients().await;
    let pristine = template_tables();
    type Mutation = Box<dyn Fn(&mut Table)>;
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
