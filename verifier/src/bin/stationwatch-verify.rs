//! `stationwatch-verify PATH [--public-key KEY] [--keys FILE] [--witness FILE] ...`: the offline
//! verifier anyone can build (`cargo build --release -p stationwatch-verify`).

use std::process::ExitCode;

use clap::Parser;
use stationwatch_verify::cli::{VerifyArgs, VERDICT_HELP};

#[derive(Parser)]
#[command(version, about = "Checks Stationwatch recordings offline", after_help = VERDICT_HELP)]
struct Cli {
    #[command(flatten)]
    args: VerifyArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let opts = args.options()?;
    let report = stationwatch_verify::verify(&args.path, &opts)?;
    print!("{}", stationwatch_verify::render(&report));
    Ok(ExitCode::from(report.verdict.exit_code()))
}
