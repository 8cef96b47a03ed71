//! sea-orm entities of the two tables. Internal: the public API speaks in `open_clanker_core` types.

/// The `sessions` table.
pub(crate) mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub key: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub title: String,
        pub created_at: i64,
        pub updated_at: i64,
        pub message_count: i64,
        pub cost_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::messages::Entity")]
        Messages,
    }

    impl Related<super::messages::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Messages.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `messages` table.
pub(crate) mod messages {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub session_id: String,
        pub role: String,
        #[sea_orm(column_type = "Text")]
        pub content: String,
        pub provider: Option<String>,
        #[sea_orm(column_name = "model")]
        pub model_name: Option<String>,
        pub input_tokens: i64,
        pub output_tokens: i64,
        pub status: String,
        pub stop_reason: Option<String>,
        pub created_at: i64,
        pub cost_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::sessions::Entity",
            from = "Column::SessionId",
            to = "super::sessions::Column::Id",
            on_delete = "Cascade"
        )]
        Session,
    }

    impl Related<super::sessions::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Session.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `store_probe` table: one row the writer rewrites to learn whether the store can write
/// again after it could not (see `writer::probe`).
pub(crate) mod store_probe {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "store_probe")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub written_at: i64,
        #[sea_orm(column_type = "Blob")]
        pub payload: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
