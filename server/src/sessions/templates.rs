//! The template catalog as callers see it: the templates they may create
//! desktops of, with their sizes.

use daas_api::v1::{ListTemplatesResponse, Template as WireTemplate};

use super::Sessions;
use crate::domain::{
    catalog::{Size, Template},
    identity::Caller,
};

impl Sessions {
    /// What `caller` may use, by name.
    pub fn templates(&self, caller: &Caller) -> ListTemplatesResponse {
        let catalog = &self.config.catalog;
        ListTemplatesResponse {
            templates: catalog
                .offered(caller.groups(), caller.is_admin())
                .into_iter()
                .map(template_to_proto)
                .collect(),
            default_template: catalog.default_template.clone(),
            open: catalog.open,
        }
    }
}

fn template_to_proto(t: &Template) -> WireTemplate {
    WireTemplate {
        name: t.name.clone(),
        title: t.title.clone(),
        description: t.description.clone(),
        os: t.os.clone(),
        sizes: t.sizes.iter().map(Size::to_proto).collect(),
        default_size: t.default_size.clone(),
        groups: t.groups.clone(),
    }
}
