//! Whether the programs the configuration runs are installed: terraform,
//! ansible-playbook and ssh, each at its configured path or, for a bare
//! name, on PATH (as the runs look them up). `daas-server --check` also
//! runs each with its version flag (an argument vector, with a timeout);
//! the server's start only looks them up. A missing one is named with
//! where it was looked for and how to install it on Debian.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::config::{AnsibleConnection, Config};

/// How long a version command may take (a cold Python start is slow).
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

const TERRAFORM_HINT: &str = "Terraform is not in Debian: install `terraform` from HashiCorp's apt repository (https://apt.releases.hashicorp.com) or a release binary (https://releases.hashicorp.com/terraform/)";
const ANSIBLE_HINT: &str = "install ansible-core 2.18+: `apt install ansible-core` where Debian's is that new (Debian 12's is 2.14), else in a virtual environment (`pip install 'ansible-core>=2.18'`)";
const SSH_HINT: &str = "install openssh-client (`apt install openssh-client`)";
const SSH_BOOT_HINT: &str = "the boot wait needs it unless the Terraform module declares boot_wait = \"none\": install openssh-client (`apt install openssh-client`)";

/// A program the configuration runs.
#[derive(Debug, Clone)]
pub struct Program {
    /// What it is called in messages: `terraform`, `ansible-playbook`, `ssh`.
    pub name: &'static str,
    /// As configured: a path, or a bare name looked up on PATH.
    pub program: PathBuf,
    /// The configuration key that sets it, if any.
    pub key: Option<&'static str>,
    /// False: needed only in some cases, so missing it is a warning.
    pub required: bool,
    version_arg: &'static str,
    hint: &'static str,
}

/// The programs `config` runs: terraform and ansible-playbook always; ssh
/// for the boot wait and Ansible's connection, required when
/// `ansible.connection = "ssh"` (with "local", only a module that waits
/// for the boot over SSH needs it).
pub fn programs(config: &Config) -> Vec<Program> {
    let ssh = config.ansible.connection == AnsibleConnection::Ssh;
    vec![
        Program {
            name: "terraform",
            program: config.terraform.binary.clone(),
            key: Some("terraform.binary"),
            required: true,
            version_arg: "version",
            hint: TERRAFORM_HINT,
        },
        Program {
            name: "ansible-playbook",
            program: config.ansible.binary.clone(),
            key: Some("ansible.binary"),
            required: true,
            version_arg: "--version",
            hint: ANSIBLE_HINT,
        },
        Program {
            name: "ssh",
            program: PathBuf::from("ssh"),
            key: None,
            required: ssh,
            version_arg: "-V",
            hint: if ssh { SSH_HINT } else { SSH_BOOT_HINT },
        },
    ]
}

/// The executable `program` names: a path, or a bare name on PATH.
pub fn find(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// How far [`check`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Each program is found and executable.
    Found,
    /// And its version command succeeds.
    Runs,
}

/// A program that was found.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: &'static str,
    pub path: PathBuf,
    /// The first line its version command printed ([`Depth::Runs`]).
    pub version: Option<String>,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.path.display())?;
        match &self.version {
            Some(version) => write!(f, " ({version})"),
            None => Ok(()),
        }
    }
}

/// What is wrong with one program.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Problem {
    #[error("{name}: not found: {looked}{}; {hint}", key_of(.key))]
    Missing {
        name: &'static str,
        looked: String,
        key: Option<&'static str>,
        hint: &'static str,
    },
    #[error("{name}: `{} {arg}` {why}; {hint}", .path.display())]
    DoesNotRun {
        name: &'static str,
        path: PathBuf,
        arg: &'static str,
        why: String,
        hint: &'static str,
    },
}

fn key_of(key: &Option<&'static str>) -> String {
    key.map(|k| format!(" ({k})")).unwrap_or_default()
}

/// The programs found, and what is wrong with those only some setups need.
#[derive(Debug, Default)]
pub struct Report {
    pub found: Vec<Found>,
    pub warnings: Vec<Problem>,
}

/// Required programs that are missing or do not run: every create would
/// fail.
#[derive(Debug, thiserror::Error)]
#[error(
    "every create would fail: {} the configuration runs cannot be used:{}",
    if .problems.len() == 1 { "a tool" } else { "tools" },
    .problems.iter().map(|p| format!("\n  {p}")).collect::<String>()
)]
pub struct ToolsError {
    pub problems: Vec<Problem>,
}

