//! `authorize` and the upstream `callback`.

use std::collections::HashMap;

use super::login_state::{self, LoginState};
use super::trial::trial_failed;
use super::{handle, Broker, PageKind, Reply, SetCookie, SetupFailure, SESSION_COOKIE};
use crate::core::application::Application;
use crate::core::audit::Actor;
use crate::core::authorize::{self, AuthorizeRequest};
use crate::core::claims::{self, Claims};
use crate::core::connection::Connection;
use crate::core::group_sync::{self, GroupsReport};
use crate::core::ids::{new_id, IdKind};
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::core::organization::EmailPolicy;
use crate::core::session::UpstreamTokens;
use crate::core::user::UserView;
use crate::core::validate::email_domain;
use crate::core::Timestamp;
use crate::crypto::random_token;
use crate::store::{
    Grant, GroupSyncOf, IdpGroupsSource, Provisioned, RefreshState, Session, SessionFilter, SessionHandle, SignIn, StoreError,
};
use crate::telemetry;
use crate::upstream::rp::{AnswerError, Authorization, LoginError, PassedOn, VerifiedIdentity};
use crate::upstream::UpstreamError;

/// Everything that ends a login early, with the OAuth error it becomes.
pub(super) fn oauth(code: ErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError::new(code, description)
}

/// A failure at the IdP's end, as the application hears of it.
impl From<LoginError> for OAuthError {
    fn from(e: LoginError) -> Self {
        tracing::warn!(error = %e, "upstream login failed");
        match e {
            LoginError::Upstream(UpstreamError::Forbidden(_) | UpstreamError::Malformed(_)) => {
                oauth(ErrorCode::ServerError, format!("the organization's identity provider is misconfigured: {e}"))
            }
            LoginError::Upstream(_) => oauth(ErrorCode::TemporarilyUnavailable, e.to_string()),
            _ => oauth(ErrorCode::AccessDenied, e.to_string()),
        }
    }
}

impl From<SetupFailure> for OAuthError {
    fn from(e: SetupFailure) -> Self {
        match e {
            SetupFailure::Store(e) => e.into(),
            SetupFailure::Upstream(e) => LoginError::Upstream(e).into(),
        }
    }
}

/// An IdP's answer at the callback that is not a code, as the application hears of
/// it: the IdP's own refusals that mean something to an application pass on as they
/// are (OIDC Core §3.1.2.6), anything else is `access_denied`.
impl From<AnswerError> for OAuthError {
    fn from(e: AnswerError) -> Self {
        use ErrorCode::*;
        const PASSED_ON: [ErrorCode; 7] = [
            AccessDenied,
            LoginRequired,
            ConsentRequired,
            InteractionRequired,
            AccountSelectionRequired,
            TemporarilyUnavailable,
            ServerError,
        ];
        let code = match &e {
            AnswerError::Refused { error, .. } => ErrorCode::parse(error).filter(|c| PASSED_ON.contains(c)).unwrap_or(AccessDenied),
            _ => AccessDenied,
        };
        oauth(code, e.to_string())
    }
}

/// Mix-up defence (RFC 9700 §4.4.2): an IdP's answer is taken only at the redirect
/// URI its login was sent with — the connection's own, so an answer meant for one
/// connection cannot be fed into another's login. At the shared URI of older
/// connections the answer must name its issuer (RFC 9207 `iss`, compared with the
/// connection's issuer once its metadata is read).
fn answered_where_sent(login: &LoginState, at: Option<&str>, params: &HashMap<String, String>) -> Result<(), OAuthError> {
    match (at, login.shared_callback) {
        (Some(id), false) if id == login.connection_id => Ok(()),
        (None, true) if params.contains_key("iss") => Ok(()),
        (None, true) => Err(oauth(ErrorCode::AccessDenied,
            "the identity provider did not name itself in its answer (RFC 9207 iss), which the shared redirect URI requires; \
             the organization's admin must register the connection's own redirect URI at the IdP and switch the connection to it",
        )),
        _ => Err(oauth(ErrorCode::AccessDenied,
            "the identity provider's answer arrived at another connection's redirect URI; refused as a possible mix-up attack (RFC 9700 §4.4)",
        )),
    }
}

