//! The import from GLPI's OAuth IMAP plugin against a real `MariaDB`, with every sealed value
//! written by PHP's own libsodium (as `GLPIKey` does), and refreshes at the fake identity provider:
//! nobody signs in again, a second run changes nothing, and bad input names what is wrong with
//! nothing written.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::path::{Path, PathBuf};

use oauthimap_app::{GlpiImport, ImportLine};
use oauthimap_store::Backend;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;

mod common;
use common::{Harness, SECRET, USER, harness, start_gateway};

const AZURE: &str = r"GlpiPlugin\Oauthimap\Provider\Azure";

/// The `MariaDB` server of the tests (default: the local one, root without a password).
fn server_url() -> String {
    std::env::var("OAUTHIMAP_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A fresh database for one test, with GLPI's tables (as the plugin and GLPI create them).
async fn glpi_database(with_plugin: bool) -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    let name = format!("glpi_test_{}", uuid.trim().replace('-', ""));
    let mut conn = sqlx::MySqlConnection::connect(&server_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} CHARACTER SET utf8mb4"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let url = format!("{}/{name}", server_url());
    let mut db = sqlx::MySqlConnection::connect(&url).await.unwrap();
    let mut ddl = String::from(
        "CREATE TABLE glpi_mailcollectors (id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         name varchar(255), host varchar(255), login varchar(255), filesize_max int NOT NULL DEFAULT 2097152, \
         is_active tinyint NOT NULL DEFAULT 1, date_mod timestamp NULL, comment text, passwd varchar(255), \
         accepted varchar(255), refused varchar(255), errors int NOT NULL DEFAULT 0, use_mail_date tinyint NOT NULL DEFAULT 0, \
         date_creation timestamp NULL, requester_field int NOT NULL DEFAULT 0, add_cc_to_observer tinyint NOT NULL DEFAULT 0, \
         collect_only_unread tinyint NOT NULL DEFAULT 0, create_user_from_email tinyint NOT NULL DEFAULT 0, \
         last_collect_date timestamp NULL);",
    );
    if with_plugin {
        ddl.push_str(
            "CREATE TABLE glpi_plugin_oauthimap_applications (id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             name varchar(255), comment text, is_active tinyint NOT NULL DEFAULT 0, provider varchar(255), \
             client_id varchar(255), client_secret text, tenant_id varchar(255), date_creation timestamp NULL, \
             date_mod timestamp NULL); \
             CREATE TABLE glpi_plugin_oauthimap_authorizations (id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             plugin_oauthimap_applications_id int unsigned NOT NULL DEFAULT 0, email varchar(255), code text, \
             token text, refresh_token text, date_creation timestamp NULL, date_mod timestamp NULL);",
        );
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(&mut db)
        .await
        .unwrap();
    url
}

async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap();
    let mut conn = sqlx::MySqlConnection::connect(&server_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Seals values with PHP's libsodium exactly as `GLPIKey::encrypt` does.
fn php_seal(key: &Path, values: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("php")
        .args([
            "-r",
            r#"$k = file_get_contents($argv[1]);
foreach (array_slice($argv, 2) as $v) {
    $n = random_bytes(SODIUM_CRYPTO_AEAD_XCHACHA20POLY1305_IETF_NPUBBYTES);
    echo base64_encode($n . sodium_crypto_aead_xchacha20poly1305_ietf_encrypt($v, $n, $n, $k)), "\n";
}"#,
            "--",
        ])
        .arg(key)
        .args(values)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Opens a value with PHP's libsodium (what GLPI does with a collector's password).
fn php_open(key: &Path, sealed: &str) -> String {
    let out = std::process::Command::new("php")
        .args([
            "-r",
            r"$k = file_get_contents($argv[1]); $raw = base64_decode($argv[2]);
$n = substr($raw, 0, 24);
$v = sodium_crypto_aead_xchacha20poly1305_ietf_decrypt(substr($raw, 24), $n, $n, $k);
if ($v === false) { exit(3); } echo $v;",
            "--",
        ])
        .arg(key)
        .arg(sealed)
        .output()
        .unwrap();
    assert!(out.status.success(), "PHP could not open it");
    String::from_utf8(out.stdout).unwrap()
}

async fn exec(url: &str, sql: &str, binds: &[Option<&str>]) {
    let mut db = sqlx::MySqlConnection::connect(url).await.unwrap();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for b in binds {
        q = q.bind(b.map(str::to_owned));
    }
    q.execute(&mut db).await.unwrap();
}

/// A refresh token the fake identity provider accepts for the client `ms-client`, got by
/// signing in once through oauthimap's own flow.
async fn live_refresh_token(h: &Harness) -> String {
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    h.app
        .store()
        .account_tokens(account.id)
        .await
        .unwrap()
        .refresh_token
        .unwrap()
        .expose_secret()
        .to_owned()
}

struct Site {
    url: String,
    key: PathBuf,
    dir: tempfile::TempDir,
}

/// A GLPI site: one Azure application "Helpdesk GLPI" with its secret, two authorizations (one
/// from before plugin 1.3.1, its refresh token only inside `token`), and one collector using it.
async fn site(h: &Harness) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("glpicrypt.key");
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut bytes,
    )
    .unwrap();
    std::fs::write(&key, bytes).unwrap();
    let url = glpi_database(true).await;
    let refresh = live_refresh_token(h).await;
    let old_token = format!(
        r#"{{"access_token":"old-access","expires":1600000000,"refresh_token":"{refresh}"}}"#
    );
    let sealed = php_seal(
        &key,
        &[
            SECRET,
            r#"{"access_token":"a","expires":1600000000}"#,
            &refresh,
            &old_token,
        ],
    );
    exec(
        &url,
        "INSERT INTO glpi_plugin_oauthimap_applications (id, name, comment, is_active, provider, client_id, client_secret, tenant_id) \
         VALUES (3, 'Helpdesk GLPI', 'from the plugin', 1, ?, 'ms-client', ?, 'contoso.onmicrosoft.com')",
        &[Some(AZURE), Some(&sealed[0])],
    )
    .await;
    exec(
        &url,
        "INSERT INTO glpi_plugin_oauthimap_authorizations (plugin_oauthimap_applications_id, email, code, token, refresh_token) \
         VALUES (3, ?, 'code-1', ?, ?), (3, 'old@contoso.com', 'code-2', ?, NULL)",
        &[Some(USER), Some(&sealed[1]), Some(&sealed[2]), Some(&sealed[3])],
    )
    .await;
    exec(
        &url,
        "INSERT INTO glpi_mailcollectors (name, host, login, is_active, accepted, refused) VALUES \
         ('Helpdesk', '{outlook.office365.com:993/imap-oauth-3/ssl}INBOX', ?, 1, 'Processed', 'Refused'), \
         ('Plain', '{mail.example.com:993/imap/ssl}INBOX', 'x', 1, '', '')",
        &[Some(USER)],
    )
    .await;
    Site { url, key, dir }
}

fn import(h: &Harness, site: &Site, dry_run: bool) -> GlpiImport {
    GlpiImport {
        database: SecretString::from(site.url.clone()),
        key_file: site.key.clone(),
        dry_run,
        verify: true,
        endpoint_base: Some(h.idp.base_url().to_owned()),
        rewrite: None,
        as_receivers: false,
    }
}

fn outcomes(lines: &[ImportLine]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .map(|l| (l.kind.to_owned(), l.name.clone(), l.outcome.to_owned()))
        .collect()
}

fn o(kind: &str, name: &str, outcome: &str) -> (String, String, String) {
    (kind.into(), name.into(), outcome.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_applications_and_mailboxes_move_without_a_new_sign_in() {
    let h = harness(Backend::Sqlite, &[]).await;
    let site = site(&h).await;

    // A dry run shows everything and writes nothing.
    let lines = h.app.import_glpi(&import(&h, &site, true)).await.unwrap();
    assert_eq!(
        outcomes(&lines),
        vec![
            o("application", "Helpdesk GLPI", "would import"),
            o("account", USER, "would import"),
            o("account", "old@contoso.com", "would import"),
            o("collector", "Helpdesk", "found"),
        ]
    );
    assert!(
        h.app.find_application("Helpdesk GLPI").await.is_err(),
        "nothing written"
    );

    // The import: the grant works at once (refreshed at the provider), nobody signs in.
    let lines = h.app.import_glpi(&import(&h, &site, false)).await.unwrap();
    let got = outcomes(&lines);
    assert_eq!(got[0], o("application", "Helpdesk GLPI", "imported"));
    assert_eq!(got[1], o("account", USER, "imported"), "{lines:?}");
    assert_eq!(got[3], o("collector", "Helpdesk", "found"));
    let app = h.app.find_application("Helpdesk GLPI").await.unwrap();
    assert!(app.has_client_secret && app.fields.active);
    assert_eq!(
        app.fields.tenant.as_deref(),
        Some("contoso.onmicrosoft.com")
    );
    assert_eq!(app.fields.comment, "from the plugin");
    let accounts = h.app.list_accounts(Some("Helpdesk GLPI")).await.unwrap();
    assert_eq!(accounts.len(), 2);
    let help = accounts.iter().find(|a| a.mailbox == USER).unwrap();
    assert!(help.has_refresh_token && help.has_access_token, "{help:?}");
    let token = h.app.tokens().access_token(help.id, false).await.unwrap();
    assert!(!token.secret.expose_secret().is_empty());
    // The account from before plugin 1.3.1 had its refresh token inside `token`; it was
    // refreshed with it (the fake provider may have rotated the first one by then).
    let old = accounts
        .iter()
        .find(|a| a.mailbox == "old@contoso.com")
        .unwrap();
    assert!(old.has_refresh_token);
    assert!(
        matches!(lines[2].outcome, "imported" | "failed"),
        "{:?}",
        lines[2]
    );

    // Twice: nothing changes.
    let again = h.app.import_glpi(&import(&h, &site, false)).await.unwrap();
    assert_eq!(
        outcomes(&again),
        vec![
            o("application", "Helpdesk GLPI", "already present"),
            o("account", USER, "already present"),
            o("account", "old@contoso.com", "already present"),
            o("collector", "Helpdesk", "found"),
        ]
    );
    assert_eq!(
        h.app
            .list_accounts(Some("Helpdesk GLPI"))
            .await
            .unwrap()
            .len(),
        2
    );

    // --as-receivers: a switched-off receiver per collector, with its server and folders.
    let lines = h
        .app
        .import_glpi(&GlpiImport {
            as_receivers: true,
            ..import(&h, &site, false)
        })
        .await
        .unwrap();
    let line = lines.iter().find(|l| l.kind == "receiver").unwrap();
    assert_eq!(
        (line.name.as_str(), line.outcome),
        ("glpi-Helpdesk", "imported"),
        "{lines:?}"
    );
    let r = h.app.find_receiver("glpi-Helpdesk").await.unwrap();
    assert!(!r.fields.active);
    assert_eq!(
        (
            r.fields.host.as_str(),
            r.fields.port,
            r.fields.folder.as_str()
        ),
        ("outlook.office365.com", 993, "INBOX")
    );
    assert_eq!(r.fields.accepted_folder.as_deref(), Some("Processed"));
    assert_eq!(r.fields.refused_folder.as_deref(), Some("Refused"));
    assert_eq!(r.account_mailbox.as_deref(), Some(USER));
    assert_eq!(r.application_name, "Helpdesk GLPI");

    // Signing in again later adopts the imported account rather than adding a second one.
    let before = h
        .app
        .list_accounts(Some("Helpdesk GLPI"))
        .await
        .unwrap()
        .len();
    let (status, page) = h.sign_in("Helpdesk GLPI", None).await;
    assert_eq!(status, 200, "{page}");
    let after = h.app.list_accounts(Some("Helpdesk GLPI")).await.unwrap();
    assert_eq!(after.len(), before, "{after:?}");

    // What oauthimap seals for GLPI opens with PHP's libsodium.
    let key = oauthimap_glpi_key(&site.key);
    assert_eq!(php_open(&site.key, &key), "gateway-password-1");
    drop_database(&site.url).await;
    h.t.cleanup().await;
}

fn oauthimap_glpi_key(path: &Path) -> String {
    oauthimap_glpi::GlpiKey::from_file(path)
        .unwrap()
        .seal(&SecretString::from("gateway-password-1".to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_nothing_is_written() {
    let h = harness(Backend::Sqlite, &[]).await;
    let site = site(&h).await;
    let apps_before = h.app.list_applications().await.unwrap().len();
    let err = |e: oauthimap_app::AppError| e.to_string();

    // A wrong key file: the authentication tag fails, the error names the key file.
    let wrong = site.dir.path().join("other.key");
    std::fs::write(&wrong, [9u8; 32]).unwrap();
    let e = err(h
        .app
        .import_glpi(&GlpiImport {
            key_file: wrong.clone(),
            ..import(&h, &site, false)
        })
        .await
        .unwrap_err());
    assert!(
        e.contains("other.key") && e.contains("authentication failed"),
        "{e}"
    );
    // A key file of the wrong size.
    std::fs::write(&wrong, [9u8; 16]).unwrap();
    let e = err(h
        .app
        .import_glpi(&GlpiImport {
            key_file: wrong.clone(),
            ..import(&h, &site, false)
        })
        .await
        .unwrap_err());
    assert!(e.contains("16 bytes"), "{e}");
    // The plugin not installed.
    let bare = glpi_database(false).await;
    let e = err(h
        .app
        .import_glpi(&GlpiImport {
            database: SecretString::from(bare.clone()),
            ..import(&h, &site, false)
        })
        .await
        .unwrap_err());
    assert!(
        e.contains("glpi_plugin_oauthimap_applications") && e.contains("plugin installed"),
        "{e}"
    );
    drop_database(&bare).await;
    // The database unreachable, or not a MySQL URL.
    let e = err(h
        .app
        .import_glpi(&GlpiImport {
            database: SecretString::from("mysql://root:topsecret@127.0.0.1:1/glpi".to_owned()),
            ..import(&h, &site, false)
        })
        .await
        .unwrap_err());
    assert!(
        e.contains("cannot reach GLPI's database 127.0.0.1/glpi"),
        "{e}"
    );
    assert!(!e.contains("topsecret"), "no password in errors: {e}");
    let e = err(h
        .app
        .import_glpi(&GlpiImport {
            database: SecretString::from("postgres://u:topsecret@x/y".to_owned()),
            ..import(&h, &site, false)
        })
        .await
        .unwrap_err());
    assert!(e.contains("mysql://") && !e.contains("topsecret"), "{e}");
    // A sealed value that is not base64.
    exec(&site.url, "UPDATE glpi_plugin_oauthimap_authorizations SET refresh_token = 'not base64!' WHERE email = ?", &[Some(USER)]).await;
    let e = err(h
        .app
        .import_glpi(&import(&h, &site, false))
        .await
        .unwrap_err());
    assert!(
        e.contains("refresh_token of row 1") && e.contains("not base64"),
        "{e}"
    );
    assert_eq!(
        h.app.list_applications().await.unwrap().len(),
        apps_before,
        "nothing written"
    );

    // An unknown provider class and a refused refresh token: reported on their rows, the
    // rest imported.
    let sealed = php_seal(&site.key, &["not-a-live-refresh-token", SECRET]);
    exec(
        &site.url,
        "UPDATE glpi_plugin_oauthimap_authorizations SET refresh_token = ? WHERE email = ?",
        &[Some(&sealed[0]), Some(USER)],
    )
    .await;
    exec(
        &site.url,
        "INSERT INTO glpi_plugin_oauthimap_applications (id, name, is_active, provider, client_id, client_secret) \
         VALUES (4, 'Yahoo', 1, 'GlpiPlugin\\\\Oauthimap\\\\Provider\\\\Yahoo', 'y', ?)",
        &[Some(&sealed[1])],
    )
    .await;
    let lines = h.app.import_glpi(&import(&h, &site, false)).await.unwrap();
    let yahoo = lines.iter().find(|l| l.name == "Yahoo").unwrap();
    assert_eq!(yahoo.outcome, "failed");
    assert!(
        yahoo
            .detail
            .as_deref()
            .unwrap()
            .contains("unknown provider class"),
        "{yahoo:?}"
    );
    let refused = lines.iter().find(|l| l.name == USER).unwrap();
    assert_eq!(refused.outcome, "failed", "{lines:?}");
    assert!(
        refused.detail.as_deref().unwrap().contains("invalid_grant"),
        "{refused:?}"
    );
    assert_eq!(
        lines
            .iter()
            .find(|l| l.name == "Helpdesk GLPI")
            .unwrap()
            .outcome,
        "imported"
    );
    drop_database(&site.url).await;
    h.t.cleanup().await;
}

/// The whole move, end to end: import, then `--rewrite-collectors` points GLPI's collector at
/// the gateway (its old row saved as SQL first); a PHP script then does what GLPI's collector
/// does: reads the row from `MariaDB`, opens `passwd` with libsodium and collects through the
/// gateway with php-imap, getting the messages byte for byte. The backup restores the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glpi_collects_through_the_gateway_after_the_rewrite() {
    use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
    use std::fmt::Write as _;
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    for i in 1..=3 {
        dovecot
            .deliver(
                USER,
                format!("From: a{i}@example.com\r\nSubject: Ticket {i}\r\nMessage-ID: <t{i}@example.com>\r\n\r\nPrinter {i} is out of toner.\r\n")
                    .as_bytes(),
            )
            .unwrap();
    }
    let site = site(&h).await;
    let (cert, key) = dovecot.server_cert_paths();
    let gateway = start_gateway(&h.app, cert, key).await;
    let backup = site.dir.path().join("collectors-before.sql");
    let target = oauthimap_app::CollectorTarget {
        host: "127.0.0.1".into(),
        port: gateway.imap.port(),
        security: oauthimap_types::Security::Plain,
        backup: backup.clone(),
    };
    // The dry run shows the new connect string and changes nothing.
    let lines = h
        .app
        .import_glpi(&GlpiImport {
            rewrite: Some(target.clone()),
            ..import(&h, &site, true)
        })
        .await
        .unwrap();
    let line = lines.iter().find(|l| l.kind == "collector").unwrap();
    assert_eq!(line.outcome, "would rewrite", "{lines:?}");
    let want_host = format!("{{127.0.0.1:{}/imap/notls}}INBOX", gateway.imap.port());
    assert!(
        line.detail.as_deref().unwrap().contains(&want_host),
        "{line:?}"
    );
    assert!(!backup.exists());

    let lines = h
        .app
        .import_glpi(&GlpiImport {
            rewrite: Some(target.clone()),
            ..import(&h, &site, false)
        })
        .await
        .unwrap();
    let line = lines.iter().find(|l| l.kind == "collector").unwrap();
    assert_eq!(line.outcome, "rewritten", "{lines:?}");
    h.app
        .set_upstream(
            &oauthimap_app::UpstreamScope::Application("Helpdesk GLPI".into()),
            oauthimap_app::Protocol::Imap,
            Some(oauthimap_app::UpstreamServer {
                host: "localhost".into(),
                port: dovecot.imaps_port(),
                security: oauthimap_types::Security::Tls,
                ca_file: Some(dovecot.ca_pem_path().display().to_string()),
            }),
        )
        .await
        .unwrap();

    // GLPI's side, in PHP: the row, its password opened with libsodium, php-imap.
    let php = r#"
$db = new PDO(getenv("DSN"), getenv("DBUSER"), getenv("DBPASS"));
$row = $db->query("SELECT host, login, passwd FROM glpi_mailcollectors WHERE name = 'Helpdesk'")->fetch();
$k = file_get_contents(getenv("KEY"));
$raw = base64_decode($row["passwd"]);
$n = substr($raw, 0, 24);
$password = sodium_crypto_aead_xchacha20poly1305_ietf_decrypt(substr($raw, 24), $n, $n, $k);
if ($password === false) { fwrite(STDERR, "passwd does not open\n"); exit(2); }
$m = imap_open($row["host"], $row["login"], $password, 0, 1);
if ($m === false) { fwrite(STDERR, implode("; ", imap_errors() ?: [])); exit(1); }
foreach (imap_search($m, "ALL", SE_UID) as $uid) {
    $raw = imap_fetchheader($m, $uid, FT_UID | FT_PREFETCHTEXT) . imap_body($m, $uid, FT_UID | FT_PEEK);
    echo $uid, " ", hash("sha256", $raw), "\n";
}
echo "HOST ", $row["host"], "\n";
imap_close($m);
"#;
    let (user, pass, host, dbname) = mysql_parts(&site.url);
    let out = tokio::process::Command::new("php")
        .args(["-r", php])
        .env(
            "DSN",
            format!("mysql:host={};port={};dbname={dbname}", host.0, host.1),
        )
        .env("DBUSER", &user)
        .env("DBPASS", &pass)
        .env("KEY", &site.key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "php: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = String::new();
    for info in dovecot.list_messages(USER, "INBOX").await.unwrap() {
        let raw = dovecot
            .fetch_message(USER, "INBOX", info.uid)
            .await
            .unwrap();
        let _ = writeln!(want, "{} {}", info.uid, oauthimap_mime::sha256_hex(&raw));
    }
    let _ = writeln!(want, "HOST {want_host}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);

    // The backup puts the row back as it was, with the mysql client.
    let restore = std::process::Command::new("mysql")
        .args([
            "-h",
            &host.0,
            "-P",
            &host.1.to_string(),
            "-u",
            &user,
            &dbname,
        ])
        .env("MYSQL_PWD", &pass)
        .stdin(std::fs::File::open(&backup).unwrap())
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let mut db = sqlx::MySqlConnection::connect(&site.url).await.unwrap();
    let (host_col, login): (String, String) =
        sqlx::query_as("SELECT CAST(host AS CHAR), CAST(login AS CHAR) FROM glpi_mailcollectors WHERE name = 'Helpdesk'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(
        host_col,
        "{outlook.office365.com:993/imap-oauth-3/ssl}INBOX"
    );
    assert_eq!(login, USER);
    gateway.stop().await;
    dovecot.stop().await.unwrap();
    drop_database(&site.url).await;
    h.t.cleanup().await;
}

/// (user, password, (host, port), database) of a mysql:// URL.
fn mysql_parts(url: &str) -> (String, String, (String, u16), String) {
    let rest = url.strip_prefix("mysql://").unwrap();
    let (auth, rest) = rest.rsplit_once('@').unwrap();
    let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = rest.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    (
        user.to_owned(),
        pass.to_owned(),
        (host.to_owned(), port.parse().unwrap()),
        db.to_owned(),
    )
}
