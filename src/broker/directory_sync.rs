//! Directory sync: the SCIM service provider's work behind the HTTP handlers, and
//! the directories' admin writes.
//!
//! A user the directory deactivates (`active: false`) or deletes loses every
//! session at once, exactly as a revocation does: codes and tokens revoked, other
//! replicas told, back-channel logout sent to the applications. The store refuses
//! their next sign-in whatever their IdP says.

use serde_json::{json, Value};

use super::Broker;
use crate::core::audit::Actor;
use crate::core::ids::{new_id, IdKind};
use crate::core::scim::directory::{CreateDirectory, UserDirectory};
use crate::core::scim::filter::{self, Narrowing};
use crate::core::scim::patch::{self, MemberChange};
use crate::core::scim::resource::{self, Attributes, GroupFields, Meta, Selected, UserFields};
use crate::core::scim::schema::ResourceType;
use crate::core::scim::{ScimError, ScimFailure, ScimResult};
use crate::crypto::{hash_secret, random_token, verify_secret};
use crate::store::directory_sync::{IfMatch, ResourceQuery, StoredResource};
use crate::store::{SessionFilter, StoreError, StoreResult};

/// Most resources one list response carries; a client asking for more gets this many.
pub const MAX_RESULTS: u32 = 1000;
const DEFAULT_COUNT: u32 = 100;
/// Rows read per round when a filter must be evaluated here.
const SCAN_CHUNK: u32 = 500;

/// A list request (RFC 7644 §3.4.2).
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl ListRequest {
    /// The 1-based index of the first resource asked for.
    fn start(&self) -> u64 {
        self.start_index.unwrap_or(1).max(1) as u64
    }

    /// How many resources at most, within [`MAX_RESULTS`].
    fn count(&self) -> u64 {
        self.count.unwrap_or(i64::from(DEFAULT_COUNT)).clamp(0, i64::from(MAX_RESULTS)) as u64
    }
}

/// `attributes` and `excludedAttributes` of a request.
#[derive(Debug, Default)]
pub struct Selection {
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl Selection {
    fn parse(&self, rt: ResourceType) -> (Vec<Selected>, Vec<Selected>) {
        let parse = |list: &Option<String>| list.as_deref().map(|l| resource::selection(rt, l)).unwrap_or_default();
        (parse(&self.attributes), parse(&self.excluded_attributes))
    }
}

/// A store failure as SCIM reports it.
impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Scim(e) => e,
            StoreError::NotFound(what) => ScimError::not_found(what),
            StoreError::Conflict { message, .. } => ScimError::new(ScimFailure::Conflict, message),
            StoreError::Invalid(v) => ScimError::value(v.to_string()),
            StoreError::Refused { message, .. } => ScimError::value(message),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ScimError::new(ScimFailure::Unavailable, "ssogate's database is not reachable; try again shortly")
            }
            StoreError::Database(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "store failure");
                ScimError::new(ScimFailure::Internal, "ssogate could not complete the request; try again")
            }
        }
    }
}

/// The cache behind [`Broker::scim_activity`].
pub fn activity_cache() -> moka::sync::Cache<String, ()> {
    moka::sync::Cache::builder().max_capacity(100_000).time_to_live(std::time::Duration::from_secs(60)).build()
}

/// Who acts for the audit log: the directory.
fn actor(d: &UserDirectory) -> Actor {
    Actor(format!("scim:{}", d.id))
}

impl Broker {
    /// The directory a SCIM request is for, if `token` is its bearer token. An
    /// unknown directory and a wrong token are refused alike.
    pub async fn scim_directory(&self, directory_id: &str, token: &str) -> ScimResult<UserDirectory> {
        let refused = || ScimError::new(ScimFailure::Unauthorized, "the bearer token is not valid for this directory");
        let (d, hash) = self.store.directory_credentials(directory_id).await?.ok_or_else(refused)?;
        if !verify_secret(token, &hash) {
            return Err(refused());
        }
        Ok(d)
    }