impl Broker {
    /// The application's authorization request.
    pub async fn authorize(&self, pairs: Vec<(String, String)>, cookies: &HashMap<String, String>) -> Reply {
        let params = match authorize::single_valued(pairs) {
            Ok(p) => p,
            Err(name) => {
                return Reply::page(
                    PageKind::BadRequest,
                    "Invalid sign-in request",
                    format!("The parameter `{name}` was given more than once."),
                )
            }
        };
        let Some(client_id) = params.get("client_id") else {
            return Reply::page(PageKind::BadRequest, "Invalid sign-in request", "The request names no application (client_id).");
        };
        let app = match self.config.application(self.store.as_ref(), client_id).await {
            Ok(Some((app, _))) => app,
            Ok(None) => {
                return Reply::page(
                    PageKind::BadRequest,
                    "Unknown application",
                    "The application that sent you here is not registered with ssogate.",
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "store failure during authorize");
                return Reply::page(PageKind::Unavailable, "Sign-in unavailable", "ssogate cannot reach its database; try again shortly.");
            }
        };
        let redirect_uri = match authorize::trusted_redirect_uri(&params, &app) {
            Ok(u) => u,
            Err(why) => {
                return Reply::page(PageKind::BadRequest, "Invalid redirect URI", format!("{why}. The application's settings need fixing."))
            }
        };
        // Enough of the request to send an error back to the application.
        let fallback = AuthorizeRequest {
            client_id: app.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            state: params.get("state").cloned(),
            ..Default::default()
        };
        let req = match authorize::validate(&params, &app, redirect_uri) {
            Ok(r) => r,
            Err(e) => return self.error_redirect(&fallback, e),
        };
        match self.start(&app, &req, cookies).await {
            Ok(reply) => reply,
            Err(e) => self.error_redirect(&req, e),
        }
    }

    /// Signs in from the browser's session when it can, else sends it to the IdP.
    async fn start(&self, app: &Application, req: &AuthorizeRequest, cookies: &HashMap<String, String>) -> Result<Reply, OAuthError> {
        let connection = if req.names_where_to_sign_in() {
            self.route(req).await?
        } else {
            // A request that names nowhere (an app renewing its session with
            // prompt=none) goes where the browser's session is, if this application
            // signed in under it before: another one learns nothing of it.
            match self.session_connection(app, cookies).await? {
                Some(c) => c,
                None if req.prompt_none => return Err(oauth(ErrorCode::LoginRequired, "the user is not signed in")),
                None => self.route(req).await?,
            }
        };
        self.check_licence(&connection.organization_id).await?;
        if !req.prompt_login {
            // max_age=0 asks for a fresh authentication every time.
            let fresh_enough =
                |s: &Session| req.max_age.is_none_or(|max| max > 0 && (self.clock.now() - s.auth_time).whole_seconds() <= max as i64);
            // A session authenticated longer ago than max_age is not reused: the user
            // authenticates at the IdP again (OIDC Core §3.1.2.1), or with prompt=none
            // gets login_required.
            if let Some(session) = self.current_session(cookies, &connection).await?.filter(fresh_enough) {
                let user = self.store.get_user(&session.user_id).await?;
                if let Some(user) = user {
                    // The organization's email policy may have tightened since the sign-in.
                    self.check_email_policy(&connection.organization_id, user.user.email.as_deref()).await?;
                    return self.issue_code(app, req, &user, &session, None).await;
                }
            }
        }
        if req.prompt_none {
            return Err(oauth(ErrorCode::LoginRequired, "the user is not signed in"));
        }
        self.redirect_to_idp(&connection, req, false).await
    }

