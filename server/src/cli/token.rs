//! `gridlens token`: issue, list and revoke the API's per-person tokens.

use crate::serve::auth::{self, NewToken, TokenFile};
use anyhow::{Context, Result};
use gridlens_engine::scope::Scope;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridlens token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// The state folder holding the token file.
    #[arg(long, global = true, default_value = "gridlens-state")]
    state: PathBuf,
    /// The token file (default: STATE/tokens.json).
    #[arg(long, global = true)]
    tokens: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Issue a token for one person; prints the token once (on standard output) and never again.
    Add {
        /// The person it is for.
        #[arg(long)]
        name: String,
        /// admin, analyst, leader, worker or feeder (ingest only).
        #[arg(long)]
        role: String,
        /// What they see: "city", or a district (6 digits), street (9), community (12) or grid
        /// (15) code of the city. It is checked against the city: the one the server last
        /// served with this state folder, or the dataset given with --data.
        #[arg(long)]
        scope: String,
        /// A dataset folder to check the scope against (its grids table).
        #[arg(long)]
        data: Option<PathBuf>,
        /// May see personal data (identity numbers, names, phones) unmasked.
        #[arg(long)]
        pii: bool,
        /// For a worker token: the worker's id.
        #[arg(long)]
        worker: Option<String>,
    },
    /// List the tokens (never the tokens themselves).
    List,
    /// Revoke a token by its id; it stops working at once.
    Revoke {
        /// The token's id (see list).
        id: String,
    },
}

/// The token file: `--tokens`, else `STATE/tokens.json`.
pub fn token_path(state: &std::path::Path, tokens: Option<&PathBuf>) -> PathBuf {
    tokens.cloned().unwrap_or_else(|| state.join("tokens.json"))
}

/// The codes a scope may name: those of `--data`'s grids, else those the server wrote for the
/// city it last served with this state folder.
fn known_scopes(
    state: &std::path::Path,
    data: Option<&std::path::Path>,
) -> Result<std::collections::BTreeSet<String>> {
    if let Some(dir) = data {
        return gridlens_engine::load::scope_codes(dir, &Default::default())
            .with_context(|| format!("reading the grids of {}", dir.display()));
    }
    let path = state.join(auth::KNOWN_SCOPES);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(|l| l.trim().to_string()).collect()),
        Err(_) => anyhow::bail!(
            "cannot check the scope: no city is known for the state folder {} yet; start \
             `gridlens serve` with it once, or give --data DIR",
            state.display()
        ),
    }
}

/// Runs `gridlens token`.
pub fn token(a: TokenArgs) -> Result<ExitCode> {
    let path = token_path(&a.state, a.tokens.as_ref());
    let mut file = TokenFile::load(&path)?;
    match a.command {
        TokenCommand::Add {
            name,
            role,
            scope,
            data,
            pii,
            worker,
        } => {
            let scope = Scope::parse(&scope, pii)?;
            if !scope.is_city() {
                auth::check_known(&scope, &known_scopes(&a.state, data.as_deref())?)?;
            }
            let t = NewToken {
                name,
                role: role.parse()?,
                scope,
                worker_id: worker,
            };
            let (token, e) = file.issue(t, &crate::serve::now_text())?;
            file.save(&path)?;
            println!("{token}");
            eprintln!(
                "issued token {} for {} ({}, scope {}{}) in {}; it is shown this once",
                e.id,
                e.name,
                e.role,
                e.scope.as_deref().unwrap_or("none"),
                if e.pii { ", pii" } else { "" },
                path.display()
            );
        }
        TokenCommand::List => {
            println!(
                "{:<9} {:<20} {:<8} {:<16} {:<4} {:<14} {:<26} revoked",
                "id", "name", "role", "scope", "pii", "worker", "created"
            );
            for e in &file.tokens {
                println!(
                    "{:<9} {:<20} {:<8} {:<16} {:<4} {:<14} {:<26} {}",
                    e.id,
                    e.name,
                    e.role,
                    e.scope.as_deref().unwrap_or("none (refused)"),
                    if e.pii { "yes" } else { "no" },
                    e.worker_id.as_deref().unwrap_or("-"),
                    e.created_at,
                    e.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let e = file.revoke(&id, &crate::serve::now_text())?.clone();
            file.save(&path)?;
            println!("revoked token {} ({})", e.id, e.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
