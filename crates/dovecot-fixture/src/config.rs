//! Renders the private instance's `dovecot.conf`, the oauth2 passdb args file and the master-user
//! passwd-file from a [`Layout`]. Pure text generation: no I/O, so it can be unit-tested and read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Every path and port one instance uses; all paths live under the instance's temporary directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
    pub instance_name: String,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub mail_uid: u32,
    pub mail_gid: u32,
    pub introspection_url: String,
    pub master_user: String,
    pub master_password: String,
    /// Appended verbatim to `dovecot.conf` (later settings override earlier ones).
    pub extra_config: String,
    /// POP3 and SMTP submission, when asked for.
    pub mail_services: Option<ServicePorts>,
}

/// The ports of the POP3 and submission listeners, and of the SMTP sink submission relays to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServicePorts {
    pub pop3: u16,
    pub pop3s: u16,
    pub submission: u16,
    pub submissions: u16,
    pub relay: u16,
}

impl Layout {
    pub fn config_path(&self) -> PathBuf {
        self.root.join("dovecot.conf")
    }
    pub fn oauth2_args_path(&self) -> PathBuf {
        self.root.join("oauth2.conf.ext")
    }
    pub fn master_users_path(&self) -> PathBuf {
        self.root.join("master-users")
    }
    /// An always-empty passwd-file: PLAIN/LOGIN for a non-master user then fails with
    /// `NO [AUTHENTICATIONFAILED]` instead of `NO [UNAVAILABLE]` ("all password databases were skipped").
    pub fn no_users_path(&self) -> PathBuf {
        self.root.join("no-users")
    }
    pub fn base_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn log_path(&self) -> PathBuf {
        self.root.join("dovecot.log")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn ca_pem_path(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }
    pub fn cert_pem_path(&self) -> PathBuf {
        self.tls_dir().join("server.pem")
    }
    pub fn key_pem_path(&self) -> PathBuf {
        self.tls_dir().join("server.key")
    }
    /// Where the SMTP sink writes each relayed message (`N.eml`, envelope in `N.env`).
    pub fn relayed_dir(&self) -> PathBuf {
        self.root.join("relayed")
    }
    /// Parent of every user's home (`<mail_root>/<user>`), owned by the mail uid.
    pub fn mail_root(&self) -> PathBuf {
        self.root.join("mail")
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The main config. Comments explain the settings that exist only to make tests fast and isolated.
pub(crate) fn dovecot_conf(l: &Layout) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "\
# Private Dovecot instance written by oauthimap-dovecot-fixture. Never shares a path with the system instance.
instance_name = {instance}
base_dir = {base}
state_dir = {state}
log_path = {log}
info_log_path = {log}
debug_log_path = {log}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2

auth_mechanisms = xoauth2 oauthbearer plain
auth_verbose = yes
# Tests run back to back: no delay after a failure, no cache so a revoked token fails at once.
auth_failure_delay = 0
auth_cache_size = 0
auth_master_user_separator = *
mail_max_userip_connections = 100
login_trusted_networks = 127.0.0.1/32

passdb {{
  driver = passwd-file
  args = {master_users}
  master = yes
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain
  args = {no_users}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_root}/%u allow_all_users=yes
}}
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
first_valid_gid = {gid}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
# Without this every login after a failure from 127.0.0.1 waits 2-15 s (the per-IP auth penalty).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
",
        instance = l.instance_name,
        base = p(&l.base_dir()),
        state = p(&l.state_dir()),
        log = p(&l.log_path()),
        cert = p(&l.cert_pem_path()),
        key = p(&l.key_pem_path()),
        master_users = p(&l.master_users_path()),
        oauth2 = p(&l.oauth2_args_path()),
        no_users = p(&l.no_users_path()),
        uid = l.mail_uid,
        gid = l.mail_gid,
        mail_root = p(&l.mail_root()),
        imap = l.imap_port,
        imaps = l.imaps_port,
    );
    if let Some(ports) = l.mail_services {
        s.push_str(&mail_services(ports));
    }
    if !l.extra_config.is_empty() {
        s.push_str("\n# Extra settings from DovecotOptions::extra_config\n");
        s.push_str(&l.extra_config);
        s.push('\n');
    }
    s
}

