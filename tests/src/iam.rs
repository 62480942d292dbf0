//! What a function asks of AWS, as IAM sees it: an SDK interceptor that records each call's
//! IAM action, its resource (table, index, KMS key) and the condition keys IAM would
//! evaluate (tags, key spec, encryption context). `tests/tests/iam.rs` runs each function's
//! paths with its own recorder and has `infra/local/iam_check.py` judge the calls against
//! the role the template gives that function.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation as ddb;
use aws_sdk_kms::operation as kms;
use aws_sdk_kms::operation::generate_data_key_pair::GenerateDataKeyPairInput;
use aws_sdk_kms::operation::generate_data_key_pair_without_plaintext::GenerateDataKeyPairWithoutPlaintextInput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

/// The resource of a call, before it is named as the template names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// A table by its physical name, and an index of it.
    Table { name: String, index: Option<String> },
    /// A KMS key by id or ARN; `None`: the key a ciphertext names (Decrypt), or a key not
    /// created yet (CreateKey).
    Key(Option<String>),
}

/// One call as IAM authorises it (a transaction is one call per item).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct IamCall {
    /// `dynamodb:GetItem`, `kms:Sign`, ...
    pub action: String,
    pub resource: Resource,
    /// Condition keys and their values (lists for multivalued keys).
    pub context: BTreeMap<String, Vec<String>>,
}

/// Records every call a client makes, as [`IamCall`]s.
#[derive(Debug, Clone, Default)]
pub struct IamRecorder(Arc<Mutex<Vec<IamCall>>>);

impl IamRecorder {
    pub fn calls(&self) -> Vec<IamCall> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn push(&self, action: &str, resource: Resource, context: BTreeMap<String, Vec<String>>) {
        let call = IamCall { action: action.to_owned(), resource, context };
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(call);
    }
}

fn table(name: &str, index: Option<&str>) -> Resource {
    Resource::Table { name: name.to_owned(), index: index.map(str::to_owned) }
}

fn key(id: Option<&str>) -> Resource {
    Resource::Key(id.map(str::to_owned))
}

fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()])).collect()
}

/// The condition keys of an encryption context: each pair as `kms:EncryptionContext:<key>`
/// and its keys as the multivalued `kms:EncryptionContextKeys` (KMS sets both; neither when
/// the request has no context).
fn encryption_context(ec: Option<&HashMap<String, String>>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> =
        ec.into_iter().flatten().map(|(k, v)| (format!("kms:EncryptionContext:{k}"), vec![v.clone()])).collect();
    let mut keys: Vec<String> = ec.into_iter().flatten().map(|(k, _)| k.clone()).collect();
    if !keys.is_empty() {
        keys.sort();
        out.insert("kms:EncryptionContextKeys".to_owned(), keys);
    }
    out
}

/// `kms:ReEncryptOnSameKey` of a ReEncrypt: whether its source and destination are one key,
/// when both are named by id or ARN (an alias, or a source left to the ciphertext, is not
/// resolved here).
fn same_key(source: Option<&str>, destination: Option<&str>) -> Option<bool> {
    let bare = |id: &str| {
        (!id.starts_with("alias/") && !id.contains(":alias/")).then(|| id.rsplit('/').next().unwrap_or(id).to_owned())
    };
    Some(bare(source?)? == bare(destination?)?)
}

/// `dynamodb:Attributes` of an item write as DynamoDB computes it: the top-level attributes
/// its key, item, update expression and condition name (`#name`s resolved; values, functions
/// and keywords left out).
fn attributes(
    key: Option<&HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    expressions: &[Option<&str>],
    names: Option<&HashMap<String, String>>,
) -> BTreeMap<String, Vec<String>> {
    const KEYWORDS: [&str; 9] = ["set", "remove", "add", "delete", "and", "or", "not", "between", "in"];
    let mut found: std::collections::BTreeSet<String> = key.into_iter().flat_map(|k| k.keys().cloned()).collect();
    for expression in expressions.iter().flatten() {
        let chars: Vec<char> = expression.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !(c.is_alphanumeric() || c == '_' || c == '#' || c == ':') {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '#' | ':')) {
                i += 1;
            }
            let token: String = chars[start..i].iter().collect();
            let nested = start > 0 && matches!(chars[start - 1], '.' | '[');
            let function = chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
            if nested || function || token.starts_with(':') || token.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            if KEYWORDS.contains(&token.to_ascii_lowercase().as_str()) {
                continue;
            }
            let name = match token.strip_prefix('#') {
                Some(_) => names.and_then(|n| n.get(&token)).cloned().unwrap_or(token),
                None => token,
            };
            found.insert(name);
        }
    }
    if found.is_empty() {
        return BTreeMap::new();
    }
    BTreeMap::from([("dynamodb:Attributes".to_owned(), found.into_iter().collect())])
}

