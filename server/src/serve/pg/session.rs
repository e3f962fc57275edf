//! Signing in over PostgreSQL: the person's token is the password.
//!
//! Any user name is accepted (a token id reads well in client settings); the password must be
//! an active token, checked by [`Caller::of_token`] like an HTTP `Authorization` header, and
//! tokens stay stored only as their hashes. A password is never taken over an unencrypted
//! connection except on loopback. A wrong or revoked token gets SQLSTATE `28P01`, and every
//! sign-in, refused or not, is audited.

use crate::serve::App;
use crate::serve::api::Caller;
use crate::serve::observe::{self, ApiError};
use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::RandomPidSecretKeyGenerator;
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use std::fmt::Debug;
use std::sync::Arc;

/// Who a connection signed in as: the token (kept to check it again before each statement,
/// never logged) and the caller it stood for.
#[derive(Debug)]
pub struct Session {
    /// The token the connection signed in with.
    pub token: String,
    /// The caller it stood for then.
    pub caller: Caller,
}

/// The startup handler: asks for the password, and takes it as a token.
pub struct TokenStartup {
    app: Arc<App>,
    params: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
}

impl TokenStartup {
    /// Over the server's tokens.
    pub fn new(app: Arc<App>) -> TokenStartup {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = format!("16.0 (gridlens {})", env!("CARGO_PKG_VERSION"));
        params.time_zone = "Asia/Shanghai".into();
        params.is_superuser = false;
        params.default_transaction_read_only = true;
        TokenStartup {
            app,
            params,
            pids: RandomPidSecretKeyGenerator::default(),
        }
    }
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for TokenStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if !client.is_secure() && !client.socket_addr().ip().is_loopback() {
                    return Err(fatal(
                        "28000",
                        "connect with TLS (sslmode=require): the password is a token, and is \
                         not taken over an unencrypted connection from another machine",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let token = pwd.password.trim().to_string();
                let (audit, _written) = observe::begin(self.app.clone(), "PG", "pg sign-in");
                match Caller::of_token(&self.app, &token, Some(&audit)) {
                    Ok(caller) => {
                        audit.finish(Ok(()));
                        let (pid, secret) = self.pids.generate(client);
                        client.set_pid_and_secret_key(pid, secret);
                        client
                            .session_extensions()
                            .insert(Session { token, caller });
                        finish_authentication(client, &self.params).await?;
                    }
                    Err(e) => {
                        audit.finish(Err(&e));
                        return Err(fatal(
                            "28P01",
                            match e.code {
                                "unauthorized" => {
                                    "password authentication failed: the password must be an \
                                     active gridlens token (gridlens token add)"
                                        .to_string()
                                }
                                _ => e.message,
                            },
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The caller of a connection, its token checked again now (28P01 once it is revoked), recorded
/// in the audit line when there is one.
pub fn caller_now<C: ClientInfo>(
    app: &App,
    client: &C,
    audit: Option<&observe::Audit>,
) -> Result<Caller, ApiError> {
    let session = client
        .session_extensions()
        .get::<Session>()
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this connection has not signed in",
            )
        })?;
    Caller::of_token(app, &session.token, audit)
}
