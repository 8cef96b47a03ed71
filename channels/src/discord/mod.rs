//! Discord over the gateway and the REST API (serenity).
//!
//! [`start`] spawns the channel: `GET /users/@me` (a rejected token stops the channel with one
//! clear error; network errors are retried with backoff), then serenity's gateway client with the
//! intents GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT and nothing else. Every MESSAGE_CREATE
//! becomes a [`crate::pipeline::Inbound`] handled through the common [`Pipeline`]: sessions per DM
//! channel (`discord:<channel id>`) or per sender in guild channels, access control and pairing,
//! `/new` `/reset` `/status` `/help` as text commands, the answer streamed by editing one message
//! (split at 2000 characters). In guild channels only messages that mention the bot (`<@ID>`,
//! `<@!ID>`) or reply to it are for it, and the mention is removed from the text.
//!
//! serenity keeps the websocket up (heartbeats, RESUME, a new IDENTIFY when a session is lost);
//! when its client gives up, the channel builds a new one after an exponential backoff. Close code
//! 4004 (a rejected token) and 4014 (the MESSAGE CONTENT intent not enabled) stop the channel with a
//! clear error; the rest of the gateway keeps serving. Point it at any Discord-compatible server
//! with [`DiscordSettings::api_url`] (tests use a stand-in on 127.0.0.1; the gateway URL comes from
//! its `GET /gateway`).

mod sink;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serenity::all::{
    ClientBuilder, ConnectionStage, Context, EventHandler, GatewayError, GatewayIntents, Message,
    MessageType, Ready, ResumedEvent, ShardStageUpdateEvent, User, UserId,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use sink::{DiscordSink, Rest, RestError, message_flags};

use open_clanker_core::SecretString;
use open_clanker_core::redact::{RedactedUrl, redact_url};

use crate::access::AccessPolicy;
use crate::backoff::Backoff;
use crate::pipeline::{ChannelContext, Inbound};
use crate::relay::RelayConfig;
use crate::runtime::{Failure, Platform, Runtime, SHUTDOWN_WAIT, http_client, parse_url, pause};
use crate::sink::redact_token;
use crate::status::{StatusBoard, StatusHandle};

pub use crate::runtime::{StartError, Started};

/// The channel's name (session keys `discord:<channel id>`, the allowlist, the CLI).
pub const NAME: &str = "discord";
/// The official API (serenity's routes are `https://discord.com/api/v10/...`).
pub const DEFAULT_API_URL: &str = "https://discord.com";
/// The platform's name in messages.
const TITLE: &str = "Discord";
/// serenity hands each event to its own task, so two messages arriving together may reach the
/// handler in either order: the ones arriving within this window are put back in gateway order
/// (message ids are snowflakes, increasing with time) before they take their places.
const GATHER: Duration = Duration::from_millis(25);
/// How long the gateway may stay silent before the status says so.
const NO_READY_WARNING: Duration = Duration::from_secs(30);

/// What the channel asks the gateway for: guild and direct messages, with their content.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// Everything the Discord channel needs.
#[derive(Clone, Debug)]
pub struct DiscordSettings {
    /// From the Developer Portal.
    pub token: SecretString,
    /// The API base, e.g. [`DEFAULT_API_URL`].
    pub api_url: RedactedUrl,
    pub access: AccessPolicy,
    pub relay: RelayConfig,
    /// Let Discord show previews (embeds) of the links in answers. Off by default: Discord fetches
    /// every previewed link, so an answer could make it send data to any address unclicked.
    pub link_previews: bool,
}

/// Discord as a [`Platform`].
pub struct Discord;

impl Platform for Discord {
    const NAME: &'static str = NAME;
    const TITLE: &'static str = TITLE;
    type Settings = DiscordSettings;

    fn access(settings: &DiscordSettings) -> &AccessPolicy {
        &settings.access
    }

    fn start(
        settings: DiscordSettings,
        ctx: ChannelContext,
        board: &StatusBoard,
        cancel: CancellationToken,
    ) -> Result<Started, StartError> {
        start(settings, ctx, board, cancel)
    }
}

/// The message shown when Discord refuses the token over REST (401).
const REJECTED: &str = "Discord rejected the bot token (401 Unauthorized): check DISCORD_BOT_TOKEN \
     (channels.discord.bot_token)";
/// The same over the gateway (close code 4004).
const REJECTED_GATEWAY: &str = "Discord rejected the bot token (gateway close code 4004 \
     Authentication failed): check DISCORD_BOT_TOKEN (channels.discord.bot_token)";
/// The privileged intent is not enabled (close code 4014).
const NO_CONTENT_INTENT: &str = "Discord refused the MESSAGE CONTENT intent (gateway close code \
     4014): enable it in the Developer Portal (Bot > Privileged Gateway Intents)";

fn parse_api_url(api_url: &str) -> Result<(), StartError> {
    let url = parse_url(TITLE, "api_url", api_url)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StartError::Url {
            platform: TITLE,
            setting: "api_url",
            url: redact_url(api_url),
            reason: "must start with http:// or https://".into(),
        });
    }
    Ok(())
}

