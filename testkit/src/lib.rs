//! A stand-in AI provider for tests: one HTTP server that speaks both the Anthropic Messages API
//! (`POST /v1/messages`) and the OpenAI Chat Completions API (`POST /v1/chat/completions`), streamed
//! (Server-Sent Events exactly as the real services send them) or not (the real JSON objects).
//!
//! Point `ANTHROPIC_BASE_URL` at [`StandIn::anthropic_base_url`] (`http://127.0.0.1:PORT`) and
//! `OPENAI_BASE_URL` at [`StandIn::openai_base_url`] (`http://127.0.0.1:PORT/v1`).
//!
//! # What it answers
//!
//! The answer is steered by the text of the **last user message**:
//!
//! | text contains      | answer |
//! |--------------------|--------|
//! | (nothing special)  | `echo: <the words of the text>`, one delta per word (`"echo:"`, `" w1"`, `" w2"`, ...) |
//! | `#tokens=N`        | `tok0 tok1 ... tok{N-1}`, one delta per word |
//! | `#delay=MS`        | waits MS milliseconds before each delta (default: [`StandInConfig::default_delay`]) |
//! | `#status=CODE`     | HTTP CODE (≥ 400) with the provider's documented error JSON; 429 carries `retry-after: 1` |
//! | `#retry_after=S`   | the `retry-after` header (seconds) of an error answer |
//! | `#fail=N`          | the first N requests with exactly this text fail with `#status` (default 503); later ones succeed |
//! | `#cut=K`           | K deltas, then the connection is dropped without the closing events |
//! | `#sse_error`       | one delta, then an Anthropic `event: error` (`overloaded_error`) / an OpenAI chunk with an `error` object |
//! | `#hang`            | headers and one delta, then nothing until the client disconnects |
//!
//! `GET /v1/models` lists [`MODEL`] in Anthropic's format (when the request has `x-api-key` or
//! `anthropic-version`) or OpenAI's, after the same key check: a cheap way to probe a key.
//!
//! Usage: input tokens are the number of words in all messages and the system prompt; output
//! tokens are the number of deltas. An answer longer than `max_tokens` deltas is cut there and ends
//! with `stop_reason: "max_tokens"` (Anthropic) / `finish_reason: "length"` (OpenAI).
//!
//! Without `"stream": true` the same answer comes as one JSON object; `#cut` then drops the
//! connection after the headers, `#hang` never finishes the body and `#sse_error` answers 529
//! (Anthropic) / 503 (OpenAI).
//!
//! # What it checks
//!
//! The API key (`x-api-key` for Anthropic, `Authorization: Bearer` for OpenAI; 401 otherwise), the
//! `anthropic-version` header (400 without), and the body's shape: a non-empty `model`, a non-empty
//! `messages` array with known roles; for Anthropic also `max_tokens`, a first message from the user,
//! no `system` role inside `messages` and no empty content. Anything else gets 400
//! `invalid_request_error`, so a client's request shaping is genuinely checked.
//!
//! Every request to the two APIs is recorded ([`StandIn::requests`], `GET /_standin/requests`,
//! cleared with `DELETE /_standin/requests`; the newest [`MAX_RECORDED`] are kept, all are
//! counted); `GET /_standin/stats` tells the number of requests, of streams still open and of
//! connections accepted.
//!
//! # HTTP versions
//!
//! It speaks HTTP/1.1 and HTTP/2 without TLS (h2c, with prior knowledge) on the same port. Over
//! HTTP/2 a connection carries at most [`StandInConfig::http2_max_concurrent_streams`] streams at
//! once (hyper's default, 200, when unset): a client that opens more has to wait or open another
//! connection, as with a real provider.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let standin = open_clanker_testkit::spawn(Default::default()).await?;
//! // Point a client at standin.anthropic_base_url() / standin.openai_base_url() with the key
//! // "test-key", send "hello #tokens=3", then:
//! for request in standin.requests() {
//!     println!("{} {}", request.path, request.body);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod anthropic;
pub mod discord;
mod openai;
mod provider;
pub mod script;
mod state;
mod stream;
pub mod telegram;

pub use provider::{StandIn, Stats, spawn, spawn_on};
pub use script::{Answer, Directives, Ending};
pub use state::{MAX_RECORDED, MODEL, RecordedRequest, StandInConfig};

// What the two API formats (`anthropic`, `openai`) use from the crate root.
pub(crate) use state::{Plan, Shared};
pub(crate) use stream::{
    Wire, content_text, last_user_text, sse_event, stream_response, unfinished_response, unix_now,
};
