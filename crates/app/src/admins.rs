//! Admin users of the web UI: argon2id passwords, logins with a lockout that doubles after
//! repeated failures, sessions with idle and absolute expiry, and the one-time setup link that
//! creates the first admin when none exists. Session and setup tokens are 256-bit random values;
//! only their SHA-256 hashes are stored.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use oauthimap_store::{AdminSession, AdminUser, Level, NewEvent};
use oauthimap_types::now_millis;
use secrecy::{ExposeSecret, SecretString};

use crate::api_tokens::{random_token, sha256_hex};
use crate::{AppError, Core, Result};

/// Shortest accepted admin password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// First lockout after `web.login_failures_before_lock` failures; doubles up to `MAX_LOCK`.
const FIRST_LOCK: Duration = Duration::from_secs(30);
const MAX_LOCK: Duration = Duration::from_mins(15);

/// A new session: the cookie value (shown to the browser only) and its record.
#[derive(Debug)]
pub struct NewSession {
    pub token: SecretString,
    pub username: String,
    pub expires_at: i64,
}

fn check_username(username: &str) -> Result<&str> {
    let name = username.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(AppError::invalid(
            "username",
            "must be 1 to 64 characters, such as admin",
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AppError::invalid(
            "username",
            "must not contain spaces or control characters",
        ));
    }
    Ok(name)
}

fn check_password(password: &SecretString) -> Result<()> {
    let n = password.expose_secret().chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(AppError::invalid(
            "password",
            format!(
                "is {n} characters; use at least {MIN_PASSWORD_CHARS} (a passphrase of a few words is easiest)"
            ),
        ));
    }
    if n > 1024 {
        return Err(AppError::invalid(
            "password",
            "is longer than 1024 characters",
        ));
    }
    if let Some(why) = weakness(password.expose_secret()) {
        return Err(AppError::invalid(
            "password",
            format!(
                "{why}: it is among the first an attacker tries; use a passphrase of a few unrelated words"
            ),
        ));
    }
    Ok(())
}

/// Passwords of 12 characters or more that lists of leaked passwords still put near the top
/// (lowercase, compared ignoring case and spaces). ASVS 2.1.7 asks for such a check; length does
/// the rest.
const COMMON: &[&str] = &[
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "123456789012",
    "1234567890123",
    "12345678901234",
    "qwertyuiop123",
    "qwertyuiopasdf",
    "qwerty123456",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "letmein12345",
    "welcome12345",
    "iloveyou1234",
    "administrator",
    "administrator1",
    "adminadmin123",
    "changeme1234",
    "changemenow1",
    "trustno1trustno1",
    "football1234",
    "baseball1234",
    "sunshine1234",
    "princess1234",
    "monkey123456",
    "dragon123456",
    "starwars1234",
    "superman1234",
    "abc123456789",
    "p@ssw0rd1234",
    "passw0rd1234",
    "oauthimap123",
    "oauthimap1234",
    "helpdesk1234",
];

/// Why a long enough password is still weak, if it is: a common one, too few different
/// characters (`aaaaaaaaaaaa`, `121212121212`), or one run along the alphabet, the digits or a
/// keyboard row.
fn weakness(password: &str) -> Option<&'static str> {
    const RUNS: &[&str] = &[
        "abcdefghijklmnopqrstuvwxyz",
        "01234567890123456789",
        "qwertyuiopasdfghjklzxcvbnm",
        "zyxwvutsrqponmlkjihgfedcba",
        "98765432109876543210",
    ];
    let folded: String = password
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    if COMMON.contains(&folded.as_str()) {
        return Some("it is one of the most common passwords");
    }
    let distinct: std::collections::HashSet<char> = folded.chars().collect();
    if distinct.len() < 5 {
        return Some("it repeats too few different characters");
    }
    if RUNS.iter().any(|run| run.contains(folded.as_str())) {
        return Some("it is a run of neighbouring keys or letters");
    }
    None
}