/// Looks up each program `config` runs and, at [`Depth::Runs`], runs its
/// version command; an error lists every required one that failed.
pub async fn check(config: &Config, depth: Depth) -> Result<Report, ToolsError> {
    let mut report = Report::default();
    let mut problems = Vec::new();
    for program in programs(config) {
        let result = match find(&program.program) {
            None => Err(missing(&program)),
            Some(path) if depth == Depth::Runs => {
                version(&program, &path).await.map(|version| Found {
                    name: program.name,
                    path,
                    version: Some(version),
                })
            }
            Some(path) => Ok(Found {
                name: program.name,
                path,
                version: None,
            }),
        };
        match result {
            Ok(found) => report.found.push(found),
            Err(problem) if program.required => problems.push(problem),
            Err(problem) => report.warnings.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(ToolsError { problems })
    }
}

fn missing(program: &Program) -> Problem {
    let looked = if program.program.components().count() > 1 {
        format!("{} is not an executable file", program.program.display())
    } else {
        match std::env::var_os("PATH") {
            Some(path) => format!(
                "no executable `{}` on PATH ({})",
                program.program.display(),
                path.to_string_lossy()
            ),
            None => format!("no PATH to look `{}` up on", program.program.display()),
        }
    };
    Problem::Missing {
        name: program.name,
        looked,
        key: program.key,
        hint: program.hint,
    }
}

/// Runs `path` with the program's version flag, in the environment the
/// runs get (PATH, HOME, ...): the first line it printed.
async fn version(program: &Program, path: &Path) -> Result<String, Problem> {
    let fail = |why: String| Problem::DoesNotRun {
        name: program.name,
        path: path.to_path_buf(),
        arg: program.version_arg,
        why,
        hint: program.hint,
    };
    let child = tokio::process::Command::new(path)
        .arg(program.version_arg)
        .env_clear()
        .envs(
            super::run::PASSED_ENV
                .iter()
                .filter_map(|k| Some((*k, std::env::var_os(k)?))),
        )
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let out = match tokio::time::timeout(VERSION_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| fail(format!("failed: {e}")))?,
        Err(_) => {
            return Err(fail(format!(
                "did not finish within {}",
                humantime::format_duration(VERSION_TIMEOUT)
            )));
        }
    };
    let first_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    let stdout = first_line(&out.stdout);
    let stderr = first_line(&out.stderr);
    if out.status.success() {
        Ok(stdout.or(stderr).unwrap_or_default())
    } else {
        let said = stderr
            .or(stdout)
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        Err(fail(format!("failed ({}){said}", out.status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_by_path_or_on_path() {
        assert!(find(Path::new("sh")).is_some());
        assert!(find(Path::new("/bin/sh")).is_some());
        assert!(find(Path::new("no-such-program-daas")).is_none());
        let dir = tempfile::tempdir().expect("a temp dir");
        let plain = dir.path().join("not-a-program");
        std::fs::write(&plain, "data").expect("write a file");
        assert!(find(&plain).is_none());
        assert!(find(dir.path()).is_none());
    }

    fn program(path: &Path, arg: &'static str) -> Program {
        Program {
            name: "tool",
            program: path.to_path_buf(),
            key: Some("tool.binary"),
            required: true,
            version_arg: arg,
            hint: "install it",
        }
    }

    /// An executable script in `dir` named `name`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[tokio::test]
    async fn a_version_is_the_first_line_printed_and_a_failure_says_why() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let good = script(dir.path(), "good", "echo\necho \"Tool $1\"\necho more");
        let said = version(&program(&good, "version"), &good).await;
        assert_eq!(said.expect("it runs"), "Tool version");
        let quiet = script(dir.path(), "quiet", "echo \"Tool $1\" >&2");
        let said = version(&program(&quiet, "-V"), &quiet).await;
        assert_eq!(said.expect("it runs"), "Tool -V");
        let bad = script(dir.path(), "bad", "echo 'python3: not found' >&2\nexit 3");
        let text = version(&program(&bad, "--version"), &bad)
            .await
            .expect_err("it fails")
            .to_string();
        assert_eq!(
            text,
            format!(
                "tool: `{} --version` failed (exit status: 3): python3: not found; install it",
                bad.display()
            )
        );
    }

    #[test]
    fn a_missing_program_says_where_it_was_looked_for() {
        let text = missing(&program(Path::new("/nowhere/tool"), "-V")).to_string();
        assert_eq!(
            text,
            "tool: not found: /nowhere/tool is not an executable file (tool.binary); install it"
        );
        let text = missing(&program(Path::new("no-such-program-daas"), "-V")).to_string();
        assert!(
            text.starts_with("tool: not found: no executable `no-such-program-daas` on PATH ("),
            "{text}"
        );
    }
}
