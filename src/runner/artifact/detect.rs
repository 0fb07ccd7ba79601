//! Runner selection: what an unpacked artifact is, and so how to run it.
//!
//! A manifest `sgjob.toml` at the top of the archive wins. Without one, the
//! top-level files decide, in this order:
//! 1. a `.jar` whose `META-INF/MANIFEST.MF` names a `Main-Class` -> Hadoop
//!    (`hadoop jar JAR ARGS`; the jar's own manifest picks the class);
//! 2. a Python module that imports `luigi` and defines a `luigi.Task`
//!    subclass -> Luigi (the last such class in the module is the task);
//! 3. an executable `run.sh` -> Shell.
//!
//! Only reads files (bounded sizes); blocking, like unpacking.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::unpack::JAR_NAME;
use super::ArtifactError;
use crate::queue::RunnerKind;

/// The manifest's file name.
pub const MANIFEST: &str = "sgjob.toml";
/// Largest manifest or Python module read, bytes.
const MAX_TEXT: u64 = 1 << 20;

/// `sgjob.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// shell, hadoop or luigi.
    pub runner: RunnerKind,
    /// Shell: the script (relative path); Hadoop: the jar; Luigi: the
    /// module (`pipeline`, `pipeline.py` or `pkg/mod.py`). Detected when
    /// left out.
    #[serde(default)]
    pub entry: Option<String>,
    /// Hadoop: main class passed after the jar (for jars without a
    /// `Main-Class` of their own).
    #[serde(default)]
    pub main_class: Option<String>,
    /// Luigi: the task to run; by default the last task in the module.
    #[serde(default)]
    pub task: Option<String>,
    /// Arguments used when the job gives none.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment added to the job's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// How to start an unpacked artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Run this script (absolute path) with the job's arguments.
    Shell { script: PathBuf },
    /// `hadoop jar JAR [MAIN_CLASS] ARGS`.
    Hadoop { jar: PathBuf, main_class: Option<String> },
    /// `python -m luigi --module MODULE TASK ...`.
    Luigi { module: String, task: String },
}

/// The runner chosen for an artifact, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub entry: Entry,
    /// Arguments used when the job gives none.
    pub default_args: Vec<String>,
    /// Extra environment from the manifest.
    pub env: BTreeMap<String, String>,
    /// `sgjob.toml` or `detected`, for the attempt's log.
    pub source: &'static str,
}

impl RunPlan {
    /// Which runner this is.
    pub fn runner(&self) -> RunnerKind {
        match self.entry {
            Entry::Shell { .. } => RunnerKind::Shell,
            Entry::Hadoop { .. } => RunnerKind::Hadoop,
            Entry::Luigi { .. } => RunnerKind::Luigi,
        }
    }
}

fn invalid(message: impl Into<String>) -> ArtifactError {
    ArtifactError::Invalid(message.into())
}

/// Chooses the runner for the unpacked artifact in `dir`.
///
/// # Errors
/// [`ArtifactError::Invalid`] for a bad manifest, an entry that does not
/// exist, an ambiguous or unrecognisable archive.
pub fn detect(dir: &Path) -> Result<RunPlan, ArtifactError> {
    let manifest_path = dir.join(MANIFEST);
    if std::fs::symlink_metadata(&manifest_path).is_ok() {
        let text = read_text(&manifest_path).map_err(|e| invalid(format!("cannot read {MANIFEST}: {e}")))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| invalid(format!("{MANIFEST}: {e}")))?;
        return from_manifest(dir, manifest);
    }
    let files = top_level_files(dir)?;
    for name in files.iter().filter(|n| n.ends_with(".jar")) {
        if jar_main_class(&dir.join(name)).is_some() {
            return Ok(plan(Entry::Hadoop { jar: dir.join(name), main_class: None }, "detected"));
        }
    }
    let modules = luigi_modules(dir, &files);
    match modules.as_slice() {
        [] => {}
        [(module, tasks)] => {
            let task = tasks.last().cloned().unwrap_or_default();
            return Ok(plan(Entry::Luigi { module: module.clone(), task }, "detected"));
        }
        several => {
            let names: Vec<String> = several.iter().map(|(m, _)| format!("{m}.py")).collect();
            return Err(invalid(format!(
                "several Luigi modules ({}): name one with `entry` in {MANIFEST}",
                names.join(", ")
            )));
        }
    }
    let run = dir.join("run.sh");
    match std::fs::symlink_metadata(&run) {
        Ok(m) if m.is_file() && is_executable(&m) => Ok(plan(Entry::Shell { script: run }, "detected")),
        Ok(_) => Err(invalid(format!(
            "run.sh is not an executable file; make it executable or add {MANIFEST} with runner = \"shell\""
        ))),
        Err(_) => Err(invalid(format!(
            "no runner found: add {MANIFEST}, an executable run.sh, a jar with a Main-Class, or a Luigi module"
        ))),
    }
}

