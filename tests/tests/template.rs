//! The template and the code agree, read from the files alone (the unit tier: no stack).
//! The local stack's tables against the template are `schema.rs`'s, the calls against the
//! roles `iam.rs`'s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokenauth::store::schema;
use tokenauth::Config;
use tokenauth_tests::{template_tables, template_with};

/// The stack name the template is read under (as `iam.rs` deploys it).
const STACK: &str = "tokenauth";

#[test]
fn code_uses_the_keys_index_and_ttl_the_template_declares() {
    let tables = template_tables();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        tables["USERS_TABLE"].key_schema,
        [pair(schema::USERS_PARTITION_KEY, "HASH"), pair(schema::USERS_SORT_KEY, "RANGE")]
    );
    assert_eq!(tables["FAMILIES_TABLE"].key_schema, [pair(schema::FAMILIES_PARTITION_KEY, "HASH")]);
    assert_eq!(
        tables["FAMILIES_TABLE"].indexes[schema::FAMILIES_BY_USER_INDEX].key_schema,
        [pair(schema::FAMILIES_BY_USER_PARTITION_KEY, "HASH"), pair(schema::FAMILIES_BY_USER_SORT_KEY, "RANGE")]
    );
    assert_eq!(
        tables["REVOCATIONS_TABLE"].key_schema,
        [pair(schema::REVOCATIONS_PARTITION_KEY, "HASH"), pair(schema::REVOCATIONS_SORT_KEY, "RANGE")]
    );
    assert_eq!(tables["KEYS_TABLE"].key_schema, [pair(schema::KEYS_PARTITION_KEY, "HASH")]);
    assert_eq!(tables["LIMITS_TABLE"].key_schema, [pair(schema::LIMITS_PARTITION_KEY, "HASH")]);
    assert_eq!(tables["CLIENTS_TABLE"].key_schema, [pair(schema::CLIENTS_PARTITION_KEY, "HASH")]);
    // The key set never expires: a TTL on it would delete every key at once. Nor does a
    // registered client: it ends by a disable, which keeps its item.
    assert_eq!(tables["KEYS_TABLE"].ttl_attribute, None);
    assert_eq!(tables["CLIENTS_TABLE"].ttl_attribute, None);
    for (name, table) in &tables {
        if name != "KEYS_TABLE" && name != "CLIENTS_TABLE" {
            assert_eq!(table.ttl_attribute.as_deref(), Some(schema::TTL_ATTRIBUTE), "{name}");
        }
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST", "{name}");
    }
}

#[test]
fn every_variable_a_function_reads_is_set_or_defaulted_and_the_template_sets_none_it_ignores() {
    // As the function would see the template's values: parameters at their defaults (the
    // issuer, which has none, an example), resources by logical id.
    let template = template_with(&[("TokenIssuer", "https://auth.example.com"), ("AWS::StackName", STACK)]);
    let functions = template.functions();
    assert_eq!(functions.len(), 9, "{functions:?}");
    for function in functions {
        let set = template.environment(&function).unwrap();
        if function == "WhoamiFunction" {
            // SAM's Globals reach every function and cannot be opted out of; whoami, the demo
            // backend, reads none of them (only Lambda's own logging variables).
            continue;
        }
        // What the function reads: its configuration asks for each variable by name.
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        let config = Config::from_lookup(|name| {
            asked.lock().unwrap().insert(name.to_owned());
            set.get(name).cloned()
        });
        assert!(config.is_ok(), "{function}: the template's variables do not make a configuration: {config:?}");
        let asked = asked.into_inner().unwrap();
        let ignored: Vec<&String> = set.keys().filter(|k| !asked.contains(*k)).collect();
        assert!(ignored.is_empty(), "{function}: the template sets variables it never reads: {ignored:?}");
    }
}