    /// Records the outcome of a request on the directory (its activity, and the last
    /// error the admin sees).
    pub async fn scim_note(&self, d: &UserDirectory, outcome: Result<(), &ScimError>) {
        // A write may have queued events.
        self.deliveries_wake.notify_one();
        // Bounded: a client's bad input is echoed in some details.
        let error = outcome.err().filter(|e| e.failure != ScimFailure::NotFound).map(|e| e.detail.chars().take(500).collect::<String>());
        let error = error.as_deref();
        if error.is_none() && self.scim_activity.contains_key(&d.id) {
            return;
        }
        self.scim_activity.insert(d.id.clone(), ());
        if let Err(e) = self.store.note_directory_request(&d.id, self.clock.now(), error).await {
            tracing::warn!(error = %e, directory_id = %d.id, "the directory's activity could not be recorded");
        }
    }

    /// The SCIM base URL an IdP is given for the directory.
    pub fn scim_base_url(&self, d: &UserDirectory) -> String {
        format!("{}/scim/v2/{}", self.issuer.trim_end_matches('/'), d.id)
    }

    fn render(&self, d: &UserDirectory, rt: ResourceType, r: &StoredResource) -> Value {
        let base = self.scim_base_url(d);
        let rfc3339 = |t: crate::core::Timestamp| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let meta = Meta {
            created: rfc3339(r.created_at),
            last_modified: rfc3339(r.updated_at),
            version: r.version,
            location: format!("{base}/{}/{}", rt.endpoint(), r.id),
        };
        let mut attrs = r.attrs.clone();
        match (rt, &r.related) {
            (ResourceType::User, Some(groups)) if !groups.is_empty() => {
                let with_ref = groups.iter().map(|g| {
                    let mut g = g.clone();
                    g["$ref"] = json!(format!("{base}/Groups/{}", g["value"].as_str().unwrap_or_default()));
                    g
                });
                attrs.insert("groups".into(), Value::Array(with_ref.collect()));
            }
            (ResourceType::Group, Some(members)) if !members.is_empty() => {
                attrs.insert("members".into(), Value::Array(members.clone()));
            }
            _ => {}
        }
        resource::render(rt, &r.id, &attrs, &meta)
    }

    /// The resource as returned, with its ETag.
    fn answer(&self, d: &UserDirectory, rt: ResourceType, r: &StoredResource, sel: &Selection) -> (Value, String) {
        let (attributes, excluded) = sel.parse(rt);
        (resource::project(self.render(d, rt, r), &attributes, &excluded), resource::etag(r.version))
    }

    pub async fn scim_get(&self, d: &UserDirectory, rt: ResourceType, id: &str, sel: &Selection) -> ScimResult<(Value, String)> {
        let (attributes, excluded) = sel.parse(rt);
        let found = match rt {
            ResourceType::User => self.store.scim_user(&d.id, id).await?,
            ResourceType::Group => self.store.scim_group(&d.id, id, resource::wants_members(&attributes, &excluded)).await?,
        };
        let r = found.ok_or_else(|| ScimError::not_found(rt.name()))?;
        Ok(self.answer(d, rt, &r, sel))
    }

    pub async fn scim_create(&self, d: &UserDirectory, rt: ResourceType, body: &Value) -> ScimResult<(Value, String)> {
        let mut attrs = resource::read(rt, body)?;
        let created = match rt {
            ResourceType::User => {
                let fields = UserFields::of(&attrs)?;
                let written = self.store.scim_create_user(d, attrs, fields, &actor(d)).await?;
                self.after_user_write(d, &written.resource.id, written.active).await?;
                written.resource
            }
            ResourceType::Group => {
                let members = resource::take_members(&mut attrs)?;
                let fields = GroupFields::of(&attrs)?;
                self.store.scim_create_group(d, attrs, fields, members, &actor(d)).await?
            }
        };
        Ok(self.answer(d, rt, &created, &Selection::default()))
    }

