//! The `sgnode` command line: `serve` runs a peer, everything else is a
//! client of some peer's HTTP API. This is the edge of the program, so it
//! uses `anyhow` and turns errors into documented exit codes.

pub mod artifact;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::api::views::{JobView, NodesView, SubmitRequest};
use crate::client::{Client, ClientError};
use crate::config::ClusterConfig;

/// sgnode: distributed batch-job execution on identical peers.
#[derive(Debug, Parser)]
#[command(name = "sgnode", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Show voters and learners with their addresses.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Add a running peer (started with `serve --id N --address ...`): it
    /// joins as a learner, catches up, then becomes a voter.
    Add {
        #[command(flatten)]
        conn: Connection,
        /// The new peer's id.
        #[arg(long)]
        id: u64,
        /// The new peer's URL or host:port.
        #[arg(long = "peer-url")]
        peer_url: String,
        /// Keep it a non-voting learner (it still runs jobs and serves reads).
        #[arg(long)]
        learner: bool,
    },
    /// Make a learner a voter.
    Promote {
        #[command(flatten)]
        conn: Connection,
        id: u64,
    },
    /// Remove a peer (voter or learner); its running attempts are requeued
    /// once its lease has lapsed.
    Remove {
        #[command(flatten)]
        conn: Connection,
        id: u64,
    },
}