/// POP3 and submission (RFC 6409) with the same passdbs; submission relays to the SMTP sink.
fn mail_services(ports: ServicePorts) -> String {
    format!(
        "
# POP3 and SMTP submission (DovecotOptions::mail_services).
protocols = imap pop3 submission
pop3_uidl_format = %08Xu%08Xv
hostname = localhost
submission_relay_host = 127.0.0.1
submission_relay_port = {relay}
submission_relay_trusted = no
submission_relay_ssl = no
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {submission}
  }}
  inet_listener submissions {{
    address = 127.0.0.1
    port = {submissions}
    ssl = yes
  }}
}}
",
        relay = ports.relay,
        pop3 = ports.pop3,
        pop3s = ports.pop3s,
        submission = ports.submission,
        submissions = ports.submissions,
    )
}

/// The SMTP sink behind submission: Debian's aiosmtpd, writing each message's bytes exactly as
/// received (after dot-unstuffing) to `N.eml` and its envelope to `N.env`.
pub(crate) const SMTP_SINK: &str = r#"
import itertools, os, sys, threading
from aiosmtpd.controller import Controller

class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.numbers)
        with open(os.path.join(self.folder, f"{n}.env"), "w") as f:
            f.write(envelope.mail_from + "\n" + "\n".join(envelope.rcpt_tos) + "\n")
        tmp = os.path.join(self.folder, f".{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.folder, f"{n}.eml"))
        return "250 2.0.0 Stored"

controller = Controller(Sink(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1]),
                        decode_data=False, enable_SMTPUTF8=True)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// The oauth2 passdb args: RFC 7662 introspection by POST, no tokeninfo step (Dovecot 2.3.19 goes
/// straight to introspection when `tokeninfo_url` is unset).
pub(crate) fn oauth2_args(l: &Layout) -> String {
    format!(
        "\
introspection_mode = post
introspection_url = {url}
username_attribute = email
active_attribute = active
active_value = true
timeout_msecs = 5000
",
        url = l.introspection_url
    )
}

/// passwd-file line for the master user (`{{PLAIN}}` scheme: a test-only password).
pub(crate) fn master_users(l: &Layout) -> String {
    format!("{}:{{PLAIN}}{}\n", l.master_user, l.master_password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            root: PathBuf::from("/tmp/fx"),
            instance_name: "fx-1".into(),
            imap_port: 40143,
            imaps_port: 40993,
            mail_uid: 65534,
            mail_gid: 65534,
            introspection_url: "http://127.0.0.1:9/introspect".into(),
            master_user: "master".into(),
            master_password: "pw".into(),
            extra_config: String::new(),
            mail_services: None,
        }
    }

    #[test]
    fn config_keeps_every_path_inside_the_instance_directory() {
        let conf = dovecot_conf(&layout());
        for key in [
            "base_dir",
            "state_dir",
            "log_path",
            "info_log_path",
            "debug_log_path",
        ] {
            let line = conf
                .lines()
                .find(|line| line.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} missing"));
            assert!(line.contains("/tmp/fx/"), "{line}");
        }
        assert!(conf.contains("instance_name = fx-1\n"));
        assert!(conf.contains("port = 40143\n") && conf.contains("port = 40993\n"));
        assert!(conf.contains("home=/tmp/fx/mail/%u"));
        assert!(!conf.contains("/etc/dovecot") && !conf.contains("/run/dovecot"));
    }

    #[test]
    fn oauth2_args_post_to_the_given_url() {
        let args = oauth2_args(&layout());
        assert!(args.contains("introspection_mode = post\n"));
        assert!(args.contains("introspection_url = http://127.0.0.1:9/introspect\n"));
        assert!(args.contains("active_value = true\n"));
        assert!(!args.contains("tokeninfo_url"));
    }

    #[test]
    fn master_users_line_is_passwd_file_syntax() {
        assert_eq!(master_users(&layout()), "master:{PLAIN}pw\n");
    }
}
