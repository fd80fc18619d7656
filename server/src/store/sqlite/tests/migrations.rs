//! Databases made at every older schema version (the first n migration
//! files applied, `user_version` n, a row written as that server wrote it)
//! open with the current store, keep their rows and end at the current
//! schema, exactly as a new database has it.

use daas_api::v1::SessionState;
use prost::Message;
use rusqlite::Connection;

use super::super::{SqliteStore, migrate::MIGRATIONS};
use crate::store::SessionStore;
use crate::store::event_rows::first_event;

/// Every table and index of the database, as SQLite keeps its definition.
fn schema(conn: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        .unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn a_database_made_at_each_older_version_still_migrates() {
    for (index, &(number, _)) in MIGRATIONS.iter().enumerate() {
        assert_eq!(number as usize, index + 1, "numbered 1, 2, ... in order");
    }
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current.sqlite3");
    drop(SqliteStore::open(&current).unwrap());
    let current_schema = schema(&Connection::open(&current).unwrap());
    for version in 1..MIGRATIONS.len() {
        let path = dir.path().join(format!("v{version}.sqlite3"));
        let event = first_event("s1", 1_000, "waiting for a provisioning slot".into());
        // As a server at that version left it: its migrations, a session
        // (the first migration's columns only) and the session's event.
        {
            let conn = Connection::open(&path).unwrap();
            for &(_, sql) in &MIGRATIONS[..version] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", version).unwrap();
            conn.execute(
                "INSERT INTO sessions (id, username, template, state, slot, vm_name, \
                 created_ms, updated_ms, stage_started_ms) \
                 VALUES ('s1', 'alice', 't', ?1, 1, 'desktop-old001', 1000, 1000, 1000)",
                [SessionState::Queued as i32],
            )
            .unwrap();
            // Before migration 4 an event had no kind or time columns.
            let insert = if version < 4 {
                "INSERT INTO events (session_id, seq, body) VALUES ('s1', 1, ?1)"
            } else {
                "INSERT INTO events (session_id, seq, body, kind, time_ms) \
                 VALUES ('s1', 1, ?1, 1, 1000)"
            };
            conn.execute(insert, [event.encode_to_vec()]).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let record = store
            .get("s1")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("version {version}: the session is gone"));
        assert_eq!(
            (
                record.username.as_str(),
                record.state,
                record.slot,
                record.vm_name.as_str()
            ),
            ("alice", SessionState::Queued, 1, "desktop-old001"),
            "version {version}"
        );
        assert_eq!(
            store.events_after("s1", 0).await.unwrap(),
            [event],
            "version {version}"
        );
        // The current server's writes go on from there.
        let next = store
            .transition(
                "s1",
                SessionState::Queued,
                SessionState::Provisioning,
                "terraform".into(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(next.sequence, 2, "version {version}");
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let now_at: usize = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(now_at, MIGRATIONS.len(), "version {version}");
        // An event from before migration 4 got its kind (1, a stage
        // change) and time from its body.
        let kind_time: (i32, i64) = conn
            .query_row(
                "SELECT kind, time_ms FROM events WHERE session_id = 's1' AND seq = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(kind_time, (1, 1000), "version {version}");
        assert_eq!(schema(&conn), current_schema, "version {version}");
    }
}