fn tag_context(tags: &[aws_sdk_kms::types::Tag]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> =
        tags.iter().map(|t| (format!("aws:RequestTag/{}", t.tag_key()), vec![t.tag_value().to_owned()])).collect();
    out.insert("aws:TagKeys".to_owned(), tags.iter().map(|t| t.tag_key().to_owned()).collect());
    out
}

impl Intercept for IamRecorder {
    fn name(&self) -> &'static str {
        "IamRecorder"
    }

    fn read_before_serialization(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = ctx.input();
        let none = BTreeMap::new;
        if let Some(i) = input.downcast_ref::<ddb::get_item::GetItemInput>() {
            self.push("dynamodb:GetItem", table(i.table_name().unwrap_or_default(), None), none());
        } else if let Some(i) = input.downcast_ref::<ddb::put_item::PutItemInput>() {
            let written = attributes(i.item(), &[i.condition_expression()], i.expression_attribute_names());
            self.push("dynamodb:PutItem", table(i.table_name().unwrap_or_default(), None), written);
        } else if let Some(i) = input.downcast_ref::<ddb::update_item::UpdateItemInput>() {
            let written =
                attributes(i.key(), &[i.update_expression(), i.condition_expression()], i.expression_attribute_names());
            self.push("dynamodb:UpdateItem", table(i.table_name().unwrap_or_default(), None), written);
        } else if let Some(i) = input.downcast_ref::<ddb::delete_item::DeleteItemInput>() {
            let written = attributes(i.key(), &[i.condition_expression()], i.expression_attribute_names());
            self.push("dynamodb:DeleteItem", table(i.table_name().unwrap_or_default(), None), written);
        } else if let Some(i) = input.downcast_ref::<ddb::query::QueryInput>() {
            self.push("dynamodb:Query", table(i.table_name().unwrap_or_default(), i.index_name()), none());
        } else if let Some(i) = input.downcast_ref::<ddb::batch_get_item::BatchGetItemInput>() {
            for name in i.request_items().into_iter().flat_map(|items| items.keys()) {
                self.push("dynamodb:BatchGetItem", table(name, None), none());
            }
        } else if let Some(i) = input.downcast_ref::<ddb::batch_write_item::BatchWriteItemInput>() {
            for name in i.request_items().into_iter().flat_map(|items| items.keys()) {
                self.push("dynamodb:BatchWriteItem", table(name, None), none());
            }
        } else if let Some(i) = input.downcast_ref::<ddb::transact_write_items::TransactWriteItemsInput>() {
            // Each part is authorised as the action it is.
            for item in i.transact_items() {
                if let Some(p) = item.put() {
                    let written =
                        attributes(Some(p.item()), &[p.condition_expression()], p.expression_attribute_names());
                    self.push("dynamodb:PutItem", table(p.table_name(), None), written);
                }
                if let Some(u) = item.update() {
                    let written = attributes(
                        Some(u.key()),
                        &[Some(u.update_expression()), u.condition_expression()],
                        u.expression_attribute_names(),
                    );
                    self.push("dynamodb:UpdateItem", table(u.table_name(), None), written);
                }
                if let Some(d) = item.delete() {
                    let written =
                        attributes(Some(d.key()), &[d.condition_expression()], d.expression_attribute_names());
                    self.push("dynamodb:DeleteItem", table(d.table_name(), None), written);
                }
                if let Some(c) = item.condition_check() {
                    self.push("dynamodb:ConditionCheckItem", table(c.table_name(), None), none());
                }
            }
        } else if let Some(i) = input.downcast_ref::<kms::sign::SignInput>() {
            let algorithm = i.signing_algorithm().map(|a| a.as_str()).unwrap_or_default();
            let message_type = i.message_type().map(|m| m.as_str()).unwrap_or("RAW");
            let conditions = [("kms:SigningAlgorithm", algorithm), ("kms:MessageType", message_type)];
            self.push("kms:Sign", key(i.key_id()), context(&conditions));
        } else if let Some(i) = input.downcast_ref::<kms::get_public_key::GetPublicKeyInput>() {
            self.push("kms:GetPublicKey", key(i.key_id()), none());
        } else if let Some(i) = input.downcast_ref::<kms::decrypt::DecryptInput>() {
            self.push("kms:Decrypt", key(i.key_id()), encryption_context(i.encryption_context()));
        } else if let Some(i) = input.downcast_ref::<kms::generate_data_key::GenerateDataKeyInput>() {
            self.push("kms:GenerateDataKey", key(i.key_id()), encryption_context(i.encryption_context()));
        } else if let Some(i) = input.downcast_ref::<GenerateDataKeyPairWithoutPlaintextInput>() {
            let mut pair = encryption_context(i.encryption_context());
            let spec = i.key_pair_spec().map(|s| s.as_str()).unwrap_or_default();
            pair.extend(context(&[("kms:DataKeyPairSpec", spec)]));
            self.push("kms:GenerateDataKeyPairWithoutPlaintext", key(i.key_id()), pair);
        } else if let Some(i) = input.downcast_ref::<GenerateDataKeyPairInput>() {
            let mut pair = encryption_context(i.encryption_context());
            let spec = i.key_pair_spec().map(|s| s.as_str()).unwrap_or_default();
            pair.extend(context(&[("kms:DataKeyPairSpec", spec)]));
            self.push("kms:GenerateDataKeyPair", key(i.key_id()), pair);
        } else if let Some(i) = input.downcast_ref::<kms::re_encrypt::ReEncryptInput>() {
            // Authorised twice: as kms:ReEncryptFrom on the source key, with the context the
            // ciphertext is opened under, and as kms:ReEncryptTo on the destination key, with
            // the context it is sealed under; both with kms:ReEncryptOnSameKey.
            let (mut from, mut to) = (
                encryption_context(i.source_encryption_context()),
                encryption_context(i.destination_encryption_context()),
            );
            if let Some(same) = same_key(i.source_key_id(), i.destination_key_id()) {
                for side in [&mut from, &mut to] {
                    side.insert("kms:ReEncryptOnSameKey".to_owned(), vec![same.to_string()]);
                }
            }
            self.push("kms:ReEncryptFrom", key(i.source_key_id()), from);
            self.push("kms:ReEncryptTo", key(i.destination_key_id()), to);
        } else if let Some(i) = input.downcast_ref::<kms::create_key::CreateKeyInput>() {
            let mut create = tag_context(i.tags());
            let spec = i.key_spec().map(|s| s.as_str()).unwrap_or("SYMMETRIC_DEFAULT");
            let usage = i.key_usage().map(|u| u.as_str()).unwrap_or("ENCRYPT_DECRYPT");
            create.extend(context(&[("kms:KeySpec", spec), ("kms:KeyUsage", usage)]));
            self.push("kms:CreateKey", key(None), create);
            if !i.tags().is_empty() {
                // Tagging at creation is authorised as kms:TagResource on the new key too.
                self.push("kms:TagResource", key(None), tag_context(i.tags()));
            }
        } else if let Some(i) = input.downcast_ref::<kms::tag_resource::TagResourceInput>() {
            self.push("kms:TagResource", key(i.key_id()), tag_context(i.tags()));
        } else if let Some(i) = input.downcast_ref::<kms::schedule_key_deletion::ScheduleKeyDeletionInput>() {
            self.push("kms:ScheduleKeyDeletion", key(i.key_id()), none());
        } else {
            // A call this recorder does not know must not pass unseen.
            self.push("unknown:UnrecordedOperation", key(None), none());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;

    #[test]
    fn the_attributes_of_a_write_are_the_top_level_names_its_key_and_expressions_touch() {
        let key = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("someone".into())),
            ("sk".to_owned(), AttributeValue::S("profile".into())),
        ]);
        let names = HashMap::from([("#ttl".to_owned(), "expires_at".to_owned())]);
        let update = "SET failures = if_not_exists(failures, :zero) + :one, #ttl = :exp, info.nested = :v, \
                      list[0] = :x REMOVE window_start ADD version :one";
        let condition = "attribute_exists(#ttl) AND size(tags) > :n AND NOT contains(scopes, :s)";
        let got = attributes(Some(&key), &[Some(update), Some(condition)], Some(&names));
        assert_eq!(
            got["dynamodb:Attributes"],
            ["expires_at", "failures", "info", "list", "pk", "scopes", "sk", "tags", "version", "window_start"]
        );
        assert!(attributes(None, &[None], None).is_empty(), "a read names no attribute");
    }

    #[test]
    fn an_encryption_context_is_its_pairs_and_its_keys() {
        let ec = HashMap::from([
            ("tokenauth".to_owned(), "envelope-signing-key".to_owned()),
            ("kid".to_owned(), "abc".to_owned()),
        ]);
        let got = encryption_context(Some(&ec));
        assert_eq!(got["kms:EncryptionContext:tokenauth"], ["envelope-signing-key"]);
        assert_eq!(got["kms:EncryptionContext:kid"], ["abc"]);
        assert_eq!(got["kms:EncryptionContextKeys"], ["kid", "tokenauth"]);
        assert!(encryption_context(None).is_empty(), "no context, no context keys");
        assert!(encryption_context(Some(&HashMap::new())).is_empty());
    }

    #[test]
    fn a_re_encrypt_is_on_the_same_key_when_both_sides_name_it() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab";
        assert_eq!(same_key(Some("1234abcd-12ab"), Some(arn)), Some(true), "an id and its ARN");
        assert_eq!(same_key(Some(arn), Some("other")), Some(false));
        assert_eq!(same_key(None, Some(arn)), None, "the source left to the ciphertext");
        assert_eq!(same_key(Some("alias/signing"), Some(arn)), None, "an alias is not resolved");
    }
}