    /// Sends the browser to the connection's IdP, the login's state sealed in a cookie.
    /// `trial`: an admin's try-it sign-in, which ends on a preview page.
    pub(super) async fn redirect_to_idp(&self, connection: &Connection, req: &AuthorizeRequest, trial: bool) -> Result<Reply, OAuthError> {
        let idp = self.discovery(connection, connection.redirect_uri(&self.issuer)).await.map_err(LoginError::from)?;
        let passed_on = PassedOn { login_hint: req.login_hint.as_deref(), prompt_login: req.prompt_login, max_age: req.max_age };
        let Authorization { url: location, state, nonce, pkce_verifier } = idp.begin(passed_on).map_err(LoginError::from)?;
        let state_hash = handle(&state);
        let login = LoginState {
            organization_id: connection.organization_id.clone(),
            connection_id: connection.id.clone(),
            nonce,
            pkce_verifier,
            request: req.clone(),
            expires_at: (self.clock.now() + self.lifetimes.login_state).unix_timestamp(),
            trial,
            shared_callback: connection.shared_redirect_uri,
        };
        let sealed = login_state::seal(&self.sealer, &state_hash, &login)
            .ok_or_else(|| oauth(ErrorCode::ServerError, "ssogate could not start the sign-in; try again"))?;
        if sealed.len() > login_state::MAX_SEALED_LEN {
            return Err(oauth(
                ErrorCode::InvalidRequest,
                "the request is too large to carry through the sign-in; shorten state, nonce or login_hint",
            ));
        }
        let cookie = SetCookie {
            name: login_state::cookie_name(&state_hash),
            value: Some(sealed),
            path: "/sso",
            max_age: self.lifetimes.login_state,
        };
        Ok(Reply::Redirect { location, cookies: vec![cookie] })
    }

    /// Which connection signs this request in: named directly, or the one connection
    /// of the organization named, or of the organization owning the email's domain.
    async fn route(&self, req: &AuthorizeRequest) -> Result<Connection, OAuthError> {
        if let Some(id) = &req.connection {
            let c = self.config.connection(self.store.as_ref(), id).await?;
            let c = c.ok_or_else(|| oauth(ErrorCode::InvalidRequest, format!("there is no connection `{id}`")))?;
            if let Some(org) = &req.organization {
                let o = self.config.organization(self.store.as_ref(), org).await?;
                if o.is_none_or(|o| o.id != c.organization_id) {
                    return Err(oauth(ErrorCode::InvalidRequest, "the connection does not belong to the organization named"));
                }
            }
            return Ok(c);
        }
        let org = if let Some(org) = &req.organization {
            let o = self.config.organization(self.store.as_ref(), org).await?;
            o.ok_or_else(|| oauth(ErrorCode::InvalidRequest, format!("there is no organization `{org}`")))?
        } else {
            let domain =
                req.domain_hint.clone().or_else(|| req.login_hint.as_deref().and_then(email_domain).map(str::to_owned)).ok_or_else(
                    || {
                        oauth(
                            ErrorCode::InvalidRequest,
                            "no organization to sign in to: pass organization, connection, login_hint (an email) or domain_hint",
                        )
                    },
                )?;
            let o = self.config.organization_by_domain(self.store.as_ref(), &domain).await?;
            o.ok_or_else(|| oauth(ErrorCode::InvalidRequest, format!("no organization owns the domain `{domain}`")))?
        };
        let mut conns = self.config.organization_connections(self.store.as_ref(), &org.id).await?;
        match conns.len() {
            0 => Err(oauth(ErrorCode::InvalidRequest, format!("the organization `{}` has no identity provider connection", org.slug))),
            1 => Ok(conns.remove(0)),
            _ => Err(oauth(
                ErrorCode::InvalidRequest,
                format!("the organization `{}` has several connections; pass connection=<id>", org.slug),
            )),
        }
    }

