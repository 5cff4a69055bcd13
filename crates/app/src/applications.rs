//! Use cases for OAuth applications, and the seed's rules about them:
//! - deactivating an application deactivates its receivers (re-activating brings back those it
//!   paused);
//! - changing the provider, cloud, client ID, tenant or sign-in endpoints revokes its accounts
//!   (their grants belong to the old registration) and pauses their receivers;
//! - rotating only the client secret keeps every account: refresh tokens are bound to the client
//!   ID, not to the secret.

use std::fmt::Write;

use oauthimap_oauth::Profile;
use oauthimap_store::{
    Application, ApplicationCascade, ApplicationFields, CascadeReport, Endpoints, Level, NewEvent,
    Revocation, SecretChange,
};
use oauthimap_tokens::{AccountEvent, change_for};
use oauthimap_types::{Cloud, EpochMillis, Provider};
use secrecy::SecretString;
use serde::Serialize;

use crate::error::keep;
use crate::{AppError, Core, Result};

/// Why receivers were paused when their application was deactivated; re-activation looks for it.
pub(crate) const PAUSED_APP_INACTIVE: &str = "its OAuth application was deactivated";

/// Fields to set on an application. `None` leaves a field as it is (on update) or takes the
/// default (on add); an empty string clears an optional field.
#[derive(Debug, Default, Clone)]
pub struct ApplicationInput {
    pub name: Option<String>,
    pub active: Option<bool>,
    pub provider: Option<Provider>,
    pub cloud: Option<Cloud>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub clear_client_secret: bool,
    pub tenant: Option<String>,
    pub endpoint_base: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub device_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub scopes: Option<String>,
    /// `Some(None)` clears the date.
    #[allow(clippy::option_option)] // keep / clear / set, like every other optional field here
    pub secret_expires_at: Option<Option<EpochMillis>>,
    pub comment: Option<String>,
    /// Go ahead with a change that revokes the application's accounts (provider, cloud,
    /// client ID, tenant or endpoints). Without it such a change is refused with
    /// [`AppError::NeedsConfirmation`], which names what it would revoke and stop.
    pub confirm: bool,
}

/// An application with everything an admin needs to finish the provider-side setup.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationView {
    #[serde(flatten)]
    pub application: Application,
    /// The exact redirect URL to register at the provider (type "Web").
    pub redirect_url: String,
    pub profile: Profile,
    /// For Microsoft: the Exchange Online PowerShell commands that allow app-only access.
    pub app_only_setup: Vec<String>,
    /// For Microsoft: what the gateway's POP3 and SMTP need that the scopes lack, and how to
    /// add it (empty when nothing is missing).
    pub gateway_scope_hints: Vec<String>,
}

fn check_name(name: &str) -> Result<String> {
    crate::limits::name(name)
}

fn check_client_id(id: &str) -> Result<String> {
    let id = id.trim();
    crate::limits::at_most("client_id", id, crate::limits::IDENTIFIER)?;
    if id.is_empty() {
        return Err(AppError::invalid(
            "client_id",
            "must not be empty: copy the Application (client) ID from the provider",
        ));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AppError::invalid("client_id", "must not contain spaces"));
    }
    Ok(id.to_owned())
}

fn check_tenant(tenant: &str) -> Result<()> {
    crate::limits::at_most("tenant", tenant, crate::limits::IDENTIFIER)?;
    if !tenant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(AppError::invalid(
            "tenant",
            format!(
                "{tenant:?} is not a tenant ID: use the Directory (tenant) ID, a verified domain, or common / organizations / consumers"
            ),
        ));
    }
    Ok(())
}

