//! SCIM 2.0 (RFC 7643, RFC 7644) as pure rules: the schemas, reading resources
//! as clients send them, filters, PATCH, and what a resource means for the
//! directory's user or group. No I/O: the store keeps resources, the broker
//! applies their consequences, the HTTP layer speaks the protocol.

pub mod directory;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;

use std::fmt;

/// `scimType` of a 400 or 409 (RFC 7644 §3.12, Table 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
        }
    }
}

/// What went wrong, as SCIM tells it; the HTTP layer picks the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimFailure {
    /// The request is wrong in the way `ScimType` says.
    Invalid(ScimType),
    /// Another resource already has a unique value (409 `uniqueness`).
    Conflict,
    /// `If-Match` names a version that is no longer current.
    VersionMismatch,
    NotFound,
    Unauthorized,
    /// Allowed in principle, refused here (no seat left for another active user).
    Forbidden,
    TooManyRequests,
    /// ssogate's database cannot be reached: worth retrying.
    Unavailable,
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimError {
    pub failure: ScimFailure,
    pub detail: String,
}

impl ScimError {
    pub fn new(failure: ScimFailure, detail: impl Into<String>) -> Self {
        ScimError { failure, detail: detail.into() }
    }

    pub fn invalid(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(ScimFailure::Invalid(scim_type), detail)
    }

    pub fn value(detail: impl Into<String>) -> Self {
        Self::invalid(ScimType::InvalidValue, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ScimFailure::NotFound, format!("{what} not found"))
    }
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ScimError {}

pub type ScimResult<T> = Result<T, ScimError>;
