//! `nshard lfs`: moving from Git LFS (`import`), and serving git-lfs as its transfer agent
//! (`install`, `uninstall`, `agent`).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nshard_core::git::lfs as gitlfs;
use nshard_core::git::GitTree;
use nshard_core::transfer::{lfs_download, lfs_prepare, lfs_push, TransferOptions, DEFAULT_JOBS};
use nshard_core::{
    LfsImportOptions, ObjectId, Progress, RemoteError, Repo, RepoError, Retry, Store,
};

use super::remote::runtime;
use crate::output::{print_json, Ctx};
use crate::{out, per_file};

/// Move from Git LFS, or keep git-lfs and store its objects with NeuroShard.
///
/// `import` turns files stored with Git LFS into NeuroShard-tracked files (with `--history`, every
/// LFS version in the branch's history becomes a version). `install` makes git-lfs in this clone
/// hand every object to `nshard lfs agent`, which stores it as deduplicated, compressed chunks on
/// a NeuroShard remote: `git push`, `git lfs push` and `git lfs pull` work unchanged. See
/// docs/lfs.md.
#[derive(Args, Debug)]
pub struct LfsArgs {
    #[command(subcommand)]
    pub command: LfsCommand,
}

#[derive(Subcommand, Debug)]
pub enum LfsCommand {
    Import(ImportArgs),
    Install(InstallArgs),
    Uninstall(UninstallArgs),
    Agent(AgentArgs),
}

/// Turn files stored with Git LFS into NeuroShard-tracked files, ready for one `git commit`.
///
/// For each LFS file (or each one under the given paths): its LFS object is verified against
/// its oid, committed as a NeuroShard version and the manifest written; the file is tracked;
/// `.gitattributes` stops routing it to LFS (a line naming only it is removed; a wider pattern
/// stays for other files and gets a line excepting this one); the file leaves git's index and
/// the manifest, `.gitattributes`, `.gitignore` and `.shard/config.toml` are staged. Then
/// `git commit`. Git history is not rewritten: older commits keep their LFS pointers.
///
/// With --history every LFS version of the file in the current branch's history becomes a
/// version in the file's parent chain, oldest first, with its commit's message and date, so
/// `nshard log` and `nshard diff --from/--to` reach them. Objects that are not local are
/// fetched with `git lfs fetch` one at a time and removed again once imported.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Files or directories to import (default: every LFS file in the repository).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Import every LFS version in the current branch's history, not only the current one.
    #[arg(long)]
    pub history: bool,
    /// Never run `git lfs fetch`: objects that are not local stop the import (with the command
    /// that fetches them).
    #[arg(long)]
    pub no_fetch: bool,
    /// Leave git's index alone (by default the files leave it and the manifests enter it).
    #[arg(long)]
    pub no_stage: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Make git-lfs in this clone store its objects through `nshard lfs agent`.
///
/// Sets, in this clone's git config only: `lfs.standalonetransferagent = nshard` and
/// `lfs.customtransfer.nshard.path/args/concurrent`. git-lfs then never contacts an LFS server:
/// every upload is cut into chunks and only the chunks the NeuroShard remote lacks are sent;
/// every download is rebuilt from chunks and checked against its oid. Run it once in every clone
/// (like `git lfs install`). Creates the clone's local store (`.shard/`, excluded from git) when
/// there is none.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The NeuroShard remote (name or URL) objects go to (default: the default remote, looked up
    /// when git-lfs starts the agent).
    #[arg(long, short, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Also point git-lfs's API at the remote in `.lfsconfig` (staged, for every clone): a
    /// clone without the agent then gets, with git-lfs's error, the server's hint naming
    /// `nshard lfs install`. Only for an `nshard serve` remote (http:// or https://).
    #[arg(long)]
    pub write_lfsconfig: bool,
}

/// Stop git-lfs in this clone from using `nshard lfs agent` (removes what `install` set).
#[derive(Args, Debug)]
pub struct UninstallArgs {}

/// The transfer agent git-lfs runs (after `nshard lfs install`); not for use by hand.
///
/// Speaks git-lfs's custom transfer protocol on standard input and output (line-delimited JSON:
/// init, upload, download, progress, complete, terminate). A failed object is answered with an
/// error for that object; the agent never reads a terminal.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The NeuroShard remote (name or URL); default: the default remote.
    #[arg(long, short, value_name = "REMOTE")]
    pub remote: Option<String>,
}

pub fn run(ctx: &Ctx, a: LfsArgs) -> Result<ExitCode> {
    match a.command {
        LfsCommand::Import(a) => run_import(ctx, a),
        LfsCommand::Install(a) => run_install(ctx, a),
        LfsCommand::Uninstall(_) => run_uninstall(ctx),
        LfsCommand::Agent(a) => run_agent(ctx, a),
    }
}

