//! `nshard completions SHELL` and `nshard man`: generated from the command-line definitions
//! themselves, so they never drift from the real options.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::output::Ctx;
use crate::{per_file, Cli};

/// Print a shell completion script.
///
/// bash: `nshard completions bash > ~/.local/share/bash-completion/completions/nshard`;
/// zsh: `nshard completions zsh > "${fpath[1]}/_nshard"`;
/// fish: `nshard completions fish > ~/.config/fish/completions/nshard.fish`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the nshard(1) man page, or write every page into a directory.
///
/// `nshard man | man -l -` reads it now; `nshard man --dir ~/.local/share/man/man1` installs
/// nshard.1 and one page per command (nshard-commit.1, nshard-remote-add.1, …) for `man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write nshard.1 and one page per command into this directory (created when missing).
    // Not named `dir`: that id is taken by the global `-C DIR`.
    #[arg(long = "dir", value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run_completions(_ctx: &Ctx, a: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "nshard", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_man(ctx: &Ctx, a: ManArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    cmd.build();
    let Some(dir) = a.out else {
        std::io::stdout().lock().write_all(&render(&cmd)?)?;
        return Ok(ExitCode::SUCCESS);
    };
    let dir = ctx.cwd.join(dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let mut pages = Vec::new();
    collect(&cmd, &mut pages)?;
    for (name, page) in &pages {
        let path = dir.join(format!("{name}.1"));
        nshard_core::backend::write_atomic(&path, page)?;
        per_file!("wrote {}", path.display());
    }
    crate::out!("{} man pages in {}", pages.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The page of `cmd` and of each of its (visible) subcommands, recursively, named `nshard`,
/// `nshard-commit`, `nshard-remote-add`…
fn collect(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    pages.push((cmd.get_name().to_string(), render(cmd)?));
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .display_name(name)
            .version(env!("CARGO_PKG_VERSION"));
        collect(&sub, pages)?;
    }
    Ok(())
}

fn render(cmd: &clap::Command) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("cannot render the man page")?;
    Ok(with_short_values(cmd, page))
}

/// clap_mangen leaves the value out of the synopsis of an option that has only a short name
/// (`[-C ]`); this puts it back (`[-C DIR]`).
fn with_short_values(cmd: &clap::Command, page: Vec<u8>) -> Vec<u8> {
    let Ok(mut text) = String::from_utf8(page.clone()) else {
        return page;
    };
    for arg in cmd.get_arguments() {
        let (Some(short), None, Some(names)) =
            (arg.get_short(), arg.get_long(), arg.get_value_names())
        else {
            continue;
        };
        let Some(value) = names.first() else {
            continue;
        };
        text = text.replace(
            &format!("[\\fB\\-{short} \\fR]"),
            &format!("[\\fB\\-{short}\\fR \\fI{value}\\fR]"),
        );
    }
    text.into_bytes()
}