/// Merges `input` over `base` (or over defaults) into checked fields.
fn merge(base: Option<&ApplicationFields>, input: &ApplicationInput) -> Result<ApplicationFields> {
    // Every field is checked, and every mistake reported at once.
    let mut errors = Vec::new();
    let name = match (&input.name, base) {
        (Some(n), _) => keep(&mut errors, check_name(n)),
        (None, Some(b)) => Some(b.name.clone()),
        (None, None) => keep(&mut errors, Err(AppError::invalid("name", "is required"))),
    };
    let client_id = match (&input.client_id, base) {
        (Some(c), _) => keep(&mut errors, check_client_id(c)),
        (None, Some(b)) => Some(b.client_id.clone()),
        (None, None) => keep(
            &mut errors,
            Err(AppError::invalid("client_id", "is required")),
        ),
    };
    // Absent keeps the old value; empty clears it.
    let kept = |new: &Option<String>, old: Option<&Option<String>>| -> Option<String> {
        match new.as_deref().map(str::trim) {
            Some("") => None,
            Some(v) => Some(v.to_owned()),
            None => old.cloned().flatten(),
        }
    };
    let b = base;
    let tenant = kept(&input.tenant, b.map(|b| &b.tenant));
    if let Some(t) = &tenant {
        keep(&mut errors, check_tenant(t));
    }
    for (field, value) in [
        ("endpoint_base", &input.endpoint_base),
        ("authorize_url", &input.authorize_url),
        ("token_url", &input.token_url),
        ("device_url", &input.device_url),
        ("userinfo_url", &input.userinfo_url),
        ("scopes", &input.scopes),
    ] {
        if let Some(v) = value {
            keep(
                &mut errors,
                crate::limits::at_most(field, v, crate::limits::URL),
            );
        }
    }
    if let Some(c) = &input.comment {
        keep(
            &mut errors,
            crate::limits::at_most("comment", c, crate::limits::COMMENT),
        );
    }
    let provider = input.provider.or(base.map(|b| b.provider));
    if provider.is_none() {
        errors.push(AppError::invalid(
            "provider",
            "is required: microsoft, google or generic",
        ));
    }
    if let Some(e) = AppError::all_of(errors) {
        return Err(e);
    }
    let (Some(name), Some(client_id), Some(provider)) = (name, client_id, provider) else {
        unreachable!("every missing value recorded an error")
    };
    let endpoints = Endpoints {
        base: kept(&input.endpoint_base, b.map(|b| &b.endpoints.base)),
        authorize: kept(&input.authorize_url, b.map(|b| &b.endpoints.authorize)),
        token: kept(&input.token_url, b.map(|b| &b.endpoints.token)),
        device: kept(&input.device_url, b.map(|b| &b.endpoints.device)),
        userinfo: kept(&input.userinfo_url, b.map(|b| &b.endpoints.userinfo)),
    };
    let fields = ApplicationFields {
        name,
        active: input.active.or(b.map(|b| b.active)).unwrap_or(true),
        provider,
        cloud: input.cloud.or(b.map(|b| b.cloud)).unwrap_or(Cloud::Global),
        client_id,
        tenant,
        endpoints,
        scopes: kept(&input.scopes, b.map(|b| &b.scopes))
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")),
        secret_expires_at: input
            .secret_expires_at
            .unwrap_or_else(|| b.and_then(|b| b.secret_expires_at)),
        comment: input
            .comment
            .clone()
            .or_else(|| b.map(|b| b.comment.clone()))
            .unwrap_or_default(),
    };
    profile_of(&fields)?;
    Ok(fields)
}

/// What else changing an application from `old` to `new` must change (the seed's rules), and
/// the settings whose change revokes its accounts (none when it has no accounts): a new
/// provider, cloud, client ID, tenant or endpoint set revokes them through the token service's
/// state machine (the change it gives for [`AccountEvent::Revoked`]) and stops their receivers;
/// switching the application off stops its receivers, switching it back on (without such a
/// change) brings back those it stopped.
fn cascade_for(
    old: &ApplicationFields,
    new: &ApplicationFields,
    account_count: i64,
) -> (ApplicationCascade, Vec<&'static str>) {
    let mut grant_changes = Vec::new();
    if old.provider != new.provider {
        grant_changes.push("provider");
    }
    if old.cloud != new.cloud {
        grant_changes.push("cloud");
    }
    if old.client_id != new.client_id {
        grant_changes.push("client ID");
    }
    if old.tenant != new.tenant {
        grant_changes.push("tenant");
    }
    if old.endpoints != new.endpoints {
        grant_changes.push("endpoints");
    }
    let mut cascade = ApplicationCascade::default();
    if !grant_changes.is_empty() && account_count > 0 {
        let why = format!(
            "the application's {} changed, so its authorizations no longer apply; authorize again",
            grant_changes.join(", ")
        );
        cascade.revoke_accounts = Some(Revocation {
            change: change_for(AccountEvent::Revoked),
            reason: why.clone(),
        });
        cascade.deactivate_receivers = Some(why);
    }
    if old.active && !new.active {
        cascade.deactivate_receivers = Some(PAUSED_APP_INACTIVE.into());
    }
    if !old.active && new.active && cascade.revoke_accounts.is_none() {
        cascade.reactivate_paused_for = Some(PAUSED_APP_INACTIVE.into());
    }
    (cascade, grant_changes)
}