fn run_import(ctx: &Ctx, a: ImportArgs) -> Result<ExitCode> {
    let mut repo = match ctx.repo() {
        Err(e) if is_not_a_repo(&e) => {
            return Err(e.context(
                "`nshard lfs import` needs a NeuroShard repository: run `nshard init` and \
                 `nshard git-init` at the top of the git work tree first",
            ))
        }
        r => r?,
    };
    let bar = ctx.progress(a.json);
    let report = repo.lfs_import(
        &ctx.cwd,
        &LfsImportOptions {
            paths: a.paths,
            history: a.history,
            fetch: !a.no_fetch,
            stage: !a.no_stage,
            progress: &bar,
        },
    )?;
    if a.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    for f in &report.files {
        let newest = f.versions.last().expect("a version per file");
        per_file!(
            "{}: imported {} from Git LFS; version {} is the work tree's",
            f.path,
            match f.versions.len() {
                1 => "1 version".to_string(),
                n => format!("{n} versions (oldest first)"),
            },
            newest.version.short()
        );
        if f.versions.len() > 1 {
            for v in &f.versions {
                per_file!(
                    "  {} from {} ({} bytes)",
                    v.version.short(),
                    v.commit
                        .as_deref()
                        .map_or("the index".to_string(), |c| format!(
                            "commit {}",
                            &c[..c.len().min(12)]
                        )),
                    v.size
                );
            }
        }
        if f.fetched > 0 {
            per_file!(
                "  fetched {} LFS object(s) with `git lfs fetch` (removed again once imported)",
                f.fetched
            );
        }
        if f.not_pointers > 0 {
            per_file!(
                "  {} commit(s) held it as a plain git file, not an LFS pointer: left out",
                f.not_pointers
            );
        }
    }
    for l in &report.attributes_removed {
        out!("removed {l}");
    }
    for l in &report.attributes_added {
        out!("added {l} (other files keep the LFS pattern)");
    }
    for p in &report.not_pointers {
        out!("left alone: {p} has filter=lfs but git holds the file itself (`git add --renormalize {p}` stores it with LFS, `nshard track` with NeuroShard)");
    }
    if report.staged.is_empty() {
        out!("next: `git rm --cached` the imported files, `git add` their manifests, .gitattributes, .gitignore and .shard/config.toml, then `git commit`");
    } else {
        out!(
            "staged: {} (the imported files leave git's index; their data stays in the work tree)",
            report.staged.join(", ")
        );
        out!(
            "next: git commit -m \"Move {} from Git LFS to NeuroShard\"",
            if report.files.len() == 1 {
                report.files[0].path.to_string()
            } else {
                format!("{} files", report.files.len())
            }
        );
    }
    if report.files.iter().any(|f| f.versions.len() > 1) {
        // Only the newest version of each file is named by a git commit; `git push` (its hook)
        // and a plain `nshard push` send what git names.
        out!("then: `nshard push --all-versions` sends the imported history to the data remote (`git push` sends only the newest version of each file); `nshard verify --remote --all-versions` checks it is all there");
    }
    Ok(ExitCode::SUCCESS)
}

fn is_not_a_repo(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<nshard_core::Error>(),
            Some(nshard_core::Error::Repo(RepoError::NotARepo(_)))
        )
    })
}

/// The clone's repository, creating its local store (excluded from git) when there is none.
fn agent_repo(ctx: &Ctx) -> Result<Repo> {
    match ctx.repo() {
        Err(e) if is_not_a_repo(&e) => {
            let tree =
                GitTree::find(&ctx.cwd).context("not in a git work tree: git-lfs runs in one")?;
            ctx.create_local_store(&tree)
        }
        r => r,
    }
}

