//! The store's spend reports: a day's usage by provider and model, and the day's total, read from
//! the ledger that [`crate::usage`] keeps.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::error::StoreError;
use crate::handle::Store;
use crate::usage::{DailyUsage, usage_daily};

impl Store {
    /// Every provider and model's usage on `day` (`YYYY-MM-DD`, UTC).
    pub async fn usage_on(&self, day: &str) -> Result<Vec<DailyUsage>, StoreError> {
        let rows = usage_daily::Entity::find()
            .filter(usage_daily::Column::Day.eq(day))
            .all(self.connection())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DailyUsage {
                day: r.day,
                provider: r.provider,
                model: r.model_name,
                turns: <u64 as TryFrom<i64>>::try_from(r.turns).unwrap_or(0),
                input_tokens: <u64 as TryFrom<i64>>::try_from(r.input_tokens).unwrap_or(0),
                output_tokens: <u64 as TryFrom<i64>>::try_from(r.output_tokens).unwrap_or(0),
                cost_micros: r.cost_micros,
            })
            .collect())
    }

    /// Total spend on `day` (`YYYY-MM-DD`, UTC), in millionths of a US dollar.
    pub async fn spend_on(&self, day: &str) -> Result<i64, StoreError> {
        let total: Option<Option<i64>> = usage_daily::Entity::find()
            .select_only()
            .column_as(usage_daily::Column::CostMicros.sum(), "total")
            .filter(usage_daily::Column::Day.eq(day))
            .into_tuple()
            .one(self.connection())
            .await?;
        Ok(total.flatten().unwrap_or(0))
    }
}