/// The bot's name as Discord shows it: `name#1234` (bots keep a discriminator), or `name`.
fn tag(user: &User) -> String {
    match user.discriminator {
        Some(d) => format!("{}#{:04}", user.name, d.get()),
        None => user.name.clone(),
    }
}

/// Asks Discord who the bot is (`GET /users/@me`), for `open-clanker doctor`: the bot's name when
/// the token is accepted, else a message that never contains the token.
pub async fn check_token(token: &str, api_url: &str, timeout: Duration) -> Result<String, String> {
    parse_api_url(api_url).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let token = SecretString::new(token.to_owned());
    let rest = Rest::new(&token, api_url, client);
    match rest.current_user().await {
        Ok(me) => Ok(tag(&me)),
        Err(RestError::Unauthorized) => Err(REJECTED.to_owned()),
        Err(e) => Err(redact_token(&e.to_string(), &token)),
    }
}

/// Starts the Discord channel; it registers itself on `board` as [`NAME`].
pub fn start(
    settings: DiscordSettings,
    ctx: ChannelContext,
    board: &StatusBoard,
    cancel: CancellationToken,
) -> Result<Started, StartError> {
    let rt = Runtime::new::<Discord>(ctx, settings.access.clone(), settings.relay, board);
    parse_api_url(&settings.api_url)?;
    let client = http_client(Duration::from_secs(30))?;
    let rest = Arc::new(Rest::new(&settings.token, &settings.api_url, client));
    let channel = Channel { rest, settings, rt };
    let task = tokio::spawn(channel.run(cancel));
    Ok(Started {
        task,
        webhook: None,
    })
}

/// Who the bot is.
struct Me {
    id: UserId,
    name: String,
}

struct Channel {
    rest: Arc<Rest>,
    settings: DiscordSettings,
    rt: Runtime,
}

/// serenity's events, as the channel uses them.
struct Handler {
    messages: mpsc::UnboundedSender<Message>,
    status: StatusHandle,
    /// Set once a READY arrived (the backoff starts over after a good connection).
    ready: Arc<AtomicBool>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let name = tag(&ready.user);
        self.status.connected(&name);
        self.ready.store(true, Ordering::SeqCst);
        info!(channel = NAME, bot = %name, "Discord bot connected");
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        self.status.reconnected();
        info!(channel = NAME, "Discord gateway session resumed");
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        debug!(channel = NAME, old = ?event.old, new = ?event.new, "Discord shard stage");
        if event.new == ConnectionStage::Connected {
            self.status.reconnected();
        } else if event.old == ConnectionStage::Connected {
            warn!(
                channel = NAME,
                "Discord gateway connection lost; reconnecting"
            );
            self.status
                .disconnected("Discord gateway connection lost; reconnecting");
        }
    }

    async fn message(&self, _ctx: Context, message: Message) {
        let _ = self.messages.send(message);
    }
}

impl Channel {
    fn redact(&self, text: &str) -> String {
        redact_token(text, &self.settings.token)
    }

    fn classify(&self, e: &RestError) -> Failure {
        match e {
            RestError::Unauthorized => Failure::Fatal(REJECTED.to_owned()),
            RestError::RateLimited(wait) => Failure::Wait(*wait, "rate limited".to_owned()),
            other => Failure::Retry(self.redact(&other.to_string())),
        }
    }

    async fn run(self, cancel: CancellationToken) {
        self.rt.serve(self.receive(&cancel)).await;
    }

    /// `GET /users/@me`, then the gateway and the messages until shutdown (or a refusal).
    async fn receive(&self, cancel: &CancellationToken) {
        let mut backoff = Backoff::default();
        let me = self
            .rt
            .until_ok(
                "GET /users/@me",
                cancel,
                &mut backoff,
                || self.rest.current_user(),
                |e| self.classify(e),
            )
            .await;
        let Some(me) = me else { return };
        let me = Me {
            id: me.id,
            name: me.name.clone(),
        };
        // Stops this channel only: on shutdown, or when Discord refuses it for good.
        let stop = cancel.child_token();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::join!(
            self.gateway(tx, &stop, &mut backoff),
            self.dispatch_all(rx, &me, &stop),
        );
    }

