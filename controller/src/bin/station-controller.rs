//! Placeholder binary: refuses to run instead of pretending to be a controller.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "station-controller is not implemented yet; the agent records on its own (see README)"
    )
}
