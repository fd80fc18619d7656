//! The real `daas-server` binary checks the tools its configuration runs:
//! `--check` and the start fail, naming each missing one with where it was
//! looked for and how to install it; with all of them there, `--check`
//! shows each with its version.

use std::{path::Path, process::Output, time::Duration};

use daas_server::{provision::tool::installed, testkit::TestOptions};

/// Runs the binary with `args` and `env` (PATH too, if given) to its end.
async fn daas_server(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_daas-server"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("daas-server ended in time (a start that should fail served instead?)")
        .expect("run daas-server")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A test config in `dir` (the real ansible-playbook, terraform on PATH).
fn config(dir: &Path) -> std::path::PathBuf {
    daas_server::testkit::write_config(dir, &TestOptions::default())
}

#[tokio::test]
async fn a_missing_terraform_path_fails_check_and_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let env = [("DAAS_TERRAFORM__BINARY", "/nonexistent/bin/terraform")];
    let want = "terraform: not found: /nonexistent/bin/terraform is not an executable file \
                (terraform.binary); Terraform is not in Debian: install `terraform` from \
                HashiCorp's apt repository";
    for args in [&["--check"][..], &[]] {
        let out = daas_server(args, &config, &env).await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}\n{stderr}");
        assert!(
            stderr.starts_with(
                "daas-server: every create would fail: a tool the configuration runs cannot be used:\n  "
            ),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("ansible-playbook:"), "{args:?}: {stderr}");
        assert!(!stdout.contains("listening"), "{args:?}: {stdout}");
    }
}

#[tokio::test]
async fn check_looks_bare_names_up_on_path_and_names_what_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let path = bin.display().to_string();

    // Nothing on PATH: terraform is named (ansible-playbook is a path).
    let out = daas_server(&["--check"], &config, &[("PATH", &path)]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "terraform: not found: no executable `terraform` on PATH ({path}) (terraform.binary)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("ansible-playbook:"), "{stderr}");

    // Terraform on PATH, no ssh: with connection = "ssh", ssh is named
    // (with its Debian package); with "local", a warning.
    let terraform = installed::find(Path::new("terraform"))
        .expect("terraform on this machine's PATH (scripts/setup.sh checks it)");
    std::os::unix::fs::symlink(&terraform, bin.join("terraform")).unwrap();
    let ssh = [("PATH", path.as_str()), ("DAAS_ANSIBLE__CONNECTION", "ssh")];
    let out = daas_server(&["--check"], &config, &ssh).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "ssh: not found: no executable `ssh` on PATH ({path}); install openssh-client \
             (`apt install openssh-client`)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("terraform:"), "{stderr}");

    let out = daas_server(&["--check"], &config, &[("PATH", &path)]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: ssh: not found: no executable `ssh` on PATH ({path}); the boot wait \
             needs it unless the Terraform module declares boot_wait = \"none\""
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "  terraform: {}/terraform (Terraform v",
            bin.display()
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_passes_and_shows_each_tool_and_its_version_when_all_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let out = daas_server(&["--check"], &config, &[]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let tools = stdout
        .split_once("\ntools:\n")
        .map(|(_, tools)| tools)
        .unwrap_or_else(|| panic!("no tools in {stdout}"));
    let playbook = daas_server::testkit::ansible_playbook();
    for want in [
        "  terraform: /".to_string(),
        format!(
            "  ansible-playbook: {} (ansible-playbook [core ",
            playbook.display()
        ),
    ] {
        assert!(tools.contains(&want), "no {want:?} in {tools}");
    }
    assert!(tools.contains(" (Terraform v"), "{tools}");
}

#[tokio::test]
async fn check_fails_naming_a_tool_that_is_there_but_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    // A virtual environment whose Python is gone.
    let broken = dir.path().join("ansible-playbook");
    std::fs::write(&broken, "#!/nonexistent/venv/bin/python3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let broken = broken.display().to_string();
    let env = [("DAAS_ANSIBLE__BINARY", broken.as_str())];
    let out = daas_server(&["--check"], &config, &env).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "ansible-playbook: `{broken} --version` cannot start: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("install ansible-core 2.18+"), "{stderr}");
}