fn plan(entry: Entry, source: &'static str) -> RunPlan {
    RunPlan { entry, default_args: Vec::new(), env: BTreeMap::new(), source }
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

fn read_text(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_TEXT).read_to_string(&mut text)?;
    Ok(text)
}

/// A manifest path: relative, no `..`, an existing regular file inside.
fn entry_file(dir: &Path, entry: &str) -> Result<PathBuf, ArtifactError> {
    let rel = Path::new(entry);
    let plain = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if entry.is_empty() || !plain {
        return Err(invalid(format!(
            "{MANIFEST}: entry {entry:?} must be a relative path inside the archive"
        )));
    }
    let path = dir.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        _ => Err(invalid(format!("{MANIFEST}: entry {entry} is not a file in the archive"))),
    }
}

fn from_manifest(dir: &Path, manifest: Manifest) -> Result<RunPlan, ArtifactError> {
    for key in manifest.env.keys() {
        let ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(format!("{MANIFEST}: env name {key:?} must be [A-Za-z0-9_]")));
        }
    }
    let entry = match manifest.runner {
        RunnerKind::Shell => {
            let script = entry_file(dir, manifest.entry.as_deref().unwrap_or("run.sh"))?;
            // Named explicitly, so run it even if the archive lost its mode.
            let meta =
                std::fs::metadata(&script).map_err(|e| ArtifactError::io("cannot read the script", e))?;
            if !is_executable(&meta) {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| ArtifactError::io("cannot make the script executable", e))?;
            }
            Entry::Shell { script }
        }
        RunnerKind::Hadoop => {
            let jar = match manifest.entry.as_deref() {
                Some(entry) => entry_file(dir, entry)?,
                None => {
                    let files = top_level_files(dir)?;
                    let jars: Vec<&String> = files.iter().filter(|n| n.ends_with(".jar")).collect();
                    match jars.as_slice() {
                        [one] => dir.join(one),
                        _ if files.iter().any(|f| f == JAR_NAME) => dir.join(JAR_NAME),
                        [] => {
                            return Err(invalid(format!("{MANIFEST}: runner hadoop but no .jar at the top")))
                        }
                        _ => return Err(invalid(format!("{MANIFEST}: several jars; name one with `entry`"))),
                    }
                }
            };
            if manifest.main_class.is_none() && jar_main_class(&jar).is_none() {
                return Err(invalid(format!(
                    "{} has no Main-Class in its manifest: set main_class in {MANIFEST}",
                    jar.strip_prefix(dir).unwrap_or(&jar).display()
                )));
            }
            Entry::Hadoop { jar, main_class: manifest.main_class }
        }
        RunnerKind::Luigi => {
            let module = match manifest.entry.as_deref() {
                Some(entry) => {
                    let file = if entry.ends_with(".py") {
                        entry.to_string()
                    } else {
                        format!("{}.py", entry.replace('.', "/"))
                    };
                    entry_file(dir, &file)?;
                    file.trim_end_matches(".py").replace('/', ".")
                }
                None => {
                    let modules = luigi_modules(dir, &top_level_files(dir)?);
                    match modules.as_slice() {
                        [(module, _)] => module.clone(),
                        [] => {
                            return Err(invalid(format!(
                                "{MANIFEST}: runner luigi but no Luigi module found"
                            )))
                        }
                        _ => {
                            return Err(invalid(format!(
                                "{MANIFEST}: several Luigi modules; name one with `entry`"
                            )))
                        }
                    }
                }
            };
            let task = match manifest.task {
                Some(task) => task,
                None => {
                    let file = dir.join(format!("{}.py", module.replace('.', "/")));
                    let tasks = read_text(&file).map(|t| luigi_tasks(&t)).unwrap_or_default();
                    tasks.last().cloned().ok_or_else(|| {
                        invalid(format!("{MANIFEST}: no luigi.Task class in module {module}; set `task`"))
                    })?
                }
            };
            let valid = |s: &str| {
                !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            };
            if !valid(&module) || !valid(&task) {
                return Err(invalid(format!("{MANIFEST}: module and task must be Python names")));
            }
            Entry::Luigi { module, task }
        }
    };
    Ok(RunPlan { entry, default_args: manifest.args, env: manifest.env, source: "sgjob.toml" })
}

