//! `nshard`: Git for AI models. The binary turns flags, environment and config into typed options,
//! calls `nshard-core`, and prints. Data goes to stdout, progress and errors to stderr.

mod cmd;
#[cfg(feature = "failpoints")]
mod failpoints;
mod hints;
mod output;
mod report;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: each chunk's buffers are fresh memory, and glibc maps
/// large ones anew each time (a page fault per 4 KiB); see docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// NeuroShard: version large model files and datasets as deduplicated, compressed chunks.
///
/// Small JSON manifests (`<file>.shard.json`) go into git; the chunk data lives in the local store
/// (`.shard/objects`) and in remotes.
#[derive(Parser, Debug)]
#[command(name = "nshard", version, max_term_width = 100)]
pub struct Cli {
    /// Run as if nshard was started in this directory.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Quiet: no progress bars and no per-file lines (summaries and errors still print).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colour the output: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: output::ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Init(cmd::init::InitArgs),
    GitInit(cmd::init::GitInitArgs),
    #[command(visible_alias = "add")]
    Track(cmd::track::TrackArgs),
    Untrack(cmd::track::UntrackArgs),
    Mv(cmd::track::MvArgs),
    Rm(cmd::track::RmArgs),
    Commit(cmd::commit::CommitArgs),
    Status(cmd::status::StatusArgs),
    Checkout(cmd::checkout::CheckoutArgs),
    /// Manage remotes (add, list, set-url, default, remove) at the user, shared or local level.
    Remote(cmd::remote::RemoteArgs),
    Push(cmd::push::PushArgs),
    /// Store a token for a server (bound to its scheme, host and port).
    Login(cmd::login::LoginArgs),
    /// Remove the token stored for a server.
    Logout(cmd::login::LogoutArgs),
    #[command(visible_alias = "fetch")]
    Pull(cmd::pull::PullArgs),
    LsFiles(cmd::status::LsFilesArgs),
    Diff(cmd::diff::DiffArgs),
    Log(cmd::log::LogArgs),
    Gc(cmd::gc::GcArgs),
    Repack(cmd::repack::RepackArgs),
    Verify(cmd::verify::VerifyArgs),
    Doctor(cmd::doctor::DoctorArgs),
    Serve(cmd::serve::ServeArgs),
    Lfs(cmd::lfs::LfsArgs),
    #[command(hide = true)]
    Hook(cmd::hook::HookArgs),
    Completions(cmd::completions::CompletionsArgs),
    Man(cmd::completions::ManArgs),
}

fn main() -> ExitCode {
    #[cfg(feature = "failpoints")]
    failpoints::setup();
    let cli = Cli::parse();
    let ctx = match output::Ctx::new(&cli) {
        Ok(c) => c,
        Err(e) => return report(e),
    };
    let r = match cli.command {
        Command::Init(a) => cmd::init::run(&ctx, a),
        Command::GitInit(a) => cmd::init::run_git(&ctx, a),
        Command::Track(a) => cmd::track::run(&ctx, a),
        Command::Untrack(a) => cmd::track::run_untrack(&ctx, a),
        Command::Mv(a) => cmd::track::run_mv(&ctx, a),
        Command::Rm(a) => cmd::track::run_rm(&ctx, a),
        Command::Commit(a) => cmd::commit::run(&ctx, a),
        Command::Status(a) => cmd::status::run(&ctx, a),
        Command::LsFiles(a) => cmd::status::run_ls_files(&ctx, a),
        Command::Checkout(a) => cmd::checkout::run(&ctx, a),
        Command::Remote(a) => cmd::remote::run(&ctx, a),
        Command::Push(a) => cmd::push::run(&ctx, a),
        Command::Pull(a) => cmd::pull::run(&ctx, a),
        Command::Login(a) => cmd::login::run_login(&ctx, a),
        Command::Logout(a) => cmd::login::run_logout(&ctx, a),
        Command::Diff(a) => cmd::diff::run(&ctx, a),
        Command::Log(a) => cmd::log::run(&ctx, a),
        Command::Gc(a) => cmd::gc::run(&ctx, a),
        Command::Repack(a) => cmd::repack::run(&ctx, a),
        Command::Verify(a) => cmd::verify::run(&ctx, a),
        Command::Doctor(a) => cmd::doctor::run(&ctx, a),
        Command::Serve(a) => cmd::serve::run(&ctx, a),
        Command::Lfs(a) => cmd::lfs::run(&ctx, a),
        Command::Hook(a) => cmd::hook::run(&ctx, a),
        Command::Completions(a) => cmd::completions::run_completions(&ctx, a),
        Command::Man(a) => cmd::completions::run_man(&ctx, a),
    };
    match r {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

/// Prints an error with its whole chain; a broken pipe (e.g. `nshard status | head`) is not an error.
fn report(e: anyhow::Error) -> ExitCode {
    if e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        return ExitCode::SUCCESS;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "{} {}",
        output::Paint::Bad.err("error:"),
        output::inert(&e.to_string())
    );
    for cause in e.chain().skip(1) {
        let _ = write!(err, "\n  caused by: {}", output::inert(&cause.to_string()));
    }
    let _ = writeln!(err);
    if let Some(h) = hints::hint_chain(&e) {
        let _ = writeln!(err, "{} {h}", output::Paint::Hint.err("hint:"));
    }
    ExitCode::FAILURE
}
