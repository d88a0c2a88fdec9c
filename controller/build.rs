// The migrations are embedded by `sqlx::migrate!` at compile time: a new or changed migration
// must rebuild the crate (as `sqlx migrate build-script` recommends).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