fn quote_arg(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && c != '"' && c != '\'' && c != '\\')
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn run_install(ctx: &Ctx, a: InstallArgs) -> Result<ExitCode> {
    let tree = GitTree::find(&ctx.cwd).context("`nshard lfs install` works in a git clone")?;
    let repo = agent_repo(ctx)?;
    // The remote must resolve now, not at the first push.
    let resolved = repo
        .resolve_remote(a.remote.as_deref(), &ctx.cwd)
        .context("the agent needs a NeuroShard remote: pass --remote NAME|URL, or add a default one with `nshard remote add NAME URL`")?;
    let exe = std::env::current_exe().context("cannot tell where this nshard binary is")?;
    let mut args = String::from("lfs agent");
    if let Some(r) = &a.remote {
        // git-lfs starts the agent from whatever directory it runs in: a directory remote
        // given as a relative path is stored absolute (a configured name or a URL as given).
        let r = match (&resolved.name, &resolved.url) {
            (None, nshard_core::RemoteUrl::Dir(p)) => p.display().to_string(),
            _ => r.clone(),
        };
        args.push_str(" --remote ");
        args.push_str(&quote_arg(&r));
    }
    let lfs_url = match (&resolved.url, a.write_lfsconfig) {
        (nshard_core::RemoteUrl::Http(u), true) => Some(format!("{u}/lfs")),
        (_, true) => anyhow::bail!(
            "--write-lfsconfig needs an `nshard serve` remote (http:// or https://): only a \
             server can answer a clone without the agent"
        ),
        _ => None,
    };
    gitlfs::install_agent(&tree.top, &exe.display().to_string(), &args)?;
    if let Some(u) = &lfs_url {
        gitlfs::write_lfsconfig(&tree.top, u)?;
    }
    out!(
        "git-lfs in this clone now stores objects through nshard on {}",
        super::remote::label(&resolved)
    );
    out!("`git push` / `git lfs push` send only the chunks the remote lacks; `git lfs pull` rebuilds files from chunks");
    out!(
        "(set in {}; `nshard lfs uninstall` undoes it)",
        tree.top.join(".git/config").display()
    );
    if let Some(u) = &lfs_url {
        out!("wrote lfs.url = {u} to .lfsconfig and staged it: commit it, so that a clone without the agent is told to run `nshard lfs install`");
    }
    if !gitlfs::filters_installed(&tree.top) {
        out!("note: git-lfs's filters are not set up for your user: run `git lfs install` once");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_uninstall(ctx: &Ctx) -> Result<ExitCode> {
    let tree = GitTree::find(&ctx.cwd).context("`nshard lfs uninstall` works in a git clone")?;
    if gitlfs::uninstall_agent(&tree.top)? {
        out!("git-lfs in this clone no longer uses nshard (objects go to the LFS server again)");
    } else {
        out!("nshard was not git-lfs's transfer agent in this clone (nothing changed)");
    }
    Ok(ExitCode::SUCCESS)
}

// ---- the agent ------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct Request {
    event: String,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    path: Option<PathBuf>,
}

/// One line of JSON to git-lfs, flushed.
fn send(out: &Mutex<std::io::Stdout>, v: &serde_json::Value) {
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

fn error_json(code: u32, message: &str) -> serde_json::Value {
    serde_json::json!({ "code": code, "message": message })
}

/// The message git-lfs shows for a failed object: the error, its causes and a hint.
fn describe(e: &anyhow::Error) -> String {
    let mut m = e.to_string();
    for c in e.chain().skip(1) {
        m.push_str(": ");
        m.push_str(&c.to_string());
    }
    let lost = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<nshard_core::Error>(),
            Some(nshard_core::Error::Store(
                nshard_core::StoreError::CorruptObject { .. }
            )) | Some(nshard_core::Error::Remote(RemoteError::Lacks { .. }))
        )
    });
    if lost {
        m.push_str(
            " (hint: a clone that has the file restores it with `git lfs push --all origin`, \
             the agent installed)",
        );
    }
    m.replace('\n', " ")
}

/// Progress of one object as git-lfs wants it: bytes so far, never past the object's size.
struct AgentProgress<'a> {
    out: &'a Mutex<std::io::Stdout>,
    oid: String,
    size: u64,
    state: Mutex<(u64, u64, u64)>, // (phase total, phase done, reported)
}

impl AgentProgress<'_> {
    fn report(&self, so_far: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let so_far = so_far.min(self.size);
        if so_far <= s.2 {
            return;
        }
        let since = so_far - s.2;
        s.2 = so_far;
        drop(s);
        send(
            self.out,
            &serde_json::json!({"event": "progress", "oid": self.oid, "bytesSoFar": so_far, "bytesSinceLast": since}),
        );
    }
}

impl Progress for AgentProgress<'_> {
    fn start(&self, _label: &str, total: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = total.max(1);
        s.1 = 0;
    }
    fn advance(&self, n: u64) {
        let so_far = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.1 += n;
            // Each phase (cutting, sending) is mapped onto the object's size.
            (s.1 as u128 * self.size as u128 / s.0 as u128) as u64
        };
        self.report(so_far);
    }
    fn finish(&self) {}
}

struct Agent {
    repo: Repo,
    store: Arc<dyn Store>,
    rt: tokio::runtime::Runtime,
}

