//! A browser, as far as sign-in needs one: it keeps cookies and follows redirects
//! one hop at a time, stopping when it reaches the application.

use reqwest::StatusCode;

pub struct Browser {
    http: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    /// Every Set-Cookie header received, in order.
    pub set_cookies: std::sync::Mutex<Vec<String>>,
}

/// Where a sign-in journey ended.
#[derive(Debug)]
pub enum Landing {
    /// Redirected to the application: the full URL with its query.
    App(url::Url),
    /// A page was shown (status, body).
    Page(StatusCode, String),
}

impl Landing {
    pub fn app(self) -> url::Url {
        match self {
            Landing::App(u) => u,
            Landing::Page(s, b) => panic!("expected a redirect to the app, got a {s} page: {b}"),
        }
    }

    pub fn param(&self, name: &str) -> Option<String> {
        match self {
            Landing::App(u) => u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()),
            Landing::Page(..) => None,
        }
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { http, jar, set_cookies: Default::default() }
    }

    /// The value of cookie `name` the browser would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let header = self.jar.cookies(&url.parse().unwrap())?;
        header.to_str().unwrap().split("; ").find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }

    /// Plants a cookie, as another browser holding it would send it.
    pub fn set_cookie(&self, url: &str, cookie: &str) {
        self.jar.add_cookie_str(cookie, &url.parse().unwrap());
    }

    /// Follows redirects from `start` until one leads to `app_prefix` or a page is
    /// shown; returns the landing and every URL visited on the way.
    pub async fn follow(&self, start: &str, app_prefix: &str) -> (Landing, Vec<String>) {
        let mut url = url::Url::parse(start).unwrap();
        let mut visited = vec![];
        for _ in 0..20 {
            if url.as_str().starts_with(app_prefix) {
                return (Landing::App(url), visited);
            }
            visited.push(url.to_string());
            let resp = self.http.get(url.clone()).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let status = resp.status();
            self.set_cookies.lock().unwrap().extend(resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()));
            if status.is_redirection() {
                let location = resp.headers()["location"].to_str().unwrap().to_owned();
                url = url.join(&location).unwrap();
            } else {
                return (Landing::Page(status, resp.text().await.unwrap_or_default()), visited);
            }
        }
        panic!("too many redirects: {visited:?}");
    }

    /// Submits the first form of `html` (shown at `page_url`) with its hidden fields
    /// plus `extra`, as a person clicking its button would, then follows redirects
    /// as [`follow`](Self::follow) does.
    pub async fn submit_form(&self, page_url: &str, html: &str, extra: &[(&str, &str)], app_prefix: &str) -> (Landing, Vec<String>) {
        let attr = |tag: &str, name: &str| -> Option<String> {
            let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
            Some(tag[at..].split('"').next()?.replace("&amp;", "&"))
        };
        let form_at = html.find("<form").expect("the page has a form");
        let form = &html[form_at..html[form_at..].find("</form>").map_or(html.len(), |e| form_at + e)];
        let action = url::Url::parse(page_url).unwrap().join(&attr(form, "action").expect("the form has an action")).unwrap();
        let mut fields: Vec<(String, String)> = form
            .split("<input")
            .skip(1)
            .filter(|i| i.contains("type=\"hidden\""))
            .filter_map(|i| Some((attr(i, "name")?, attr(i, "value").unwrap_or_default())))
            .collect();
        fields.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        let resp = self
            .http
            .post(action.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {action}: {e}"));
        let status = resp.status();
        if !status.is_redirection() {
            return (Landing::Page(status, resp.text().await.unwrap_or_default()), vec![action.to_string()]);
        }
        let next = action.join(resp.headers()["location"].to_str().unwrap()).unwrap();
        let (landing, mut visited) = self.follow(next.as_str(), app_prefix).await;
        visited.insert(0, action.to_string());
        (landing, visited)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
