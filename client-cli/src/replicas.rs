//! The servers a command may use, one after the other: every endpoint of
//! the settings, and every address of each (see `endpoints`). A command
//! asks for a client of the server in use; when a call finds that server
//! down (`channel::Trouble::Down`: refused, reset, UNAVAILABLE) it moves on
//! to the next, until each has failed once since the last answer. Then the
//! error names every server tried, with why.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tonic::{Response, Status};

use crate::channel::{self, Client, Trouble};
use crate::endpoints::{Endpoint, Target};
use crate::error::CliError;
use crate::settings::Settings;

/// The server in use.
struct Current {
    target: Target,
    client: Client,
}

/// A server that failed in this pass.
struct Failure {
    /// The target as messages name it (`URL`, or `URL at ADDRESS`).
    name: String,
    /// Its endpoint's URL.
    url: String,
    detail: String,
}

/// The servers of one command, and where it stands among them.
pub struct Replicas<'a> {
    settings: &'a Settings,
    endpoints: Vec<Endpoint>,
    /// The pauses before each further pass over every server, once one pass
    /// has found them all down (none: a single pass).
    pauses: &'static [Duration],
    /// Passes begun after the first since the last answer.
    passes: usize,
    /// The endpoint this pass began with, and how many it has taken up.
    first: usize,
    taken: usize,
    /// The endpoint taken up last, and its targets not tried yet.
    at: usize,
    targets: VecDeque<Target>,
    current: Option<Current>,
    /// The servers that failed in this pass, in order.
    failures: Vec<Failure>,
}

