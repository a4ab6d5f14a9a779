//! `rcon completion SHELL` (a completion script on stdout) and the hidden
//! `rcon __man DIR` (one man page per command, for `make man`). Both are
//! generated from the clap definition, so they follow every new flag.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, Command, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write the pages into (made if missing).
    pub dir: PathBuf,
}

/// Write the completion script for `shell` to `out`.
pub fn write_completion(shell: Shell, out: &mut dyn Write) {
    let mut cmd = visible(Cli::command());
    clap_complete::generate(shell, &mut cmd, "rcon", out);
}

/// `cmd` without its hidden subcommands (`pause`, `ipipd`, `__man`) and
/// hidden global flags: clap_complete's scripts would offer them, and clap
/// cannot remove a subcommand, so the top level is built again from its
/// visible parts (without the derive's own group of every top-level flag,
/// which would name the hidden ones). Hidden subcommands exist only at the
/// top; clap_mangen skips hidden ones by itself.
fn visible(cmd: Command) -> Command {
    let mut out = Command::new("rcon")
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand_required(cmd.is_subcommand_required_set());
    if cmd.get_version().is_some() {
        out = out.version(super::VERSION);
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    out
}

pub fn completion(a: CompletionArgs) -> Result<i32> {
    let mut buf = Vec::new();
    write_completion(a.shell, &mut buf);
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`rcon completion bash | head`) is not an error worth a line.
    match stdout.write_all(&buf).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing the completion script"),
        _ => Ok(0),
    }
}

/// Write rcon.1 and rcon-CMD[-SUB].1 for every visible command into `dir`;
/// returns the files written, sorted.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir).with_context(|| format!("writing man pages to {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

pub fn man(a: ManArgs) -> Result<i32> {
    let pages = write_man_pages(&a.dir)?;
    println!("wrote {} man pages to {}", pages.len(), a.dir.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut buf = Vec::new();
        write_completion(shell, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn completion_scripts_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            for sub in ["run", "netns", "pod", "cluster", "network", "gc", "completion"] {
                assert!(s.contains(sub), "{shell}: no {sub} in the completion script");
            }
            // Nested commands' flags, and the global flags.
            for flag in ["data-root", "netns-dir", "node-subnet", "underlay-ip"] {
                assert!(s.contains(flag), "{shell}: no {flag} in the completion script");
            }
            // The hidden commands are not offered.
            for hidden in ["ipipd", "__man", "systemd-cgroup", "rootless"] {
                assert!(!s.contains(hidden), "{shell}: the completion script offers the hidden {hidden}");
            }
        }
        // fish names each subcommand with -a "NAME".
        let fish = script(Shell::Fish);
        assert!(fish.contains("-a \"run\"") && fish.contains("-a \"completion\""), "{fish}");
        assert!(!fish.contains("-a \"pause\""), "fish offers the hidden pause");
    }

    #[test]
    fn man_pages_one_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for want in ["rcon.1", "rcon-run.1", "rcon-pod.1", "rcon-pod-create.1", "rcon-cluster-init.1", "rcon-gc.1"] {
            assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
        }
        for hidden in ["rcon-ipipd.1", "rcon-pause.1", "rcon-__man.1"] {
            assert!(!names.iter().any(|n| n == hidden), "a page for the hidden {hidden}");
        }
        let top = std::fs::read_to_string(dir.path().join("rcon.1")).unwrap();
        assert!(top.starts_with(".ie") || top.contains(".TH rcon"), "not a man page: {}", &top[..80.min(top.len())]);
        assert!(top.contains(env!("RCON_GIT_COMMIT")), "the page does not carry the version");
    }
}
