//! The OAuth commands of the real binary against the fake identity provider: `account authorize`
//! with its temporary callback listener, `token`, `api-token`, and the HTTP token broker of
//! `serve`.
#![allow(clippy::too_many_lines)] // one story: authorize, then use the token three ways

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};

const SECRET: &str = "cli-secret-value~123";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn oauthimap(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("oauthimap"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("OAUTHIMAP_") {
            cmd.env_remove(key);
        }
    }
    // An oauthimap installed on this machine (/etc/oauthimap/oauthimap.toml) is not ours.
    cmd.env("OAUTHIMAP_CONFIG", "/dev/null");
    cmd.env("OAUTHIMAP_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "OAUTHIMAP_EXTERNAL_BASE_URL",
            format!("http://127.0.0.1:{port}"),
        );
    cmd
}

fn output(cmd: &mut Command, stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_token_and_the_http_broker() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let idp = FakeIdp::start().await.unwrap();
    idp.add_client(ClientConfig::microsoft(
        "cli-client",
        SECRET,
        &format!("http://127.0.0.1:{port}/oauth/callback"),
    ));
    idp.add_user(UserConfig::new("help@contoso.com", "Helpdesk"));
    idp.set_default_user("help@contoso.com");

    let (code, _, err) = output(
        oauthimap(d, port)
            .args([
                "app",
                "add",
                "--name",
                "Contoso",
                "--provider",
                "microsoft",
                "--client-id",
                "cli-client",
            ])
            .args([
                "--tenant",
                "contoso.onmicrosoft.com",
                "--endpoint-base",
                idp.base_url(),
                "--client-secret-stdin",
            ]),
        &format!("{SECRET}\n"),
    );
    assert_eq!(code, 0, "{err}");

    // No service runs: authorize opens a temporary listener for the callback.
    let mut child = oauthimap(d, port)
        .args([
            "--json",
            "account",
            "authorize",
            "--app",
            "Contoso",
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    assert!(url.starts_with(idp.base_url()), "{url}");
    let back = http.get(url.trim()).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    // The listener may need a moment to bind after printing the URL.
    let mut page = None;
    for _ in 0..50 {
        match http.get(&back).send().await {
            Ok(r) => {
                page = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let page = page.expect("the temporary listener answered");
    assert_eq!(page.status().as_u16(), 200);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let account: serde_json::Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(account["mailbox"], "help@contoso.com");
    assert_eq!(account["state"], "active");

    // The token broker prints only the token.
    let (code, token, err) = output(oauthimap(d, port).args(["token", "help@contoso.com"]), "");
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "a Microsoft access token is a JWT"
    );
    assert!(!err.contains(&token));
    let (code, sasl, err) = output(
        oauthimap(d, port).args(["token", "help@contoso.com", "--sasl", "xoauth2"]),
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sasl.trim(),
        oauthimap_imap::xoauth2_initial_response("help@contoso.com", &token),
        "the ready XOAUTH2 string for the same token"
    );
    let (code, sasl, _) = output(
        oauthimap(d, port).args([
            "token",
            "1",
            "--sasl",
            "oauthbearer",
            "--host",
            "imap.example.com",
            "--port",
            "993",
        ]),
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(
        sasl.trim(),
        oauthimap_imap::oauthbearer_initial_response(
            "help@contoso.com",
            "imap.example.com",
            993,
            &token
        )
    );

    // The login diagnostic against a real Dovecot: every step, the transcript, no token.
    let dovecot = oauthimap_dovecot_fixture::Dovecot::start(
        oauthimap_dovecot_fixture::DovecotOptions::new(idp.introspection_url()),
    )
    .await
    .unwrap();
    let imaps = dovecot.imaps_port().to_string();
    let ca = dovecot.ca_pem_path().display().to_string();
    let (code, report, err) = output(
        oauthimap(d, port)
            .args([
                "diagnose",
                "help@contoso.com",
                "--host",
                "localhost",
                "--port",
                &imaps,
            ])
            .args(["--ca-file", &ca, "--transcript"]),
        "",
    );
    assert_eq!(code, 0, "{report}{err}");
    for step in ["token", "dns", "tcp", "tls", "authentication", "folder"] {
        assert!(
            report.contains(&format!("[ok  ] {step}")),
            "{step} in:\n{report}"
        );
    }
    assert!(
        report.contains("Transcript (tokens redacted)") && report.contains("AUTHENTICATE"),
        "{report}"
    );
    let (_, fresh, _) = output(oauthimap(d, port).args(["token", "help@contoso.com"]), "");
    for secret in [token.as_str(), fresh.trim()] {
        assert!(
            !report.contains(secret) && !err.contains(secret),
            "a token leaked into the diagnostic"
        );
    }
    let (code, failing, _) = output(
        oauthimap(d, port).args([
            "diagnose",
            "help@contoso.com",
            "--host",
            "localhost",
            "--port",
            &imaps,
        ]),
        "",
    );
    assert_eq!(code, 1, "an untrusted certificate fails the diagnostic");
    assert!(
        failing.contains("[FAIL] tls") && failing.contains("hint:"),
        "{failing}"
    );
    dovecot.stop().await.unwrap();

    // The HTTP broker needs an API token with the tokens:read scope.
    let (code, api_token, err) = output(
        oauthimap(d, port).args(["api-token", "create", "--name", "msmtp"]),
        "",
    );
    assert_eq!(code, 0, "{err}");
    let api_token = api_token.trim().to_owned();
    let (_, list, _) = output(oauthimap(d, port).args(["api-token", "list"]), "");
    assert!(
        list.contains("msmtp") && !list.contains(&api_token),
        "{list}"
    );
    let mut serve = oauthimap(d, port)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/accounts/{}/token",
        account["id"]
    );
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(&url).bearer_auth(&api_token).send().await {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answer = answer.expect("serve answered");
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["access_token"],
        token.as_str(),
        "still valid: the same token"
    );
    let denied = http.get(&url).send().await.unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("oimp_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let missing = http
        .get(format!("http://127.0.0.1:{port}/api/v1/accounts/99/token"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    assert!(serve.wait().unwrap().success());

    // A new tenant would revoke the account: without --confirm the command names it, exits 2
    // and changes nothing; with --confirm it goes ahead and says what it revoked.
    let change = [
        "app",
        "update",
        "Contoso",
        "--tenant",
        "fabrikam.onmicrosoft.com",
    ];
    let (code, _, err) = output(oauthimap(d, port).args(change), "");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("revokes 1 account(s) (help@contoso.com)") && err.contains("--confirm"),
        "{err}"
    );
    let (_, still, _) = output(
        oauthimap(d, port).args(["--json", "account", "show", "help@contoso.com"]),
        "",
    );
    let still: serde_json::Value = serde_json::from_str(&still).unwrap();
    assert_eq!(still["state"], "active", "nothing revoked unconfirmed");
    let (code, _, err) = output(oauthimap(d, port).args(change).arg("--confirm"), "");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 account(s) revoked"), "{err}");
    let (_, now, _) = output(
        oauthimap(d, port).args(["--json", "account", "show", "help@contoso.com"]),
        "",
    );
    let now: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert_eq!(now["state"], "revoked");
}
