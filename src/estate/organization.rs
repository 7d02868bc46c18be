//! The organization's accounts, from AWS Organizations.

use serde::Serialize;

use crate::aws::{fail, Aws};
use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgAccount {
    pub id: String,
    pub name: Option<String>,
}

/// Every ACTIVE account of the organization (ListAccounts, paginated), in the order
/// Organizations lists them. Suspended, closing and closed accounts are left out: their
/// resources cannot be read, and they are no longer part of the estate. ListAccounts works
/// from the management account or a delegated administrator.
pub async fn organization_accounts(aws: &Aws) -> Result<Vec<OrgAccount>, Error> {
    let mut out = Vec::new();
    let mut pages = aws.organizations().list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        for a in page.map_err(fail("organizations:ListAccounts"))?.accounts() {
            // `State` replaces the deprecated `Status`; either says ACTIVE.
            let active = match (a.state(), a.status()) {
                (Some(s), _) => s.as_str() == "ACTIVE",
                (None, Some(s)) => s.as_str() == "ACTIVE",
                (None, None) => false,
            };
            if let (true, Some(id)) = (active, a.id()) {
                out.push(OrgAccount { id: id.to_string(), name: a.name().map(str::to_string) });
            }
        }
    }
    Ok(out)
}
