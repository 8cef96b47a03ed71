//! The `openclanker.v1` services over the [`Engine`]: Protobuf in, domain types through, Protobuf out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use open_clanker_core::{
    ChatBackend, MessageStatus, ProviderKind, Role, Session, SessionRef, StoredMessage, TurnError,
    TurnEvent, TurnRequest, Usage,
};
use open_clanker_proto::v1 as pb;
use std::pin::Pin;
use tonic::{Request, Response, Status};

use crate::config::Config;
use open_clanker_engine::Engine;

/// Maps a domain error onto the gRPC status users expect.
pub fn status(e: TurnError) -> Status {
    match e {
        TurnError::InvalidArgument(m) => Status::invalid_argument(m),
        TurnError::NotFound(m) => Status::not_found(m),
        TurnError::FailedPrecondition(m) => Status::failed_precondition(m),
        TurnError::ResourceExhausted(m) => Status::resource_exhausted(m),
        TurnError::Unauthenticated(m) => Status::unauthenticated(m),
        TurnError::PermissionDenied(m) => Status::permission_denied(m),
        TurnError::Unavailable(m) => Status::unavailable(m),
        TurnError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
        TurnError::Internal(m) => Status::internal(m),
    }
}

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn usage(u: Usage) -> pb::Usage {
    pb::Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
    }
}

pub fn session(s: Session) -> pb::Session {
    pb::Session {
        id: s.id,
        key: s.key.unwrap_or_default(),
        title: s.title,
        create_time: Some(timestamp(s.created_at_ms)),
        update_time: Some(timestamp(s.updated_at_ms)),
        message_count: s.message_count,
        cost_usd: open_clanker_engine::pricing::usd(s.cost_micros),
    }
}

