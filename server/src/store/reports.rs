//! Agents' reports, written in groups: every report waits for the write of
//! its group, and a group is whatever arrived while the previous one was
//! being written (up to [`MOST`]), so under load many reports share one
//! statement, and alone a report is written at once. A session reporting
//! twice in one group keeps its latest report. A caller learns whether its
//! report was written, as before.

use tokio::sync::{mpsc, oneshot};

use crate::{
    domain::time::now_ms,
    store::{AgentReport, Store, StoreError},
};

/// Most reports in one write.
const MOST: usize = 2_000;
/// Reports waiting for a write at most; more wait to be queued.
const QUEUE: usize = 8_192;

/// A report and when it came.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub session: String,
    pub report: AgentReport,
    pub at_ms: i64,
}

struct Pending {
    report: Report,
    written: oneshot::Sender<Result<(), String>>,
}

/// Writes agents' reports in groups (see the module).
#[derive(Clone)]
pub struct Reports {
    queue: mpsc::Sender<Pending>,
}

impl Reports {
    /// Starts the writer; it stops once every `Reports` is dropped.
    pub fn start(store: Store) -> Reports {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, pending));
        Reports { queue }
    }

    /// Records `report` for session `id`, once written.
    pub async fn record(&self, id: &str, report: AgentReport) -> Result<(), StoreError> {
        let (written, done) = oneshot::channel();
        let report = Report {
            session: id.to_string(),
            report,
            at_ms: now_ms(),
        };
        let stopped = || StoreError::Task("the report writer stopped".into());
        self.queue
            .send(Pending { report, written })
            .await
            .map_err(|_| stopped())?;
        done.await
            .map_err(|_| stopped())?
            .map_err(StoreError::Reports)
    }
}

async fn write_groups(store: Store, mut pending: mpsc::Receiver<Pending>) {
    while let Some(first) = pending.recv().await {
        let mut group = vec![first];
        while group.len() < MOST {
            match pending.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let reports = latest_per_session(group.iter().map(|p| p.report.clone()));
        let result = store
            .record_activities(reports)
            .await
            .map_err(|err| err.to_string());
        for p in group {
            let _ = p.written.send(result.clone());
        }
    }
}

/// The latest report of each session, in the order of their sessions' ids
/// (servers writing groups at once lock rows in one order).
fn latest_per_session(reports: impl Iterator<Item = Report>) -> Vec<Report> {
    let mut latest = std::collections::BTreeMap::new();
    for report in reports {
        latest.insert(report.session.clone(), report);
    }
    latest.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(session: &str, at_ms: i64) -> Report {
        Report {
            session: session.into(),
            report: AgentReport {
                idle_ms: 0,
                rdp_clients: 0,
                users: Vec::new(),
                agent_version: String::new(),
            },
            at_ms,
        }
    }

    #[test]
    fn a_group_keeps_each_sessions_latest_report_in_id_order() {
        let group = [report("b", 1), report("a", 2), report("b", 3)];
        let kept = latest_per_session(group.into_iter());
        assert_eq!(kept, [report("a", 2), report("b", 3)]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_reports_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
        let mut ids = Vec::new();
        for i in 0..20 {
            let new = crate::store::NewSession {
                username: format!("u{i}"),
                template: "t".into(),
                ..Default::default()
            };
            let limits = crate::store::SessionLimits {
                max_sessions: usize::MAX,
                max_per_user: usize::MAX,
                org: None,
            };
            ids.push(store.create_session(new, limits).await.unwrap().0.id);
        }
        let reports = Reports::start(store.clone());
        let mut tasks = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let (reports, id) = (reports.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let report = AgentReport {
                    idle_ms: 0,
                    rdp_clients: u32::try_from(i).unwrap(),
                    users: vec![format!("u{i}")],
                    agent_version: "v".into(),
                };
                reports.record(&id, report).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        for (i, id) in ids.iter().enumerate() {
            let record = store.get(id).await.unwrap().unwrap();
            assert_eq!(record.activity.users, [format!("u{i}")]);
            assert_eq!(record.activity.rdp_clients, u32::try_from(i).unwrap());
        }
    }
}
