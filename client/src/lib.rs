//! A small Rust client for the Open Clanker gRPC API, over the stubs generated from `proto/`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), open_clanker_client::ClientError> {
//! let mut client = open_clanker_client::Client::connect("http://127.0.0.1:18789").await?;
//! let status = client.status().await?;
//! println!("gateway {}", status.version);
//! # Ok(()) }
//! ```

use std::time::Duration;

pub use open_clanker_proto::v1 as pb;
use pb::access_service_client::AccessServiceClient;
use pb::chat_service_client::ChatServiceClient;
use pb::gateway_service_client::GatewayServiceClient;
use pb::session_service_client::SessionServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The default gateway address.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:18789";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid gateway address {addr:?}: {message}")]
    InvalidAddress { addr: String, message: String },
    #[error("cannot reach the gateway at {addr}: {message} (is `open-clanker gateway` running?)")]
    Connect { addr: String, message: String },
    #[error("the API token is not valid as a header value (it must be printable ASCII)")]
    InvalidToken,
    #[error("{}: {}", code_text(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
}

fn code_text(code: tonic::Code) -> String {
    code.description().to_string()
}

impl ClientError {
    /// The gRPC status code, when the gateway answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct Auth {
    header: Option<AsciiMetadataValue>,
}

impl Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}

/// The transport every stub uses: the channel plus the token.
pub type Transport = InterceptedService<Channel, Auth>;

/// A connection to one gateway; cheap to clone.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    auth: Auth,
}

impl Client {
    /// Connects (with a 5 s connect timeout) to `addr`, e.g. `http://127.0.0.1:18789`. A bare
    /// `host:port` is taken as `http://host:port`.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_inner(addr, None).await
    }

    async fn connect_inner(
        addr: &str,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ClientError::InvalidAddress {
                addr: addr.to_string(),
                message: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let endpoint = if url.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
            if let Some(path) = ca_cert {
                let pem = std::fs::read(path).map_err(|e| ClientError::InvalidAddress {
                    addr: addr.to_string(),
                    message: format!("cannot read CA certificate {}: {e}", path.display()),
                })?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint
                .tls_config(tls)
                .map_err(|e| ClientError::InvalidAddress {
                    addr: addr.to_string(),
                    message: source_chain(&e),
                })?
        } else {
            endpoint
        };
        let channel = endpoint.connect().await.map_err(|e| ClientError::Connect {
            addr: url,
            message: source_chain(&e),
        })?;
        Ok(Self {
            channel,
            auth: Auth::default(),
        })
    }

    /// Connects and sends `token` (when given) as `authorization: Bearer <token>` on every call.
    pub async fn connect_with_token(addr: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::connect_with(addr, token, None).await
    }

    /// Like [`Client::connect_with_token`]; for an `https://` address the server's certificate
    /// must chain to `ca_cert` (a PEM file) when given, else to the public web roots.
    pub async fn connect_with(
        addr: &str,
        token: Option<&str>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let mut client = Self::connect_inner(addr, ca_cert).await?;
        if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) {
            let value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {t}"))
                .map_err(|_| ClientError::InvalidToken)?;
            client.auth.header = Some(value);
        }
        Ok(client)
    }

    fn transport(&self) -> Transport {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    pub fn chat_client(&self) -> ChatServiceClient<Transport> {
        ChatServiceClient::new(self.transport())
    }

    pub fn session_client(&self) -> SessionServiceClient<Transport> {
        SessionServiceClient::new(self.transport())
    }

    pub fn gateway_client(&self) -> GatewayServiceClient<Transport> {
        GatewayServiceClient::new(self.transport())
    }

    /// The chat channels' pairing codes and allowlist.
    pub fn access_client(&self) -> AccessServiceClient<Transport> {
        AccessServiceClient::new(self.transport())
    }

    /// Starts a turn; the stream yields its events.
    pub async fn chat(
        &mut self,
        request: pb::ChatRequest,
    ) -> Result<tonic::Streaming<pb::ChatResponse>, ClientError> {
        Ok(self.chat_client().chat(request).await?.into_inner())
    }

    pub async fn status(&mut self) -> Result<pb::GetStatusResponse, ClientError> {
        Ok(self
            .gateway_client()
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner())
    }

    pub async fn list_sessions(
        &mut self,
        request: pb::ListSessionsRequest,
    ) -> Result<pb::ListSessionsResponse, ClientError> {
        Ok(self
            .session_client()
            .list_sessions(request)
            .await?
            .into_inner())
    }

    /// Every message of a session, oldest first, following page tokens.
    pub async fn full_history(
        &mut self,
        session_id: &str,
    ) -> Result<Vec<pb::Message>, ClientError> {
        let mut client = self.session_client();
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .get_history(pb::GetHistoryRequest {
                    session_id: session_id.to_string(),
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            out.extend(page.messages);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn reset_session(
        &mut self,
        session_id: &str,
    ) -> Result<pb::ResetSessionResponse, ClientError> {
        Ok(self
            .session_client()
            .reset_session(pb::ResetSessionRequest {
                session_id: session_id.to_string(),
            })
            .await?
            .into_inner())
    }

    pub async fn delete_session(&mut self, session_id: &str) -> Result<(), ClientError> {
        self.session_client()
            .delete_session(pb::DeleteSessionRequest {
                session_id: session_id.to_string(),
            })
            .await?;
        Ok(())
    }

    /// True when the standard health service reports SERVING for the whole server.
    pub async fn healthy(&mut self) -> Result<bool, ClientError> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.transport());
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await?
            .into_inner();
        Ok(answer.status == ServingStatus::Serving as i32)
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}