impl<'a> Replicas<'a> {
    /// The servers `settings` name, each checked to be a valid URL. After a
    /// pass that finds them all down, another pass follows each of
    /// `pauses`.
    pub fn new(settings: &'a Settings, pauses: &'static [Duration]) -> Result<Self, CliError> {
        let endpoints = settings
            .endpoints
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(CliError::Usage("no endpoint to connect to".to_owned()));
        }
        Ok(Replicas {
            settings,
            endpoints,
            pauses,
            passes: 0,
            first: 0,
            taken: 0,
            at: 0,
            targets: VecDeque::new(),
            current: None,
            failures: Vec::new(),
        })
    }

    /// A client of the server in use, connecting to the next one that
    /// accepts when there is none. Fails when every server has failed in
    /// this pass (and no pass is left), or on a failure any server would
    /// share (TLS files, a refused certificate).
    pub async fn client(&mut self) -> Result<Client, CliError> {
        loop {
            if let Some(current) = &self.current {
                return Ok(current.client.clone());
            }
            let Some(target) = self.targets.pop_front() else {
                self.take_up_next().await?;
                continue;
            };
            match channel::connect(self.settings, &target).await {
                Ok(client) => self.current = Some(Current { target, client }),
                Err(Trouble::Down(detail)) => self.failed(&target, detail),
                Err(Trouble::Fatal(err)) => return Err(err),
            }
        }
    }

    /// The URL of the server in use (else of the first one), for messages
    /// about its answers.
    pub fn endpoint(&self) -> &str {
        match &self.current {
            Some(current) => &current.target.endpoint.url,
            None => &self.endpoints[self.at].url,
        }
    }

    /// The server in use as messages name it.
    pub fn server_name(&self) -> Option<String> {
        self.current.as_ref().map(|current| current.target.name())
    }

    /// What a call that failed with `status` on the server in use means
    /// (see [`channel::trouble`]); `fresh`: nothing came back on the
    /// connection yet. `None`: the status is the server's answer.
    pub async fn trouble(&self, status: &Status, fresh: bool) -> Option<Trouble> {
        let current = self.current.as_ref()?;
        channel::trouble(self.settings, &current.target, status, fresh).await
    }

    /// The server in use is down: the next call goes to the next server.
    pub fn lost(&mut self, detail: String) {
        if let Some(current) = self.current.take() {
            self.failed(&current.target, detail);
        }
    }

    /// The server in use answered: a server that fails from now on starts
    /// a new pass, which ends when every other server has failed too.
    pub fn answered(&mut self) {
        if self.current.is_some() {
            self.first = self.at;
            self.taken = 1;
            self.passes = 0;
            self.failures.clear();
        }
    }

    /// Calls the server in use with `call`, moving on to the next server
    /// while one is down. The outer error: no server could be reached; the
    /// inner one: the server's answer, for the caller to word.
    pub async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<Result<T, Status>, CliError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        loop {
            let client = self.client().await?;
            let status = match call(client).await {
                Ok(response) => {
                    self.answered();
                    return Ok(Ok(response.into_inner()));
                }
                Err(status) => status,
            };
            match self.trouble(&status, true).await {
                None => {
                    self.answered();
                    return Ok(Err(status));
                }
                Some(Trouble::Down(detail)) => self.lost(detail),
                Some(Trouble::Fatal(err)) => return Err(err),
            }
        }
    }

    fn failed(&mut self, target: &Target, detail: String) {
        self.failures.push(Failure {
            name: target.name(),
            url: target.endpoint.url.clone(),
            detail,
        });
    }

    /// Takes up the next endpoint of this pass (its addresses become the
    /// targets to try), or begins the next pass after its pause; fails
    /// when every server is down and no pass is left.
    async fn take_up_next(&mut self) -> Result<(), CliError> {
        if self.taken == self.endpoints.len() {
            let Some(pause) = self.pauses.get(self.passes) else {
                return Err(self.all_down());
            };
            tokio::time::sleep(*pause).await;
            self.passes += 1;
            self.taken = 0;
            self.failures.clear();
        }
        self.at = (self.first + self.taken) % self.endpoints.len();
        self.taken += 1;
        let endpoint = &self.endpoints[self.at];
        match endpoint.resolve().await {
            Ok(targets) => self.targets = targets.into(),
            Err(detail) => self.failures.push(Failure {
                name: endpoint.url.clone(),
                url: endpoint.url.clone(),
                detail,
            }),
        }
        Ok(())
    }

    /// The error once every server has failed: the classic one-server
    /// message when there was only one to try.
    fn all_down(&self) -> CliError {
        match self.failures.as_slice() {
            [only] => CliError::Unreachable {
                endpoint: only.url.clone(),
                detail: only.detail.clone(),
            },
            failures => CliError::NoServerAnswered {
                tried: failures
                    .iter()
                    .map(|f| format!("{} ({})", f.name, f.detail))
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports nothing listens on: bound, then closed again.
    fn closed_ports(count: usize) -> Vec<u16> {
        let listeners: Vec<std::net::TcpListener> = (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().expect("its address").port())
            .collect()
    }

    fn settings(urls: &[String]) -> Settings {
        Settings {
            endpoints: urls.to_vec(),
            ..Settings::plaintext("")
        }
    }

    #[tokio::test]
    async fn every_server_down_is_named_with_why() {
        let urls: Vec<String> = closed_ports(2)
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .chain(["http://daas.invalid:1".to_owned()])
            .collect();
        let settings = settings(&urls);
        let mut replicas = Replicas::new(&settings, &[]).expect("valid URLs");
        let err = replicas.client().await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        let expected_start = format!("cannot reach any server: {} (", urls[0]);
        assert!(err.starts_with(&expected_start), "{err}");
        for url in &urls[1..] {
            assert!(err.contains(&format!("; {url} (")), "{url}: {err}");
        }
        assert!(err.contains("Connection refused"), "{err}");
        assert!(err.contains("cannot resolve daas.invalid"), "{err}");
    }

    #[tokio::test]
    async fn one_server_down_keeps_the_one_server_message() {
        let port = closed_ports(1)[0];
        let settings = settings(&[format!("http://127.0.0.1:{port}")]);
        let mut replicas = Replicas::new(&settings, &[]).expect("a valid URL");
        let err = replicas.client().await.err();
        assert!(
            matches!(&err, Some(CliError::Unreachable { endpoint, .. })
                if *endpoint == format!("http://127.0.0.1:{port}")),
            "{err:?}"
        );
    }

    #[test]
    fn a_bad_url_anywhere_in_the_list_is_refused_at_once() {
        let settings = settings(&["http://127.0.0.1:1".to_owned(), "ftp://x".to_owned()]);
        let err = Replicas::new(&settings, &[]).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("invalid endpoint `ftp://x`")),
            "{err:?}"
        );
    }
}
