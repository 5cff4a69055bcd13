//! What a child process (a `[notify]` hook, a command sink) may see of oauthimap's environment:
//! `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, and the variables the operator lists in
//! `hooks.pass_env`; never an `OAUTHIMAP_*` setting (the master key, the database URL), whatever
//! the list says. The caller adds the event's own variables after these.

use std::ffi::OsString;

/// Passed on when set: what a shell script needs to find programs and format text.
const BASE: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];
/// Where programs are looked up when the service runs without a `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment for a child, from the parent's (`std::env::vars_os()`) and the allow-list.
pub fn child_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    pass: &[String],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(name, _)| {
            let Some(name) = name.to_str() else {
                return false;
            };
            !name.starts_with("OAUTHIMAP_")
                && (BASE.contains(&name) || pass.iter().any(|p| p == name))
        })
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(env: &[(OsString, OsString)]) -> Vec<&str> {
        let mut n: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn only_the_base_and_the_listed_variables_reach_a_child() {
        let parent = [
            ("PATH", "/usr/bin"),
            ("HOME", "/var/lib/oauthimap"),
            ("LANG", "C.UTF-8"),
            ("OAUTHIMAP_MASTER_KEY", "c2VjcmV0"),
            ("OAUTHIMAP_DATABASE_URL", "postgres://u:pw@db/x"),
            ("OAUTHIMAP_LISTEN", "0.0.0.0:8080"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("HTTPS_PROXY", "http://proxy:3128"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = child_env(parent.clone(), &[]);
        assert_eq!(names(&env), vec!["HOME", "LANG", "PATH"]);
        let allowed = ["HTTPS_PROXY".to_owned(), "OAUTHIMAP_MASTER_KEY".to_owned()];
        let env = child_env(parent, &allowed);
        assert_eq!(
            names(&env),
            vec!["HOME", "HTTPS_PROXY", "LANG", "PATH"],
            "listed variables pass, a setting never"
        );
        let env = child_env(Vec::new(), &[]);
        assert_eq!(
            env,
            vec![(OsString::from("PATH"), OsString::from(DEFAULT_PATH))]
        );
    }
}
