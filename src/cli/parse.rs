//! Parsing the command line with a tree cut down to the command it names.
//!
//! When clap builds a level of the tree it copies every global flag into
//! each subcommand of that level. With rcon's thirty commands and nine
//! global flags, that copying was most of what a start cost in user space:
//! about 85 pages of fresh heap, each a page fault (0.3 ms on these VMs), on
//! every call, for the 29 commands that were not called. Every subcommand
//! enum is `defer`red, so a level's own flags are only made when it is
//! used; this module keeps the copies to the level's one command that is.
//!
//! The cut tree is only trusted with a command line it parses: anything
//! else (an error, `--help`, `--version`, a misspelt command and clap's
//! suggestion) is parsed again with the whole tree, so what the user sees
//! is what clap would print from it.

use std::ffi::{OsStr, OsString};

use clap::{Command, CommandFactory, FromArgMatches};

use super::Cli;

pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let full = Cli::command();
    if let Some(cut) = first_word(&full, &args).and_then(|w| only(&full, w)) {
        let parsed = cut.try_get_matches_from(&args).and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
        if parsed.is_ok() {
            return parsed;
        }
    }
    full.try_get_matches_from(args).and_then(|mut m| Cli::from_arg_matches_mut(&mut m))
}

/// The first word of `args` that is not a top-level flag or its value: the
/// command's name. None for a line that starts with anything else (`-h`,
/// an unknown flag, `--`): those take the whole tree.
fn first_word<'a>(root: &Command, args: &'a [OsString]) -> Option<&'a OsStr> {
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        let Some(s) = a.to_str() else { return Some(a) };
        let Some(flag) = s.strip_prefix("--") else {
            return (!s.starts_with('-')).then_some(a.as_os_str());
        };
        if flag.is_empty() {
            return None;
        }
        let (long, inline) = match flag.split_once('=') {
            Some((l, _)) => (l, true),
            None => (flag, false),
        };
        let arg = root.get_arguments().find(|x| x.get_long() == Some(long))?;
        if !inline && arg.get_action().takes_values() {
            rest.next()?;
        }
    }
    None
}

/// `root` with its flags and settings and only the subcommand `name` (or
/// the one it is an alias of); None if there is no such subcommand.
fn only(root: &Command, name: &OsStr) -> Option<Command> {
    let sub = root.find_subcommand(name)?.clone();
    let mut cut = Command::new("rcon")
        .args(root.get_arguments().cloned())
        .groups(root.get_groups().cloned())
        .subcommand_required(root.is_subcommand_required_set())
        .arg_required_else_help(root.is_arg_required_else_help_set())
        .subcommand(sub);
    if root.get_version().is_some() {
        cut = cut.version(super::VERSION);
    }
    Some(cut)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn line(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn word(s: &str) -> Option<String> {
        let args = line(s);
        first_word(&Cli::command(), &args).map(|w| w.to_string_lossy().into_owned())
    }

    #[test]
    fn the_first_word_skips_global_flags_and_their_values() {
        assert_eq!(word("rcon network attach x").as_deref(), Some("network"));
        assert_eq!(word("rcon --root /r --debug pod create").as_deref(), Some("pod"));
        assert_eq!(word("rcon --root=/r --log-format json ps x").as_deref(), Some("ps"));
        assert_eq!(word("rcon --help"), None);
        assert_eq!(word("rcon -V"), None);
        assert_eq!(word("rcon --no-such-flag run"), None);
        assert_eq!(word("rcon --root"), None);
        assert_eq!(word("rcon -- run"), None);
        assert_eq!(word("rcon"), None);
    }

    /// The cut tree gives what the whole tree gives, globals on either side
    /// of the command included; an error is the whole tree's error.
    #[test]
    fn a_cut_tree_parses_as_the_whole_one() {
        for l in [
            "rcon network attach --netns /run/netns/a net0",
            "rcon --root /r network attach net0 --netns /x --debug",
            "rcon pod create --name p --network n --data-root /d",
            "rcon run -d --name c --log-format json busybox sleep 1 --root",
            "rcon netns ls",
            "rcon delete -f c",
        ] {
            let cut = parse(line(l)).unwrap_or_else(|e| panic!("{l}: {e}"));
            let whole = Cli::try_parse_from(line(l)).unwrap();
            assert_eq!(format!("{cut:?}"), format!("{whole:?}"), "{l}");
        }
        for l in ["rcon network atach x", "rcon pod create --nme p", "rcon run", "rcon --help", "rcon ps --help"] {
            let cut = parse(line(l)).unwrap_err();
            let whole = Cli::try_parse_from(line(l)).unwrap_err();
            assert_eq!((cut.kind(), cut.to_string()), (whole.kind(), whole.to_string()), "{l}");
        }
    }
}
