//! BOOTING: the VM answers on SSH, then cloud-init has finished. Readiness
//! is detected, never assumed after a fixed sleep.

use std::{net::ToSocketAddrs, path::Path, time::Duration};

use daas_api::v1::{OutputStream, Tool};
use tokio::{
    io::AsyncReadExt,
    net::TcpStream,
    time::{Instant, timeout},
};
use tokio_util::sync::CancellationToken;

use crate::{
    config,
    provision::identity,
    provision::tool::{self, Invocation, SessionLog, ToolError},
};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("the VM did not answer on SSH at {host}:{port} within {}", humantime::format_duration(*.after))]
    SshTimeout {
        host: String,
        port: u16,
        after: Duration,
    },
    #[error(
        "cloud-init reported an error on the VM (see its output); check the template's cloud-init setup"
    )]
    CloudInit,
    #[error("could not log in over SSH as {user} within the boot timeout: {last}")]
    Login { user: String, last: String },
    #[error(
        "the VM at {host}:{port} shows an SSH host key other than the one the server made for it: the Terraform module must install ssh_host_private_key (see the provisioning contract), or another machine answers at that address"
    )]
    HostKey { host: String, port: u16 },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("waiting for the VM was stopped")]
    Cancelled,
}

/// Refusals of the VM's host key in a row that fail the boot.
const HOST_KEY_REFUSALS: u32 = 3;

/// Waits until `host:port` sends an SSH banner, retrying with a growing
/// pause until `deadline`.
pub async fn wait_for_ssh_banner(
    host: &str,
    port: u16,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<(), BootError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        if banner(host, port).await {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(BootError::SshTimeout {
                host: host.into(),
                port,
                after: now - started,
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(pause.min(deadline - now)) => {}
            _ = cancel.cancelled() => return Err(BootError::Cancelled),
        }
        pause = (pause * 2).min(Duration::from_secs(3));
    }
}

async fn banner(host: &str, port: u16) -> bool {
    let Ok(mut addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    let Some(addr) = addrs.next() else {
        return false;
    };
    let Ok(Ok(mut stream)) = timeout(Duration::from_secs(5), TcpStream::connect(addr)).await else {
        return false;
    };
    let mut buf = [0u8; 4];
    matches!(
        timeout(Duration::from_secs(10), stream.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"SSH-"
    )
}

/// Runs `cloud-init status --wait` over SSH, retrying while the login is
/// not possible yet (cloud-init installs the key after sshd starts). ssh
/// accepts only the host key the server made for the VM (`vm_name`'s, in
/// `session_dir`).
#[allow(clippy::too_many_arguments)]
pub async fn wait_for_cloud_init(
    ssh: &config::Ssh,
    host: &str,
    port: u16,
    session_dir: &Path,
    vm_name: &str,
    deadline: Instant,
    log: &SessionLog,
    cancel: &CancellationToken,
) -> Result<(), BootError> {
    let mut last = String::from("no attempt");
    let mut refused_keys = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(BootError::Login {
                user: ssh.user.clone(),
                last,
            });
        }
        let mut inv = Invocation::new(
            Tool::Ssh,
            "cloud-init status --wait",
            Path::new("ssh"),
            // The session's folder: a restarted server finds its tools there.
            session_dir,
        )
        .arg("-i")
        .arg(ssh.private_key.as_os_str())
        .arg("-p")
        .arg(port.to_string())
        .arg("-o")
        .arg("BatchMode=yes");
        for option in identity::ssh_options(session_dir, vm_name) {
            inv = inv.arg("-o").arg(option);
        }
        let inv = inv
            .arg("-o")
            .arg("ConnectTimeout=10")
            .arg("-o")
            .arg("LogLevel=ERROR")
            .arg("-l")
            .arg(&ssh.user)
            // No host can be read as an option (the module's output is
            // checked too: an IP address or a DNS name).
            .arg("--")
            .arg(host)
            .arg("cloud-init status --wait")
            .timeout(deadline - now);
        let finished = tool::run_status(inv, log, cancel).await?;
        match finished.status.code() {
            // 2: done with recoverable errors (newer cloud-init).
            Some(0) => return Ok(()),
            Some(2) => {
                log.line(
                    Tool::Ssh,
                    OutputStream::Stderr,
                    "cloud-init finished with recoverable errors; continuing",
                )
                .await;
                return Ok(());
            }
            Some(1) => return Err(BootError::CloudInit),
            _ => {
                last = finished.summary.unwrap_or_else(|| "ssh failed".into());
                // Not the key the server made: a few times in a row is no
                // passing state of the boot.
                if last.contains("Host key verification failed") {
                    refused_keys += 1;
                    if refused_keys >= HOST_KEY_REFUSALS {
                        return Err(BootError::HostKey {
                            host: host.into(),
                            port,
                        });
                    }
                } else {
                    refused_keys = 0;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = cancel.cancelled() => return Err(BootError::Cancelled),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_banner_ends_the_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            // First connection: not SSH; later ones: an SSH server.
            let (mut first, _) = listener.accept().await.unwrap();
            first.write_all(b"HTTP/1.1 400\r\n").await.unwrap();
            drop(first);
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let _ = s.write_all(b"SSH-2.0-test\r\n").await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        wait_for_ssh_banner("127.0.0.1", port, deadline, &CancellationToken::new())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn no_answer_is_a_timeout_naming_the_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let deadline = Instant::now() + Duration::from_millis(600);
        let err = wait_for_ssh_banner("127.0.0.1", port, deadline, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