async fn members_command(which: MembersCommand) -> anyhow::Result<()> {
    let (conn, view) = match which {
        MembersCommand::List { conn } => {
            let view = conn.client()?.members().await.map_err(Exit)?;
            (conn, view)
        }
        MembersCommand::Add { conn, id, peer_url, learner } => {
            let request = crate::members::AddMemberRequest { id, address: peer_url, voter: !learner };
            let view = conn.client()?.add_member(&request).await.map_err(Exit)?;
            (conn, view)
        }
        MembersCommand::Promote { conn, id } => {
            let view = conn.client()?.promote_member(id).await.map_err(Exit)?;
            (conn, view)
        }
        MembersCommand::Remove { conn, id } => {
            let view = conn.client()?.remove_member(id).await.map_err(Exit)?;
            (conn, view)
        }
    };
    if conn.json {
        return print_json(&view);
    }
    println!("{:<6} {:<8} ADDRESS", "ID", "ROLE");
    for m in &view.members {
        println!("{:<6} {:<8} {}", m.id, if m.voter { "voter" } else { "learner" }, m.address);
    }
    if !view.removed.is_empty() {
        println!("removed: {:?}", view.removed);
    }
    if view.changing {
        println!("(a membership change is still in progress)");
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token and the `[[client_token]]` entry (with its
    /// hash) to paste into cluster.toml on every peer.
    New {
        /// Who holds it (shown in errors instead of the token).
        #[arg(long)]
        name: String,
        /// read, submit or admin.
        #[arg(long, value_parser = parse_role)]
        role: crate::config::Role,
    },
    /// Print the SHA-256 of the token read from standard input.
    Hash,
}

fn parse_role(raw: &str) -> Result<crate::config::Role, String> {
    use crate::config::Role;
    match raw {
        "read" => Ok(Role::Read),
        "submit" => Ok(Role::Submit),
        "admin" => Ok(Role::Admin),
        other => Err(format!("unknown role {other:?}; use read, submit or admin")),
    }
}

fn token_command(which: TokenCommand) -> anyhow::Result<()> {
    use crate::api::auth::token_hash_hex;
    match which {
        TokenCommand::New { name, role } => {
            let token = format!("sg_{}", hex::encode(rand::random::<[u8; 24]>()));
            println!("token: {token}");
            println!();
            println!("[[client_token]]");
            println!("name = {}", toml::Value::String(name));
            println!("role = \"{}\"", role.as_str());
            println!("sha256 = \"{}\"", token_hash_hex(&token));
            Ok(())
        }
        TokenCommand::Hash => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the token from standard input")?;
            let token = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!token.is_empty(), "no token on standard input");
            println!("{}", token_hash_hex(token));
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run peer N of the cluster described by the cluster file.
    Serve {
        /// The cluster file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// This peer's id (in the cluster file, or new with --address).
        #[arg(long)]
        id: u64,
        /// For a peer not in the cluster file, joining a running cluster:
        /// its host:port (then add it with `sgnode members add`).
        #[arg(long, requires = "data_dir")]
        address: Option<String>,
        /// The joining peer's data directory.
        #[arg(long, requires = "address")]
        data_dir: Option<PathBuf>,
        /// The joining peer's job slots.
        #[arg(long, default_value_t = crate::config::default_slots(), requires = "address")]
        slots: u32,
    },
    /// Grow or shrink the cluster at runtime (admin token).
    Members {
        #[command(subcommand)]
        which: MembersCommand,
    },
    /// Queue a job: `sgnode submit --name etl -- ./run.sh --day 2026-12-04`.
    Submit {
        #[command(flatten)]
        conn: Connection,
        /// Job name.
        #[arg(long)]
        name: String,
        /// Dedup key; by default derived from name, params and command.
        #[arg(long)]
        dedup_key: Option<String>,
        /// A parameter, NAME=VALUE; repeatable. Reaches the job as `SG_PARAM_<NAME>`.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[command(flatten)]
        resources: ResourceArgs,
        /// Time that `{{date}}`, `{{minute}}`, ... templates render [default: now].
        /// E.g. `--dedup-key 'nightly@{{date}}'` on every peer's crontab gives one run a day.
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        at: Option<std::time::SystemTime>,
        /// Time zone templates render in (IANA name).
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Archive to run: an http(s)/file URL (with --sha256), or
        /// sg:sha256:HEX from `sgnode artifact push`. The words after `--`
        /// are then the runner's arguments.
        #[arg(long)]
        artifact: Option<String>,
        /// SHA-256 of the archive at --artifact (64 hex digits).
        #[arg(long, requires = "artifact")]
        sha256: Option<String>,
        /// Program and arguments to run (or, with --artifact, the job's
        /// arguments), after `--`.
        #[arg(last = true, required_unless_present = "artifact")]
        command: Vec<String>,
        /// Keep retrying this long while the cluster has no leader with a
        /// quorum (503), e.g. during a failover; the retries carry the same
        /// request id, so the job is created at most once. 0 gives up at the
        /// first failure. A peer that cannot be reached fails at once (a
        /// wrong URL should not make you wait).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        retry_for: std::time::Duration,
    },
    /// Manage cron schedules (and induced jobs) from a TOML file.
    Schedule {
        #[command(subcommand)]
        which: crate::dispatch::cli::ScheduleCommand,
    },
    /// Submit one job per date (or step) of a range from a schedule's template.
    Backfill(crate::dispatch::cli::Backfill),
    /// Record that a dataset instance exists: `sgnode publish 'logs/{{date}}' --param date=2026-12-03`.
    Publish {
        #[command(flatten)]
        conn: Connection,
        /// Dataset instance name; may use templates over the params.
        dataset: String,
        /// A parameter of the instance, NAME=VALUE; repeatable.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
    /// Induced (data-triggered) jobs.
    Induced {
        #[command(subcommand)]
        which: crate::dispatch::cli::InducedCommand,
    },
    /// Make client tokens for `[[client_token]]` in cluster.toml.
    Token {
        #[command(subcommand)]
        which: TokenCommand,
    },
    /// Show one job.
    Status {
        #[command(flatten)]
        conn: Connection,
        /// Job id.
        id: String,
    },
    /// List jobs, newest first.
    History {
        #[command(flatten)]
        conn: Connection,
        /// Only jobs with this name.
        #[arg(long)]
        name: Option<String>,
        /// Only jobs in this state (queued, assigned, running, succeeded, failed, cancelled, timed_out, lost).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs with this dedup key.
        #[arg(long)]
        dedup_key: Option<String>,
        /// Only jobs that had an attempt on this peer.
        #[arg(long)]
        node: Option<u64>,
        /// Only jobs submitted at or after this time (RFC 3339 or ms since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// Only jobs submitted before this time (RFC 3339 or ms since the epoch).
        #[arg(long)]
        until: Option<String>,
        /// Only jobs older than this id (next page).
        #[arg(long)]
        before: Option<u64>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a job's output, from any peer.
    Logs {
        #[command(flatten)]
        conn: Connection,
        /// Job id.
        id: String,
        /// Attempt number [default: the latest].
        #[arg(long)]
        attempt: Option<u32>,
        /// Keep printing the output as the attempt writes it, until it ends;
        /// a job still queued is waited for.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a job: dequeue it, or kill it if it runs.
    Cancel {
        #[command(flatten)]
        conn: Connection,
        /// Job id.
        id: String,
    },
    /// Pause or resume placement: queued jobs wait, running ones continue.
    Queue {
        #[command(flatten)]
        conn: Connection,
        /// pause or resume
        #[arg(value_parser = ["pause", "resume"])]
        action: String,
    },
    /// Show the peers, their roles and Raft progress.
    Nodes {
        #[command(flatten)]
        conn: Connection,
    },
    /// Internal: the fencing guard a worker starts next to itself.
    #[command(hide = true)]
    Guard {
        #[arg(long)]
        work_dir: PathBuf,
        #[arg(long)]
        parent: i32,
    },
    /// Load generators (see the README for figures).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// The built-in artifact store: push job archives, list them.
    Artifact {
        #[command(subcommand)]
        which: artifact::ArtifactCommand,
    },
    /// TLS helpers.
    Tls {
        #[command(subcommand)]
        which: TlsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a test CA (`ca.pem`) and one certificate (`peer.pem`, key
    /// `peer.key`) valid for the given peer addresses, for a `[tls]` table.
    /// The CA's key is not kept: for tests and first setups, not production.
    Gen {
        /// Directory to write into (created if missing; files are replaced).
        #[arg(long)]
        out: PathBuf,
        /// Peer hosts the certificate is valid for: IPs or DNS names,
        /// comma-separated (ports are not part of a certificate).
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Submit unique jobs from many concurrent clients and report rate and latency.
    Submit(crate::bench::SubmitBench),
    /// Run no-op jobs and report jobs started/s and submit-to-start latency.
    Run(crate::bench::RunBench),
    /// Build a large finished history in-process (real apply path, sled in a
    /// scratch dir) and time history pages, snapshots and retention Gc.
    History(crate::bench::history::HistoryBench),
    /// Offer far more jobs than the cluster can run (backfill batches plus
    /// single submits, open loop) and report refusals, lost jobs, read
    /// latency, leader changes and peak memory.
    Overload(crate::bench::overload::OverloadBench),
}

/// What a job asks of the cluster.
#[derive(Debug, Clone, Args)]
pub struct ResourceArgs {
    /// Slots the job occupies while it runs.
    #[arg(long)]
    pub slots: Option<u32>,
    /// Memory to reserve, MiB.
    #[arg(long = "mem")]
    pub mem_mb: Option<u64>,
    /// Higher runs first.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Retries after a failed or timed-out attempt, with exponential backoff.
    #[arg(long)]
    pub retries: Option<u32>,
    /// Kill the attempt's process group after this long (e.g. 30s, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

/// How to reach a peer.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Base URL of any peer [default: first peer in ./cluster.toml].
    #[arg(long, env = "SGNODE_URL")]
    pub url: Option<String>,
    /// Token: a client token (read, submit or admin role) or the peer token.
    #[arg(long, env = "SGNODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA bundle to trust for an https:// URL (the cluster's `[tls] ca`)
    /// [default: the `ca` of ./cluster.toml when the URL comes from it].
    #[arg(long, env = "SGNODE_CA")]
    pub ca: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Connection {
    /// A client for the chosen peer.
    ///
    /// # Errors
    /// When no URL is given and `./cluster.toml` cannot be read, or the CA
    /// file is unusable.
    pub fn client(&self) -> anyhow::Result<Client> {
        let (url, ca) = match &self.url {
            Some(url) => (url.clone(), self.ca.clone()),
            None => {
                let file = Path::new("cluster.toml");
                let url = default_url(file)?;
                let ca = self.ca.clone().or_else(|| cluster_ca(file));
                (url, ca)
            }
        };
        let trust = match ca {
            Some(ca) => crate::tls::Trust::load(&ca)?,
            None => crate::tls::Trust::default(),
        };
        Client::with_trust(&url, self.token.clone(), std::time::Duration::from_secs(30), &trust)
            .map_err(|e| Exit(e).into())
    }
}

/// The `[tls] ca` of a cluster file, when it has one.
fn cluster_ca(path: &Path) -> Option<PathBuf> {
    ClusterConfig::load(path).ok()?.tls.map(|tls| tls.ca)
}

/// Base URLs of every peer in a cluster file, in file order: what client
/// commands use when no `--url` is given.
///
/// # Errors
/// When the file cannot be read or lists no peers.
pub(crate) fn cluster_urls(path: &Path) -> anyhow::Result<Vec<String>> {
    let config = ClusterConfig::load(path)
        .with_context(|| format!("no --url given (or SGNODE_URL) and {} is not usable", path.display()))?;
    anyhow::ensure!(!config.peers.is_empty(), "{} lists no peers", path.display());
    Ok(config.peers.iter().map(|p| config.peer_url(p)).collect())
}

/// The first peer of a cluster file.
///
/// # Errors
/// As [`cluster_urls`].
pub(crate) fn default_url(path: &Path) -> anyhow::Result<String> {
    Ok(cluster_urls(path)?.swap_remove(0))
}

fn parse_param(raw: &str) -> Result<(String, String), String> {
    let (k, v) = raw.split_once('=').ok_or_else(|| format!("param {raw:?} must look like NAME=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// A client-side failure carrying its exit code through `anyhow`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Exit(#[from] pub ClientError);

/// Exit code for an error chain: the client's documented code, else 1.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    error.chain().find_map(|e| e.downcast_ref::<Exit>()).map_or(1, |e| e.0.exit_code())
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a parsed command line.
///
/// # Errors
/// Everything, with context; see [`exit_code`].
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        CliCommand::Serve { config, id, address, data_dir, slots } => {
            let joining = address.zip(data_dir).map(|(address, data_dir)| crate::config::PeerConfig {
                id,
                address,
                data_dir,
                voter: false,
                slots,
                mem_mb: crate::config::default_mem_mb(),
                // The cluster-wide `[tls]` and `run_as` apply to it.
                tls_cert: None,
                tls_key: None,
                run_as: None,
            });
            serve(&config, id, joining).await
        }
        CliCommand::Members { which } => members_command(which).await,
        CliCommand::Submit {
            conn,
            name,
            dedup_key,
            params,
            resources,
            artifact,
            sha256,
            command,
            at,
            tz,
            retry_for,
        } => {
            let client = conn.client()?;
            // With an artifact, the words after `--` are the runner's arguments.
            let (command, args) =
                if artifact.is_some() { (Vec::new(), command) } else { (command, Vec::new()) };
            let request = SubmitRequest {
                artifact,
                sha256,
                args,
                params: params.into_iter().collect(),
                dedup_key,
                slots: resources.slots,
                mem_mb: resources.mem_mb,
                priority: resources.priority,
                retries: resources.retries,
                timeout_ms: resources.timeout.map(|t| t.as_millis() as u64),
                ..SubmitRequest::new(&name, command)
            };
            let request = render_submit(request, at, &tz)?;
            let request_id: u128 = rand::random();
            let response = retrying(retry_for, || client.submit(&request, request_id)).await.map_err(Exit)?;
            if conn.json {
                print_json(&response)
            } else if response.duplicate {
                println!("job {} already exists (duplicate, {})", response.id, response.state);
                Ok(())
            } else {
                println!("job {} {}", response.id, response.state);
                Ok(())
            }
        }
        CliCommand::Token { which } => token_command(which),
        CliCommand::Status { conn, id } => {
            let job = conn.client()?.status(&id).await.map_err(Exit)?;
            if conn.json {
                return print_json(&job);
            }
            print_job(&job);
            Ok(())
        }
        CliCommand::History { conn, name, state, dedup_key, node, since, until, before, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            let optional = [
                ("name", name),
                ("state", state),
                ("dedup_key", dedup_key),
                ("node", node.map(|n| n.to_string())),
                ("since", since),
                ("until", until),
                ("before", before.map(|b| b.to_string())),
            ];
            query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
            let jobs = conn.client()?.history(&query).await.map_err(Exit)?;
            if conn.json {
                return print_json(&jobs);
            }
            print_history(&jobs);
            Ok(())
        }
        CliCommand::Logs { conn, id, attempt, follow } => {
            let client = conn.client()?;
            if follow && attempt.is_none() {
                wait_until_placed(&client, &id).await?;
            }
            let (source, mut response) = client.logs_stream(&id, attempt, follow).await.map_err(Exit)?;
            if source == "tail" {
                eprintln!("(the worker that ran it does not answer: showing the last 64 KiB kept in the job record)");
            }
            use std::io::Write as _;
            while let Some(chunk) = response.chunk().await.context("reading the log")? {
                let mut out = std::io::stdout().lock();
                out.write_all(&chunk)?;
                out.flush()?;
            }
            Ok(())
        }
        CliCommand::Cancel { conn, id } => {
            let response = conn.client()?.cancel(&id).await.map_err(Exit)?;
            if conn.json {
                return print_json(&response);
            }
            println!("job {} {}", response.id, response.state);
            Ok(())
        }
        CliCommand::Queue { conn, action } => {
            let view = conn.client()?.set_paused(action == "pause").await.map_err(Exit)?;
            if conn.json {
                return print_json(&view);
            }
            println!("placement {}", if view.paused { "paused" } else { "running" });
            Ok(())
        }
        CliCommand::Nodes { conn } => {
            let view = conn.client()?.nodes().await.map_err(Exit)?;
            if conn.json {
                return print_json(&view);
            }
            print_nodes(&view);
            Ok(())
        }
        CliCommand::Schedule { which } => crate::dispatch::cli::schedule(which).await,
        CliCommand::Backfill(backfill) => backfill.run().await,
        CliCommand::Publish { conn, dataset, params } => {
            crate::dispatch::cli::publish(conn, dataset, params).await
        }
        CliCommand::Induced { which } => crate::dispatch::cli::induced(which).await,
        CliCommand::Guard { work_dir, parent } => {
            crate::runner::guard::run_guard(&work_dir, parent);
            Ok(())
        }
        CliCommand::Bench { which: BenchCommand::Submit(bench) } => bench.run().await,
        CliCommand::Bench { which: BenchCommand::Run(bench) } => bench.run().await,
        CliCommand::Bench { which: BenchCommand::History(bench) } => bench.run().await,
        CliCommand::Bench { which: BenchCommand::Overload(bench) } => bench.run().await,
        CliCommand::Artifact { which } => artifact::run(which).await,
        CliCommand::Tls { which: TlsCommand::Gen { out, peers } } => {
            let made = crate::tls::generate(&out, &peers)?;
            println!(
                "wrote {}, {} and {}\n\nadd to cluster.toml (every peer):\n[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}",
                made.ca.display(),
                made.cert.display(),
                made.key.display(),
                made.cert,
                made.key,
                made.ca
            );
            Ok(())
        }
    }
}

/// Renders `{{...}}` templates of a manual submit at `at` (default now) in
/// zone `tz`, so that identical crontab lines on every peer produce the
/// same dedup key for the same minute.
fn render_submit(
    request: SubmitRequest,
    at: Option<std::time::SystemTime>,
    tz: &str,
) -> anyhow::Result<SubmitRequest> {
    use crate::dispatch::template;
    let zone = template::parse_zone(tz).map_err(anyhow::Error::msg).context("--tz")?;
    let at = at.unwrap_or_else(std::time::SystemTime::now);
    let millis = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let spec: crate::queue::JobSpec = request.clone().into();
    let ctx = template::TemplateContext { time: crate::dispatch::zoned(millis, zone), params: &spec.params };
    let rendered = template::render_spec(&spec, &ctx).map_err(|e| Exit(ClientError::Usage(e.to_string())))?;
    Ok(SubmitRequest {
        name: rendered.name,
        command: rendered.command,
        args: rendered.args,
        params: rendered.params,
        dedup_key: rendered.dedup_key,
        ..request
    })
}

fn print_job(job: &JobView) {
    println!("id:           {}", job.id);
    println!("name:         {}", job.name);
    println!("state:        {}", job.state);
    println!("dedup_key:    {}", job.dedup_key);
    println!("submitted_at: {}", job.submitted_at);
    println!("finished_at:  {}", job.finished_at.as_deref().unwrap_or("-"));
    if let Some(artifact) = &job.artifact {
        println!("artifact:     {}", artifact.url);
        println!("sha256:       {}", artifact.sha256);
    }
    if !job.command.is_empty() {
        println!("command:      {}", job.command.join(" "));
    }
    if !job.args.is_empty() {
        println!("args:         {}", job.args.join(" "));
    }
    if let Some(runner) = job.runner {
        println!("runner:       {runner}");
    }
    for (k, v) in &job.params {
        println!("param:        {k}={v}");
    }
    let timeout = job.timeout_ms.map_or("none".to_string(), |t| format!("{t} ms"));
    println!(
        "resources:    {} slot(s), {} MiB, priority {}, retries {}, timeout {timeout}",
        job.slots, job.mem_mb, job.priority, job.retries
    );
    if job.cancel_requested {
        println!("cancel:       requested");
    }
    if !job.attempts.is_empty() {
        println!("attempts:");
        println!(
            "  {:>3}  {:>4}  {:<6}  {:<24}  {:<10}  {:>9}  REASON",
            "N", "NODE", "RUNNER", "STARTED", "OUTCOME", "DURATION"
        );
    }
    for a in &job.attempts {
        let outcome = a.outcome.map_or_else(
            || if a.started_at.is_some() { "running" } else { "assigned" }.to_string(),
            |o| serde_json::to_value(o).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        );
        let duration = a.duration_ms.map_or("-".to_string(), |d| format!("{:.1}s", d as f64 / 1000.0));
        println!(
            "  {:>3}  {:>4}  {:<6}  {:<24}  {:<10}  {:>9}  {}",
            a.number,
            a.node,
            a.runner.map_or("-", |r| r.as_str()),
            a.started_at.as_deref().unwrap_or("-"),
            outcome,
            duration,
            a.reason.as_deref().unwrap_or("")
        );
    }
}

fn print_history(jobs: &[JobView]) {
    println!("{:>8}  {:<10}  {:<24}  {:<6}  {:<24}  DEDUP_KEY", "ID", "STATE", "NAME", "RUNNER", "SUBMITTED");
    for job in jobs {
        println!(
            "{:>8}  {:<10}  {:<24}  {:<6}  {:<24}  {}",
            job.id,
            job.state.as_str(),
            job.name,
            job.runner.map_or("-", |r| r.as_str()),
            job.submitted_at,
            job.dedup_key
        );
    }
}

fn print_nodes(view: &NodesView) {
    let leader = view.leader.map_or("none".to_string(), |l| l.to_string());
    println!("cluster {}  leader {}  term {}", view.cluster, leader, view.term);
    println!(
        "{:>4}  {:<26}  {:<11}  {:<5}  {:>10}  {:>12}",
        "ID", "URL", "ROLE", "VOTER", "LAST_LOG", "LAST_APPLIED"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for n in &view.nodes {
        let slots = n.slots.map_or("-".to_string(), |s| format!("{}/{s}", n.slots_used));
        let mem = n.mem_mb.map_or("-".to_string(), |m| format!("{}/{m}", n.mem_used_mb));
        let role = if n.lost { format!("{} (lost)", n.role) } else { n.role.clone() };
        println!(
            "{:>4}  {:<26}  {:<11}  {:<5}  {:>10}  {:>12}  {:>7}  {:>11}",
            n.id,
            n.url,
            role,
            if n.voter { "yes" } else { "no" },
            opt(n.last_log),
            opt(n.last_applied),
            slots,
            mem
        );
    }
}

async fn serve(
    config_path: &Path,
    id: u64,
    joining: Option<crate::config::PeerConfig>,
) -> anyhow::Result<()> {
    let mut config = ClusterConfig::load(config_path)?;
    if let Some(peer) = joining {
        config = config.with_joining_peer(peer)?;
    }
    let config = Arc::new(config);
    let me = config.peer(id)?.clone();
    let addr: std::net::SocketAddr = me.address.parse().with_context(|| format!("peer {id} address"))?;
    // Bad TLS files or an unusable run_as stop the peer here, before it
    // opens its database or joins the cluster.
    let tls = match config.tls_identity(&me) {
        Some((cert, key)) => Some(crate::tls::server_config(cert, key)?),
        None => None,
    };
    if let Some(user) = config.run_as(&me) {
        crate::runner::user::RunAs::resolve(user)?;
    }
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let (peer, mut tasks) = crate::node::Peer::start(config.clone(), id, shutdown_rx.clone()).await?;
    let mut http_shutdown = shutdown_rx.clone();
    let (bound, server) = crate::api::serve(peer.clone(), addr, tls, async move {
        let _ = http_shutdown.wait_for(|stop| *stop).await;
    })
    .with_context(|| format!("cannot listen on {addr}"))?;
    let server = tokio::spawn(server);
    tracing::info!(
        "peer {id} listening on {} (data in {})",
        config.url(&bound.to_string()),
        me.data_dir.display()
    );
    peer.bootstrap_if_new().await;

    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    while tasks.join_next().await.is_some() {}
    if let Err(e) = peer.raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    peer.flush().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// For `logs --follow` of a job still queued: waits (saying so once on
/// stderr) until it has an attempt to follow, or ended without one.
async fn wait_until_placed(client: &Client, id: &str) -> Result<(), Exit> {
    let mut told = false;
    loop {
        let job = client.status(id).await?;
        if !job.attempts.is_empty() || job.state.is_terminal() {
            return Ok(());
        }
        if !told {
            eprintln!("(job {id} is {}: waiting for it to start)", job.state);
            told = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Runs `call` until it succeeds, fails for good, or `retry_for` has passed:
/// 503 (no leader with a quorum, or the peer shutting down) is retried with
/// a backoff from 100 ms to 2 s.
async fn retrying<T, F, Fut>(retry_for: std::time::Duration, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = std::time::Instant::now() + retry_for;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match call().await {
            Err(e) if e.status() == Some(503) && std::time::Instant::now() + pause < deadline => {
                tracing::debug!("retrying in {pause:?}: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            result => return result,
        }
    }
}
