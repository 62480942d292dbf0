//! What a function asks of AWS, as IAM sees it: an SDK interceptor that records each call's
//! IAM action, its resource (table, index, KMS key) and the condition keys IAM would
//! evaluate (tags, key spec, encryption context). `tests/tests/iam.rs` runs each function's
//! paths with its own recorder and has `infra/local/iam_check.py` judge the calls against
//! the role the template gives that function.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation as ddb;
use aws_sdk_kms::operation as kms;
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

fn encryption_context(ec: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, Vec<String>> {
    ec.into_iter().flatten().map(|(k, v)| (format!("kms:EncryptionContext:{k}"), vec![v.clone()])).collect()
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
            self.push("dynamodb:PutItem", table(i.table_name().unwrap_or_default(), None), none());
        } else if let Some(i) = input.downcast_ref::<ddb::update_item::UpdateItemInput>() {
            self.push("dynamodb:UpdateItem", table(i.table_name().unwrap_or_default(), None), none());
        } else if let Some(i) = input.downcast_ref::<ddb::delete_item::DeleteItemInput>() {
            self.push("dynamodb:DeleteItem", table(i.table_name().unwrap_or_default(), None), none());
        } else if let Some(i) = input.downcast_ref::<ddb::query::QueryInput>() {
            self.push("dynamodb:Query", table(i.table_name().unwrap_or_default(), i.index_name()), none());
        } else if let Some(i) = input.downcast_ref::<ddb::batch_write_item::BatchWriteItemInput>() {
            for name in i.request_items().into_iter().flat_map(|items| items.keys()) {
                self.push("dynamodb:BatchWriteItem", table(name, None), none());
            }
        } else if let Some(i) = input.downcast_ref::<ddb::transact_write_items::TransactWriteItemsInput>() {
            // Each part is authorised as the action it is.
            for item in i.transact_items() {
                if let Some(p) = item.put() {
                    self.push("dynamodb:PutItem", table(p.table_name(), None), none());
                }
                if let Some(u) = item.update() {
                    self.push("dynamodb:UpdateItem", table(u.table_name(), None), none());
                }
                if let Some(d) = item.delete() {
                    self.push("dynamodb:DeleteItem", table(d.table_name(), None), none());
                }
                if let Some(c) = item.condition_check() {
                    self.push("dynamodb:ConditionCheckItem", table(c.table_name(), None), none());
                }
            }
        } else if let Some(i) = input.downcast_ref::<kms::sign::SignInput>() {
            self.push("kms:Sign", key(i.key_id()), none());
        } else if let Some(i) = input.downcast_ref::<kms::get_public_key::GetPublicKeyInput>() {
            self.push("kms:GetPublicKey", key(i.key_id()), none());
        } else if let Some(i) = input.downcast_ref::<kms::verify_mac::VerifyMacInput>() {
            self.push("kms:VerifyMac", key(i.key_id()), none());
        } else if let Some(i) = input.downcast_ref::<kms::generate_mac::GenerateMacInput>() {
            self.push("kms:GenerateMac", key(i.key_id()), none());
        } else if let Some(i) = input.downcast_ref::<kms::decrypt::DecryptInput>() {
            self.push("kms:Decrypt", key(i.key_id()), encryption_context(i.encryption_context()));
        } else if let Some(i) = input.downcast_ref::<kms::generate_data_key::GenerateDataKeyInput>() {
            self.push("kms:GenerateDataKey", key(i.key_id()), encryption_context(i.encryption_context()));
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
