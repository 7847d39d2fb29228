//! Reading request cookies and writing `Set-Cookie` headers, the same way for the
//! sign-in flow and the console: always `HttpOnly`, `Secure` unless a dev deployment
//! serves plain http.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

/// The request's cookies by name.
pub fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            Cookie::split_parse(v.to_owned())
                .filter_map(Result::ok)
                .map(|c| (c.name().to_owned(), c.value().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A `Set-Cookie` value; no value clears the cookie.
#[expect(clippy::expect_used, reason = "every cookie ssogate sets holds URL-safe base64 (random or sealed), never a control character")]
pub fn set_cookie(name: &str, value: Option<&str>, path: &str, max_age: Duration, secure: bool, same_site: SameSite) -> HeaderValue {
    let max_age = if value.is_some() { max_age } else { Duration::ZERO };
    let cookie = Cookie::build((name, value.unwrap_or_default()))
        .path(path)
        .http_only(true)
        .secure(secure)
        .same_site(same_site)
        .max_age(time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("cookie values are URL-safe")
}