    /// Group sync at sign-in or refresh, when the connection has it on and the licence
    /// allows it: the groups claim is read from the ID token, or else from userinfo,
    /// or else fetched from where the IdP says it sent it (distributed claims, with the
    /// user's `access_token`).
    pub(super) async fn sync_groups(
        &self,
        c: &Connection,
        user: UserView,
        said: (&Claims, Option<&Claims>),
        access_token: &str,
        actor: &Actor,
    ) -> Result<UserView, OAuthError> {
        if !c.group_sync.enabled {
            return Ok(user);
        }
        let licence = self.config.entitlements(self.store.as_ref(), &c.organization_id).await?;
        if !licence.group_sync {
            return Ok(user);
        }
        let (id_claims, userinfo) = said;
        let fetched = match group_sync::groups_report(id_claims, userinfo, &c.group_sync.claim) {
            GroupsReport::Elsewhere => {
                self.distributed_groups(c, said, user.user.idp_sub.as_deref().unwrap_or_default(), access_token).await
            }
            GroupsReport::Groups(_) | GroupsReport::Absent => None,
        };
        // Fetched groups stand in for the claim; a failed fetch leaves the memberships
        // as they are (the store audits why).
        let reported = match &fetched {
            Some(claims) => IdpGroupsSource::Reported { id_token: claims, userinfo: None },
            None => IdpGroupsSource::Reported { id_token: id_claims, userinfo },
        };
        self.store
            .sync_groups(GroupSyncOf { user_id: &user.user.id, connection_id: &c.id }, reported, actor)
            .await
            .map_err(OAuthError::from)
    }

