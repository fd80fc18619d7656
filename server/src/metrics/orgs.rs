//! Organisations as metrics (`daas_org_*`): what each one's live desktops
//! hold and its quota, read from the store at each scrape like the
//! sessions' counts, and the creates refused by a quota as they happen.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::add;
use crate::domain::orgs::{Amounts, Orgs, Quota, Resource};
use crate::store::{Store, StoreError};

/// Labels of `daas_org_usage` and `daas_org_quota`: the organisation and
/// the amount (desktops, cores, memory_mib).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AmountLabels {
    org: String,
    resource: String,
}

/// Labels of `daas_quota_refusals_total`: whose quota (org, or user: a
/// member's in it) and the amount it would have passed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    org: String,
    quota: String,
    resource: String,
}

pub(super) struct OrgGauges {
    orgs: Orgs,
    usage: Family<AmountLabels, Gauge>,
    quota: Family<AmountLabels, Gauge>,
    refusals: Family<RefusalLabels, Counter>,
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn resource_label(resource: Resource) -> &'static str {
    match resource {
        Resource::Desktops => "desktops",
        Resource::Cores => "cores",
        Resource::Memory => "memory_mib",
        Resource::KeptDisks => "kept_gib",
    }
}

impl OrgGauges {
    pub(super) fn new(r: &mut Registry) -> OrgGauges {
        OrgGauges {
            orgs: Orgs::default(),
            usage: add(
                r,
                "org_usage",
                "What each organisation's live desktops hold: resource desktops, cores or memory_mib",
                Family::default(),
            ),
            quota: add(
                r,
                "org_quota",
                "Each organisation's quota, per resource it limits (desktops, cores, memory_mib)",
                Family::default(),
            ),
            refusals: add(
                r,
                "quota_refusals",
                "Creates refused by a quota: quota org (the organisation's) or user (a member's), \
                 and the resource it would have passed",
                Family::default(),
            ),
        }
    }

    pub(super) fn with_orgs(self, orgs: Orgs) -> OrgGauges {
        OrgGauges { orgs, ..self }
    }

    /// Sets the usage and quota gauges from the store, now.
    pub(super) async fn set(&self, store: &Store) -> Result<(), StoreError> {
        self.usage.clear();
        self.quota.clear();
        for org in &self.orgs.orgs {
            let labels = |resource: &str| AmountLabels {
                org: org.name.clone(),
                resource: resource.to_string(),
            };
            let Amounts {
                desktops,
                cores,
                memory_mb,
            } = store.usage(Some(org.name.clone()), None).await?;
            self.usage
                .get_or_create(&labels("desktops"))
                .set(i64::from(desktops));
            self.usage
                .get_or_create(&labels("cores"))
                .set(i64::from(cores));
            self.usage
                .get_or_create(&labels("memory_mib"))
                .set(gauge(memory_mb));
            let Quota {
                desktops,
                cores,
                memory_mb,
                ..
            } = org.quota;
            for (resource, max) in [
                ("desktops", desktops.map(u64::from)),
                ("cores", cores.map(u64::from)),
                ("memory_mib", memory_mb),
            ] {
                if let Some(max) = max {
                    self.quota.get_or_create(&labels(resource)).set(gauge(max));
                }
            }
        }
        Ok(())
    }

    /// A create refused by organisation `org`'s quota (`member`: a
    /// member's) on `resource`.
    pub(super) fn refused(&self, org: &str, member: bool, resource: Resource) {
        self.refusals
            .get_or_create(&RefusalLabels {
                org: org.to_string(),
                quota: if member { "user" } else { "org" }.to_string(),
                resource: resource_label(resource).to_string(),
            })
            .inc();
    }
}
