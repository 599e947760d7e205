//! `nshard status`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::portable::escape;
use nshard_core::repo::FileState;

use crate::out;
use crate::output::{print_json, Ctx};

/// Show the state of every tracked file.
///
/// States: unchanged, modified, outdated (holds an older committed version), new (never
/// committed), missing from the work tree (checkout needed), data missing from the local store
/// (pull needed), invalid (the manifest fails validation), unreadable (the file or its manifest
/// cannot be read safely). Exits with status 1 when some file is invalid or unreadable.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: StatusArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let st = repo.status()?;
    // Exit 1 when the state of some file could not be determined, so scripts notice.
    let undetermined = st.iter().any(|s| {
        matches!(
            s.state,
            FileState::InvalidManifest { .. } | FileState::Unreadable { .. }
        )
    });
    let code = if undetermined {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if a.json {
        print_json(&st)?;
        return Ok(code);
    }
    if st.is_empty() {
        out!("no tracked files (use `nshard track <path>`)");
    }
    for s in &st {
        let v = s.version.map(|v| v.short()).unwrap_or_default();
        let (label, hint) = match &s.state {
            FileState::Unchanged => ("unchanged", String::new()),
            FileState::Modified => ("modified", "  (run `nshard commit`)".to_string()),
            FileState::Outdated { file_version } => (
                "outdated",
                format!(
                    "  (holds older version {}: `nshard checkout` updates it, `nshard commit --force` records it as newest)",
                    file_version.short()
                ),
            ),
            FileState::New => ("new", "  (never committed)".to_string()),
            FileState::Missing { data_present: true } => {
                ("missing", "  (run `nshard checkout`)".to_string())
            }
            FileState::Missing {
                data_present: false,
            } => (
                "missing",
                "  (data not in the local store: run `nshard pull` then `nshard checkout`)"
                    .to_string(),
            ),
            FileState::DataMissing { missing_chunks } => (
                "data-missing",
                format!("  ({missing_chunks} chunks not in the local store: run `nshard pull`)"),
            ),
            FileState::InvalidManifest { reason } => ("invalid", format!("  ({})", escape(reason))),
            FileState::Unreadable { reason } => ("unreadable", format!("  ({})", escape(reason))),
        };
        let untracked = if s.tracked {
            ""
        } else {
            "  [manifest only, not tracked]"
        };
        // Display escapes control and invisible characters: names come from manifests.
        out!("{label:<13} {:<40} {v}{hint}{untracked}", s.path);
    }
    Ok(code)
}