/// Names of the regular files at the top of `dir`, sorted.
fn top_level_files(dir: &Path) -> Result<Vec<String>, ArtifactError> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| ArtifactError::io("cannot list the artifact", e))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The `Main-Class` of a jar's `META-INF/MANIFEST.MF`, if any.
pub fn jar_main_class(jar: &Path) -> Option<String> {
    let file = std::fs::File::open(jar).ok()?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).ok()?;
    let mut text = String::new();
    zip.by_name("META-INF/MANIFEST.MF").ok()?.take(MAX_TEXT).read_to_string(&mut text).ok()?;
    manifest_main_class(&text)
}

/// Parses `Main-Class` out of a jar manifest (72-byte lines continue on
/// lines that start with one space).
fn manifest_main_class(text: &str) -> Option<String> {
    let mut joined: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        match (line.strip_prefix(' '), joined.last_mut()) {
            (Some(more), Some(last)) => last.push_str(more),
            _ => joined.push(line.to_string()),
        }
    }
    joined.iter().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        let value = value.trim();
        (key.trim().eq_ignore_ascii_case("Main-Class") && !value.is_empty()).then(|| value.to_string())
    })
}

/// Top-level `.py` files with Luigi tasks: (module, task classes in order).
fn luigi_modules(dir: &Path, files: &[String]) -> Vec<(String, Vec<String>)> {
    files
        .iter()
        .filter_map(|name| {
            let module = name.strip_suffix(".py")?;
            let text = read_text(&dir.join(name)).ok()?;
            let tasks = luigi_tasks(&text);
            (!tasks.is_empty()).then(|| (module.to_string(), tasks))
        })
        .collect()
}