    /// The groups claim fetched from its distributed source, as claims holding it alone.
    async fn distributed_groups(&self, c: &Connection, said: (&Claims, Option<&Claims>), sub: &str, access_token: &str) -> Option<Claims> {
        let claim = group_sync::top_claim(&c.group_sync.claim);
        let source = [Some(said.0), said.1].into_iter().flatten().find(|claims| group_sync::distributed_source(claims, claim).is_some())?;
        let fetched = match self.discovery(c, c.redirect_uri(&self.issuer)).await {
            Ok(idp) => idp.distributed_claim(source, claim, sub, access_token).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let checked = fetched.and_then(|value| {
            let count = value.as_ref().and_then(serde_json::Value::as_array).map_or(0, Vec::len);
            self.claim_limits.check_groups(count).map(|()| value)
        });
        match checked {
            Ok(value) => Some(Claims::from_iter([(claim.to_owned(), value?)])),
            Err(why) => {
                tracing::warn!(connection_id = %c.id, error = %why, "fetching the distributed groups claim failed; memberships stay as they are");
                None
            }
        }
    }

    /// Refuses a sign-in whose email lies outside the organization's domains, when the
    /// organization asks for that.
    async fn check_email_policy(&self, organization_id: &str, email: Option<&str>) -> Result<(), OAuthError> {
        let org = self.config.organization(self.store.as_ref(), organization_id).await?;
        let org = org.ok_or_else(|| oauth(ErrorCode::AccessDenied, "the organization was removed during sign-in"))?;
        let inside = email.is_some_and(|e| org.email_policy.vouches_for(&org.domains, e));
        if org.email_policy == EmailPolicy::RequireDomains && !inside {
            return Err(oauth(
                ErrorCode::AccessDenied,
                "your email address is not in one of your organization's domains; ask its administrator",
            ));
        }
        Ok(())
    }

    /// Refuses sign-ins the organization's licence does not allow.
    async fn check_licence(&self, organization_id: &str) -> Result<(), OAuthError> {
        let e = self.config.entitlements(self.store.as_ref(), organization_id).await?;
        match e.sso_refusal(self.clock.now()) {
            Some(why) => Err(oauth(ErrorCode::AccessDenied, why)),
            None => Ok(()),
        }
    }

    /// The connection of the browser's session, if it has one under which `app` signed in.
    async fn session_connection(&self, app: &Application, cookies: &HashMap<String, String>) -> Result<Option<Connection>, OAuthError> {
        let Some(id) = cookies.get(SESSION_COOKIE) else { return Ok(None) };
        let id_hash = SessionHandle::of_secret(id);
        if !self.store.session_has_signed_in(&id_hash, &app.id).await? {
            return Ok(None);
        }
        let session = self.store.session(&id_hash).await?;
        let Some(connection_id) = session.and_then(|s| s.connection_id) else { return Ok(None) };
        self.config.connection(self.store.as_ref(), &connection_id).await.map_err(OAuthError::from)
    }

    /// The browser's session, if it is live and signed in through this connection;
    /// using it counts as activity.
    async fn current_session(&self, cookies: &HashMap<String, String>, c: &Connection) -> Result<Option<Session>, OAuthError> {
        let Some(id) = cookies.get(SESSION_COOKIE) else { return Ok(None) };
        let s = self.use_session(&SessionHandle::of_secret(id)).await?;
        Ok(s.filter(|s| s.organization_id == c.organization_id && s.connection_id.as_deref() == Some(c.id.as_str())))
    }

    /// Mints an authorization code and sends the browser back to the application.
    /// `completed` is set for a sign-in just completed at the IdP: the hash of its
    /// state (used up now) and the cookie of its new session, stored with the grant.
    async fn issue_code(
        &self,
        app: &Application,
        req: &AuthorizeRequest,
        user: &UserView,
        session: &Session,
        completed: Option<(&str, SetCookie)>,
    ) -> Result<Reply, OAuthError> {
        let org = self.config.organization(self.store.as_ref(), &user.user.organization_id).await?;
        let org = org.ok_or_else(|| oauth(ErrorCode::AccessDenied, "the organization was removed during sign-in"))?;
        let claims = claims::user_claims(user, &org, &req.scopes);
        let code = random_token("");
        let t = self.clock.now();
        let sign_in =
            completed.as_ref().map(|(state_hash, _)| SignIn { session, state_hash, state_expires_at: t + self.lifetimes.login_state });
        self.store
            .create_grant(
                &Grant {
                    code_hash: handle(&code),
                    application_id: app.id.clone(),
                    redirect_uri: req.redirect_uri.clone(),
                    user_id: user.user.id.clone(),
                    session_hash: session.id_hash.clone(),
                    session_id: session.id.clone(),
                    scope: req.scopes.join(" "),
                    nonce: req.nonce.clone(),
                    code_challenge: req.code_challenge.clone(),
                    auth_time: session.auth_time,
                    claims: serde_json::Value::Object(claims),
                    code_expires_at: t + self.lifetimes.code,
                },
                sign_in,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict { field, .. } if field == "state_hash" => {
                    oauth(ErrorCode::AccessDenied, "this sign-in was already completed; start again")
                }
                e => OAuthError::from(e),
            })?;
        let cookies = completed.map(|(_, cookie)| cookie).into_iter().collect();
        Ok(self.redirect_to_app(req, &[("code", &code)], cookies))
    }

