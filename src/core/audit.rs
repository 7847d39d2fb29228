//! Audit-log entries: who changed what. Secrets never reach these types, so they can
//! never reach the log.

use serde::Serialize;
use serde_json::{Map, Value};

use super::Timestamp;

#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    pub id: String,
    pub organization_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub changes: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// Who is acting, as recorded in the audit log.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

impl Actor {
    pub fn admin_token() -> Self {
        Actor("admin_token".into())
    }

    /// An admin working in the web console (signed in there with the admin token).
    pub fn admin_console() -> Self {
        Actor("admin_console".into())
    }
}

/// `{field: {"from": old, "to": new}}` for each top-level field that changed, leaving
/// out bookkeeping fields that change on every write.
pub fn diff(before: &Value, after: &Value) -> Value {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for (key, new) in a {
        if key == "updated_at" {
            continue;
        }
        let old = b.get(key).unwrap_or(&Value::Null);
        if old != new {
            out.insert(key.clone(), serde_json::json!({ "from": old, "to": new }));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_changed_fields_only() {
        let before = json!({"name": "A", "slug": "a", "updated_at": "x"});
        let after = json!({"name": "B", "slug": "a", "updated_at": "y"});
        assert_eq!(diff(&before, &after), json!({"name": {"from": "A", "to": "B"}}));
        assert_eq!(diff(&after, &after), json!({}));
    }
}
