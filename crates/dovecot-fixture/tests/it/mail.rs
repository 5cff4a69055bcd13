//! Seeding (maildir files and APPEND) and inspecting mailboxes as the master user, and what an
//! OAuth 2.0 login then sees.

use oauthimap_dovecot_fixture::{Flag, ImapConnection};

use crate::common::{ALICE, GOOD_TOKEN, setup, xoauth2};

const MESSAGE: &[u8] =
    b"From: Bob <bob@example.com>\nTo: alice@example.com\nSubject: hello\n\nline one\nline two\n";

#[tokio::test]
async fn delivered_file_is_served_byte_for_byte() {
    let (_stub, dovecot) = setup().await;
    let delivered = dovecot.deliver(ALICE, MESSAGE).unwrap();
    assert!(
        delivered.path.parent().unwrap().ends_with("Maildir/new"),
        "{}",
        delivered.path.display()
    );
    assert_eq!(
        delivered.bytes.len(),
        MESSAGE.len() + 6,
        "six bare LFs gained a CR"
    );
    let meta = std::fs::metadata(&delivered.path).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        65534,
        "owned by the mail uid"
    );

    let messages = dovecot
        .list_messages(ALICE, "INBOX")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log_tail(20)));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].uid, 1);
    assert_eq!(messages[0].size, delivered.bytes.len() as u64);
    assert_eq!(
        messages[0].flags,
        vec![r"\Recent".to_owned()],
        "new/ means unseen"
    );
    assert_eq!(
        dovecot.fetch_message(ALICE, "INBOX", 1).await.unwrap(),
        delivered.bytes
    );
}

#[tokio::test]
async fn folders_flags_and_append() {
    let (_stub, dovecot) = setup().await;
    dovecot
        .deliver_to(ALICE, "Archive", MESSAGE, &[Flag::Seen, Flag::Answered])
        .unwrap();
    dovecot.create_folder(ALICE, "Sent Items").await.unwrap();
    let tagged = dovecot
        .append(
            ALICE,
            "Sent Items",
            &oauthimap_dovecot_fixture::crlf(MESSAGE),
            &[Flag::Flagged],
        )
        .await
        .unwrap();
    assert!(tagged.contains("[APPENDUID "), "{tagged}");

    let mut folders = dovecot.list_folders(ALICE).await.unwrap();
    folders.sort();
    assert_eq!(folders, ["Archive", "INBOX", "Sent Items"]);

    let archive = dovecot.list_messages(ALICE, "Archive").await.unwrap();
    assert_eq!(archive.len(), 1);
    assert!(
        archive[0].flags.contains(&r"\Seen".to_owned())
            && archive[0].flags.contains(&r"\Answered".to_owned())
    );
    let sent = dovecot.list_messages(ALICE, "Sent Items").await.unwrap();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].flags.contains(&r"\Flagged".to_owned()),
        "{:?}",
        sent[0].flags
    );
    // A file delivered into a folder created over IMAP lands beside the APPENDed one.
    dovecot
        .deliver_to(ALICE, "Sent Items", MESSAGE, &[])
        .unwrap();
    let sent = dovecot.list_messages(ALICE, "Sent Items").await.unwrap();
    assert_eq!(sent.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(sent[0].size, sent[1].size);
}

#[tokio::test]
async fn oauth_login_sees_the_seeded_mailbox() {
    let (_stub, dovecot) = setup().await;
    // Mixed case: Dovecot lowercases the user (%Lu) and so does the fixture's maildir writer.
    dovecot.deliver("Alice@Example.com", MESSAGE).unwrap();
    dovecot.deliver(ALICE, MESSAGE).unwrap();
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    assert!(
        conn.command(&format!(
            "AUTHENTICATE XOAUTH2 {}",
            xoauth2(ALICE, GOOD_TOKEN)
        ))
        .await
        .unwrap()
        .is_ok()
    );
    let select = conn.command_ok("SELECT INBOX", "select").await.unwrap();
    assert!(
        select.untagged.iter().any(|u| u.text() == "* 2 EXISTS"),
        "{select:?}"
    );
    conn.command_ok("UID STORE 2 +FLAGS (\\Seen)", "store")
        .await
        .unwrap();
    conn.logout().await;
    let messages = dovecot.list_messages(ALICE, "INBOX").await.unwrap();
    assert!(!messages[0].flags.contains(&r"\Seen".to_owned()));
    assert!(
        messages[1].flags.contains(&r"\Seen".to_owned()),
        "{messages:?}"
    );
}

#[tokio::test]
async fn unsupported_folder_names_are_refused_by_the_file_writer() {
    let (_stub, dovecot) = setup().await;
    let err = dovecot
        .deliver_to(ALICE, "../escape", MESSAGE, &[])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot use folder \"../escape\""),
        "{err}"
    );
}
