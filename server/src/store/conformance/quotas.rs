//! The organisations' part of the suite: an organisation's quota and its
//! members' counted in the create's (and the claim's) transaction, exact
//! under 50 concurrent creates from several connections; what the live
//! sessions hold; sessions and audit entries by organisation.

use daas_api::v1::SessionState;

use super::{Backend, UNLIMITED, medium, new_session};
use crate::domain::catalog::Size;
use crate::domain::orgs::{Amounts, Quota, Resource};
use crate::store::{
    LimitHit, NewSession, OrgQuotas, SessionLimits, StoreError, audit_records::AuditFilter,
    audit_records::AuditRecord,
};

fn small() -> Size {
    Size {
        name: "small".into(),
        cores: 1,
        memory_mb: 2048,
        disk_gb: 10,
    }
}

/// `user`'s create in organisation `org`, of `size`.
fn in_org(user: &str, org: &str, size: Size) -> NewSession {
    NewSession {
        org: Some(org.into()),
        size: Some(size),
        ..new_session(user)
    }
}

fn limits(org: Quota, member: Quota) -> SessionLimits {
    SessionLimits {
        org: Some(OrgQuotas { org, member }),
        ..UNLIMITED
    }
}

fn quota_hit(err: StoreError) -> (Option<String>, Resource, u64, u64) {
    match err {
        StoreError::LimitReached(LimitHit::Quota { member, over, .. }) => {
            (member, over.resource, over.max, over.used)
        }
        other => panic!("not a quota: {other}"),
    }
}

pub(super) async fn quotas_hold_for_an_organisation_and_its_members(db: &impl Backend) {
    let store = db.open().await;
    let org_cores = limits(
        Quota {
            cores: Some(5),
            ..Quota::default()
        },
        Quota {
            desktops: Some(2),
            ..Quota::default()
        },
    );
    let (a1, _) = store
        .create_session(in_org("alice", "physics", medium()), org_cores)
        .await
        .unwrap();
    assert_eq!(a1.org.as_deref(), Some("physics"));
    store
        .create_session(in_org("alice", "physics", medium()), org_cores)
        .await
        .unwrap();
    // Desktops outside the organisation, or of another, do not count.
    store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    store
        .create_session(in_org("zoe", "maths", medium()), org_cores)
        .await
        .unwrap();
    // 4 of 5 cores: a medium desktop (2) does not fit, a small one (1) does.
    let err = store
        .create_session(in_org("bob", "physics", medium()), org_cores)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(quota_hit(err), (None, Resource::Cores, 5, 4));
    assert!(
        message.contains("organisation 'physics'")
            && message.contains("4 of 5 vCPUs in use, the desktop needs 2")
            && message.contains("orgs.physics.quota.cores"),
        "{message}"
    );
    store
        .create_session(in_org("bob", "physics", small()), org_cores)
        .await
        .unwrap();
    // A member's own quota: alice has 2 desktops in physics.
    let roomy = limits(
        Quota::default(),
        Quota {
            desktops: Some(2),
            ..Quota::default()
        },
    );
    let err = store
        .create_session(in_org("alice", "physics", small()), roomy)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(
        quota_hit(err),
        (Some("alice".into()), Resource::Desktops, 2, 2)
    );
    assert!(
        message.contains("orgs.physics.user_quota.desktops"),
        "{message}"
    );
    // What the live sessions hold, by organisation and member.
    let physics = store.usage(Some("physics".into()), None).await.unwrap();
    assert_eq!(
        physics,
        Amounts {
            desktops: 3,
            cores: 5,
            memory_mb: 2 * 4096 + 2048
        }
    );
    let alice = store
        .usage(Some("physics".into()), Some("alice".into()))
        .await
        .unwrap();
    assert_eq!((alice.desktops, alice.cores), (2, 4));
    assert_eq!(
        store
            .usage(None, Some("alice".into()))
            .await
            .unwrap()
            .desktops,
        3
    );
    // A destroyed desktop frees its share.
    store
        .walk(&a1.id, &[SessionState::Destroying, SessionState::Destroyed])
        .await;
    store
        .create_session(in_org("alice", "physics", medium()), org_cores)
        .await
        .unwrap();
    // Listing by organisation.
    let listed = store
        .list_page(None, Some("physics".into()), None, None, 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|r| r.org.as_deref() == Some("physics")));
}

pub(super) async fn a_claim_counts_against_the_claimers_organisation(db: &impl Backend) {
    use SessionState::*;
    let store = db.open().await;
    for _ in 0..2 {
        let spare = NewSession {
            template: "t".into(),
            pool: Some("p".into()),
            size: Some(medium()),
            ..NewSession::default()
        };
        let (record, _) = store.create_session_unlimited(spare).await.unwrap();
        assert_eq!(record.org, None, "a pool's desktop is nobody's");
        store
            .walk(&record.id, &[Provisioning, Booting, Configuring, Ready])
            .await;
    }
    let one = limits(
        Quota {
            desktops: Some(1),
            ..Quota::default()
        },
        Quota::default(),
    );
    let (claimed, _) = store
        .claim(in_org("alice", "physics", medium()), "p", one)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.org.as_deref(), Some("physics"));
    let err = store
        .claim(in_org("bob", "physics", medium()), "p", one)
        .await
        .unwrap_err();
    assert_eq!(quota_hit(err), (None, Resource::Desktops, 1, 1));
    let used = store.usage(Some("physics".into()), None).await.unwrap();
    assert_eq!((used.desktops, used.cores), (1, 2));
}

pub(super) fn concurrent_creates_never_pass_an_org_quota(db: &impl Backend) {
    // 50 creates at once from 5 members over four connections (as four
    // servers would have): the organisation's 7 desktops and each member's
    // 3 are never passed, and all 7 are made.
    let quotas = limits(
        Quota {
            desktops: Some(7),
            ..Quota::default()
        },
        Quota {
            desktops: Some(3),
            ..Quota::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let made = runtime.block_on(async {
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(db.open().await);
        }
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = stores[i % 4].clone();
            let user = format!("member{}", i % 5);
            tasks.push(tokio::spawn(async move {
                match store
                    .create_session(in_org(&user, "physics", small()), quotas)
                    .await
                {
                    Ok((record, _)) => Some(record.username),
                    Err(StoreError::LimitReached(LimitHit::Quota { .. })) => None,
                    Err(err) => panic!("{user}: {err}"),
                }
            }));
        }
        let mut made = Vec::new();
        for task in tasks {
            made.extend(task.await.unwrap());
        }
        made
    });
    assert_eq!(made.len(), 7, "the organisation's 7 desktops, no more");
    for i in 0..5 {
        let user = format!("member{i}");
        assert!(made.iter().filter(|u| **u == user).count() <= 3, "{made:?}");
    }
}

pub(super) async fn audit_entries_are_read_by_organisation(db: &impl Backend) {
    let store = db.open().await;
    for org in ["physics", "", "maths", "physics"] {
        store
            .append_audit(AuditRecord {
                time_ms: crate::domain::time::now_ms(),
                action: "create".into(),
                org: org.into(),
                ..AuditRecord::default()
            })
            .await
            .unwrap();
    }
    let page = store
        .audit_page(AuditFilter {
            org: Some("physics".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(page.iter().all(|r| r.org == "physics"));
}