    /// The identity provider's answer at `/sso/callback/<connection id>` (`at`), or at
    /// the shared `/sso/callback` (`at` is `None`) for connections from before each had
    /// its own.
    pub async fn callback(&self, at: Option<&str>, pairs: Vec<(String, String)>, cookies: &HashMap<String, String>) -> Reply {
        let params: HashMap<String, String> = pairs.into_iter().collect();
        let Some(state) = params.get("state") else {
            return Reply::page(
                PageKind::BadRequest,
                "Sign-in failed",
                "The identity provider's answer has no state. Start again from the application.",
            );
        };
        let state_hash = handle(state);
        let cookie_name = login_state::cookie_name(&state_hash);
        // The cookie is spent whatever happens next.
        let spent = SetCookie { name: cookie_name.clone(), value: None, path: "/sso", max_age: std::time::Duration::ZERO };
        let Some(login) = cookies.get(&cookie_name).and_then(|sealed| login_state::open(&self.sealer, &state_hash, sealed)) else {
            return Reply::page(
                PageKind::BadRequest,
                "Sign-in failed",
                "This sign-in is unknown here: it was started in another browser, its cookie was lost, or it has expired. Start again from the application.",
            );
        };
        if let Err(e) = answered_where_sent(&login, at, &params) {
            tracing::warn!(connection_id = %login.connection_id, answered_at = at.unwrap_or("(shared)"), error = %e.description, "refused an IdP answer at the wrong redirect URI");
            let mut reply = if login.trial { trial_failed(&login.connection_id, e) } else { self.error_redirect(&login.request, e) };
            if let Reply::Redirect { cookies, .. } | Reply::Trial { cookies, .. } = &mut reply {
                cookies.push(spent);
            }
            return reply;
        }
        let too_slow = || oauth(ErrorCode::AccessDenied, "the sign-in took too long; try again");
        let mut reply = match (login.trial, login.expires_at < self.clock.now().unix_timestamp()) {
            (true, true) => trial_failed(&login.connection_id, too_slow()),
            (true, false) => self.finish_trial(&login, &params).await,
            (false, true) => self.error_redirect(&login.request, too_slow()),
            (false, false) => {
                let finished = self.finish(&login, &state_hash, &params, cookies).await;
                telemetry::login(
                    &login.organization_id,
                    &login.connection_id,
                    finished.as_ref().map_or_else(|e| e.code.as_str(), |_| "success"),
                );
                match finished {
                    Ok(reply) => reply,
                    Err(e) => self.error_redirect(&login.request, e),
                }
            }
        };
        if let Reply::Redirect { cookies, .. } | Reply::Trial { cookies, .. } = &mut reply {
            cookies.push(spent);
        }
        reply
    }

