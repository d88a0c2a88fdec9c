//! Manual pages from a binary's command line (`clap_mangen`): one page for the program and one
//! per subcommand (`station-agent-probe.1`), so `man station-agent probe` works on a station
//! without a network. Each binary has a hidden `man DIR` subcommand that calls this;
//! `scripts/package` puts the pages into the packages.

use std::path::{Path, PathBuf};

/// Writes `NAME.1` and `NAME-SUB.1` for every visible subcommand into `dir`; the files written.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let name = cmd.get_name().to_owned();
    let mut written = Vec::new();
    let mut page = |c: clap::Command, file: String| -> std::io::Result<()> {
        let path = dir.join(format!("{file}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(c).render(&mut out)?;
        std::fs::write(&path, out)?;
        written.push(path);
        Ok(())
    };
    // `help` (added by clap) is not a command of ours.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let full = format!("{name}-{}", sub.get_name());
        // The subcommand's page is named and titled as `man` finds it.
        page(sub.clone().name(full.clone()), full)?;
    }
    page(cmd.clone(), name)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_program_and_per_visible_subcommand() {
        let cmd = clap::Command::new("tool")
            .about("Does things")
            .subcommand(clap::Command::new("run").about("Runs it"))
            .subcommand(clap::Command::new("man").hide(true));
        let dir = std::env::temp_dir().join(format!("man-test-{}", std::process::id()));
        let files = write_pages(cmd, &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool-run.1", "tool.1"]);
        let run = std::fs::read_to_string(dir.join("tool-run.1")).unwrap();
        assert!(run.contains(".TH tool-run 1"), "{run}");
        assert!(run.contains("Runs it"), "{run}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