pub fn message(m: StoredMessage) -> pb::Message {
    let role = match m.role {
        Role::System => pb::Role::System,
        Role::User => pb::Role::User,
        Role::Assistant => pb::Role::Assistant,
    };
    let status = match m.status {
        MessageStatus::Complete => pb::MessageStatus::Complete,
        MessageStatus::Interrupted => pb::MessageStatus::Interrupted,
    };
    pb::Message {
        id: m.id,
        session_id: m.session_id,
        role: role as i32,
        content: m.content,
        provider: m.provider.unwrap_or_default(),
        model: m.model.unwrap_or_default(),
        usage: Some(usage(m.usage)),
        status: status as i32,
        stop_reason: m.stop_reason.unwrap_or_default(),
        create_time: Some(timestamp(m.created_at_ms)),
        cost_usd: open_clanker_engine::pricing::usd(m.cost_micros),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

type ChatStream = Pin<Box<dyn Stream<Item = Result<pb::ChatResponse, Status>> + Send>>;

/// `ChatService`.
pub struct ChatApi {
    pub engine: Arc<Engine>,
}

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatApi {
    type ChatStream = ChatStream;

    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let caller = request
            .extensions()
            .get::<crate::security::Caller>()
            .and_then(|c| c.key.clone());
        let req = request.into_inner();
        let session = match req.session {
            Some(pb::chat_request::Session::SessionId(id)) => SessionRef::Id(id),
            Some(pb::chat_request::Session::SessionKey(key)) => SessionRef::Key(key),
            None => SessionRef::New,
        };
        let events = self
            .engine
            .start_turn(TurnRequest {
                session,
                text: req.text,
                provider: non_empty(req.provider),
                model: non_empty(req.model),
                caller,
            })
            .await
            .map_err(status)?;
        let out = events.flat_map(|event| {
            use pb::chat_response::Event;
            let items: Vec<Result<pb::ChatResponse, Status>> = match event {
                TurnEvent::Started(s) => {
                    let s = *s;
                    vec![Ok(Event::Started(pb::TurnStarted {
                        session_id: s.session_id,
                        session_created: s.session_created,
                        user_message_id: s.user_message_id,
                        provider: s.provider,
                        model: s.model,
                    }))]
                }
                TurnEvent::Delta(text) => vec![Ok(Event::Delta(pb::TextDelta { text }))],
                TurnEvent::Usage(u) => vec![Ok(Event::Usage(usage(u)))],
                TurnEvent::Completed(m) => vec![Ok(Event::Completed(pb::TurnCompleted {
                    message: Some(message(*m)),
                }))],
                TurnEvent::Failed { error, partial } => {
                    let st = status(error);
                    vec![
                        Ok(Event::Error(pb::TurnError {
                            code: open_clanker_proto::code_name(st.code()).to_string(),
                            message: st.message().to_string(),
                            partial: partial.map(|m| message(*m)),
                        })),
                        Err(st),
                    ]
                }
            }
            .into_iter()
            .map(|r| r.map(|e| pb::ChatResponse { event: Some(e) }))
            .collect();
            futures::stream::iter(items)
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// `SessionService`.
pub struct SessionApi {
    pub engine: Arc<Engine>,
}

fn page_size(n: i32) -> Result<u32, Status> {
    u32::try_from(n).map_err(|_| Status::invalid_argument("page_size must not be negative"))
}

#[tonic::async_trait]
impl pb::session_service_server::SessionService for SessionApi {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let req = request.into_inner();
        let s = self
            .engine
            .create_session(Some(req.key.as_str()), &req.title)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateSessionResponse {
            session: Some(session(s)),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let req = request.into_inner();
        let page = self
            .engine
            .list_sessions(
                page_size(req.page_size)?,
                non_empty(req.page_token).as_deref(),
                non_empty(req.key_prefix).as_deref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.items.into_iter().map(session).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let s = self
            .engine
            .session(&request.into_inner().session_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(session(s)),
        }))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let req = request.into_inner();
        let page = self
            .engine
            .history(
                &req.session_id,
                page_size(req.page_size)?,
                non_empty(req.page_token).as_deref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetHistoryResponse {
            messages: page.items.into_iter().map(message).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn reset_session(
        &self,
        request: Request<pb::ResetSessionRequest>,
    ) -> Result<Response<pb::ResetSessionResponse>, Status> {
        let (s, deleted) = self
            .engine
            .clear_session(&request.into_inner().session_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ResetSessionResponse {
            session: Some(session(s)),
            deleted_messages: deleted,
        }))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        self.engine
            .delete_session(&request.into_inner().session_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }
}

/// `GatewayService`.
pub struct GatewayApi {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    pub started: Instant,
    /// The chat channels' states.
    pub channels: open_clanker_channels::StatusBoard,
}

#[tonic::async_trait]
impl pb::gateway_service_server::GatewayService for GatewayApi {
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let store = self.engine.store();
        let write_error = store.write_error();
        let mut store_status = match store.stats().await {
            Ok(s) => pb::StoreStatus {
                backend: s.backend.to_string(),
                healthy: true,
                session_count: s.sessions,
                message_count: s.messages,
                ..Default::default()
            },
            Err(e) => pb::StoreStatus {
                backend: store.backend().to_string(),
                healthy: false,
                error: e.to_string(),
                ..Default::default()
            },
        };
        store_status.writable = write_error.is_none();
        store_status.write_error = write_error.unwrap_or_default();
        let providers = ProviderKind::ALL
            .iter()
            .map(|&kind| {
                let s = self.config.providers.get(kind);
                pb::ProviderStatus {
                    name: kind.to_string(),
                    configured: s.key().is_some(),
                    base_url: open_clanker_core::redact::redact_url(s.url(kind)),
                    default_model: s.model.clone(),
                }
            })
            .collect();
        let uptime = self.started.elapsed();
        let today = open_clanker_store::utc_day(open_clanker_core::now_ms());
        // A store failure is already reported in `store`; usage is then simply empty.
        let usage_today: Vec<pb::ModelUsage> = store
            .usage_on(&today)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|u| pb::ModelUsage {
                provider: u.provider,
                model: u.model,
                turns: u.turns,
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                cost_usd: open_clanker_engine::pricing::usd(u.cost_micros),
            })
            .collect();
        let spend_today_usd = usage_today.iter().map(|u| u.cost_usd).sum();
        Ok(Response::new(pb::GetStatusResponse {
            spend_today_usd,
            usage_today,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime: Some(prost_types::Duration {
                seconds: uptime.as_secs() as i64,
                nanos: uptime.subsec_nanos() as i32,
            }),
            default_provider: self.config.default_provider().to_string(),
            providers,
            store: Some(store_status),
            channels: self
                .channels
                .snapshot()
                .into_iter()
                .map(|c| pb::ChannelStatus {
                    name: c.name,
                    enabled: c.enabled,
                    connected: c.connected,
                    bot_name: c.bot_name,
                    last_error: c.last_error,
                })
                .collect(),
        }))
    }
}

/// How long a health probe may take before it counts as failed.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_milliseconds() {
        let t = timestamp(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
    }

    #[test]
    fn errors_map_to_codes() {
        assert_eq!(
            status(TurnError::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            status(TurnError::FailedPrecondition("x".into())).code(),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            open_clanker_proto::code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
    }
}
