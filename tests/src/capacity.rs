//! What a request consumes in DynamoDB, measured: an SDK interceptor asks every call for
//! its consumed capacity (`ReturnConsumedCapacity=TOTAL`, which DynamoDB Local answers with
//! DynamoDB's own accounting, transactions included) and adds it up. The cost model
//! (`infra/local/cost.py`) takes its read and write units from here, not from a table typed
//! by hand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation as ddb;
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Read and write capacity units consumed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

/// Capacity consumed: in all, and by table (the table's name as DynamoDB reports it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consumed {
    pub total: Units,
    pub by_table: BTreeMap<String, Units>,
}

/// Sums the capacity every DynamoDB call of a client consumed.
#[derive(Debug, Clone, Default)]
pub struct CapacityMeter(Arc<Mutex<Consumed>>);

impl CapacityMeter {
    /// The units since the last take, and a fresh count.
    pub fn take(&self) -> Units {
        self.take_by_table().total
    }

    /// The units since the last take, in all and by table, and a fresh count. A table's
    /// share tells which table's throughput a request spends (the limits of `make cost`).
    pub fn take_by_table(&self) -> Consumed {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// DynamoDB Local reports a total per call, not the read/write split: a read call's
    /// total is read units, a write call's (a transaction's condition checks included, which
    /// DynamoDB bills as transactional reads) write units, the dearer of the two.
    fn add<'a>(&self, is_read: bool, consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) {
        let mut consumed_so_far = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in consumed {
            let split = (c.read_capacity_units().unwrap_or(0.0), c.write_capacity_units().unwrap_or(0.0));
            let units = match (split, c.capacity_units().unwrap_or(0.0)) {
                ((0.0, 0.0), total) if is_read => Units { read: total, write: 0.0 },
                ((0.0, 0.0), total) => Units { read: 0.0, write: total },
                ((read, write), _) => Units { read, write },
            };
            let table = consumed_so_far.by_table.entry(c.table_name().unwrap_or("?").to_owned()).or_default();
            table.read += units.read;
            table.write += units.write;
            consumed_so_far.total.read += units.read;
            consumed_so_far.total.write += units.write;
        }
    }
}

macro_rules! ask_for_capacity {
    ($input:expr, $($ty:ty),+) => {
        $(
            if let Some(i) = $input.downcast_mut::<$ty>() {
                i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            }
        )+
    };
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_serialization(
        &self,
        ctx: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = ctx.input_mut();
        ask_for_capacity!(
            input,
            ddb::get_item::GetItemInput,
            ddb::put_item::PutItemInput,
            ddb::update_item::UpdateItemInput,
            ddb::delete_item::DeleteItemInput,
            ddb::query::QueryInput,
            ddb::batch_write_item::BatchWriteItemInput,
            ddb::transact_write_items::TransactWriteItemsInput
        );
        Ok(())
    }

    fn read_after_execution(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = ctx.output_or_error() else { return Ok(()) };
        if let Some(o) = output.downcast_ref::<ddb::get_item::GetItemOutput>() {
            self.add(true, o.consumed_capacity());
        } else if let Some(o) = output.downcast_ref::<ddb::put_item::PutItemOutput>() {
            self.add(false, o.consumed_capacity());
        } else if let Some(o) = output.downcast_ref::<ddb::update_item::UpdateItemOutput>() {
            self.add(false, o.consumed_capacity());
        } else if let Some(o) = output.downcast_ref::<ddb::delete_item::DeleteItemOutput>() {
            self.add(false, o.consumed_capacity());
        } else if let Some(o) = output.downcast_ref::<ddb::query::QueryOutput>() {
            self.add(true, o.consumed_capacity());
        } else if let Some(o) = output.downcast_ref::<ddb::batch_write_item::BatchWriteItemOutput>() {
            self.add(false, o.consumed_capacity());
        } else if let Some(o) = output.downcast_ref::<ddb::transact_write_items::TransactWriteItemsOutput>() {
            self.add(false, o.consumed_capacity());
        }
        Ok(())
    }
}
