//! Spend: the cost of each message, a running total per session, and a per-day ledger by provider
//! and model that survives session resets and deletes.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, Set};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

/// The UTC day of a Unix time in milliseconds, as `YYYY-MM-DD`.
pub fn utc_day(ms: i64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

pub(crate) mod usage_daily {
    use sea_orm::entity::prelude::*;

    /// One row per (UTC day, provider, model).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_daily")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider: String,
        #[sea_orm(primary_key, auto_increment = false)]
        #[sea_orm(column_name = "model")]
        pub model_name: String,
        pub turns: i64,
        pub input_tokens: i64,
        pub output_tokens: i64,
        pub cost_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Adds one answer to the day's ledger (inside the caller's transaction).
pub(crate) async fn record(
    db: &impl ConnectionTrait,
    day: String,
    provider: &str,
    model: &str,
    input_tokens: i64,
    output_tokens: i64,
    cost_micros: i64,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::ExprTrait as _;
    use usage_daily::Column as C;
    let row = usage_daily::ActiveModel {
        day: Set(day),
        provider: Set(provider.to_string()),
        model_name: Set(model.to_string()),
        turns: Set(1),
        input_tokens: Set(input_tokens),
        output_tokens: Set(output_tokens),
        cost_micros: Set(cost_micros),
    };
    let add = |c: C, v: i64| (c, Expr::col((usage_daily::Entity, c)).add(v));
    usage_daily::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([C::Day, C::Provider, C::ModelName])
                .values([
                    add(C::Turns, 1),
                    add(C::InputTokens, input_tokens),
                    add(C::OutputTokens, output_tokens),
                    add(C::CostMicros, cost_micros),
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Spend and tokens of one UTC day for one provider and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Answers stored.
    pub turns: u64,
    /// Input tokens reported.
    pub input_tokens: u64,
    /// Output tokens reported.
    pub output_tokens: u64,
    /// Millionths of a US dollar.
    pub cost_micros: i64,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    CostMicros,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    CostMicros,
}

#[derive(DeriveIden)]
enum UsageDaily {
    Table,
    Day,
    Provider,
    Model,
    Turns,
    InputTokens,
    OutputTokens,
    CostMicros,
}

/// Adds `cost_micros` to sessions and messages, and the `usage_daily` ledger.
pub(crate) struct AddSpend;

impl MigrationName for AddSpend {
    fn name(&self) -> &str {
        "m20250101_000003_add_spend"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddSpend {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(big_integer(Sessions::CostMicros).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(big_integer(Messages::CostMicros).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageDaily::Table)
                    .if_not_exists()
                    .col(string(UsageDaily::Day))
                    .col(string(UsageDaily::Provider))
                    .col(string(UsageDaily::Model))
                    .col(big_integer(UsageDaily::Turns).default(0))
                    .col(big_integer(UsageDaily::InputTokens).default(0))
                    .col(big_integer(UsageDaily::OutputTokens).default(0))
                    .col(big_integer(UsageDaily::CostMicros).default(0))
                    .primary_key(
                        Index::create()
                            .col(UsageDaily::Day)
                            .col(UsageDaily::Provider)
                            .col(UsageDaily::Model),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageDaily::Table).to_owned())
            .await?;
        for (table, col) in [
            (
                Messages::Table.into_iden(),
                Messages::CostMicros.into_iden(),
            ),
            (
                Sessions::Table.into_iden(),
                Sessions::CostMicros.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::utc_day;

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_400_000 - 1), "1970-01-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_795_651_200_000 - 1), "2026-11-25");
        assert_eq!(utc_day(-1), "1969-12-31");
    }
}