    /// A PUT (`patch` false) or PATCH. A group's PATCH answers nothing (204): its
    /// members are not sent back, so its cost stays that of the members it changes.
    pub async fn scim_update(
        &self,
        d: &UserDirectory,
        rt: ResourceType,
        id: &str,
        if_match: IfMatch,
        body: &Value,
        is_patch: bool,
    ) -> ScimResult<Option<(Value, String)>> {
        let body = body.clone();
        match rt {
            ResourceType::User => {
                let edit = Box::new(move |attrs: &mut Attributes| {
                    let new = if is_patch {
                        patch::apply(rt, attrs, &body)?;
                        resource::read(rt, &Value::Object(std::mem::take(attrs)))?
                    } else {
                        resource::read(rt, &body)?
                    };
                    *attrs = new;
                    UserFields::of(attrs)
                });
                let written = self.store.scim_update_user(d, id, if_match, edit, &actor(d)).await?;
                self.after_user_write(d, id, written.active).await?;
                Ok(Some(self.answer(d, rt, &written.resource, &Selection::default())))
            }
            ResourceType::Group => {
                let edit = Box::new(move |attrs: &mut Attributes| {
                    let changes = if is_patch {
                        patch::apply(rt, attrs, &body)?
                    } else {
                        *attrs = resource::read(rt, &body)?;
                        vec![MemberChange::Replace(resource::take_members(attrs)?)]
                    };
                    Ok((GroupFields::of(attrs)?, changes))
                });
                let group = self.store.scim_update_group(d, id, if_match, edit, &actor(d)).await?;
                if is_patch {
                    return Ok(None);
                }
                let full = self.store.scim_group(&d.id, id, true).await?.unwrap_or(group);
                Ok(Some(self.answer(d, rt, &full, &Selection::default())))
            }
        }
    }

    pub async fn scim_delete(&self, d: &UserDirectory, rt: ResourceType, id: &str, if_match: IfMatch) -> ScimResult<()> {
        match rt {
            ResourceType::User => {
                self.store.scim_delete_user(d, id, if_match, &actor(d)).await?;
                self.after_user_write(d, id, false).await
            }
            ResourceType::Group => Ok(self.store.scim_delete_group(d, id, if_match, &actor(d)).await?),
        }
    }

    /// A user who may no longer sign in loses every session now. Done on every write
    /// that leaves them inactive: a request the IdP retries after a failure here
    /// finishes the job.
    async fn after_user_write(&self, d: &UserDirectory, user_id: &str, active: bool) -> ScimResult<()> {
        if !active {
            self.end_sessions(SessionFilter::User(user_id), "user_deactivated", &actor(d)).await?;
        }
        Ok(())
    }

