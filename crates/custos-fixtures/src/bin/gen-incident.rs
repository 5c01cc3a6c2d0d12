//! Writes `commands.csv` and `rejected.csv` of the incident data set into a folder.
//! Usage: `cargo run -p custos-fixtures --bin gen-incident -- fixtures/incident-2022-01`

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "fixtures/incident-2022-01".into());
    let data = custos_fixtures::incident(custos_fixtures::SEED);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(format!("{dir}/commands.csv"), &data.commands_csv)?;
    std::fs::write(format!("{dir}/rejected.csv"), &data.rejected_csv)?;
    println!("wrote {} commands and {} rejected commands to {dir}", data.commands, data.rejected);
    Ok(())
}
