//! The template catalog as callers see it: the templates they may create
//! desktops of, with their sizes.

use daas_api::v1::{ListTemplatesResponse, Template as WireTemplate};

use super::Sessions;
use crate::domain::{
    catalog::{Size, Template},
    identity::Caller,
    time::duration,
};

impl Sessions {
    /// What `caller` may use, by name.
    pub fn templates(&self, caller: &Caller) -> ListTemplatesResponse {
        let catalog = &self.config.catalog;
        ListTemplatesResponse {
            templates: catalog
                .offered(caller.groups(), caller.is_admin())
                .into_iter()
                .map(|t| self.template_to_proto(t))
                .collect(),
            default_template: catalog.default_template.clone(),
            open: catalog.open,
        }
    }

    /// A template as callers see it, with its pools and reaper policy.
    fn template_to_proto(&self, t: &Template) -> WireTemplate {
        let policy = self.config.policies.for_template(&t.name);
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        WireTemplate {
            name: t.name.clone(),
            title: t.title.clone(),
            description: t.description.clone(),
            os: t.os.clone(),
            sizes: t.sizes.iter().map(Size::to_proto).collect(),
            default_size: t.default_size.clone(),
            groups: t.groups.clone(),
            pools: self
                .pools
                .all()
                .filter(|p| p.template == t.name)
                .map(|p| p.name.clone())
                .collect(),
            persistent: t.persistent,
            idle_timeout: Some(duration(ms(policy.idle_timeout))),
            disconnected_timeout: Some(duration(ms(policy.disconnected_timeout))),
            max_lifetime: Some(duration(ms(policy.max_lifetime))),
        }
    }
}