    async fn finish(
        &self,
        login: &LoginState,
        state_hash: &str,
        params: &HashMap<String, String>,
        cookies: &HashMap<String, String>,
    ) -> Result<Reply, OAuthError> {
        let req = &login.request;
        let app = match self.config.application(self.store.as_ref(), &req.client_id).await? {
            Some((app, _)) => app,
            None => return Err(oauth(ErrorCode::InvalidRequest, "the application was removed during sign-in")),
        };
        let connection = self.connection_of(login).await?;
        self.check_licence(&connection.organization_id).await?;
        let (identity, merged) = self.upstream_identity(login, &connection, params).await?;
        let VerifiedIdentity { tokens, sub, id_claims, userinfo, .. } = identity;
        let profile = claims::normalize(&merged);
        self.check_email_policy(&connection.organization_id, profile.email.as_deref()).await?;
        let login_at: Timestamp = self.clock.now();
        let started_at = login.expires_at - self.lifetimes.login_state.as_secs() as i64;
        let idp_auth_time = id_claims.get("auth_time").and_then(serde_json::Value::as_i64);
        let auth_time = authorize::authenticated_at(req, idp_auth_time, started_at, login_at.unix_timestamp())?;
        let auth_time = Timestamp::from_unix_timestamp(auth_time).unwrap_or(login_at);
        let user = match self.store.provision_user(&connection, &profile, login_at).await {
            Ok(Provisioned::User(u)) => *u,
            Ok(Provisioned::NoSeat(max)) => {
                return Err(oauth(
                    ErrorCode::AccessDenied,
                    format!("your organization has used all of its {max} seats; ask its administrator"),
                ))
            }
            Ok(Provisioned::Deactivated) => {
                return Err(oauth(
                    ErrorCode::AccessDenied,
                    "your organization's directory has deactivated your account; ask its administrator",
                ))
            }
            Ok(Provisioned::NotAllowed) => {
                return Err(oauth(
                    ErrorCode::AccessDenied,
                    "you have no account in this organization yet; ask its administrator to add you",
                ))
            }
            Err(StoreError::Conflict { field, .. }) => {
                return Err(oauth(
                    ErrorCode::AccessDenied,
                    format!("another user of this organization already has this {field}; ask its administrator"),
                ))
            }
            Err(e) => return Err(OAuthError::from(e)),
        };
        let actor = Actor(format!("login:{}", connection.id));
        let access_token = tokens.access_token.as_deref().unwrap_or_default();
        let user = self.sync_groups(&connection, user, (&id_claims, userinfo.as_ref()), access_token, &actor).await?;
        tracing::info!(user_id = %user.user.id, organization_id = %connection.organization_id, connection_id = %connection.id, "signed in");
        let idp_sid = id_claims.get("sid").and_then(|v| v.as_str()).map(str::to_owned);
        let upstream = UpstreamTokens {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            id_token: tokens.id_token.clone(),
            expires_at: tokens.expires_in.map(|e| login_at.unix_timestamp() + e),
            nonce: login.nonce.clone(),
            profile: merged,
            id_token_claims: id_claims,
        };
        // A fresh session id at every login (no fixation).
        let session_secret = random_token("");
        let lifetimes = self.lifetimes.session;
        let expires_at = login_at + lifetimes.absolute;
        let session = Session {
            id: new_id(IdKind::Session),
            id_hash: SessionHandle::of_secret(&session_secret),
            user_id: user.user.id.clone(),
            organization_id: connection.organization_id.clone(),
            connection_id: Some(connection.id.clone()),
            auth_time,
            created_at: login_at,
            expires_at,
            idle_expires_at: lifetimes.idle_until(login_at, expires_at),
            last_active_at: login_at,
            idp_sub: Some(sub),
            idp_sid,
            refresh: RefreshState { due_at: self.refresh.due_at(&upstream, login_at), ..Default::default() },
            upstream: Some(upstream),
        };
        let cookie = SetCookie { name: SESSION_COOKIE.into(), value: Some(session_secret), path: "/", max_age: lifetimes.absolute };
        let reply = self.issue_code(&app, req, &user, &session, Some((state_hash, cookie))).await?;
        // The session this browser had ends: the same user's applications move to the
        // new one; anyone else's sign-in through it is ended.
        if let Some(old) = cookies.get(SESSION_COOKIE) {
            let old = SessionHandle::of_secret(old);
            self.store.adopt_grants(&old, &session).await?;
            self.end_sessions(SessionFilter::Handle(&old), "replaced", &actor).await?;
        }
        Ok(reply)
    }
    /// The connection a login started with, still in that login's organization.
    pub(super) async fn connection_of(&self, login: &LoginState) -> Result<Connection, OAuthError> {
        let connection = self.config.connection(self.store.as_ref(), &login.connection_id).await?;
        // Tenant isolation: the login finishes only with the connection it started
        // with, and only inside that connection's organization.
        connection
            .filter(|c| c.organization_id == login.organization_id)
            .ok_or_else(|| oauth(ErrorCode::AccessDenied, "the organization's connection was removed during sign-in"))
    }

    /// The IdP's answer checked (RFC 9207 `iss`, errors), its code exchanged, its ID
    /// token validated (OIDC Core 3.1.3.7) and its userinfo read: who signed in, and
    /// the profile they bring, within the claim limits.
    pub(super) async fn upstream_identity(
        &self,
        login: &LoginState,
        connection: &Connection,
        params: &HashMap<String, String>,
    ) -> Result<(VerifiedIdentity, Claims), OAuthError> {
        // The answer is read before the secret, which only the code exchange needs.
        let idp = self.discovery(connection, login.redirect_uri(&self.issuer)).await.map_err(LoginError::from)?;
        let code = idp.code_in(params)?;
        let mut rp = self.authenticated(connection, idp).await?;
        let identity = rp.exchange_code(code, login.pkce_verifier.as_deref(), &login.nonce, self.clock.now().unix_timestamp()).await?;
        let profile = identity.profile();
        self.check_claim_limits(connection, &identity, &profile).map_err(|why| oauth(ErrorCode::AccessDenied, why))?;
        Ok((identity, profile))
    }