/// The provider profile an application's fields describe.
pub(crate) fn profile_of(f: &ApplicationFields) -> Result<Profile> {
    Ok(oauthimap_tokens::profile_of(f)?)
}

fn secret_of(input: &ApplicationInput) -> Result<Option<&SecretString>> {
    use secrecy::ExposeSecret;
    match &input.client_secret {
        Some(s) if s.expose_secret().trim().is_empty() => Err(AppError::invalid(
            "client_secret",
            "is empty: paste the secret's Value (not its ID) from the provider",
        )),
        Some(s) if s.expose_secret().chars().count() > crate::limits::SECRET => {
            Err(AppError::invalid(
                "client_secret",
                format!(
                    "is longer than {} characters: paste the secret's Value only",
                    crate::limits::SECRET
                ),
            ))
        }
        Some(s) if s.expose_secret().contains(['\n', '\r']) => Err(AppError::invalid(
            "client_secret",
            "contains a line break: give the secret on one line",
        )),
        other => Ok(other.as_ref()),
    }
}

impl Core {
    /// Registers an application.
    pub async fn add_application(&self, input: &ApplicationInput) -> Result<ApplicationView> {
        let fields = merge(None, input)?;
        let secret = secret_of(input)?;
        let app = self.store().insert_application(&fields, secret).await?;
        self.event(
            Level::Info,
            "application.created",
            &app,
            format!("application {} created", app.fields.name),
        )
        .await?;
        self.view(app)
    }

    /// Finds an application by name or numeric id.
    pub async fn find_application(&self, selector: &str) -> Result<Application> {
        let found = match selector.trim().parse::<i64>() {
            Ok(id) => self.store().application(oauthimap_types::AppId(id)).await,
            Err(_) => self.store().application_by_name(selector.trim()).await,
        };
        found.map_err(|e| match AppError::from(e) {
            AppError::NotFound { what, key, .. } => AppError::NotFound {
                what,
                key,
                hint: "; `oauthimap app list` shows the applications".into(),
            },
            other => other,
        })
    }

    pub async fn application_view(&self, selector: &str) -> Result<ApplicationView> {
        let app = self.find_application(selector).await?;
        self.view(app)
    }

    pub async fn list_applications(&self) -> Result<Vec<Application>> {
        Ok(self.store().applications().await?)
    }

    /// Changes an application, applying the seed's rules in the same transaction.
    pub async fn update_application(
        &self,
        selector: &str,
        input: &ApplicationInput,
    ) -> Result<(ApplicationView, CascadeReport)> {
        let old = self.find_application(selector).await?;
        let new = merge(Some(&old.fields), input)?;
        let secret = match (secret_of(input)?, input.clear_client_secret) {
            (Some(_), true) => {
                return Err(AppError::invalid(
                    "client_secret",
                    "give a new secret or clear it, not both",
                ));
            }
            (Some(s), false) => SecretChange::Set(s.clone()),
            (None, true) => SecretChange::Clear,
            (None, false) => SecretChange::Keep,
        };
        let (cascade, grant_changes) = cascade_for(&old.fields, &new, old.account_count);
        if cascade.revoke_accounts.is_some() && !input.confirm {
            return Err(self.revocation_impact(old.id, &grant_changes).await?);
        }
        let (app, report) = self
            .store()
            .update_application(old.id, &new, &secret, &cascade)
            .await?;
        let mut message = format!("application {} updated", app.fields.name);
        if matches!(secret, SecretChange::Set(_)) {
            message.push_str("; client secret replaced, authorizations kept");
        }
        if report.accounts_revoked > 0 {
            let _ = write!(
                message,
                "; {} changed: {} account(s) revoked",
                grant_changes.join(", "),
                report.accounts_revoked
            );
        }
        if report.receivers_deactivated > 0 {
            let _ = write!(
                message,
                "; {} receiver(s) deactivated",
                report.receivers_deactivated
            );
        }
        if report.receivers_reactivated > 0 {
            let _ = write!(
                message,
                "; {} receiver(s) re-activated",
                report.receivers_reactivated
            );
        }
        let level = if report.accounts_revoked > 0 {
            Level::Warn
        } else {
            Level::Info
        };
        self.event(level, "application.updated", &app, message)
            .await?;
        if report.receivers_deactivated > 0 || report.receivers_reactivated > 0 {
            // Receivers switched on or off with their application start or stop now, not at
            // the collector's next look.
            self.collector().wake();
        }
        Ok((self.view(app)?, report))
    }

