//! Organisations as callers meet them: which one a create counts against,
//! who administers which, and a quota with what is in use (`GetQuota`).

use daas_api::v1::{CreateSessionRequest, GetQuotaRequest, Quota as WireQuota};

use super::Sessions;
use crate::domain::{
    error::Error,
    identity::Caller,
    orgs::{Amounts, Org, Quota},
    validate,
};
use crate::store::{OrgQuotas, SessionLimits};

impl Sessions {
    /// The organisation a create counts against: the one it names, else the
    /// caller's only one (a create an administrator makes for someone else
    /// counts against none unless it names one).
    pub(super) fn org_of_create(
        &self,
        caller: &Caller,
        req: &CreateSessionRequest,
    ) -> Result<Option<&Org>, Error> {
        if !req.org.is_empty() {
            validate::org(&req.org)?;
        }
        let for_self = req.username.is_empty() || caller.user() == Some(req.username.as_str());
        let groups = if for_self { caller.groups() } else { &[] };
        Ok(self
            .config
            .orgs
            .choose(&req.org, groups, caller.is_admin())?)
    }

    /// The limits a create for organisation `org` (or none) is checked
    /// against.
    pub(super) fn limits(&self, org: Option<&Org>) -> SessionLimits {
        SessionLimits {
            max_sessions: self.config.limits.max_sessions,
            max_per_user: self.config.limits.max_sessions_per_user,
            org: org.map(|o| OrgQuotas {
                org: o.quota,
                member: o.user_quota,
            }),
        }
    }

    /// Whether `caller` administers organisation `org`.
    pub(super) fn administers(&self, caller: &Caller, org: &str) -> bool {
        self.config
            .orgs
            .get(org)
            .is_some_and(|o| o.administered_by(caller.groups()))
    }

    /// An organisation's quota and use, with one member's share (see
    /// `GetQuota` in the proto for who may ask what).
    pub async fn quota(&self, caller: &Caller, req: GetQuotaRequest) -> Result<WireQuota, Error> {
        if !req.username.is_empty() {
            validate::account_name("username", &req.username)?;
        }
        let orgs = &self.config.orgs;
        let administers: Vec<String> = orgs
            .administered(caller.groups())
            .into_iter()
            .map(|o| o.name.clone())
            .collect();
        let org = if req.org.is_empty() {
            if !req.username.is_empty() && caller.user() != Some(req.username.as_str()) {
                return Err(Error::InvalidArgument {
                    field: "org",
                    why: "is required with another user's name: the server knows a user's \
                          organisations only from their own certificate or sign-in"
                        .into(),
                });
            }
            orgs.choose("", caller.groups(), false)?
        } else {
            validate::org(&req.org)?;
            let org = orgs
                .get(&req.org)
                .ok_or_else(|| Error::NoSuchOrg(req.org.clone()))?;
            if !caller.is_admin()
                && !org.administered_by(caller.groups())
                && !orgs.member_of(caller.groups()).contains(&org)
            {
                return Err(Error::PermissionDenied(format!(
                    "you may see the quota of your own organisations only, not of '{}'",
                    org.name
                )));
            }
            Some(org)
        };
        let oversees = caller.is_admin() || org.is_some_and(|o| administers.contains(&o.name));
        let username = match (req.username.is_empty(), caller.user()) {
            (false, Some(me)) if req.username == me => Some(req.username),
            (false, _) if oversees => Some(req.username),
            (false, _) => {
                return Err(Error::PermissionDenied(
                    "you may see your own share of a quota only".into(),
                ));
            }
            // An overseer naming an organisation asks for it alone.
            (true, _) if oversees && !req.org.is_empty() => None,
            (true, me) => me.map(str::to_string),
        };
        let store = &self.store;
        let org_name = org.map(|o| o.name.clone());
        let user_used = match &username {
            Some(user) => store.usage(org_name.clone(), Some(user.clone())).await?,
            None => Amounts::default(),
        };
        let (org_max, org_used, user_max) = match org {
            Some(o) => {
                let mut used = store.usage(org_name.clone(), None).await?.to_proto();
                used.kept_gb = self.kept_gb_of(&o.name).await?;
                (Some(o.quota.to_proto()), Some(used), o.user_quota)
            }
            None => (
                None,
                None,
                Quota {
                    desktops: u32::try_from(self.config.limits.max_sessions_per_user).ok(),
                    ..Quota::default()
                },
            ),
        };
        Ok(WireQuota {
            org: org.map(|o| o.name.clone()).unwrap_or_default(),
            org_title: org.map(|o| o.title.clone()).unwrap_or_default(),
            org_max,
            org_used,
            user_max: username.as_ref().map(|_| user_max.to_proto()),
            user_used: username.as_ref().map(|_| user_used.to_proto()),
            username: username.unwrap_or_default(),
            administers,
        })
    }
}
