//! Use cases for accounts (the plugin's "authorizations"): list, show, remove. Creating and
//! renewing them is the OAuth flows' job.

use oauthimap_store::{Account, Level, NewEvent};
use oauthimap_types::{AccountId, AppId};

use crate::{AppError, Core, Result};

/// How a user names an account: its numeric id, or its mailbox (or signed-in identity), optionally
/// within one application.
#[derive(Debug, Clone)]
pub struct AccountSelector {
    pub text: String,
    pub application: Option<String>,
}

impl AccountSelector {
    pub fn new(text: impl Into<String>, application: Option<String>) -> Self {
        Self {
            text: text.into(),
            application,
        }
    }
}

const PAUSED_ACCOUNT_REMOVED: &str = "its account was removed; choose another account for it";

impl Core {
    /// Accounts, all or those of one application.
    pub async fn list_accounts(&self, application: Option<&str>) -> Result<Vec<Account>> {
        let app = match application {
            Some(a) => Some(self.find_application(a).await?.id),
            None => None,
        };
        Ok(self.store().accounts(app).await?)
    }

    /// Resolves a selector to exactly one account, or says which ones it could mean.
    pub async fn find_account(&self, selector: &AccountSelector) -> Result<Account> {
        let app: Option<AppId> = match &selector.application {
            Some(a) => Some(self.find_application(a).await?.id),
            None => None,
        };
        let text = selector.text.trim();
        if let Ok(id) = text.parse::<i64>() {
            let account = self.store().account(AccountId(id)).await?;
            if app.is_some_and(|a| a != account.application_id) {
                return Err(AppError::NotFound {
                    what: "account",
                    key: text.to_owned(),
                    hint: " in that application".into(),
                });
            }
            return Ok(account);
        }
        let candidates: Vec<Account> = self
            .store()
            .accounts_named(app, text)
            .await?
            .into_iter()
            // LOWER() in SQLite folds ASCII only; the same rule on both databases.
            .filter(|a| {
                a.mailbox.eq_ignore_ascii_case(text) || a.identity.eq_ignore_ascii_case(text)
            })
            .collect();
        let mut by_mailbox: Vec<&Account> = candidates
            .iter()
            .filter(|a| a.mailbox.eq_ignore_ascii_case(text))
            .collect();
        if by_mailbox.is_empty() {
            by_mailbox = candidates.iter().collect();
        }
        match by_mailbox.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(AppError::NotFound {
                what: "account",
                key: text.to_owned(),
                hint: "; `oauthimap account list` shows the accounts".into(),
            }),
            many => Err(AppError::Conflict(format!(
                "{text:?} matches {} accounts ({}); give the account id or the application",
                many.len(),
                many.iter()
                    .map(|a| format!("id {} in {}", a.id, a.application_name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Removes an account. Its receivers stay, deactivated, waiting for another account.
    pub async fn remove_account(&self, selector: &AccountSelector) -> Result<(Account, u64)> {
        let account = self.find_account(selector).await?;
        let paused = self
            .store()
            .delete_account(account.id, PAUSED_ACCOUNT_REMOVED)
            .await?;
        if paused > 0 {
            self.collector().wake();
        }
        self.store()
            .record_event(&NewEvent {
                level: Level::Warn,
                kind: "account.removed",
                application_id: Some(account.application_id),
                account_id: Some(account.id),
                receiver_id: None,
                message: format!(
                    "account {} removed; {paused} receiver(s) deactivated",
                    account.mailbox
                ),
            })
            .await?;
        Ok((account, paused))
    }
}
