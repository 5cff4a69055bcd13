//! The command line, declared with clap. Each doc comment is that command's `--help`.
// The doc comments here are --help text for people, so they are written as plain text.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use oauthimap_types::units::{DurationParseError, parse_duration};
use oauthimap_types::{AfterDelivery, Cloud, Mechanism, Provider, Security, SinkKind, Trigger};

/// Durations on the command line (`90s`, `15m`, `5d`) read as in the configuration file.
fn duration(text: &str) -> Result<Duration, DurationParseError> {
    parse_duration(text)
}

/// OAuth2 for IMAP mail collectors: register OAuth applications (Microsoft Entra ID, Google,
/// generic), keep their authorizations alive, and collect mail with SASL XOAUTH2/OAUTHBEARER.
///
/// Settings come from defaults, then the TOML file (--config or OAUTHIMAP_CONFIG), then
/// OAUTHIMAP_* environment variables (docs/configuration.md lists them).
#[derive(Debug, Parser)]
#[command(
    name = "oauthimap",
    bin_name = "oauthimap",
    version,
    max_term_width = 100
)]
pub struct Cli {
    /// The TOML configuration file.
    #[arg(long, global = true, env = "OAUTHIMAP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print data as JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug); `serve` uses the configured log level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: the HTTP listener (health, and later UI, API and OAuth callback).
    /// Stops gracefully on SIGTERM or Ctrl-C.
    Serve,
    /// Manage OAuth applications (the client registered at Microsoft, Google or another provider).
    #[command(subcommand)]
    App(AppCommand),
    /// Manage accounts: the authorized mailboxes of an application.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage receivers: mail collectors that log in with an account's token.
    #[command(subcommand)]
    Receiver(ReceiverCommand),
    /// Manage the master keys that seal secrets in the database.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a valid access token for an account (refreshing it if needed), for other mail tools:
    /// msmtp `passwordeval`, mbsync `PassCmd`, fetchmail `passwordfile`... It asks the running
    /// service over its socket (broker.socket) first, and opens the database only when no
    /// service answers there; --server asks a service on another machine.
    Token {
        /// Account id or mailbox.
        account: String,
        /// The application, when the mailbox is authorized in several.
        #[arg(long)]
        app: Option<String>,
        /// Get a new token even if the current one is still valid.
        #[arg(long)]
        force: bool,
        /// Print the base64 SASL initial response instead: xoauth2 or oauthbearer.
        #[arg(long, value_name = "MECHANISM")]
        sasl: Option<Mechanism>,
        /// OAUTHBEARER only: the server name it binds to (default: the provider's IMAP server).
        #[arg(long, requires = "port")]
        host: Option<String>,
        /// OAUTHBEARER only: the server port.
        #[arg(long, requires = "host")]
        port: Option<u16>,
        /// Ask the oauthimap service at this URL over its REST API (from another machine)
        /// instead of the local one; needs --api-token-file.
        #[arg(long, value_name = "URL", requires = "api_token_file")]
        server: Option<url::Url>,
        /// A file holding an API token with the tokens:read scope, for --server.
        #[arg(long, value_name = "PATH", requires = "server")]
        api_token_file: Option<PathBuf>,
    },
    /// Check that an account can log in to its IMAP server, step by step (DNS, TCP, TLS,
    /// capabilities, token claims, authentication, folder), with hints for known failures and the
    /// protocol transcript (tokens redacted). Defaults come from the account's receiver, then the
    /// provider (outlook.office365.com:993, imap.gmail.com:993).
    Diagnose {
        /// Account id or mailbox.
        account: String,
        /// The application, when the mailbox is authorized in several.
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        /// tls, starttls or plain (loopback only).
        #[arg(long)]
        security: Option<Security>,
        /// auto, xoauth2 or oauthbearer.
        #[arg(long)]
        mechanism: Option<Mechanism>,
        /// The folder to select.
        #[arg(long)]
        folder: Option<String>,
        /// An extra CA certificate (PEM) to trust.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<String>,
        /// Limit for each network step.
        #[arg(long, default_value = "20s", value_parser = duration)]
        timeout: Duration,
        /// Also print the protocol transcript.
        #[arg(long)]
        transcript: bool,
        /// Also log in to the account's SMTP server as the gateway's submission side would
        /// (done anyway when [gateway] submission_listen is set); names a missing SMTP scope.
        #[arg(long)]
        smtp: bool,
    },
    /// Collect mail: one pass over every active receiver (or one), with a progress bar on a
    /// terminal and a summary (available, delivered, already seen, refused, failed). `serve`
    /// collects continuously.
    Collect {
        /// One pass and exit (the only mode for now; `serve` keeps receivers running).
        #[arg(long, required = true)]
        once: bool,
        /// Only this receiver (name or id).
        #[arg(long)]
        receiver: Option<String>,
        /// While a sink is down, keep retrying (with back-off, honouring Retry-After) for up to
        /// this long before giving up with exit 1; the held message and everything after it stay
        /// on the server, and the next run carries on from it. `0s` gives up at once.
        #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = duration)]
        retry_for: Duration,
    },
    /// Messages collected into the built-in store.
    #[command(subcommand)]
    Messages(MessagesCommand),
    /// Manage the web admin's users (argon2id passwords).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage API tokens for the REST API and the HTTP token broker.
    #[command(subcommand, name = "api-token")]
    ApiToken(ApiTokenCommand),
    /// Import from another tool: `import glpi` takes over GLPI's OAuth IMAP plugin.
    #[command(subcommand)]
    Import(ImportCommand),
    /// The gateway for password-only mail clients (GLPI's own mail collector, fetchmail, …):
    /// per-client gateway passwords and the servers it connects to.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Print shell completions for bash, zsh or fish (`source <(oauthimap completions bash)`).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (oauthimap.1 and one per subcommand) into a folder.
    Man {
        /// Where to write them.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Show recent events (audit and health), newest first.
    Events {
        /// Only events of this account (id or mailbox).
        #[arg(long)]
        account: Option<String>,
        /// How many events.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an application. The client secret is read from a hidden prompt, from stdin
    /// (--client-secret-stdin) or from a file, never from the command line.
    Add(AppArgs),
    /// List applications.
    List,
    /// Show an application, the redirect URL to register, and its provider setup.
    Show {
        /// Name or id.
        app: String,
    },
    /// Change an application. Changing provider, cloud, client ID, tenant or endpoints revokes
    /// its accounts (and asks for --confirm first); changing only the secret keeps them.
    Update {
        /// Name or id.
        app: String,
        #[command(flatten)]
        args: AppArgs,
        /// Go ahead with a change that revokes the application's accounts and stops their
        /// receivers (without it, such a change is refused and names them).
        #[arg(long)]
        confirm: bool,
    },
    /// Remove an application.
    Remove {
        /// Name or id.
        app: String,
        /// Also remove its accounts and receivers.
        #[arg(long)]
        cascade: bool,
    },
}

#[derive(Debug, Args)]
pub struct AppArgs {
    /// Display name (unique).
    #[arg(long)]
    pub name: Option<String>,
    /// microsoft, google or generic.
    #[arg(long)]
    pub provider: Option<Provider>,
    /// Microsoft national cloud: global, usgov, dod or china.
    #[arg(long)]
    pub cloud: Option<Cloud>,
    /// The Application (client) ID.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Read the client secret from the first line of stdin.
    #[arg(long, conflicts_with_all = ["client_secret_file", "no_client_secret", "clear_client_secret"])]
    pub client_secret_stdin: bool,
    /// Read the client secret from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_client_secret", "clear_client_secret"])]
    pub client_secret_file: Option<PathBuf>,
    /// Register without a client secret (public client) and do not prompt for one.
    #[arg(long)]
    pub no_client_secret: bool,
    /// Remove the stored client secret (update only).
    #[arg(long)]
    pub clear_client_secret: bool,
    /// Microsoft: Directory (tenant) ID or domain; common, organizations or consumers. Empty clears.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Microsoft/Google: replace the sign-in host (https://; http only to loopback). Empty clears.
    #[arg(long, value_name = "URL")]
    pub endpoint_base: Option<String>,
    /// Generic: authorization endpoint.
    #[arg(long, value_name = "URL")]
    pub authorize_url: Option<String>,
    /// Generic: token endpoint.
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// Generic: device authorization endpoint (RFC 8628).
    #[arg(long, value_name = "URL")]
    pub device_url: Option<String>,
    /// Generic: OpenID userinfo endpoint.
    #[arg(long, value_name = "URL")]
    pub userinfo_url: Option<String>,
    /// Space-separated scopes, instead of the provider's defaults. Empty restores the defaults.
    #[arg(long)]
    pub scopes: Option<String>,
    /// When the client secret expires (YYYY-MM-DD), for an early warning. Empty clears.
    #[arg(long, value_name = "DATE")]
    pub secret_expires: Option<String>,
    /// Free text.
    #[arg(long)]
    pub comment: Option<String>,
    /// Switch the application on or off (off also deactivates its receivers).
    #[arg(long, value_name = "BOOL")]
    pub active: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// List accounts.
    List {
        /// Only the accounts of this application (name or id).
        #[arg(long)]
        app: Option<String>,
    },
    /// Show an account's state, token expiry and last error (never the tokens).
    Show {
        /// Id or mailbox.
        account: String,
        /// The application, when the mailbox is authorized in several.
        #[arg(long)]
        app: Option<String>,
    },
    /// Authorize a mailbox: prints a sign-in URL and waits for the provider's callback (on the
    /// running service, or on a temporary listener at the listen address when none runs).
    /// With --device, the device-code flow for servers without a browser.
    Authorize {
        /// The application (name or id).
        #[arg(long)]
        app: String,
        /// Log in to this mailbox instead of the signed-in user's own (a shared mailbox).
        #[arg(long)]
        mailbox: Option<String>,
        /// Use the device-code flow: sign in on any other device with a code.
        #[arg(long)]
        device: bool,
        /// Suggest this account on the provider's sign-in page.
        #[arg(long)]
        login_hint: Option<String>,
        /// How long to wait for the sign-in.
        #[arg(long, default_value = "10m", value_parser = duration)]
        timeout: Duration,
    },
    /// Create an app-only account (Microsoft client credentials): no user signs in; the
    /// application needs IMAP.AccessAsApp and an Exchange service principal (see `app show`).
    AddAppOnly {
        /// The application (name or id).
        #[arg(long)]
        app: String,
        /// The mailbox to collect from.
        #[arg(long)]
        mailbox: String,
    },
    /// Remove an account; its receivers are kept but deactivated.
    Remove {
        /// Id or mailbox.
        account: String,
        #[arg(long)]
        app: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReceiverCommand {
    /// Add a receiver. Server, port and security default to the provider's IMAP server.
    Add(ReceiverArgs),
    /// List receivers.
    List,
    /// Show a receiver.
    Show {
        /// Name or id.
        receiver: String,
    },
    /// Change a receiver.
    Update {
        /// Name or id.
        receiver: String,
        #[command(flatten)]
        args: ReceiverArgs,
    },
    /// Remove a receiver.
    Remove {
        /// Name or id.
        receiver: String,
    },
}

#[derive(Debug, Args)]
pub struct ReceiverArgs {
    /// Display name (unique).
    #[arg(long)]
    pub name: Option<String>,
    /// The OAuth application (name or id).
    #[arg(long)]
    pub app: Option<String>,
    /// The authorized account to log in as (id or mailbox). Empty detaches it.
    #[arg(long)]
    pub account: Option<String>,
    /// IMAP server; defaults to the provider's (outlook.office365.com, imap.gmail.com).
    #[arg(long)]
    pub host: Option<String>,
    /// Port; defaults to 993 for tls, 143 otherwise.
    #[arg(long)]
    pub port: Option<u16>,
    /// tls (implicit, 993), starttls (143) or plain (loopback only).
    #[arg(long)]
    pub security: Option<Security>,
    /// SASL mechanism: auto, xoauth2 or oauthbearer.
    #[arg(long)]
    pub mechanism: Option<Mechanism>,
    /// Folder to collect from.
    #[arg(long)]
    pub folder: Option<String>,
    /// idle (with polling fallback) or poll.
    #[arg(long)]
    pub trigger: Option<Trigger>,
    /// Polling interval, such as 5m or 90s.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub poll_interval: Option<Duration>,
    /// After delivery: mark_seen, move or delete.
    #[arg(long = "after")]
    pub after_delivery: Option<AfterDelivery>,
    /// Folder for delivered mail (with --after move).
    #[arg(long)]
    pub accepted_folder: Option<String>,
    /// Folder for refused mail (too large, unparsable). Empty clears.
    #[arg(long)]
    pub refused_folder: Option<String>,
    /// Largest message accepted, in bytes (suffixes k, M, G allowed).
    #[arg(long, value_name = "SIZE")]
    pub size_limit: Option<String>,
    /// Where mail goes: store, webhook, maildir or command.
    #[arg(long)]
    pub sink: Option<SinkKind>,
    /// Webhook URL, maildir path or command line.
    #[arg(long)]
    pub sink_target: Option<String>,
    /// Make a new webhook signing secret (printed once); webhook receivers get one when created.
    #[arg(long)]
    pub new_sink_secret: bool,
    /// Extra CA certificate (PEM file) to trust for this server. Empty clears.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<String>,
    /// Switch the receiver on or off.
    #[arg(long, value_name = "BOOL")]
    pub active: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new master key, re-seal every secret under it, and retire the old keys.
    /// Safe while the service runs. Copy the key file first if you must open older backups.
    Rotate,
    /// Re-seal every secret under the current primary key (resumes an interrupted rotation).
    Reseal,
    /// Show the keys and how many secrets each seals.
    Status,
    /// Print a new random key for OAUTHIMAP_MASTER_KEY.
    Generate {
        /// The key id.
        #[arg(long, default_value_t = 1)]
        id: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// List stored messages, newest first.
    List {
        /// Only messages whose sender or subject contains this.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one message (headers, text, attachments), or its raw bytes with --raw.
    Show {
        id: i64,
        #[arg(long)]
        raw: bool,
    },
    /// The delivery ledger of a receiver: what was delivered, refused, failed or set aside.
    Ledger {
        /// Receiver name or id.
        receiver: Option<String>,
        /// delivered, refused, failed or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Try the receiver's set-aside (dead-letter) messages again on its next pass.
    Retry {
        /// Receiver name or id.
        receiver: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin user for the web UI. The password is read from a hidden prompt (asked
    /// twice) or from stdin (--password-stdin), never from the command line.
    Create {
        /// The login name.
        username: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (ends the user's sessions).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List admin users (with failed logins and any lock).
    List,
    /// Lift the lock after repeated failed logins, at once (the web login page never says a
    /// user is locked, so that it tells an attacker nothing).
    Unlock { username: String },
    /// Delete an admin user (ends their sessions).
    Remove { username: String },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Take over GLPI's "OAuth IMAP" plugin: its applications (with their secrets) and its
    /// authorized mailboxes (with their refresh tokens), so no one signs in again. Each imported
    /// account is refreshed once to prove its grant works. Running it twice changes nothing.
    Glpi {
        /// GLPI's database: mysql://USER:PASSWORD@HOST[:PORT]/DATABASE.
        #[arg(
            long,
            required_unless_present = "database_file",
            conflicts_with = "database_file"
        )]
        database: Option<String>,
        /// A file holding the database URL (keeps the password off the command line).
        #[arg(long)]
        database_file: Option<PathBuf>,
        /// GLPI's key file, glpicrypt.key (in GLPI's config folder, e.g. /etc/glpi).
        #[arg(long)]
        key_file: PathBuf,
        /// Show what would be imported; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not refresh the imported accounts once.
        #[arg(long)]
        no_verify: bool,
        /// The identity provider's base URL, when it is not the public one.
        #[arg(long)]
        endpoint_base: Option<String>,
        /// Hand GLPI's collectors that use the plugin over to oauthimap's gateway: a gateway
        /// password each, and their rows rewritten (server, login, password sealed for GLPI) in
        /// one transaction, after their old rows are written to --backup.
        #[arg(long, requires = "gateway_host")]
        rewrite_collectors: bool,
        /// The gateway's host as GLPI reaches it.
        #[arg(long)]
        gateway_host: Option<String>,
        /// The gateway's port (default 993 with tls, 143 otherwise).
        #[arg(long)]
        gateway_port: Option<u16>,
        /// tls (IMAPS), starttls or plain (loopback only).
        #[arg(long, default_value = "tls")]
        gateway_security: Security,
        /// Where the SQL that restores the collectors' old rows goes (`mysql glpi < FILE`).
        #[arg(long, default_value = "glpi-collectors-before-oauthimap.sql")]
        backup: PathBuf,
        /// Also make a switched-off oauthimap receiver from each of those collectors (server,
        /// folder, accepted and refused folders), for sites that want oauthimap's collector.
        #[arg(long)]
        as_receivers: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// The listeners (each probed), the running service's open sessions per protocol, and
    /// every gateway password's last use.
    Status,
    /// Gateway passwords: one per client, never the mailbox's own password.
    #[command(subcommand)]
    Password(GatewayPasswordCommand),
    /// The server the gateway opens for an application or an account, per protocol (default:
    /// the provider's: outlook.office365.com:993/995 and smtp.office365.com:587, or
    /// imap.gmail.com:993, pop.gmail.com:995 and smtp.gmail.com:587).
    #[command(subcommand)]
    Upstream(UpstreamCommand),
}

#[derive(Debug, Subcommand)]
pub enum GatewayPasswordCommand {
    /// Create a random password for one client of an account's mailbox; it is printed once.
    /// The client logs in to the gateway with the mailbox address and this password.
    Add {
        /// The account (id or mailbox).
        account: String,
        /// The account's application, when the mailbox is authorized in several.
        #[arg(long)]
        app: Option<String>,
        /// Which client it is for, such as glpi or scanner-2nd-floor.
        #[arg(long)]
        name: String,
        /// The protocols it may be used for (comma-separated: imap,pop3,smtp; default all).
        #[arg(long, value_delimiter = ',')]
        protocols: Vec<String>,
        /// When it stops working: a date (2027-06-30) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List gateway passwords (never the passwords): name, account, protocols, created, last
    /// used and from where.
    List {
        /// Only those of this account (id or mailbox).
        account: Option<String>,
        #[arg(long)]
        app: Option<String>,
    },
    /// Revoke a gateway password.
    Remove {
        /// The account (id or mailbox).
        account: String,
        /// The password's name.
        name: String,
        #[arg(long)]
        app: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// Use this server for one protocol of an application's or an account's mailboxes.
    Set {
        /// imap (default port 993), pop3 (995) or smtp (587).
        #[arg(long, default_value = "imap", value_parser = ["imap", "pop3", "smtp"])]
        protocol: String,
        /// For every account of this application.
        #[arg(long, required_unless_present = "account", conflicts_with = "account")]
        app: Option<String>,
        /// For this account only (id or mailbox).
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        host: String,
        /// Default: 993 for imap, 995 for pop3, 587 for smtp.
        #[arg(long)]
        port: Option<u16>,
        /// tls (implicit TLS), starttls or plain (loopback only). Default: starttls for smtp,
        /// tls otherwise.
        #[arg(long)]
        security: Option<Security>,
        /// An extra CA certificate (PEM) to trust for this server.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Go back to the provider's own server.
    Clear {
        /// imap, pop3 or smtp.
        #[arg(long, default_value = "imap", value_parser = ["imap", "pop3", "smtp"])]
        protocol: String,
        #[arg(long, required_unless_present = "account", conflicts_with = "account")]
        app: Option<String>,
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create an API token; its value is printed once and never stored.
    Create {
        /// A name for the token (who or what uses it).
        #[arg(long)]
        name: String,
        /// Scopes: tokens:read (the token broker) or admin (everything).
        #[arg(long = "scope", default_values_t = ["tokens:read".to_owned()])]
        scopes: Vec<String>,
    },
    /// List API tokens (never their values).
    List,
    /// Remove an API token.
    Remove {
        /// Its name.
        name: String,
    },
}
