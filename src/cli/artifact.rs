//! `sgnode artifact push|ls`: the built-in artifact store from the command
//! line. `push` hashes the file, uploads it with a progress bar, and prints
//! the `sg:sha256:...` reference that jobs name it by.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use super::{print_json, Connection, Exit};

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Store a job archive (tar.gz, tgz, zip, jar) in the cluster; prints
    /// its sg:sha256:... reference once two peers hold it.
    Push {
        #[command(flatten)]
        conn: Connection,
        /// The archive.
        file: PathBuf,
    },
    /// List the stored archives: hash, size, holders.
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{msg:9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs an `artifact` subcommand.
///
/// # Errors
/// Unreadable file, client errors (with their exit codes).
pub async fn run(command: ArtifactCommand) -> anyhow::Result<()> {
    match command {
        ArtifactCommand::Push { conn, file } => {
            let client = conn.client()?;
            let size = std::fs::metadata(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
                .len();
            let hashing = bar(size, "hashing");
            let (hash, _) = client.hash_file(&file, |done| hashing.set_position(done)).await.map_err(Exit)?;
            hashing.finish_and_clear();
            let uploading = bar(size, "uploading");
            let progress = uploading.clone();
            let pushed = client.push_artifact(&file, &hash, move |sent| progress.set_position(sent)).await;
            uploading.finish_and_clear();
            let pushed = pushed.map_err(Exit)?;
            if conn.json {
                return print_json(&pushed);
            }
            let holders: Vec<String> = pushed.holders.iter().map(u64::to_string).collect();
            eprintln!("stored {} bytes on peers {}", pushed.size, holders.join(", "));
            println!("{}", pushed.reference);
            Ok(())
        }
        ArtifactCommand::Ls { conn } => {
            let artifacts = conn.client()?.artifacts().await.map_err(Exit)?;
            if conn.json {
                return print_json(&artifacts);
            }
            println!("{:<64}  {:>12}  {:<10}  REGISTERED", "SHA256", "SIZE", "HOLDERS");
            for a in &artifacts {
                let holders: Vec<String> = a.holders.iter().map(u64::to_string).collect();
                println!("{:<64}  {:>12}  {:<10}  {}", a.hash, a.size, holders.join(","), a.registered_at);
            }
            Ok(())
        }
    }
}
