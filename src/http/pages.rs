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

/// What a page does beyond showing text.
#[derive(Clone, Copy)]
struct Page<'a> {
    /// Its forms post to ssogate, which redirects to an application.
    forms_lead_elsewhere: bool,
    framing: Framing<'a>,
    /// Pages it loads in frames (front-channel logout of applications).
    frames: &'a [String],
    /// Where it moves on to by itself.
    then: Option<&'a str>,
}

impl Default for Page<'_> {
    fn default() -> Self {
        Page { forms_lead_elsewhere: false, framing: Framing::Nobody, frames: &[], then: None }
    }
}

/// Nothing but the page's own style: no script, no plugins, forms only back to
/// ssogate (a page with a form that leads on elsewhere says so), framed by nobody
/// (or the one origin named), framing only the origins of its own frames.
fn csp(page: Page) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    let style = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    // Browsers apply form-action to the redirects that follow a submission too, so a
    // form whose answer redirects to an application cannot be held to 'self'.
    let form_action = if page.forms_lead_elsewhere { "" } else { " form-action 'self';" };
    let ancestors = match page.framing {
        Framing::Nobody => "'none'",
        Framing::Only(origin) => origin,
    };
    let mut origins: Vec<String> =
        page.frames.iter().filter_map(|f| url::Url::parse(f).ok()).map(|u| u.origin().ascii_serialization()).collect();
    origins.sort();
    origins.dedup();
    let frame_src = if origins.is_empty() { String::new() } else { format!(" frame-src {};", origins.join(" ")) };
    format!(
        "default-src 'none'; style-src 'sha256-{style}'; img-src 'self' data:;{form_action}{frame_src} frame-ancestors {ancestors}; base-uri 'none'"
    )
}

/// A page around `body`, which the caller has escaped.
pub fn html_page(status: u16, title: &str, body: &str) -> Response {
    render(status, title, body, Page::default())
}

/// A page whose form posts to ssogate, which then redirects to an application.
pub fn form_page(status: u16, title: &str, body: &str) -> Response {
    render(status, title, body, Page { forms_lead_elsewhere: true, ..Page::default() })
}

/// A message page that `origin` (a serialized origin, `https://host[:port]`) alone
/// may show in a frame, framing in turn the applications' front-channel logout pages.
pub fn page_framed_by(status: u16, title: &str, message: &str, origin: &str, frames: &[String]) -> Response {
    let body = format!("<p>{}</p>{}", escape(message), iframes(frames));
    render(status, title, &body, Page { framing: Framing::Only(origin), frames, ..Page::default() })
}

/// Signed out: the applications' front-channel logout pages load in frames (OIDC
/// Front-Channel Logout 1.0 §3), then the browser moves on to `then` by itself, or
/// by the link if it does not.
pub fn signed_out_of_apps(frames: &[String], then: Option<&str>) -> Response {
    let onward = then.map(|t| format!("<p><a href=\"{}\">Continue</a></p>", escape(t))).unwrap_or_default();
    let body = format!("<p>You are signed out of ssogate and of your applications.</p>{onward}{}", iframes(frames));
    render(200, "Signed out", &body, Page { frames, then, ..Page::default() })
}

fn iframes(frames: &[String]) -> String {
    frames.iter().map(|f| format!("<iframe hidden src=\"{}\"></iframe>", escape(f))).collect()
}

/// How long the applications' frames get before the browser moves on.
const FRAMES_SECONDS: u32 = 2;

fn render(status: u16, title: &str, body: &str, page: Page) -> Response {
    let refresh =
        page.then.map(|t| format!("<meta http-equiv=\"refresh\" content=\"{FRAMES_SECONDS};url={}\">", escape(t))).unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
{refresh}<title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = [
        (header::CACHE_CONTROL, "no-store".to_owned()),
        (header::CONTENT_SECURITY_POLICY, csp(page)),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
    ];
    let mut response = (status, headers, Html(html)).into_response();
    // X-Frame-Options cannot name an origin; CSP frame-ancestors says it all there.
    if matches!(page.framing, Framing::Nobody) {
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
        let policy = csp(Page::default());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
        assert!(policy.contains(&base64::engine::general_purpose::STANDARD.encode(digest.as_ref())));
        assert!(
            policy.contains("form-action 'self'") && !csp(Page { forms_lead_elsewhere: true, ..Page::default() }).contains("form-action")
        );
        assert!(policy.contains("frame-ancestors 'none'") && !policy.contains("frame-src"));
        assert!(csp(Page { framing: Framing::Only("https://idp.example.com"), ..Page::default() })
            .contains("frame-ancestors https://idp.example.com;"));
        assert!(policy.starts_with("default-src 'none'"));
        let frames = ["https://a.example/fc?iss=x".to_owned(), "http://127.0.0.1:8080/fc".to_owned(), "https://a.example/other".to_owned()];
        let framing = csp(Page { frames: &frames, ..Page::default() });
        assert!(framing.contains(" frame-src http://127.0.0.1:8080 https://a.example;"), "{framing}");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    }
}