/// Hashes with argon2id (default parameters, random salt) off the async threads.
pub(crate) async fn hash_password(password: &SecretString) -> Result<String> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AppError::Io {
                action: "hash the password".into(),
                source: std::io::Error::other(e.to_string()),
            })
    })
    .await
    .map_err(|e| AppError::Io {
        action: "hash the password".into(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Checks `password` against a PHC string; false for a mismatch or an unreadable hash.
pub(crate) async fn verify_password(password: &SecretString, phc: String) -> bool {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &hash)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, checked when the user does not exist so that a login for an
/// unknown name takes as long as one for a known name.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Verifies `password` against a dummy hash: the time a real check would take.
pub(crate) async fn verify_dummy(password: &SecretString) {
    let dummy = DUMMY_HASH.get_or_init(|| {
        Argon2::default()
            .hash_password(b"no such user, no such password")
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    let _ = verify_password(password, dummy.clone()).await;
}

impl Core {
    /// Creates an admin user (`oauthimap admin create`).
    pub async fn create_admin(&self, username: &str, password: &SecretString) -> Result<AdminUser> {
        let username = check_username(username)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        let user = self.store().insert_admin(username, &hash).await?;
        self.admin_event(format!("admin user {username} created"))
            .await?;
        Ok(user)
    }

    /// Creates the first admin through the one-time setup link.
    pub async fn create_admin_with_setup_link(
        &self,
        link: &SecretString,
        username: &str,
        password: &SecretString,
    ) -> Result<AdminUser> {
        let username = check_username(username)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        let user = self
            .store()
            .create_admin_with_setup_link(&sha256_hex(link.expose_secret()), username, &hash)
            .await?
            .ok_or_else(|| {
                AppError::Denied(
                    "this setup link is used, expired or no longer needed (an admin exists); \
                     create admins with `oauthimap admin create`"
                        .into(),
                )
            })?;
        self.admin_event(format!(
            "first admin user {username} created through the setup link"
        ))
        .await?;
        Ok(user)
    }

    /// Whether a setup link is still good (for showing the setup form).
    pub async fn setup_link_usable(&self, link: &SecretString) -> Result<bool> {
        Ok(self
            .store()
            .setup_link_usable(&sha256_hex(link.expose_secret()))
            .await?)
    }

    /// When no admin exists, a new one-time setup link `{base}/setup?token=...`. The token is in
    /// the query, which request logs never record; pages send no Referer.
    pub async fn new_setup_link(&self) -> Result<Option<url::Url>> {
        if self.store().admin_count().await? > 0 {
            return Ok(None);
        }
        let token = random_token(32)?;
        let secs = self.settings().web.setup_link_secs;
        self.store()
            .insert_setup_link(
                &sha256_hex(&token),
                now_millis() + i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            )
            .await?;
        let mut url = self.settings().external_base_url();
        let path = format!("{}/setup", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut().append_pair("token", &token);
        Ok(Some(url))
    }

    pub async fn list_admins(&self) -> Result<Vec<AdminUser>> {
        Ok(self.store().admins().await?)
    }

    /// Sets a new password and ends the user's sessions.
    pub async fn set_admin_password(&self, username: &str, password: &SecretString) -> Result<()> {
        check_password(password)?;
        let hash = hash_password(password).await?;
        self.store().set_admin_password(username, &hash).await?;
        self.admin_event(format!("password of admin user {username} changed"))
            .await
    }

    /// Lifts a lock after failed logins (the console's way back in when an attacker keeps the
    /// only admin locked).
    pub async fn unlock_admin(&self, username: &str) -> Result<()> {
        if !self.store().unlock_admin(username.trim()).await? {
            return Err(AppError::NotFound {
                what: "admin user",
                key: username.to_owned(),
                hint: "; `oauthimap admin list` shows them".into(),
            });
        }
        self.admin_event(format!("admin user {} unlocked", username.trim()))
            .await
    }

    pub async fn remove_admin(&self, username: &str) -> Result<()> {
        self.store().delete_admin(username).await?;
        self.admin_event(format!("admin user {username} deleted"))
            .await
    }

    /// Checks a login and opens a session. Unknown names, wrong passwords and users locked after
    /// repeated failures all get the same answer after the same password check, so the answer
    /// tells nothing about which names exist or are locked (`admin unlock` lifts a lock).
    pub async fn login(&self, username: &str, password: &SecretString) -> Result<NewSession> {
        const REFUSED: &str = "wrong username or password";
        let found = self.store().admin_credentials(username.trim()).await?;
        let Some(found) = found else {
            verify_dummy(password).await;
            return Err(AppError::Denied(REFUSED.into()));
        };
        let now = now_millis();
        if found.user.locked_until.is_some_and(|u| u > now) {
            // The same work as any other attempt, and the same answer, right password or not.
            let _ = verify_password(password, found.password_hash).await;
            return Err(AppError::Denied(REFUSED.into()));
        }
        if !verify_password(password, found.password_hash).await {
            let failures = found.user.failed_logins + 1;
            let threshold = self.settings().web.login_failures_before_lock as i64;
            let lock = (failures >= threshold).then(|| {
                let doublings = u32::try_from(failures - threshold)
                    .unwrap_or(u32::MAX)
                    .min(10);
                let wait = FIRST_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK);
                now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
            });
            self.store()
                .record_login_failure(found.user.id, lock)
                .await?;
            if lock.is_some() {
                self.store()
                    .record_event(&NewEvent {
                        level: Level::Warn,
                        kind: "admin.locked",
                        application_id: None,
                        account_id: None,
                        receiver_id: None,
                        message: format!(
                            "admin user {name} locked after {failures} failed logins in a row; it lifts by itself, or at once with `oauthimap admin unlock {name}`",
                            name = found.user.username
                        ),
                    })
                    .await?;
            }
            return Err(AppError::Denied(REFUSED.into()));
        }
        let token = random_token(32)?;
        let max = self.settings().web.session_max_secs;
        // From now, not from before the (slow) password check.
        let expires_at = now_millis() + i64::try_from(max.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.store()
            .open_admin_session(found.user.id, &sha256_hex(&token), expires_at)
            .await?;
        Ok(NewSession {
            token: SecretString::from(token),
            username: found.user.username,
            expires_at,
        })
    }

    /// The live session behind a cookie value, if any (it counts as activity).
    pub async fn admin_session(&self, token: &str) -> Result<Option<AdminSession>> {
        let idle = self.settings().web.session_idle_secs;
        let idle_since =
            now_millis() - i64::try_from(idle.saturating_mul(1000)).unwrap_or(i64::MAX);
        Ok(self
            .store()
            .touch_admin_session(&sha256_hex(token), idle_since)
            .await?)
    }

    pub async fn logout(&self, token: &str) -> Result<()> {
        Ok(self
            .store()
            .delete_admin_session(&sha256_hex(token))
            .await?)
    }

    async fn admin_event(&self, message: String) -> Result<()> {
        self.store()
            .record_event(&NewEvent {
                level: Level::Info,
                kind: "admin.changed",
                application_id: None,
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
    use super::*;

    #[test]
    fn long_but_guessable_passwords_are_refused() {
        for weak in [
            "password1234",
            "Password 1234",
            "aaaaaaaaaaaa",
            "121212121212",
            "abcdefghijklm",
            "qwertyuiopas",
            "123456789012",
            "OAuthIMAP123",
        ] {
            let err = check_password(&SecretString::from(weak.to_owned())).unwrap_err();
            assert!(err.to_string().contains("passphrase"), "{weak}: {err}");
        }
        for fine in [
            "correct horse battery staple",
            "a brand new passphrase",
            "Tr0ub4dor&3xyz",
        ] {
            assert!(
                check_password(&SecretString::from(fine.to_owned())).is_ok(),
                "{fine}"
            );
        }
    }
}