fn run_agent(ctx: &Ctx, a: AgentArgs) -> Result<ExitCode> {
    let out = Mutex::new(std::io::stdout());
    let stdin = std::io::stdin();
    let mut agent: Option<Agent> = None;
    let mut line = String::new();
    let mut input = stdin.lock();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            // git-lfs went away without `terminate`.
            return Ok(ExitCode::SUCCESS);
        }
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("nshard lfs agent: unreadable request from git-lfs: {e}");
                return Ok(ExitCode::FAILURE);
            }
        };
        match req.event.as_str() {
            "init" => match start_agent(ctx, &a) {
                Ok(ag) => {
                    agent = Some(ag);
                    send(&out, &serde_json::json!({}));
                }
                Err(e) => {
                    let what = req.operation.as_deref().unwrap_or("transfer");
                    send(
                        &out,
                        &serde_json::json!({"error": error_json(32, &format!("nshard lfs agent cannot start the {what}: {}", describe(&e)))}),
                    );
                }
            },
            "upload" | "download" => {
                let oid = req.oid.clone().unwrap_or_default();
                let Some(ag) = agent.as_ref() else {
                    send(
                        &out,
                        &serde_json::json!({"event": "complete", "oid": oid, "error": error_json(32, "nshard lfs agent: no successful init before this transfer")}),
                    );
                    continue;
                };
                let progress = AgentProgress {
                    out: &out,
                    oid: oid.clone(),
                    size: req.size.unwrap_or(0),
                    state: Mutex::new((1, 0, 0)),
                };
                let r = if req.event == "upload" {
                    upload(ag, &req, &progress).map(|()| None)
                } else {
                    download(ag, &req, &progress).map(Some)
                };
                match r {
                    Ok(path) => {
                        progress.report(progress.size);
                        let mut v = serde_json::json!({"event": "complete", "oid": oid});
                        if let Some(p) = path {
                            v["path"] = serde_json::Value::String(p.display().to_string());
                        }
                        send(&out, &v);
                    }
                    Err(e) => send(
                        &out,
                        &serde_json::json!({"event": "complete", "oid": oid, "error": error_json(2, &describe(&e))}),
                    ),
                }
            }
            "terminate" => return Ok(ExitCode::SUCCESS),
            other => {
                eprintln!("nshard lfs agent: ignoring unknown event {other:?} from git-lfs");
            }
        }
    }
}

fn start_agent(ctx: &Ctx, a: &AgentArgs) -> Result<Agent> {
    let repo = agent_repo(ctx)?;
    let rt = runtime()?;
    let store = rt.block_on(async {
        let (_, store) = super::remote::open(&repo, ctx, a.remote.as_deref()).await?;
        // Unreachable or refusing: said once at init, not once per object.
        store.health().await?;
        anyhow::Ok(store)
    })?;
    Ok(Agent { repo, store, rt })
}

fn parse_oid(req: &Request) -> Result<(ObjectId, u64)> {
    let oid = req.oid.as_deref().unwrap_or_default();
    let id =
        ObjectId::parse(oid).map_err(|_| anyhow::anyhow!("{oid:?} is not a SHA-256 LFS oid"))?;
    let size = req
        .size
        .ok_or_else(|| anyhow::anyhow!("git-lfs gave no size for {oid}"))?;
    Ok((id, size))
}

fn transfer_opts(progress: &dyn Progress) -> TransferOptions<'_> {
    TransferOptions {
        jobs: DEFAULT_JOBS.into(),
        retry: Retry::default(),
        progress,
        dry_run: false,
    }
}

fn upload(ag: &Agent, req: &Request, progress: &AgentProgress<'_>) -> Result<()> {
    let (oid, size) = parse_oid(req)?;
    let path = req
        .path
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("git-lfs gave no file for {}", oid.to_hex()))?;
    let v = lfs_prepare(&ag.repo, oid, size, path, progress)?;
    ag.rt
        .block_on(lfs_push(&ag.repo, &ag.store, &v, &transfer_opts(progress)))?;
    Ok(())
}

fn download(ag: &Agent, req: &Request, progress: &AgentProgress<'_>) -> Result<PathBuf> {
    let (oid, size) = parse_oid(req)?;
    let tmp = ag.repo.tmp_dir();
    nshard_core::backend::create_dir_all(&tmp)?;
    let dest = tmp.join(format!(
        "lfs-{}-{}-{}",
        &oid.to_hex()[..16],
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    // gc (which takes the lock exclusively) never removes the file while it is written.
    let _lock = ag.repo.lock(false)?;
    ag.rt.block_on(lfs_download(
        &ag.repo,
        &ag.store,
        oid,
        size,
        &dest,
        &transfer_opts(progress),
    ))?;
    Ok(dest)
}
