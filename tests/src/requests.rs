//! Requests for recordings seen from outside: users, and a request's status over the API
//! (`tests/tests/requests.rs`, `tests/tests/requests_bench.rs`).

use serde_json::{json, Value};

use crate::archive::Rig;
use crate::controller_process::Api;
use crate::eventually;

/// The password of the users [`user`] creates.
pub const PASSWORD: &str = "observer-password-1";

/// Creates a user through the admin API and logs them in.
pub fn user(rig: &Rig, name: &str, role: &str, grants: &[&str]) -> Api {
    let r = rig
        .api
        .post(
            "/api/users",
            &json!({"username": name, "password": PASSWORD, "role": role, "grants": grants}),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    Api::login(&rig.ctl.base_url(), name, PASSWORD).unwrap()
}

/// Waits until request `id` (as `api` sees it) has one of the statuses `want`.
pub fn wait_status(api: &Api, id: &str, secs: u64, want: &[&str]) -> Value {
    eventually(&format!("request {id} in {want:?}"), secs, || {
        let r = api.ok(&format!("/api/requests/{id}"))?;
        Ok(want
            .contains(&r["status"].as_str().unwrap_or(""))
            .then_some(r))
    })
}

/// The final statuses of a request.
pub const DONE: &[&str] = &["ready", "ready_with_gaps", "failed"];

/// Logs `user` in with the browser: the requests page sends them to the login form, and the
/// form to the dashboard.
pub async fn log_in(c: &fantoccini::Client, base: &str, user: &str, password: &str) {
    use crate::browser::{click, type_into, wait_js};
    c.goto(&format!("{base}/requests")).await.unwrap();
    wait_js(
        c,
        "location.pathname === '/login'",
        10,
        "redirect to /login",
    )
    .await;
    type_into(c, "#username", user).await;
    type_into(c, "#password", password).await;
    click(c, "#login button[type=submit]").await;
    wait_js(c, "location.pathname === '/'", 10, "logged in").await;
}
