//! The few HTML pages ssogate shows a person: errors that must not be redirected.

use axum::http::{header, StatusCode};
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}p{line-height:1.5}th{text-align:left;padding-right:1rem;font-weight:500}\
pre{background:#f5f5f5;padding:.75rem;overflow:auto}.ok{color:#146c2e}.err{color:#a11}\
button{font:inherit;padding:.5rem 1rem}";

/// Who may show a page in a frame: nobody, except that the front-channel logout page
/// is loaded in an iframe by its IdP (OIDC Front-Channel Logout 1.0 §2).
#[derive(Clone, Copy)]
enum Framing<'a> {
    Nobody,
    Only(&'a str),
}

/// Nothing but the page's own style: no script, no framing, no plugins, forms only
/// back to ssogate (a page with a form that leads on elsewhere says so).
fn csp(forms_lead_elsewhere: bool, framing: Framing) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    let style = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    // Browsers apply form-action to the redirects that follow a submission too, so a
    // form whose answer redirects to an application cannot be held to 'self'.
    let form_action = if forms_lead_elsewhere { "" } else { " form-action 'self';" };
    let ancestors = match framing {
        Framing::Nobody => "'none'",
        Framing::Only(origin) => origin,
    };
    format!(
        "default-src 'none'; style-src 'sha256-{style}'; img-src 'self' data:;{form_action} frame-ancestors {ancestors}; base-uri 'none'"
    )
}

/// A page around `body`, which the caller has escaped.
pub fn html_page(status: u16, title: &str, body: &str) -> Response {
    render(status, title, body, false, Framing::Nobody)
}

/// A page whose form posts to ssogate, which then redirects to an application.
pub fn form_page(status: u16, title: &str, body: &str) -> Response {
    render(status, title, body, true, Framing::Nobody)
}

/// A message page that `origin` (a serialized origin, `https://host[:port]`) alone
/// may show in a frame.
pub fn page_framed_by(status: u16, title: &str, message: &str, origin: &str) -> Response {
    render(status, title, &format!("<p>{}</p>", escape(message)), false, Framing::Only(origin))
}

fn render(status: u16, title: &str, body: &str, forms_lead_elsewhere: bool, framing: Framing) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = [
        (header::CACHE_CONTROL, "no-store".to_owned()),
        (header::CONTENT_SECURITY_POLICY, csp(forms_lead_elsewhere, framing)),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
    ];
    let mut response = (status, headers, Html(page)).into_response();
    // X-Frame-Options cannot name an origin; CSP frame-ancestors says it all there.
    if matches!(framing, Framing::Nobody) {
        response.headers_mut().insert(header::X_FRAME_OPTIONS, axum::http::HeaderValue::from_static("DENY"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_style_is_the_one_the_policy_allows() {
        use base64::Engine;
        let policy = csp(false, Framing::Nobody);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
        assert!(policy.contains(&base64::engine::general_purpose::STANDARD.encode(digest.as_ref())));
        assert!(policy.contains("form-action 'self'") && !csp(true, Framing::Nobody).contains("form-action"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(csp(false, Framing::Only("https://idp.example.com")).contains("frame-ancestors https://idp.example.com;"));
        assert!(policy.starts_with("default-src 'none'"));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    }
}