/// Classes at the top of a module that import luigi and subclass one of
/// its tasks (`luigi.Task`, `luigi.WrapperTask`, `Task` imported from
/// luigi, ...), in source order.
fn luigi_tasks(source: &str) -> Vec<String> {
    let imports_luigi = source.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("import luigi") || l.starts_with("from luigi")
    });
    if !imports_luigi {
        return Vec::new();
    }
    source
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("class ")?;
            let (name, rest) = rest.split_once('(')?;
            let bases = rest.split_once(')')?.0;
            let is_task = bases.split(',').any(|b| {
                let b = b.trim();
                b.ends_with("Task") && (b.starts_with("luigi.") || !b.contains('.'))
            });
            let name = name.trim();
            (is_task && !name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub(crate) fn jar(path: &Path, main: Option<&str>) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("META-INF/MANIFEST.MF", options).unwrap();
        let mut manifest = "Manifest-Version: 1.0\r\n".to_string();
        if let Some(main) = main {
            manifest.push_str(&format!("Main-Class: {main}\r\n"));
        }
        zip.write_all(manifest.as_bytes()).unwrap();
        zip.finish().unwrap();
    }

    const PIPELINE: &str = "import luigi\n\nclass Extract(luigi.Task):\n    pass\n\nclass Report(luigi.Task):\n    def requires(self):\n        return Extract()\n";

    #[test]
    fn detects_each_runner() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "run.sh", "#!/bin/sh\n", 0o755);
        let p = detect(dir.path()).unwrap();
        assert_eq!((p.runner(), p.source), (RunnerKind::Shell, "detected"));

        write(dir.path(), "pipeline.py", PIPELINE, 0o644);
        write(dir.path(), "helper.py", "import os\nclass Task(object):\n    pass\n", 0o644);
        let p = detect(dir.path()).unwrap();
        assert_eq!(p.entry, Entry::Luigi { module: "pipeline".into(), task: "Report".into() });

        jar(&dir.path().join("lib.jar"), None);
        assert_eq!(
            detect(dir.path()).unwrap().runner(),
            RunnerKind::Luigi,
            "a jar without Main-Class is no job"
        );
        jar(&dir.path().join("wordcount.jar"), Some("org.example.WordCount"));
        let p = detect(dir.path()).unwrap();
        assert_eq!(p.entry, Entry::Hadoop { jar: dir.path().join("wordcount.jar"), main_class: None });
    }

    #[test]
    fn manifest_wins_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "run.sh", "#!/bin/sh\n", 0o755);
        write(dir.path(), "go.sh", "#!/bin/sh\n", 0o644);
        write(
            dir.path(),
            MANIFEST,
            "runner = \"shell\"\nentry = \"go.sh\"\nargs = [\"--fast\"]\n[env]\nMODE = \"prod\"\n",
            0o644,
        );
        let p = detect(dir.path()).unwrap();
        assert_eq!(p.entry, Entry::Shell { script: dir.path().join("go.sh") });
        assert_eq!((p.default_args.clone(), p.source), (vec!["--fast".to_string()], "sgjob.toml"));
        assert_eq!(p.env.get("MODE").map(String::as_str), Some("prod"));
        let mode = std::fs::metadata(dir.path().join("go.sh")).unwrap().permissions().mode();
        assert_ne!(mode & 0o111, 0, "a named script is made executable");

        jar(&dir.path().join("plain.jar"), None);
        write(
            dir.path(),
            MANIFEST,
            "runner = \"hadoop\"\nentry = \"plain.jar\"\nmain_class = \"a.Main\"\n",
            0o644,
        );
        let p = detect(dir.path()).unwrap();
        assert_eq!(
            p.entry,
            Entry::Hadoop { jar: dir.path().join("plain.jar"), main_class: Some("a.Main".into()) }
        );
        write(dir.path(), MANIFEST, "runner = \"hadoop\"\nentry = \"plain.jar\"\n", 0o644);
        assert!(detect(dir.path()).unwrap_err().to_string().contains("no Main-Class"));

        write(dir.path(), "pipeline.py", PIPELINE, 0o644);
        write(dir.path(), MANIFEST, "runner = \"luigi\"\nentry = \"pipeline\"\ntask = \"Extract\"\n", 0o644);
        let p = detect(dir.path()).unwrap();
        assert_eq!(p.entry, Entry::Luigi { module: "pipeline".into(), task: "Extract".into() });

        for (text, needle) in [
            ("runner = \"perl\"\n", "sgjob.toml"),
            ("runner = \"shell\"\nentry = \"../x.sh\"\n", "relative path"),
            ("runner = \"shell\"\nentry = \"nope.sh\"\n", "not a file"),
            ("runner = \"shell\"\nenrty = \"x\"\n", "enrty"),
        ] {
            write(dir.path(), MANIFEST, text, 0o644);
            let err = detect(dir.path()).unwrap_err().to_string();
            assert!(err.starts_with("artifact_invalid: ") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn nothing_runnable_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "README", "hi", 0o644);
        assert!(detect(dir.path()).unwrap_err().to_string().contains("no runner found"));
        write(dir.path(), "run.sh", "#!/bin/sh\n", 0o644);
        assert!(detect(dir.path()).unwrap_err().to_string().contains("not an executable"));
        write(dir.path(), "a.py", PIPELINE, 0o644);
        write(dir.path(), "b.py", PIPELINE, 0o644);
        assert!(detect(dir.path()).unwrap_err().to_string().contains("several Luigi modules (a.py, b.py)"));
    }

    #[test]
    fn jar_manifest_lines_continue() {
        let text = "Manifest-Version: 1.0\r\nMain-Class: org.example.a.very.long.package.name.that.goes.on.and\r\n .On\r\n";
        assert_eq!(
            manifest_main_class(text).as_deref(),
            Some("org.example.a.very.long.package.name.that.goes.on.and.On")
        );
        assert_eq!(manifest_main_class("Manifest-Version: 1.0\n"), None);
    }
}