    /// Refuses claims over the configured ceilings, before anything is written.
    pub(super) fn check_claim_limits(&self, c: &Connection, identity: &VerifiedIdentity, profile: &Claims) -> Result<(), String> {
        self.claim_limits.check_size(profile)?;
        let groups = group_sync::reported_groups(&identity.id_claims, identity.userinfo.as_ref(), &c.group_sync.claim);
        self.claim_limits.check_groups(groups.map_or(0, |g| g.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::super::testkit::Scene;
    use super::super::Reply;
    use crate::core::session::SessionLifetimes;

    fn goes_to_idp(scene: &Scene, reply: &Reply) -> bool {
        matches!(reply, Reply::Redirect { location, .. } if location.starts_with(&scene.op.issuer))
    }

    /// A sign-in in process, the clock held by the test: the application's tokens
    /// work; a second sign-in in the same browser comes from the session, without the
    /// IdP; once the clock passes the session's idle timeout, the IdP is asked again,
    /// and an access token past its lifetime stops working.
    #[tokio::test]
    async fn a_session_serves_sign_ins_until_the_clock_passes_its_idle_timeout() {
        let scene = Scene::new().await;
        let first = scene.sign_in("alice", HashMap::new()).await;
        let claims = scene.userinfo(&first.tokens.access_token).await.expect("userinfo answers");
        assert_eq!(claims["email"], "alice@fake.test");
        assert_eq!(scene.op.token_requests(), 1);

        scene.clock.advance(Duration::from_secs(600));
        let again = scene.sign_in("alice", first.cookies.clone()).await;
        assert_eq!(scene.op.token_requests(), 1, "from the session");
        let claims_again = scene.userinfo(&again.tokens.access_token).await.unwrap();
        assert_eq!(claims_again["sub"], claims["sub"]);

        // The second sign-in was activity: the idle timeout counts from it.
        let idle = SessionLifetimes::default().idle;
        scene.clock.advance(idle - Duration::from_secs(1));
        assert!(!goes_to_idp(&scene, &scene.authorize(&[], &first.cookies).await), "still within the idle timeout");
        scene.clock.advance(idle + Duration::from_secs(1));
        assert!(goes_to_idp(&scene, &scene.authorize(&[], &first.cookies).await), "idle too long: the IdP again");
        assert!(scene.userinfo(&first.tokens.access_token).await.is_none(), "the access token outlived its hour");
    }

    /// A login state lives ten minutes: an IdP answer after that is refused with an
    /// error for the application, not a session.
    #[tokio::test]
    async fn an_idp_answer_after_the_login_state_expired_is_refused() {
        let scene = Scene::new().await;
        let Reply::Redirect { location, cookies } = scene.authorize(&[("login_hint", "alice")], &HashMap::new()).await else { panic!() };
        let cookies: HashMap<String, String> = cookies.into_iter().filter_map(|c| Some((c.name, c.value?))).collect();
        let answer =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(&location).send().await.unwrap();
        let callback = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
        scene.clock.advance(scene.broker.lifetimes.login_state + Duration::from_secs(1));
        let reply = scene.broker.callback(Some(&scene.connection.id), callback.query_pairs().into_owned().collect(), &cookies).await;
        let Reply::Redirect { location, .. } = reply else { panic!("{reply:?}") };
        assert!(location.contains("error=access_denied"), "{location}");
        assert_eq!(scene.op.token_requests(), 0, "no code was exchanged");
    }
}
