//! The one error of the pure core: some input field is not acceptable.

/// Input that cannot be accepted, naming the field at fault so an admin (or the console)
/// can point at it. `field` uses the JSON path of the request body (`domains[1]`,
/// `group_sync.mapping`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error, reported under a parent path (`mapping` → `group_sync.mapping`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

pub type Validated<T> = Result<T, ValidationError>;