    /// What a change of `changed` would revoke and stop, as the refusal that asks to confirm it.
    async fn revocation_impact(
        &self,
        id: oauthimap_types::AppId,
        changed: &[&str],
    ) -> Result<AppError> {
        let accounts: Vec<String> = self
            .store()
            .accounts(Some(id))
            .await?
            .into_iter()
            .map(|a| a.mailbox)
            .collect();
        let receivers: Vec<String> = self
            .store()
            .receivers()
            .await?
            .into_iter()
            .filter(|r| r.fields.application_id == id && r.fields.active)
            .map(|r| r.fields.name)
            .collect();
        let mut what = format!(
            "changing the {} revokes {} account(s) ({}), which must then be authorized again",
            changed.join(", "),
            accounts.len(),
            accounts.join(", ")
        );
        if !receivers.is_empty() {
            let _ = write!(
                what,
                ", and stops {} receiver(s) ({})",
                receivers.len(),
                receivers.join(", ")
            );
        }
        Ok(AppError::NeedsConfirmation {
            what,
            accounts,
            receivers,
        })
    }

    /// Removes an application. With receivers still attached it refuses unless `cascade` is set,
    /// so nobody loses a collector by accident.
    pub async fn remove_application(&self, selector: &str, cascade: bool) -> Result<Application> {
        let app = self.find_application(selector).await?;
        if !cascade && (app.receiver_count > 0 || app.account_count > 0) {
            return Err(AppError::Conflict(format!(
                "application {} still has {} account(s) and {} receiver(s); remove them first, or confirm removing them all (--cascade)",
                app.fields.name, app.account_count, app.receiver_count
            )));
        }
        self.store().delete_application(app.id).await?;
        self.event(
            Level::Warn,
            "application.removed",
            &app,
            format!(
                "application {} removed with {} account(s) and {} receiver(s)",
                app.fields.name, app.account_count, app.receiver_count
            ),
        )
        .await?;
        Ok(app)
    }

