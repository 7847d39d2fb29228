//! The few HTML pages ssogate shows a person: errors that must not be redirected.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn message_page(status: u16, title: &str, message: &str) -> Response {
    html_page(status, title, &format!("<p>{}</p>", escape(message)))
}

/// A page around `body`, which the caller has escaped.
pub fn html_page(status: u16, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}p{{line-height:1.5}}th{{text-align:left;padding-right:1rem;font-weight:500}}\
pre{{background:#f5f5f5;padding:.75rem;overflow:auto}}.ok{{color:#146c2e}}.err{{color:#a11}}</style></head>\
<body><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, [("cache-control", "no-store"), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer")], Html(page)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    }
}
