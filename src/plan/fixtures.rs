//! Inventories and rules for tests of the planner and of the renderers that show plans:
//! one set of fixtures, so that a new field is added in one place.

use crate::identity::IdentityKey;
use crate::inventory::{Folder, MessageMeta};
use crate::model::{FolderStatus, SpecialUse, WireName};
use crate::settings::{FlagsOnExisting, FolderRules, MessageRules};

pub(crate) fn key(n: u8) -> IdentityKey {
    IdentityKey([n; 32])
}

pub(crate) fn msg(uid: u32, k: u8, size: u64, flags: &[&str]) -> MessageMeta {
    MessageMeta {
        key: key(k),
        size,
        flags: crate::message::FlagSet::new(flags.iter().map(|f| f.to_string()).collect()),
        display: Default::default(),
        internal_date: None,
        content: None,
        uid,
    }
}

pub(crate) fn folder(wire: &str, attrs: &[&str], messages: Vec<MessageMeta>) -> Folder {
    let attributes: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
    Folder {
        wire_name: WireName::new(wire),
        name: crate::mutf7::decode(wire).unwrap(),
        special_use: attributes
            .iter()
            .find_map(|a| SpecialUse::from_attribute(a)),
        noselect: attributes.iter().any(|a| a == "\\Noselect"),
        attributes,
        subscribed: true,
        status: Some(FolderStatus {
            uidvalidity: 7,
            uidnext: Some(messages.len() as u32 + 1),
            exists: messages.len() as u32,
        }),
        messages,
        append_limit: None,
    }
}

pub(crate) fn rules() -> (FolderRules, MessageRules) {
    (
        FolderRules {
            exclude: vec![],
            special_use: true,
            include_views: false,
            rename: vec![],
            view_only_messages: Default::default(),
        },
        MessageRules {
            max_size: None,
            copy_deleted: false,
            flags_on_existing: FlagsOnExisting::Keep,
            fix_bare_lf: false,
            moved_on_destination: Default::default(),
            deleted_on_destination: Default::default(),
        },
    )
}

/// The plan of one account under the default rules of [`rules`], with no ledger.
pub(crate) fn planned(
    source_user: &str,
    destination_user: &str,
    source: &crate::inventory::Inventory,
    destination: &crate::inventory::Inventory,
) -> super::AccountPlan {
    let (folders, messages) = rules();
    super::plan_account(
        source_user,
        destination_user,
        source,
        destination,
        super::Rules {
            folders: &folders,
            messages: &messages,
            ledger: None,
        },
    )
}
