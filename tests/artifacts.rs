//! Deployment and runners end to end: real peers fetching archives from a
//! local HTTP server, `file://` URLs and the built-in store; the shell,
//! Hadoop (against a recording `hadoop` script) and Luigi (real Luigi from
//! PyPI) runners; cache, single-flight, and refusals with clear reasons.

mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sgnode::api::views::{BatchItem, BatchSubmitRequest, JobView, SubmitRequest};
use sgnode::client::Client;
use sgnode::queue::{JobState, RunnerKind};
use sha2::{Digest, Sha256};
use util::*;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A tar.gz of (path, mode, content).
fn tar_gz(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, mode, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(*mode);
        header.set_size(data.len() as u64);
        // Raw name bytes, so that hostile names survive.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

/// A jar with a manifest (and `Main-Class` when given) and one class file.
fn jar(main_class: Option<&str>) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("META-INF/MANIFEST.MF", options).expect("zip");
    let mut manifest = "Manifest-Version: 1.0\r\n".to_string();
    if let Some(main) = main_class {
        manifest.push_str(&format!("Main-Class: {main}\r\n"));
    }
    zip.write_all(manifest.as_bytes()).expect("zip");
    zip.start_file("org/example/WordCount.class", options).expect("zip");
    zip.write_all(b"\xca\xfe\xba\xbe").expect("zip");
    zip.finish().expect("zip").into_inner()
}

/// The shell job every test ships: records its arguments and a param.
const RUN_SH: &[u8] = b"#!/bin/sh\nout=\"$SG_PARAM_OUT/shell-$SG_JOB_ID\"\nfor a in \"$@\"; do printf 'arg=%s\\n' \"$a\"; done > \"$out\"\nprintf 'day=%s\\n' \"$SG_PARAM_DAY\" >> \"$out\"\n";

fn shell_artifact() -> Vec<u8> {
    tar_gz(&[("run.sh", 0o755, RUN_SH), ("README", 0o644, b"a test job\n")])
}

