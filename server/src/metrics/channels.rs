//! Chat-channel messages, counted around the backend a channel runs its turns on.

use std::sync::Arc;

use futures::StreamExt;
use open_clanker_channels::ChannelContext;
use open_clanker_core::{ChatBackend, Session, TurnError, TurnEvent, TurnRequest, TurnStream};

use super::{Direction, channel_message};

/// A channel's context whose turns count as channel messages: each message the channel hands to
/// the assistant is one `in`, each answer it gets back one `out`. Wrap the context a channel is
/// started with (the channels crate knows nothing of the server's metrics).
pub fn metered_channel(channel: &'static str, ctx: ChannelContext) -> ChannelContext {
    ChannelContext {
        backend: Arc::new(MeteredBackend {
            channel,
            inner: ctx.backend,
        }),
        access: ctx.access,
    }
}

struct MeteredBackend {
    channel: &'static str,
    inner: Arc<dyn ChatBackend>,
}

#[async_trait::async_trait]
impl ChatBackend for MeteredBackend {
    async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
        channel_message(self.channel, Direction::In);
        let events = self.inner.start_turn(request).await?;
        let channel = self.channel;
        Ok(events
            .inspect(move |event| {
                if matches!(event, TurnEvent::Completed(_)) {
                    channel_message(channel, Direction::Out);
                }
            })
            .boxed())
    }

    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
        self.inner.session_by_key(key).await
    }

    async fn reset_session(&self, session_id: &str) -> Result<(), TurnError> {
        self.inner.reset_session(session_id).await
    }

    async fn new_session(&self, key: &str) -> Result<Session, TurnError> {
        self.inner.new_session(key).await
    }
}
