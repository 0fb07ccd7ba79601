//! The Hadoop runner: `hadoop jar JAR [MAIN_CLASS] ARGS` with the launcher
//! named by `hadoop_bin` in `cluster.toml`. The peer's whole environment is
//! inherited, so `HADOOP_*` (`HADOOP_CONF_DIR`, `HADOOP_USER_NAME`, ...)
//! reach the launcher as they are; params travel as `SG_PARAM_<NAME>`.
//!
//! The main class goes on the command line only when `sgjob.toml` names
//! one: a jar whose own manifest has `Main-Class` gets the job's arguments
//! right after the jar, as `hadoop jar` expects.

use std::path::Path;

use super::process::ProcessSpec;
use super::Launch;

/// `hadoop_bin jar JAR [MAIN_CLASS] ARGS`.
pub fn process_spec(
    launch: Launch<'_>,
    hadoop_bin: &str,
    jar: &Path,
    main_class: Option<&str>,
) -> ProcessSpec {
    let mut args = vec!["jar".to_string(), jar.display().to_string()];
    args.extend(main_class.map(str::to_string));
    args.extend(launch.args.iter().cloned());
    launch.spec(hadoop_bin.to_string(), args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::luigi::tests::job;

    #[test]
    fn builds_hadoop_jar_command_lines() {
        let job = job(&[], &["in", "out"]);
        let dir = Path::new("/w/1-1");
        let launch = Launch::new(&job, 1, 2, dir, Path::new("/l"), []);
        let spec = process_spec(launch.clone(), "/opt/hadoop/bin/hadoop", &dir.join("wc.jar"), None);
        assert_eq!(spec.program, "/opt/hadoop/bin/hadoop");
        assert_eq!(spec.args, ["jar", "/w/1-1/wc.jar", "in", "out"]);
        let spec = process_spec(launch, "hadoop", &dir.join("wc.jar"), Some("org.example.WordCount"));
        assert_eq!(spec.args, ["jar", "/w/1-1/wc.jar", "org.example.WordCount", "in", "out"]);
        assert_eq!(spec.cwd, dir);
    }
}
