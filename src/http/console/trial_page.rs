//! The page a try-it sign-in ends on: what ssogate would make of the person who
//! signed in, or why the sign-in failed. Every value is escaped.

use axum::response::Response;

use crate::broker::{pretty, TrialOutcome, TrialPreview};
use crate::http::pages::{escape, html_page};

pub fn trial_page(outcome: &TrialOutcome) -> Response {
    let back = format!("/admin#/connections/{}", escape(&outcome.connection_id));
    let body = match &outcome.result {
        Ok(p) => format!(
            "<p class=\"ok\" id=\"trial-result\" data-outcome=\"ok\">The sign-in worked. No user was created or changed.</p>{}",
            preview(p)
        ),
        Err(e) => format!(
            "<p class=\"err\" id=\"trial-result\" data-outcome=\"error\"><b>{}</b>: {}</p>\
             <p>Check the connection's settings and the IdP's application, then try again.</p>",
            escape(e.code.as_str()),
            escape(&e.description)
        ),
    };
    html_page(200, "Try it: sign-in preview", &format!("{body}<p><a href=\"{back}\">Back to the connection</a></p>"))
}

fn row(label: &str, value: Option<&str>) -> String {
    format!("<tr><th>{}</th><td>{}</td></tr>", escape(label), value.map(escape).unwrap_or_else(|| "<i>none</i>".into()))
}

fn list(id: &str, items: &[String]) -> String {
    if items.is_empty() {
        return format!("<p id=\"{id}\"><i>none</i></p>");
    }
    let li: String = items.iter().map(|i| format!("<li>{}</li>", escape(i))).collect();
    format!("<ul id=\"{id}\">{li}</ul>")
}

fn preview(p: &TrialPreview) -> String {
    let profile = &p.profile;
    let rows = [
        row("IdP subject (sub)", Some(&profile.idp_sub)),
        row("Email", profile.email.as_deref()),
        row("Email verified", Some(if profile.email_verified { "yes" } else { "no" })),
        row("Name", profile.name.as_deref()),
        row("First name", profile.first_name.as_deref()),
        row("Last name", profile.last_name.as_deref()),
        row("Username", profile.username.as_deref()),
        row("Hosted domain (hd)", profile.hd.as_deref()),
        row("Role", Some(p.role)),
    ]
    .concat();
    let notes: String = p.notes.iter().map(|n| format!("<li>{}</li>", escape(n))).collect();
    let userinfo = p.userinfo.as_ref().map(|u| format!("<h2>Userinfo</h2><pre>{}</pre>", escape(&pretty(u)))).unwrap_or_default();
    format!(
        "<h2>Profile</h2><table id=\"trial-profile\">{rows}</table>\
         <h2>Groups</h2><h3>From the IdP</h3>{}<h3>In ssogate</h3>{}{}{}\
         <h2>ID token claims</h2><pre>{}</pre>{userinfo}",
        list("trial-idp-groups", &p.idp_groups),
        list("trial-groups", &p.groups),
        if p.groups_to_create.is_empty() {
            String::new()
        } else {
            format!("<h3>Created by group sync</h3>{}", list("trial-new-groups", &p.groups_to_create))
        },
        if notes.is_empty() { String::new() } else { format!("<ul class=\"notes\">{notes}</ul>") },
        escape(&pretty(&p.id_token_claims)),
    )
}
