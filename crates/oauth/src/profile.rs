//! Provider profiles as data: where to sign in, which scopes to ask for, and which IMAP server a
//! provider's mailboxes live on. Microsoft's national clouds have their own sign-in and mail hosts.

use oauthimap_types::{Cloud, Provider};
use url::{Host, Url};

/// The endpoints and defaults that apply to one application.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    pub provider: Provider,
    pub authorize_url: Url,
    pub token_url: Url,
    /// Device authorization endpoint (RFC 8628), where the provider allows it for mail.
    pub device_url: Option<Url>,
    /// `OpenID` userinfo endpoint (Google), to learn who signed in.
    pub userinfo_url: Option<Url>,
    /// Scopes of the delegated (user) flows.
    pub scopes: Vec<String>,
    /// The scope of the app-only client credentials grant (Microsoft).
    pub app_only_scope: Option<String>,
    /// Admin consent URL (Microsoft), for tenant-wide consent.
    pub admin_consent_url: Option<Url>,
    /// The IMAP server mailboxes of this provider live on, when known.
    pub imap_host: Option<String>,
    pub imap_port: u16,
}

/// An application's endpoint settings that do not make a usable profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks that an endpoint URL is absolute and HTTPS (plain HTTP only to loopback addresses).
pub fn check_endpoint_url(field: &'static str, text: &str) -> Result<Url, ProfileError> {
    check_https_url(field, text, "https://login.example.com")
}

/// [`check_endpoint_url`] for any HTTPS URL; a mistake is shown with `example`, a URL of the
/// kind the field wants (a webhook's is not a sign-in page's).
pub fn check_https_url(
    field: &'static str,
    text: &str,
    example: &str,
) -> Result<Url, ProfileError> {
    let url = Url::parse(text.trim()).map_err(|e| {
        invalid(
            field,
            format!("{text:?} is not a valid URL ({e}); give an absolute URL such as {example}"),
        )
    })?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid(field, format!("{text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(field, "must not carry a user name or password"));
    }
    if url.fragment().is_some() {
        return Err(invalid(field, "must not have a #fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(
            field,
            format!(
                "{text:?} uses plain http; use https (plain http is only allowed to 127.0.0.1, ::1 or localhost)"
            ),
        )),
        other => Err(invalid(
            field,
            format!("scheme {other:?} is not supported; use https"),
        )),
    }
}

/// Whether a URL points at this machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a host name or address is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Microsoft's sign-in authority, mail resource and IMAP host for a cloud.
fn microsoft_cloud(cloud: Cloud) -> (&'static str, &'static str, &'static str) {
    match cloud {
        Cloud::Global => (
            "https://login.microsoftonline.com",
            "https://outlook.office.com",
            "outlook.office365.com",
        ),
        Cloud::UsGov => (
            "https://login.microsoftonline.us",
            "https://outlook.office365.us",
            "outlook.office365.us",
        ),
        Cloud::Dod => (
            "https://login.microsoftonline.us",
            "https://outlook-dod.office365.us",
            "outlook-dod.office365.us",
        ),
        Cloud::China => (
            "https://login.chinacloudapi.cn",
            "https://partner.outlook.cn",
            "partner.outlook.cn",
        ),
    }
}

/// The endpoint settings of an application, as the store keeps them.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndpointSettings<'a> {
    pub base: Option<&'a str>,
    pub authorize: Option<&'a str>,
    pub token: Option<&'a str>,
    pub device: Option<&'a str>,
    pub userinfo: Option<&'a str>,
}

fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// Builds the profile of an application from its provider, cloud, tenant, endpoint settings and
/// scopes (space-separated; `None` for the provider's defaults).
pub fn resolve(
    provider: Provider,
    cloud: Cloud,
    tenant: Option<&str>,
    endpoints: EndpointSettings<'_>,
    scopes: Option<&str>,
) -> Result<Profile, ProfileError> {
    let custom_scopes = scopes.map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
    if provider != Provider::Generic {
        for (field, value) in [
            ("authorize_url", endpoints.authorize),
            ("token_url", endpoints.token),
            ("device_url", endpoints.device),
            ("userinfo_url", endpoints.userinfo),
        ] {
            if value.is_some() {
                return Err(invalid(
                    field,
                    format!(
                        "only generic applications take explicit endpoints; for {provider} use endpoint_base to replace the sign-in host"
                    ),
                ));
            }
        }
    }
    if provider != Provider::Microsoft {
        if cloud != Cloud::Global {
            return Err(invalid(
                "cloud",
                "national clouds exist only for Microsoft applications",
            ));
        }
        if tenant.is_some() {
            return Err(invalid(
                "tenant",
                format!(
                    "a tenant is only for Microsoft applications; remove it from this {provider} application"
                ),
            ));
        }
    }
    match provider {
        Provider::Microsoft => microsoft(cloud, tenant, endpoints.base, custom_scopes),
        Provider::Google => google(endpoints.base, custom_scopes),
        Provider::Generic => generic(endpoints, custom_scopes),
    }
}

fn microsoft(
    cloud: Cloud,
    tenant: Option<&str>,
    base: Option<&str>,
    custom_scopes: Option<Vec<String>>,
) -> Result<Profile, ProfileError> {
    let (authority, resource, imap) = microsoft_cloud(cloud);
    let base = match base {
        Some(b) => check_endpoint_url("endpoint_base", b)?,
        None => Url::parse(authority).expect("built-in authority URL"),
    };
    let tenant = tenant.unwrap_or("organizations");
    let oauth = |path: &str| join(&base, &format!("/{tenant}/oauth2/v2.0/{path}"));
    Ok(Profile {
        provider: Provider::Microsoft,
        authorize_url: oauth("authorize"),
        token_url: oauth("token"),
        device_url: Some(oauth("devicecode")),
        userinfo_url: None,
        scopes: custom_scopes.unwrap_or_else(|| {
            vec![
                "offline_access".into(),
                "openid".into(),
                "email".into(),
                "profile".into(),
                format!("{resource}/IMAP.AccessAsUser.All"),
            ]
        }),
        app_only_scope: Some(format!(
            "https://{}/.default",
            if cloud == Cloud::Global {
                "outlook.office365.com"
            } else {
                imap
            }
        )),
        admin_consent_url: Some(join(&base, &format!("/{tenant}/v2.0/adminconsent"))),
        imap_host: Some(imap.to_owned()),
        imap_port: 993,
    })
}

fn google(base: Option<&str>, custom_scopes: Option<Vec<String>>) -> Result<Profile, ProfileError> {
    let (auth, token, userinfo) = match base {
        Some(b) => {
            let base = check_endpoint_url("endpoint_base", b)?;
            (
                join(&base, "/o/oauth2/v2/auth"),
                join(&base, "/token"),
                join(&base, "/v1/userinfo"),
            )
        }
        None => (
            Url::parse("https://accounts.google.com/o/oauth2/v2/auth").expect("built-in URL"),
            Url::parse("https://oauth2.googleapis.com/token").expect("built-in URL"),
            Url::parse("https://openidconnect.googleapis.com/v1/userinfo").expect("built-in URL"),
        ),
    };
    Ok(Profile {
        provider: Provider::Google,
        authorize_url: auth,
        token_url: token,
        // Google refuses the device flow for the Gmail scope.
        device_url: None,
        userinfo_url: Some(userinfo),
        scopes: custom_scopes.unwrap_or_else(|| {
            vec![
                "https://mail.google.com/".into(),
                "openid".into(),
                "email".into(),
            ]
        }),
        app_only_scope: None,
        admin_consent_url: None,
        imap_host: Some("imap.gmail.com".into()),
        imap_port: 993,
    })
}