    pub async fn scim_list(&self, d: &UserDirectory, rt: ResourceType, req: &ListRequest) -> ScimResult<Value> {
        let parsed = req.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()).map(filter::parse).transpose()?;
        let (start, count) = (req.start(), req.count());
        let sel = Selection { attributes: req.attributes.clone(), excluded_attributes: req.excluded_attributes.clone() };
        let (attributes, excluded) = sel.parse(rt);
        let narrowing: Option<Narrowing> = parsed.as_ref().and_then(|f| filter::narrowing(rt, f));
        // A filter on members needs them to decide.
        let names_members = req.filter.as_deref().is_some_and(|f| f.to_ascii_lowercase().contains("members"));
        let with_related = rt == ResourceType::Group && (resource::wants_members(&attributes, &excluded) || names_members);
        let (page, total) = match &parsed {
            None => {
                let q = ResourceQuery { narrowing: None, after: "", offset: start - 1, limit: count as u32, with_related };
                let rows = self.resources(d, rt, &q).await?;
                let (users, groups) = self.store.directory_counts(&d.id).await?;
                let total = if rt == ResourceType::User { users } else { groups };
                (rows.iter().map(|r| resource::project(self.render(d, rt, r), &attributes, &excluded)).collect(), total)
            }
            Some(f) => self.scan(d, rt, f, narrowing.as_ref(), with_related, start, count, (&attributes, &excluded)).await?,
        };
        Ok(resource::list_response(total, start, page))
    }

    async fn resources(&self, d: &UserDirectory, rt: ResourceType, q: &ResourceQuery<'_>) -> ScimResult<Vec<StoredResource>> {
        Ok(match rt {
            ResourceType::User => self.store.scim_users(&d.id, q).await?,
            ResourceType::Group => self.store.scim_groups(&d.id, q).await?,
        })
    }

    /// A search of every resource type at once (`POST /.search`, RFC 7644
    /// §3.4.3): users, then groups, paged as one list.
    pub async fn scim_search_all(&self, d: &UserDirectory, req: &ListRequest) -> ScimResult<Value> {
        let (start, count) = (req.start() as i64, req.count() as i64);
        let users =
            self.scim_list(d, ResourceType::User, &ListRequest { start_index: Some(start), count: Some(count), ..req.clone() }).await?;
        let users_total = users["totalResults"].as_i64().unwrap_or(0);
        let mut resources = users["Resources"].as_array().cloned().unwrap_or_default();
        let group_start = (start - users_total).max(1);
        let group_count = count - resources.len() as i64;
        let groups = self
            .scim_list(d, ResourceType::Group, &ListRequest { start_index: Some(group_start), count: Some(group_count), ..req.clone() })
            .await?;
        resources.extend(groups["Resources"].as_array().cloned().unwrap_or_default());
        let total = users_total + groups["totalResults"].as_i64().unwrap_or(0);
        Ok(resource::list_response(total as u64, start as u64, resources))
    }

    /// Evaluates a filter over the directory's resources (those an index narrows to,
    /// if it can), keeping the requested page and counting every match.
    #[allow(clippy::too_many_arguments)]
    async fn scan(
        &self,
        d: &UserDirectory,
        rt: ResourceType,
        f: &scim_v2::filter::Filter,
        narrowing: Option<&Narrowing>,
        with_related: bool,
        start: u64,
        count: u64,
        (attributes, excluded): (&[Selected], &[Selected]),
    ) -> ScimResult<(Vec<Value>, u64)> {
        let mut page = Vec::new();
        let mut total: u64 = 0;
        let mut after = String::new();
        loop {
            let q = ResourceQuery { narrowing, after: &after, offset: 0, limit: SCAN_CHUNK, with_related };
            let rows = self.resources(d, rt, &q).await?;
            let done = rows.len() < SCAN_CHUNK as usize;
            for r in &rows {
                let rendered = self.render(d, rt, r);
                if !filter::matches(rt, f, &rendered) {
                    continue;
                }
                total += 1;
                if total >= start && (page.len() as u64) < count {
                    page.push(resource::project(rendered, attributes, excluded));
                }
            }
            match rows.last() {
                Some(last) if !done => after = last.id.clone(),
                _ => break,
            }
        }
        Ok((page, total))
    }
}

/// The directories' admin writes.
impl Broker {
    /// The directory and its bearer token, in clear this once (it is stored hashed).
    pub async fn create_directory(
        &self,
        organization_id: &str,
        new: CreateDirectory,
        actor: &Actor,
    ) -> StoreResult<(UserDirectory, String)> {
        let t = self.clock.now();
        let d = UserDirectory {
            id: new_id(IdKind::Directory),
            organization_id: organization_id.to_owned(),
            connection_id: new.connection_id,
            name: new.name,
            token_rotated_at: t,
            last_request_at: None,
            last_error: None,
            last_error_at: None,
            created_at: t,
            updated_at: t,
        };
        let token = random_token("scim_");
        let d = self.store.create_directory(&d, &hash_secret(&token), actor).await?;
        Ok((d, token))
    }

    /// A new bearer token, in clear this once; the old one stops working at once.
    pub async fn rotate_directory_token(&self, id: &str, actor: &Actor) -> StoreResult<(UserDirectory, String)> {
        let token = random_token("scim_");
        let d = self.store.set_directory_token(id, &hash_secret(&token), actor).await?;
        Ok((d, token))
    }

    pub async fn delete_directory(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.store.delete_directory(id, actor).await?;
        self.changed();
        Ok(())
    }
}