/// A tiny HTTP server on 127.0.0.1:0 serving fixed files, counting the
/// requests per path, answering slowly so concurrent fetches overlap.
struct FileServer {
    base: String,
    hits: Arc<Mutex<BTreeMap<String, u32>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FileServer {
    fn start(files: BTreeMap<String, Vec<u8>>, delay: Duration) -> FileServer {
        use warp::Filter;
        let files = Arc::new(files);
        let hits: Arc<Mutex<BTreeMap<String, u32>>> = Default::default();
        let counted = hits.clone();
        let route = warp::path::param::<String>().and(warp::get()).then(move |name: String| {
            let files = files.clone();
            let hits = counted.clone();
            async move {
                *hits.lock().unwrap().entry(name.clone()).or_default() += 1;
                tokio::time::sleep(delay).await;
                match files.get(&name) {
                    Some(bytes) => warp::http::Response::builder().status(200).body(bytes.clone()).unwrap(),
                    None => {
                        warp::http::Response::builder().status(404).body(b"no such file".to_vec()).unwrap()
                    }
                }
            }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = warp::serve(route).bind_with_graceful_shutdown(([127, 0, 0, 1], 0), async {
            let _ = rx.await;
        });
        tokio::spawn(server);
        FileServer { base: format!("http://{addr}"), hits, stop: Some(tx) }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn hits(&self, name: &str) -> u32 {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn with_params(mut request: SubmitRequest, params: &[(&str, &str)]) -> SubmitRequest {
    for (k, v) in params {
        request.params.insert(k.to_string(), v.to_string());
    }
    request
}

async fn finished(client: &Client, id: &str) -> JobView {
    wait_until(&format!("job {id} to finish"), Duration::from_secs(90), || async {
        client.status(id).await.ok().filter(|j| j.state.is_terminal())
    })
    .await
}

fn reason(job: &JobView) -> String {
    job.attempts.last().and_then(|a| a.reason.clone()).unwrap_or_default()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} missing: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_artifacts_are_verified_cached_fetched_once_and_refused_clearly() {
    let shell = shell_artifact();
    let slip = tar_gz(&[("run.sh", 0o755, RUN_SH), ("../escaped", 0o644, b"gotcha")]);
    let files: BTreeMap<String, Vec<u8>> = [
        ("shell.tgz".to_string(), shell.clone()),
        ("other.tgz".to_string(), shell.clone()),
        ("slip.tgz".to_string(), slip.clone()),
    ]
    .into();
    let server = FileServer::start(files, Duration::from_millis(400));
    let cluster = TestCluster::start(ClusterSpec { voters: 1, slots: 3, ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let client = cluster.client(1);
    let out = cluster.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let out_s = out.to_str().unwrap();

    // Three jobs needing the same archive at once (one batch, so they are
    // placed together and their fetches overlap): one download.
    let url = server.url("shell.tgz");
    let jobs = (0..3)
        .map(|i| {
            let args = vec!["two words".to_string(), "$HOME;echo no".to_string(), format!("n{i}")];
            let request = SubmitRequest::artifact(&format!("fetch{i}"), &url, Some(&sha256(&shell)), args);
            with_params(request, &[("out", out_s), ("day", "2026-12-04")])
        })
        .collect();
    let batch = client.submit_batch(&BatchSubmitRequest { jobs }, 10).await.expect("batch");
    let ids: Vec<String> = batch
        .results
        .into_iter()
        .map(|item| match item {
            BatchItem::Ok(s) => s.id,
            BatchItem::Err(e) => panic!("refused: {:?}", e.error),
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let job = finished(&client, id).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}\n{}", cluster.logs());
        assert_eq!(job.runner, Some(RunnerKind::Shell));
        assert_eq!(job.attempts[0].runner, Some(RunnerKind::Shell));
        // Arguments and params arrive as they were, never through a shell line.
        let expected = ["arg=two words", "arg=$HOME;echo no", &format!("arg=n{i}"), "day=2026-12-04"];
        assert_eq!(lines(&out.join(format!("shell-{id}"))), expected);
    }
    assert_eq!(server.hits("shell.tgz"), 1, "concurrent attempts downloaded the archive once");
    // A later job with the same archive is served from the cache.
    let request = SubmitRequest::artifact("cached", &url, Some(&sha256(&shell)), vec![]);
    let id = client.submit(&with_params(request, &[("out", out_s)]), 20).await.expect("submit").id;
    assert_eq!(finished(&client, &id).await.state, JobState::Succeeded);
    assert_eq!(server.hits("shell.tgz"), 1, "the second job used the cache");
    // The same content at another URL is the same cache entry too.
    let request = SubmitRequest::artifact("mirror", &server.url("other.tgz"), Some(&sha256(&shell)), vec![]);
    let id = client.submit(&with_params(request, &[("out", out_s)]), 21).await.expect("submit").id;
    assert_eq!(finished(&client, &id).await.state, JobState::Succeeded);
    assert_eq!(server.hits("other.tgz"), 0);

    // Wrong checksum, missing file, malicious archive: failed with the reason.
    let wrong = sha256(b"something else");
    let request = SubmitRequest::artifact("wrong-sum", &server.url("other.tgz"), Some(&wrong), vec![]);
    let id = client.submit(&request, 30).await.expect("submit").id;
    let job = finished(&client, &id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(reason(&job), format!("artifact_checksum: expected {wrong} got {}", sha256(&shell)));
    assert_eq!(job.attempts[0].runner, None, "nothing was started");

    let missing = server.url("missing.tgz");
    let request = SubmitRequest::artifact("missing", &missing, Some(&sha256(b"x")), vec![]);
    let id = client.submit(&request, 31).await.expect("submit").id;
    let job = finished(&client, &id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(reason(&job), format!("artifact_fetch: HTTP 404 from {missing}"));
    // ...and `sgnode status` shows it.
    let (code, text, _) = cli(&["status", "--url", &cluster.url(1), &id], cluster.dir.path());
    assert_eq!(code, 0);
    assert!(text.contains("artifact_fetch: HTTP 404"), "{text}");

    let request = SubmitRequest::artifact("slip", &server.url("slip.tgz"), Some(&sha256(&slip)), vec![]);
    let id = client.submit(&with_params(request, &[("out", out_s)]), 32).await.expect("submit").id;
    let job = finished(&client, &id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(reason(&job), "artifact_invalid: entry ../escaped escapes the directory");
    assert!(!out.join(format!("shell-{id}")).exists(), "the job did not run");
    let attempts = cluster.dir.path().join("peer1/work/attempts");
    assert!(!attempts.join("escaped").exists() && !cluster.dir.path().join("peer1/work/escaped").exists());

    // Bad specs are refused at submit, naming the field.
    for (request, field) in [
        (SubmitRequest::artifact("x", &url, Some("abc"), vec![]), "sha256"),
        (SubmitRequest::artifact("x", &url, None, vec![]), "sha256"),
        (SubmitRequest::artifact("x", "ftp://h/a.tgz", Some(&wrong), vec![]), "artifact"),
        (SubmitRequest::artifact("x", "sg:sha256:1234", None, vec![]), "artifact"),
        (SubmitRequest { args: vec!["a".into()], ..SubmitRequest::new("x", vec!["true".into()]) }, "args"),
    ] {
        let err = client.submit(&request, rand::random()).await.expect_err("invalid");
        assert_eq!(err.status(), Some(400));
        assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
    }
}

/// The interpreter with Luigi: `SGNODE_TEST_PYTHON` (set by `.ci/run`),
/// else `python3`. Missing Luigi fails the test: it must run in CI.
fn luigi_python() -> String {
    let mut python = std::env::var("SGNODE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    // The peers run it from their attempt directories: make it absolute
    // (without resolving links: a venv's python must keep its path).
    if python.contains('/') {
        if let Ok(path) = std::path::absolute(&python) {
            python = path.display().to_string();
        }
    }
    let ok = std::process::Command::new(&python)
        .args(["-c", "import luigi"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{python} cannot import luigi: run `scripts/python-env.sh` and set SGNODE_TEST_PYTHON to the python it prints"
    );
    python
}

const PIPELINE: &str = r#"import os
import luigi


class Extract(luigi.Task):
    date = luigi.Parameter()
    out_dir = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(self.out_dir, "extract-%s.txt" % self.date))

    def run(self):
        with self.output().open("w") as f:
            f.write("rows for %s: 3\n" % self.date)


class Report(luigi.Task):
    date = luigi.Parameter()
    out_dir = luigi.Parameter()

    def requires(self):
        return Extract(date=self.date, out_dir=self.out_dir)

    def output(self):
        return luigi.LocalTarget(os.path.join(self.out_dir, "report-%s.txt" % self.date))

    def run(self):
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write("report: " + src.read())
"#;

const BROKEN: &str =
    "import luigi\n\nclass Broken(luigi.Task):\n    def run(self):\n        raise RuntimeError('boom')\n";

/// Records its argv, HADOOP_CONF_DIR and cwd, like `hadoop` would receive them.
const HADOOP: &str = "#!/bin/sh\nout=\"$SG_PARAM_OUT/hadoop-$SG_JOB_ID\"\n{ for a in \"$@\"; do printf 'arg=%s\\n' \"$a\"; done\n  printf 'conf=%s\\n' \"$HADOOP_CONF_DIR\"; printf 'cwd=%s\\n' \"$(pwd)\"; } > \"$out\"\n";

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// `sgnode artifact push FILE` through peer `via`; returns the reference.
fn push(cluster: &TestCluster, via: u64, file: &Path) -> String {
    let url = cluster.url(via);
    let (code, out, err) = cli(
        &["artifact", "push", "--url", &url, "--token", TOKEN, file.to_str().unwrap()],
        cluster.dir.path(),
    );
    assert_eq!(code, 0, "push failed: {err}");
    assert!(err.contains("on peers 1, 2") || via != 1, "the receiver and a copy: {err}");
    let reference = out.trim().to_string();
    assert!(reference.starts_with("sg:sha256:") && reference.len() == 74, "{out}");
    reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_hadoop_and_luigi_runners_on_three_peers() {
    let python = luigi_python();
    let tools = tempfile::tempdir().unwrap();
    let hadoop = write_file(tools.path(), "hadoop", HADOOP.as_bytes());
    std::fs::set_permissions(&hadoop, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let extra = format!("hadoop_bin = \"{}\"\npython_bin = \"{python}\"\n", hadoop.display());
    let cluster = TestCluster::start(ClusterSpec {
        extra,
        env: vec![("HADOOP_CONF_DIR".into(), "/etc/hadoop/test-conf".into())],
        ..ClusterSpec::default()
    });
    cluster.wait_leader().await;
    let dir = cluster.dir.path();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let out_s = out.to_str().unwrap();
    let client = cluster.client(2);

    // Shell: a tar.gz by file:// URL.
    let shell = shell_artifact();
    let path = write_file(dir, "shell.tgz", &shell);
    let request = SubmitRequest::artifact("sh", &file_url(&path), Some(&sha256(&shell)), vec!["x y".into()]);
    let sh = client.submit(&with_params(request, &[("out", out_s), ("day", "d1")]), 1).await.unwrap().id;

    // Hadoop 1: a bare jar with Main-Class, pushed to the built-in store.
    let jar_path = write_file(dir, "wordcount.jar", &jar(Some("org.example.WordCount")));
    let reference = push(&cluster, 1, &jar_path);
    let request = SubmitRequest::artifact("wc", &reference, None, vec!["/in".into(), "/out".into()]);
    let wc = client.submit(&with_params(request, &[("out", out_s)]), 2).await.unwrap().id;

    // Hadoop 2: a jar without Main-Class, named with sgjob.toml.
    let manifest = b"runner = \"hadoop\"\nentry = \"lib/plain.jar\"\nmain_class = \"org.example.Grep\"\nargs = [\"default-arg\"]\n";
    let bundle = tar_gz(&[("sgjob.toml", 0o644, manifest), ("lib/plain.jar", 0o644, &jar(None))]);
    let path = write_file(dir, "grep.tgz", &bundle);
    let request = SubmitRequest::artifact("grep", &file_url(&path), Some(&sha256(&bundle)), vec![]);
    let grep = client.submit(&with_params(request, &[("out", out_s)]), 3).await.unwrap().id;

    // Luigi: a real two-task pipeline, params as Luigi parameters.
    let pipeline = tar_gz(&[("pipeline.py", 0o644, PIPELINE.as_bytes())]);
    let path = write_file(dir, "pipeline.tgz", &pipeline);
    let request = SubmitRequest::artifact("etl", &file_url(&path), Some(&sha256(&pipeline)), vec![]);
    let etl = client
        .submit(&with_params(request, &[("date", "2026-12-04"), ("out_dir", out_s)]), 4)
        .await
        .unwrap()
        .id;

    // Luigi with a failing task: Luigi's retcodes and summary fail the job.
    let broken = tar_gz(&[("broken.py", 0o644, BROKEN.as_bytes())]);
    let path = write_file(dir, "broken.tgz", &broken);
    let request = SubmitRequest::artifact("broken", &file_url(&path), Some(&sha256(&broken)), vec![]);
    let bad = client.submit(&request, 5).await.unwrap().id;

    let expect = |job: &JobView, runner: RunnerKind| {
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", cluster.logs());
        assert_eq!(job.runner, Some(runner));
    };
    let job = finished(&client, &sh).await;
    expect(&job, RunnerKind::Shell);
    assert_eq!(lines(&out.join(format!("shell-{sh}"))), ["arg=x y", "day=d1"]);

    let job = finished(&client, &wc).await;
    expect(&job, RunnerKind::Hadoop);
    let argv = lines(&out.join(format!("hadoop-{wc}")));
    assert_eq!(argv[0], "arg=jar");
    assert!(argv[1].starts_with("arg=/") && argv[1].ends_with("/job.jar"), "{argv:?}");
    assert_eq!(&argv[2..4], ["arg=/in", "arg=/out"], "Main-Class comes from the jar: {argv:?}");
    assert_eq!(argv[4], "conf=/etc/hadoop/test-conf", "HADOOP_* passes through");
    assert_eq!(
        argv[5].strip_prefix("cwd="),
        argv[1].strip_prefix("arg=").and_then(|j| j.strip_suffix("/job.jar"))
    );

    let job = finished(&client, &grep).await;
    expect(&job, RunnerKind::Hadoop);
    let argv = lines(&out.join(format!("hadoop-{grep}")));
    assert_eq!(argv[0], "arg=jar");
    assert!(argv[1].ends_with("/lib/plain.jar"), "{argv:?}");
    assert_eq!(&argv[2..4], ["arg=org.example.Grep", "arg=default-arg"]);

    let job = finished(&client, &etl).await;
    expect(&job, RunnerKind::Luigi);
    assert_eq!(lines(&out.join("extract-2026-12-04.txt")), ["rows for 2026-12-04: 3"]);
    assert_eq!(lines(&out.join("report-2026-12-04.txt")), ["report: rows for 2026-12-04: 3"]);
    let (_, log) = client.logs(&etl, None).await.expect("luigi log");
    assert!(log.contains("This progress looks :)"), "{log}");

    let job = finished(&client, &bad).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.runner, Some(RunnerKind::Luigi));
    assert!(reason(&job).contains("luigi: a task failed"), "{}", reason(&job));

    // The runner shows in `status` and `history`, tables and JSON.
    let url = cluster.url(3);
    let (_, text, _) = cli(&["status", "--url", &url, &etl], dir);
    assert!(text.contains("runner:       luigi"), "{text}");
    let (_, text, _) = cli(&["status", "--url", &url, "--json", &wc], dir);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (json["runner"].as_str(), json["attempts"][0]["runner"].as_str()),
        (Some("hadoop"), Some("hadoop"))
    );
    assert_eq!(json["artifact"]["url"].as_str(), Some(reference.as_str()));
    let (_, text, _) = cli(&["history", "--url", &url, "--json", "--name", "etl"], dir);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json[0]["runner"].as_str(), Some("luigi"));
    let (_, text, _) = cli(&["history", "--url", &url], dir);
    assert!(
        text.contains("RUNNER") && text.lines().any(|l| l.contains("grep") && l.contains("hadoop")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_artifact_survives_the_loss_of_the_peer_that_received_it() {
    let mut cluster = TestCluster::start(ClusterSpec {
        extra: "lease = \"2s\"\nnode_timeout = \"4s\"\n".into(),
        ..ClusterSpec::default()
    });
    cluster.wait_leader().await;
    let dir = cluster.dir.path().to_path_buf();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let script = b"#!/bin/sh\nsleep 2\necho \"$SG_NODE_ID\" > \"$SG_PARAM_OUT/ran-$SG_JOB_ID\"\n";
    let archive = write_file(&dir, "job.tgz", &tar_gz(&[("run.sh", 0o755, script)]));
    let reference = push(&cluster, 1, &archive);
    let hash = reference.trim_start_matches("sg:sha256:").to_string();

    // Listed with two holders (the receiver and one copy), from any peer
    // (once it has applied both registrations).
    let third = cluster.client(3);
    wait_until("peer 3 to list the artifact", Duration::from_secs(10), || async {
        third.artifacts().await.ok().filter(|a| a.len() == 1 && a[0].holders == [1, 2])
    })
    .await;
    let (code, text, _) = cli(&["artifact", "ls", "--url", &cluster.url(3), "--json"], &dir);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed[0]["hash"].as_str(), Some(hash.as_str()));
    assert_eq!(listed[0]["holders"], serde_json::json!([1, 2]));
    let (_, text, _) = cli(&["artifact", "ls", "--url", &cluster.url(2)], &dir);
    assert!(text.contains(&hash) && text.contains("1,2"), "{text}");
    // Reading it needs the token; a wrong hash in an upload is refused.
    let http = reqwest::Client::new();
    let get = http.get(format!("{}/api/v1/artifacts/{hash}", cluster.url(2))).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 401);
    let put = http
        .put(format!("{}/api/v1/artifacts/{}", cluster.url(2), sha256(b"other")))
        .bearer_auth(TOKEN)
        .body(b"not that".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 400);
    assert!(put.text().await.unwrap().contains("artifact_checksum"));

    // The peer that received it dies; peers 2 and 3 run jobs using it
    // (peer 3 must fetch it from peer 2).
    let observer = cluster.client(2);
    cluster.kill(1);
    wait_until("peer 1 to be declared lost", Duration::from_secs(30), || async {
        let nodes = observer.nodes().await.ok()?;
        nodes.nodes.iter().any(|n| n.id == 1 && n.lost).then_some(())
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let request = SubmitRequest {
            slots: Some(2),
            ..with_params(
                SubmitRequest::artifact(&format!("after{i}"), &reference, None, vec![]),
                &[("out", out.to_str().unwrap())],
            )
        };
        ids.push(observer.submit(&request, 40 + i).await.expect("submit").id);
    }
    let mut nodes = Vec::new();
    for id in &ids {
        let job = finished(&observer, id).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", cluster.logs());
        nodes.push(job.attempts.last().unwrap().node);
    }
    nodes.sort();
    assert_eq!(nodes, [2, 3], "one job on each surviving peer");
    for id in &ids {
        assert!(out.join(format!("ran-{id}")).exists());
    }
}