fn generic(
    endpoints: EndpointSettings<'_>,
    custom_scopes: Option<Vec<String>>,
) -> Result<Profile, ProfileError> {
    if endpoints.base.is_some() {
        return Err(invalid(
            "endpoint_base",
            "generic applications take explicit endpoints: give authorize_url and token_url instead",
        ));
    }
    let authorize = endpoints.authorize.ok_or_else(|| {
        invalid(
            "authorize_url",
            "a generic application needs its authorization endpoint",
        )
    })?;
    let token = endpoints.token.ok_or_else(|| {
        invalid(
            "token_url",
            "a generic application needs its token endpoint",
        )
    })?;
    let scopes = custom_scopes.filter(|s| !s.is_empty()).ok_or_else(|| {
        invalid(
            "scopes",
            "a generic application needs the scopes its IMAP server expects",
        )
    })?;
    Ok(Profile {
        provider: Provider::Generic,
        authorize_url: check_endpoint_url("authorize_url", authorize)?,
        token_url: check_endpoint_url("token_url", token)?,
        device_url: endpoints
            .device
            .map(|d| check_endpoint_url("device_url", d))
            .transpose()?,
        userinfo_url: endpoints
            .userinfo
            .map(|u| check_endpoint_url("userinfo_url", u))
            .transpose()?,
        scopes,
        app_only_scope: None,
        admin_consent_url: None,
        imap_host: None,
        imap_port: 993,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(cloud: Cloud, tenant: Option<&str>, base: Option<&str>) -> Profile {
        resolve(
            Provider::Microsoft,
            cloud,
            tenant,
            EndpointSettings {
                base,
                ..Default::default()
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn microsoft_clouds() {
        let p = ms(Cloud::Global, Some("contoso.onmicrosoft.com"), None);
        assert_eq!(
            p.authorize_url.as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert_eq!(
            p.token_url.path(),
            "/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            p.scopes.join(" "),
            "offline_access openid email profile https://outlook.office.com/IMAP.AccessAsUser.All"
        );
        assert_eq!(
            p.app_only_scope.as_deref(),
            Some("https://outlook.office365.com/.default")
        );
        assert_eq!(p.imap_host.as_deref(), Some("outlook.office365.com"));
        let gov = ms(Cloud::UsGov, None, None);
        assert_eq!(
            gov.authorize_url.as_str(),
            "https://login.microsoftonline.us/organizations/oauth2/v2.0/authorize"
        );
        assert_eq!(gov.imap_host.as_deref(), Some("outlook.office365.us"));
        let cn = ms(Cloud::China, Some("t"), None);
        assert_eq!(cn.token_url.host_str(), Some("login.chinacloudapi.cn"));
        assert_eq!(cn.imap_host.as_deref(), Some("partner.outlook.cn"));
        let local = ms(
            Cloud::Global,
            Some("common"),
            Some("http://127.0.0.1:9999/idp"),
        );
        assert_eq!(
            local.device_url.unwrap().as_str(),
            "http://127.0.0.1:9999/idp/common/oauth2/v2.0/devicecode"
        );
    }

    #[test]
    fn google_and_generic() {
        let g = resolve(
            Provider::Google,
            Cloud::Global,
            None,
            EndpointSettings::default(),
            None,
        )
        .unwrap();
        assert_eq!(g.scopes, ["https://mail.google.com/", "openid", "email"]);
        assert!(g.device_url.is_none());
        let err = resolve(
            Provider::Google,
            Cloud::Global,
            Some("x"),
            EndpointSettings::default(),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tenant: a tenant is only for Microsoft"),
            "{err}"
        );
        let err = resolve(
            Provider::Generic,
            Cloud::Global,
            None,
            EndpointSettings::default(),
            Some("imap"),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("authorize_url"), "{err}");
        let ok = resolve(
            Provider::Generic,
            Cloud::Global,
            None,
            EndpointSettings {
                authorize: Some("https://id.example.com/auth"),
                token: Some("https://id.example.com/token"),
                ..Default::default()
            },
            Some("imap offline"),
        )
        .unwrap();
        assert_eq!(ok.scopes, ["imap", "offline"]);
    }

    #[test]
    fn endpoint_urls_must_be_https_unless_loopback() {
        assert!(check_endpoint_url("x", "https://a.example/p").is_ok());
        assert!(check_endpoint_url("x", "http://127.0.0.1:8080/p").is_ok());
        assert!(check_endpoint_url("x", "http://[::1]:8080/p").is_ok());
        assert!(check_endpoint_url("x", "http://localhost/p").is_ok());
        let e = check_endpoint_url("token_url", "http://idp.example/p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_url") && e.contains("https"), "{e}");
        assert!(check_endpoint_url("x", "not a url").is_err());
        assert!(check_endpoint_url("x", "https://user:pw@a.example/").is_err());
        assert!(
            is_loopback_host("127.0.0.5")
                && is_loopback_host("[::1]")
                && !is_loopback_host("10.0.0.1")
        );
    }
}