    /// Runs serenity's gateway client, building a new one after a backoff when it gives up. Ends
    /// on shutdown, or cancels `stop` (and so the dispatcher) on a fatal refusal.
    async fn gateway(
        &self,
        tx: mpsc::UnboundedSender<Message>,
        stop: &CancellationToken,
        backoff: &mut Backoff,
    ) {
        let cancel = stop;
        loop {
            let ready = Arc::new(AtomicBool::new(false));
            let handler = Handler {
                messages: tx.clone(),
                status: self.rt.status().clone(),
                ready: ready.clone(),
            };
            let built = tokio::select! {
                _ = cancel.cancelled() => return,
                b = ClientBuilder::new_with_http(self.rest.gateway_http(), intents())
                    .event_handler(handler) => b,
            };
            let mut client = match built {
                Ok(client) => client,
                Err(e) => {
                    let message = self.redact(&e.to_string());
                    warn!(channel = NAME, error = %message, "cannot build the Discord client");
                    self.rt.status().disconnected(&message);
                    if !pause(cancel, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            let shards = client.shard_manager.clone();
            // serenity retries an unreachable gateway by itself (every 5 s) without telling:
            // say so in the status when no READY came for a while.
            let ended = {
                let quiet = tokio::time::sleep(NO_READY_WARNING);
                tokio::pin!(quiet);
                let mut warned = false;
                let running = client.start();
                tokio::pin!(running);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break None,
                        r = &mut running => break Some(r),
                        _ = &mut quiet, if !warned => {
                            warned = true;
                            if !ready.load(Ordering::SeqCst) {
                                let message = "no READY from the Discord gateway yet; still trying";
                                warn!(channel = NAME, "{message}");
                                self.rt.status().disconnected(message);
                            }
                        }
                    }
                }
            };
            // Stop serenity's shard queue and runners whatever happened (they would reconnect
            // on their own otherwise).
            if tokio::time::timeout(SHUTDOWN_WAIT, shards.shutdown_all())
                .await
                .is_err()
            {
                debug!(channel = NAME, "Discord shards did not close in time");
            }
            drop(client);
            let Some(ended) = ended else { return };
            if ready.load(Ordering::SeqCst) {
                backoff.reset();
            }
            let message = match ended {
                Err(serenity::Error::Gateway(GatewayError::InvalidAuthentication)) => {
                    self.rt.fatal(REJECTED_GATEWAY);
                    stop.cancel();
                    return;
                }
                Err(serenity::Error::Gateway(
                    GatewayError::DisallowedGatewayIntents | GatewayError::InvalidGatewayIntents,
                )) => {
                    self.rt.fatal(NO_CONTENT_INTENT);
                    stop.cancel();
                    return;
                }
                Err(e) => self.redact(&e.to_string()),
                Ok(()) => "the Discord gateway client stopped".to_owned(),
            };
            let wait = backoff.next_delay();
            warn!(
                channel = NAME,
                error = %message,
                retry_in_ms = wait.as_millis() as u64,
                "Discord gateway failed; reconnecting"
            );
            self.rt.status().disconnected(&message);
            if !pause(cancel, wait).await {
                return;
            }
        }
    }

    /// Takes the messages in gateway order and hands each to the pipeline on its own task.
    async fn dispatch_all(
        &self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        me: &Me,
        cancel: &CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                m = rx.recv() => m,
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            let window = tokio::time::sleep(GATHER);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    m = rx.recv() => match m {
                        Some(m) => batch.push(m),
                        None => break,
                    },
                }
            }
            batch.sort_by_key(|m| m.id);
            for message in batch {
                self.dispatch(message, me).await;
            }
        }
    }

    /// Hands a message to the pipeline on its own task (bounded in number), its place in its
    /// session's queue taken now.
    async fn dispatch(&self, message: Message, me: &Me) {
        if let Some((inbound, sink)) = self.inbound(&message, me) {
            self.rt.dispatch(inbound, sink, &me.name).await;
        }
    }

    /// The pipeline's view of a Discord message, and where to answer it.
    fn inbound(&self, message: &Message, me: &Me) -> Option<(Inbound, DiscordSink)> {
        let author = &message.author;
        if author.bot || author.id == me.id || message.webhook_id.is_some() {
            return None;
        }
        if !matches!(
            message.kind,
            MessageType::Regular | MessageType::InlineReply
        ) {
            return None;
        }
        let is_group = message.guild_id.is_some();
        let (text, mentioned_in_text) = strip_mentions(&message.content, me.id);
        let mentioned = mentioned_in_text || message.mentions.iter().any(|u| u.id == me.id);
        let replied_to_me = message
            .referenced_message
            .as_ref()
            .is_some_and(|m| m.author.id == me.id);
        let label = match &author.global_name {
            Some(name) => format!("@{} ({name})", author.name),
            None => format!("@{}", author.name),
        };
        let inbound = Inbound {
            chat_id: message.channel_id.get().to_string(),
            sender_id: author.id.get().to_string(),
            sender_label: label,
            is_group,
            addressed: !is_group || mentioned || replied_to_me,
            text,
        };
        let sink = DiscordSink {
            rest: self.rest.clone(),
            channel: message.channel_id,
            reply_to: is_group.then_some(message.id),
            flags: message_flags(self.settings.link_previews),
        };
        Some((inbound, sink))
    }
}

/// `text` without the bot's mentions (`<@ID>`, `<@!ID>`), trimmed, and whether there was one.
fn strip_mentions(text: &str, me: UserId) -> (String, bool) {
    let mut out = text.to_owned();
    let mut found = false;
    for form in [format!("<@{me}>"), format!("<@!{me}>")] {
        if out.contains(&form) {
            found = true;
            out = out.replace(&format!(" {form} "), " ").replace(&form, "");
        }
    }
    (out.trim().to_owned(), found)
}
