//! `ferrumctl`: the command-line tool for Ferrum (and any RocketMQ) clusters.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("ferrumctl has no subcommands yet")
}
