//! `ferrum-broker` binary.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("the broker is not built yet")
}
