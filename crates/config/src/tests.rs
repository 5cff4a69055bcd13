use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults() {
    let s = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("oauthimap-data"));
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.key_file(), PathBuf::from("oauthimap-data/master.key"));
    assert_eq!(
        s.database_url().expose_secret(),
        "sqlite://oauthimap-data/oauthimap.db?mode=rwc"
    );
    assert_eq!(s.external_base_url().as_str(), "http://localhost:8080/");
    assert_eq!(s.log_format, LogFormat::Text);
}

#[test]
fn file_then_env_with_file_indirection() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("oauthimap.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"/var/lib/oauthimap\"\nlisten = \"127.0.0.1:9000\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    let secret = dir.path().join("db");
    std::fs::write(&secret, "postgres://u:pw@127.0.0.1/db\n").unwrap();
    let s = Settings::load_from(
        Some(&cfg),
        env(&[
            ("OAUTHIMAP_LISTEN", "127.0.0.1:9100"),
            ("OAUTHIMAP_DATABASE_URL_FILE", secret.to_str().unwrap()),
            (
                "OAUTHIMAP_EXTERNAL_BASE_URL",
                "https://mail-oauth.example.com",
            ),
            ("OAUTHIMAP_CONFIG", "ignored"),
            ("OTHER_VAR", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/oauthimap"));
    assert_eq!(s.listen.port(), 9100, "env wins over the file");
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(
        s.database_url().expose_secret(),
        "postgres://u:pw@127.0.0.1/db"
    );
    assert_eq!(
        s.external_base_url().as_str(),
        "https://mail-oauth.example.com/"
    );
}

#[test]
fn unknown_key_names_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "listen_adress = \"127.0.0.1:1\"\n").unwrap();
    let err = Settings::load_from(Some(&cfg), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen_adress"), "{err}");
    assert!(err.contains("c.toml"), "{err}");

    let err = Settings::load_from(None, env(&[("OAUTHIMAP_LISTEN_FILE", "/x")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("listen_file") && err.contains("environment variable"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_key() {
    let err = Settings::load_from(None, env(&[("OAUTHIMAP_LISTEN", "localhost")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("key `listen`") && err.contains("environment variable"),
        "{err}"
    );
    let err = Settings::load_from(None, env(&[("OAUTHIMAP_LOG_FORMAT", "xml")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("log_format"), "{err}");
    let err = Settings::load_from(None, env(&[("OAUTHIMAP_EXTERNAL_BASE_URL", "ftp://x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("external_base_url"), "{err}");
    let err = Settings::load_from(
        None,
        env(&[("OAUTHIMAP_DATABASE_URL", "mysql://root:hunter2@x/db")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("database_url") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn missing_config_file_and_double_secret() {
    let err = Settings::load_from(Some(Path::new("/nonexistent/o.toml")), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/o.toml"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k");
    std::fs::write(&f, "abc").unwrap();
    let err = Settings::load_from(
        None,
        env(&[
            ("OAUTHIMAP_MASTER_KEY", "abc"),
            ("OAUTHIMAP_MASTER_KEY_FILE", f.to_str().unwrap()),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("master_key and master_key_file"), "{err}");
}

#[test]
fn nested_sections_from_file_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[tokens]\nrefresh_margin_secs = 900\n[notify]\ncommand = \"logger x\"\n",
    )
    .unwrap();
    let s = Settings::load_from(
        Some(&cfg),
        env(&[("OAUTHIMAP_TOKENS__KEEP_WARM_DAYS", "5")]),
    )
    .unwrap();
    assert_eq!(s.tokens.refresh_margin_secs, 900);
    assert_eq!(s.tokens.keep_warm_days, 5);
    assert_eq!(s.tokens.jitter_secs, 60, "defaults fill the rest");
    assert_eq!(s.notify.command.as_deref(), Some("logger x"));
    let err = Settings::load_from(None, env(&[("OAUTHIMAP_TOKENS__KEEP_WARM_DAYS", "0")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("keep_warm_days"), "{err}");
    let err = Settings::load_from(
        None,
        env(&[(
            "OAUTHIMAP_NOTIFY__WEBHOOK_URL",
            "http://hooks.example.com/x",
        )]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("notify.webhook_url"), "{err}");
    // An unknown key is refused in TOML; in the environment it is not ours and is ignored.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[tokens]\nmargin = 5\n").unwrap();
    let err = Settings::load_from(Some(&cfg), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("margin"), "{err}");
    assert!(Settings::load_from(None, env(&[("OAUTHIMAP_TOKENS__MARGIN", "5")])).is_ok());
}

#[test]
fn web_section_defaults_overrides_and_checks() {
    let s = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(s.web.session_idle_secs, 8 * 3600);
    assert_eq!(s.web.session_max_secs, 7 * 86_400);
    assert_eq!(s.web.login_failures_before_lock, 10);
    assert_eq!(s.web.login_failures_per_address, 5);
    let s = Settings::load_from(
        None,
        env(&[
            ("OAUTHIMAP_WEB__SESSION_IDLE_SECS", "600"),
            ("OAUTHIMAP_WEB__SESSION_MAX_SECS", "3600"),
        ]),
    )
    .unwrap();
    assert_eq!(
        (s.web.session_idle_secs, s.web.session_max_secs),
        (600, 3600)
    );
    let e = Settings::load_from(
        None,
        env(&[
            ("OAUTHIMAP_WEB__SESSION_IDLE_SECS", "7200"),
            ("OAUTHIMAP_WEB__SESSION_MAX_SECS", "3600"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("web.session_max_secs"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[web]\nsession_timeout = 5\n").unwrap();
    let e = Settings::load_from(Some(&cfg), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("session_timeout"), "{e}");
}

#[test]
fn variables_that_are_not_settings_are_ignored_and_near_misses_warned_about() {
    // What oauthimap exports to hooks and command sinks, and the API token of the docs.
    let s = Settings::load_from(
        None,
        env(&[
            ("OAUTHIMAP_EVENT", "account.needs_reauth"),
            ("OAUTHIMAP_RECEIVER", "helpdesk"),
            ("OAUTHIMAP_IDEMPOTENCY_KEY", "r1-2-3"),
            ("OAUTHIMAP_API_TOKEN", "oit_secret"),
            ("OAUTHIMAP_CONFIG", "/etc/oauthimap/oauthimap.toml"),
            ("OAUTHIMAP_LISTEN", "127.0.0.1:9100"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.listen.to_string(),
        "127.0.0.1:9100",
        "settings still apply"
    );
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());

    let s = Settings::load_from(
        None,
        env(&[
            ("OAUTHIMAP_DATABSE_URL", "postgres://x/y"),
            ("OAUTHIMAP_SINK__MAX_OUTAGES", "1d"),
            ("OAUTHIMAP_LITSEN", "127.0.0.1:1"),
        ]),
    )
    .unwrap();
    assert!(
        s.database_url.is_none(),
        "a misspelt setting is not applied"
    );
    let w = s.warnings().join("\n");
    for (wrong, right) in [
        ("OAUTHIMAP_DATABSE_URL", "OAUTHIMAP_DATABASE_URL"),
        ("OAUTHIMAP_SINK__MAX_OUTAGES", "OAUTHIMAP_SINK__MAX_OUTAGE"),
        ("OAUTHIMAP_LITSEN", "OAUTHIMAP_LISTEN"),
    ] {
        assert!(
            w.contains(&format!("{wrong} is not a setting"))
                && w.contains(&format!("did you mean {right}?")),
            "{w}"
        );
    }
}

#[test]
fn one_edit_apart_is_one_insertion_removal_replacement_or_swap() {
    for (a, b) in [
        ("listen", "lsten"),
        ("listen", "listenn"),
        ("listen", "lixten"),
        ("listen", "litsen"),
        ("listen", "ilsten"),
        ("listen", "listne"),
    ] {
        assert!(one_edit_apart(a, b), "{a} {b}");
        assert!(one_edit_apart(b, a), "{b} {a}");
    }
    for (a, b) in [
        ("listen", "listen"),
        ("listen", "lstn"),
        ("listen", "silent"),
        ("event", "listen"),
        ("", "ab"),
    ] {
        assert!(!one_edit_apart(a, b), "{a} {b}");
    }
}

/// Each name in [`SETTINGS`] is a key of [`Settings`]: set from the environment to a value of
/// the wrong kind, it is refused as a bad value of that key, never as an unknown one.
#[test]
fn settings_list_matches_the_settings() {
    for key in SETTINGS {
        let name = format!("OAUTHIMAP_{}", key.to_ascii_uppercase());
        let result = Settings::load_from(None, env(&[(&name, "[1, 2]")]));
        if let Err(e) = result {
            let e = e.to_string();
            assert!(!e.contains("unknown setting"), "{name}: {e}");
        }
    }
    // And the check itself can fail: a key that is not a setting is refused as unknown.
    let err = Settings::load_from(None, env(&[("OAUTHIMAP_LISTEN_FILE", "[1, 2]")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting"), "{err}");
}

/// `oauthimap token`'s fast path finds the socket where a full load does, from the file and
/// the environment, and nowhere when the broker is off.
#[test]
fn the_broker_socket_alone_is_read_as_the_full_settings_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oauthimap.toml");
    std::fs::write(&file, "data_dir = \"/srv/oi\"\n").unwrap();
    let full = Settings::load_from(Some(&file), Vec::new()).unwrap();
    assert_eq!(
        Settings::broker_socket_of(Some(&file)).unwrap(),
        Some(full.broker_socket())
    );
    assert_eq!(full.broker_socket(), PathBuf::from("/srv/oi/broker.sock"));
    std::fs::write(
        &file,
        "data_dir = \"/srv/oi\"\n[broker]\nsocket = \"/run/oi.sock\"\n",
    )
    .unwrap();
    assert_eq!(
        Settings::broker_socket_of(Some(&file)).unwrap(),
        Some(PathBuf::from("/run/oi.sock"))
    );
    std::fs::write(&file, "[broker]\nenabled = false\n").unwrap();
    assert_eq!(Settings::broker_socket_of(Some(&file)).unwrap(), None);
    std::fs::write(&file, "[broker]\nsokcet = \"/x\"\n").unwrap();
    assert!(
        Settings::broker_socket_of(Some(&file)).is_err(),
        "a misspelt broker key is an error here too"
    );
}
