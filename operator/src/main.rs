//! `ferrum-operator` binary.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("the operator is not built yet")
}
