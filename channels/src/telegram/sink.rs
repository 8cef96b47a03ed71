//! [`ReplySink`] over the Bot API: HTML rendered from Markdown, plain text when Telegram refuses the
//! entities, 429 `retry_after` and network errors mapped for the relay.

use std::sync::atomic::{AtomicBool, Ordering};

use open_clanker_core::SecretString;
use teloxide::payloads::{EditMessageTextSetters, SendChatActionSetters, SendMessageSetters};
use teloxide::prelude::Requester;
use teloxide::types::{
    ChatAction, ChatId, LinkPreviewOptions, MessageId, ParseMode, ReplyParameters, ThreadId,
};
use teloxide::{ApiError, Bot, RequestError};

use crate::markdown::to_telegram_html;
use crate::sink::{ReplySink, SendError, redact_token};
use crate::split::TELEGRAM_LIMIT;

/// Replies into one Telegram chat.
pub struct TelegramSink {
    pub(crate) bot: Bot,
    pub(crate) chat: ChatId,
    /// In groups the answer replies to the message that asked (and so lands in its topic).
    pub(crate) reply_to: Option<MessageId>,
    pub(crate) thread: Option<ThreadId>,
    /// The bot token, to keep it out of error messages (reqwest errors include the URL).
    pub(crate) token: SecretString,
    /// Set once Telegram refused this answer's formatting: the rest of it goes as plain text
    /// (no second failed call per edit).
    pub(crate) plain: AtomicBool,
    /// Let Telegram preview the links (it fetches them); otherwise every message is sent and
    /// edited with `link_preview_options.is_disabled`.
    pub(crate) link_previews: bool,
}

/// The relay's view of a Bot API error.
pub(crate) fn send_error(e: &RequestError, token: &SecretString) -> SendError {
    let text = redact_token(&e.to_string(), token);
    match e {
        RequestError::RetryAfter(wait) => SendError::RetryAfter(wait.duration()),
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => {
            SendError::Transient(text)
        }
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => SendError::Fatal(text),
    }
}

/// Telegram refused the formatting (or its rendered length): send the text as it is instead.
fn formatting_refused(e: &RequestError) -> bool {
    matches!(
        e,
        RequestError::Api(
            ApiError::CantParseEntities(_)
                | ApiError::MessageIsTooLong
                | ApiError::EditedMessageIsTooLong
        )
    )
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

impl TelegramSink {
    /// Remembers that Telegram refused the formatting.
    fn refused(&self, e: &RequestError) {
        tracing::debug!(error = %redact_token(&e.to_string(), &self.token), "Telegram refused the HTML; plain text from now on");
        self.plain.store(true, Ordering::Relaxed);
    }

    async fn send_as(&self, text: &str, html: bool) -> Result<MessageId, RequestError> {
        let mut request = self.bot.send_message(self.chat, text);
        if !self.link_previews {
            request = request.link_preview_options(no_preview());
        }
        if html {
            request = request.parse_mode(ParseMode::Html);
        }
        if let Some(id) = self.reply_to {
            request =
                request.reply_parameters(ReplyParameters::new(id).allow_sending_without_reply());
        }
        if let Some(thread) = self.thread {
            request = request.message_thread_id(thread);
        }
        Ok(request.await?.id)
    }

    async fn edit_as(&self, id: MessageId, text: &str, html: bool) -> Result<(), RequestError> {
        let mut request = self.bot.edit_message_text(self.chat, id, text);
        if !self.link_previews {
            request = request.link_preview_options(no_preview());
        }
        if html {
            request = request.parse_mode(ParseMode::Html);
        }
        match request.await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl ReplySink for TelegramSink {
    type Handle = MessageId;

    fn max_len(&self) -> usize {
        TELEGRAM_LIMIT
    }

    async fn typing(&self) -> Result<(), SendError> {
        let mut request = self.bot.send_chat_action(self.chat, ChatAction::Typing);
        if let Some(thread) = self.thread {
            request = request.message_thread_id(thread);
        }
        request
            .await
            .map(|_| ())
            .map_err(|e| send_error(&e, &self.token))
    }

    async fn send(&self, markdown: &str) -> Result<MessageId, SendError> {
        if !self.plain.load(Ordering::Relaxed) {
            match self.send_as(&to_telegram_html(markdown), true).await {
                Ok(id) => return Ok(id),
                Err(e) if formatting_refused(&e) => self.refused(&e),
                Err(e) => return Err(send_error(&e, &self.token)),
            }
        }
        self.send_as(markdown, false)
            .await
            .map_err(|e| send_error(&e, &self.token))
    }

    async fn edit(&self, handle: &MessageId, markdown: &str) -> Result<(), SendError> {
        if !self.plain.load(Ordering::Relaxed) {
            match self
                .edit_as(*handle, &to_telegram_html(markdown), true)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if formatting_refused(&e) => self.refused(&e),
                Err(e) => return Err(send_error(&e, &self.token)),
            }
        }
        self.edit_as(*handle, markdown, false)
            .await
            .map_err(|e| send_error(&e, &self.token))
    }
}
