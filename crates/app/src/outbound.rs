//! Where webhooks (the webhook sink, `notify.webhook_url`) may go: to the internet, not inside
//! the network (loopback, private, link-local and metadata addresses, in any of their numeric
//! spellings) unless `outbound.allowed_networks` lists the block. Checked when a URL is saved and
//! again at connect time, on the addresses the name resolves to then (a name that resolves to
//! 127.0.0.1 later is refused too), with redirects never followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oauthimap_types::net::{Network, allows, check_outbound_url};

use crate::{AppError, Result};

/// The outbound policy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outbound {
    allowed: Arc<Vec<Network>>,
}

impl Outbound {
    pub(crate) fn new(allowed: &[String]) -> Result<Self> {
        let allowed = allowed
            .iter()
            .map(|n| n.parse::<Network>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| AppError::invalid("outbound.allowed_networks", e.to_string()))?;
        Ok(Self {
            allowed: Arc::new(allowed),
        })
    }

    /// The networks listed, for the sinks' own check of address literals.
    pub(crate) fn allowed(&self) -> Vec<Network> {
        self.allowed.to_vec()
    }

    /// Refuses a URL whose host is inside the network (as an address, `localhost`, or a
    /// metadata host name): [`check_outbound_url`].
    pub(crate) fn check_url(&self, field: &'static str, text: &str) -> Result<()> {
        check_outbound_url(text, &self.allowed)
            .map(drop)
            .map_err(|e| AppError::invalid(field, e.to_string()))
    }

    /// The HTTP client for webhooks and notifications: names are resolved through the policy,
    /// redirects are not followed.
    pub(crate) fn client(&self, timeout: Duration) -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oauthimap/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(Guard {
                allowed: self.allowed.clone(),
            }))
            .build()
            .map_err(|e| AppError::Io {
                action: "set up the webhook HTTP client".into(),
                source: std::io::Error::other(e.to_string()),
            })
    }
}

/// Resolves names, keeping only the addresses the policy allows.
struct Guard {
    allowed: Arc<Vec<Network>>,
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allows(&allowed, a.ip()))
                .collect();
            if kept.is_empty() && !found.is_empty() {
                return Err(format!(
                    "{host} resolves to {} inside the network; webhooks go to the internet only, unless outbound.allowed_networks lists it",
                    found[0].ip()
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_inside_the_network_are_refused_in_every_spelling() {
        let o = Outbound::default();
        for url in [
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "https://[fd00::1]/",
            "https://metadata.google.internal/computeMetadata/v1/",
            "http://127.0.0.1:18700/api/v1/applications",
            "http://localhost:22/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::1]/",
            "https://100.64.1.1/",
        ] {
            let e = o.check_url("sink_target", url).unwrap_err().to_string();
            assert!(e.contains("inside the network"), "{url}: {e}");
        }
        for url in ["https://hooks.example.com/intake", "https://8.8.8.8/x"] {
            o.check_url("sink_target", url).unwrap();
        }
        let allowed = Outbound::new(&["127.0.0.0/8".into()]).unwrap();
        allowed
            .check_url("sink_target", "http://127.0.0.1:9000/hook")
            .unwrap();
        assert!(
            allowed
                .check_url("sink_target", "https://10.0.0.1/")
                .is_err()
        );
        assert!(Outbound::new(&["10.0.0.0/33".into()]).is_err());
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused_at_connect_time() {
        use reqwest::dns::Resolve as _;
        let guard = Guard {
            allowed: Arc::new(Vec::new()),
        };
        let e = guard
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("inside the network"), "{e}");
        let open = Guard {
            allowed: Arc::new(vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]),
        };
        assert!(open.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
