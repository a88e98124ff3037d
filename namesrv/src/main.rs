//! `ferrum-namesrv` binary.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("the NameServer is not built yet")
}