    fn view(&self, application: Application) -> Result<ApplicationView> {
        let profile = profile_of(&application.fields)?;
        let app_only_setup = if application.fields.provider == Provider::Microsoft {
            let tenant = application
                .fields
                .tenant
                .as_deref()
                .unwrap_or("<your tenant>");
            vec![
                format!("Connect-ExchangeOnline -Organization {tenant}"),
                format!(
                    "New-ServicePrincipal -AppId {} -ObjectId <Object ID from Enterprise applications, not App registrations> -DisplayName \"oauthimap {}\"",
                    application.fields.client_id, application.fields.name
                ),
                "Add-MailboxPermission -Identity <mailbox@your-domain> -User <the same Object ID> -AccessRights FullAccess".into(),
            ]
        } else {
            Vec::new()
        };
        let mut gateway_scope_hints = Vec::new();
        if application.fields.provider == Provider::Microsoft {
            let has = |scope: &str| profile.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope));
            for (scope, what) in [
                ("https://outlook.office.com/SMTP.Send", "SMTP submission"),
                ("https://outlook.office.com/POP.AccessAsUser.All", "POP3"),
            ] {
                if !has(scope) {
                    gateway_scope_hints.push(format!(
                        "The gateway's {what} needs the scope {scope}: add it to the application's API permissions \
                         in Entra (Office 365 Exchange Online, delegated), then `oauthimap app update {:?} --scopes \"{} {scope}\"` \
                         and sign the mailboxes in again.",
                        application.fields.name,
                        profile.scopes.join(" ")
                    ));
                }
            }
        }
        Ok(ApplicationView {
            redirect_url: self.redirect_url().to_string(),
            profile,
            app_only_setup,
            gateway_scope_hints,
            application,
        })
    }

    async fn event(
        &self,
        level: Level,
        kind: &'static str,
        app: &Application,
        message: String,
    ) -> Result<()> {
        self.store()
            .record_event(&NewEvent {
                level,
                kind,
                application_id: Some(app.id),
                account_id: None,
                receiver_id: None,
                message,
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use oauthimap_types::{AccountState, StateChange};

    use super::*;

    fn fields() -> ApplicationFields {
        oauthimap_testkit::fixtures::application_fields("Helpdesk")
    }

    #[test]
    fn a_new_client_id_or_tenant_revokes_every_account_through_the_state_machine() {
        let old = fields();
        let mut new = fields();
        new.client_id = "99999999-2222-3333-4444-555555555555".into();
        new.tenant = Some("fabrikam.onmicrosoft.com".into());
        let (cascade, changed) = cascade_for(&old, &new, 2);
        assert_eq!(changed, ["client ID", "tenant"]);
        let why = "the application's client ID, tenant changed, so its authorizations no longer \
                   apply; authorize again";
        let revocation = cascade.revoke_accounts.expect("accounts are revoked");
        // Whatever state an account is in, it ends revoked: what the machine says.
        assert_eq!(
            revocation.change,
            StateChange {
                from: AccountState::ALL.to_vec(),
                to: AccountState::Revoked,
            }
        );
        for from in AccountState::ALL {
            assert_eq!(
                oauthimap_tokens::transition(*from, AccountEvent::Revoked),
                Ok(revocation.change.to)
            );
        }
        assert_eq!(revocation.reason, why);
        assert_eq!(cascade.deactivate_receivers.as_deref(), Some(why));
        assert_eq!(cascade.reactivate_paused_for, None);
    }

    #[test]
    fn without_accounts_or_grant_changes_nothing_is_revoked() {
        let old = fields();
        let mut new = fields();
        new.client_id = "99999999-2222-3333-4444-555555555555".into();
        let (cascade, changed) = cascade_for(&old, &new, 0);
        assert_eq!(changed, ["client ID"]);
        assert_eq!(cascade, ApplicationCascade::default());
        // A new name, comment or secret expiry keeps every authorization.
        new = fields();
        new.name = "Support".into();
        new.comment = "renamed".into();
        new.secret_expires_at = Some(1);
        let (cascade, changed) = cascade_for(&old, &new, 5);
        assert!(changed.is_empty());
        assert_eq!(cascade, ApplicationCascade::default());
    }

    #[test]
    fn switching_off_stops_receivers_and_switching_on_brings_them_back() {
        let on = fields();
        let off = ApplicationFields {
            active: false,
            ..fields()
        };
        let (cascade, _) = cascade_for(&on, &off, 3);
        assert_eq!(
            cascade,
            ApplicationCascade {
                deactivate_receivers: Some(PAUSED_APP_INACTIVE.into()),
                ..ApplicationCascade::default()
            }
        );
        let (cascade, _) = cascade_for(&off, &on, 3);
        assert_eq!(
            cascade,
            ApplicationCascade {
                reactivate_paused_for: Some(PAUSED_APP_INACTIVE.into()),
                ..ApplicationCascade::default()
            }
        );
        // Back on with a new client ID: the accounts are revoked, so nothing comes back.
        let moved = ApplicationFields {
            client_id: "99999999-2222-3333-4444-555555555555".into(),
            ..on
        };
        let (cascade, _) = cascade_for(&off, &moved, 3);
        assert!(cascade.revoke_accounts.is_some());
        assert_eq!(cascade.reactivate_paused_for, None);
        // Off with a new client ID: revoked, and the receivers stopped as the application is off.
        let (cascade, _) = cascade_for(
            &fields(),
            &ApplicationFields {
                active: false,
                ..moved
            },
            3,
        );
        assert!(cascade.revoke_accounts.is_some());
        assert_eq!(
            cascade.deactivate_receivers.as_deref(),
            Some(PAUSED_APP_INACTIVE)
        );
    }
}
