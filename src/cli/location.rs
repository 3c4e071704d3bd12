//! Where a command's store is: a directory (sled) or a PostgreSQL URL, and the one function both
//! command lines open it with.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Store, StoreError};

/// The URL schemes that name a PostgreSQL database rather than a directory.
const SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// Where a store is: a directory (the sled engine) or a PostgreSQL database URL. Every command
/// line argument that names a store takes either; an argument starting with `postgres://` or
/// `postgresql://` is a URL, anything else a path.
///
/// Shown (with `{}` or `{:?}`) with any password in the URL replaced by `****`, so that it can be
/// printed and logged.
///
/// ```
/// use revolve::cli::Location;
///
/// let location = Location::from("postgres://app:secret@db.internal/app?sslmode=require");
/// assert!(location.is_url());
/// assert_eq!(
///     location.to_string(),
///     "postgres://app:****@db.internal/app?sslmode=require"
/// );
/// assert!(!Location::from("data/app.revolve").is_url());
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A store's directory.
    Path(PathBuf),
    /// A PostgreSQL database: `postgres://user:password@host:port/database?…` with the libpq URL
    /// parameters (`sslmode`, `options=-csearch_path%3Dschema` for a schema other than `public`).
    Url(String),
}

impl Location {
    /// Whether this is a PostgreSQL URL.
    #[must_use]
    pub fn is_url(&self) -> bool {
        matches!(self, Location::Url(_))
    }

    /// The directory, for a path.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Path(path) => Some(path),
            Location::Url(_) => None,
        }
    }

    /// Opens the store, or creates it: a directory (waiting up to `lock_timeout` while another
    /// process has it open), or the tables in the database (created on first use). The one
    /// function the `revolve` binary and an application's command line open a store with.
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::open`](crate::StoreBuilder::open).
    pub fn open(&self, lock_timeout: Duration) -> Result<Store, StoreError> {
        match self {
            Location::Path(path) => Store::builder()
                .path(path)
                .lock_timeout(lock_timeout)
                .open(),
            Location::Url(url) => Store::builder().url(url.as_str()).open(),
        }
    }

    /// [`StoreError::Unsupported`] for an operation only a directory's store (sled) offers,
    /// named by `operation`, when this is a URL.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] for a URL.
    pub fn require_path(&self, operation: &'static str) -> Result<&Path, StoreError> {
        match self {
            Location::Path(path) => Ok(path),
            Location::Url(_) => Err(StoreError::Unsupported {
                operation,
                engine: "PostgreSQL",
            }),
        }
    }
}

impl From<OsString> for Location {
    fn from(argument: OsString) -> Self {
        match argument.into_string() {
            Ok(text) if is_url(&text) => Location::Url(text),
            Ok(text) => Location::Path(PathBuf::from(text)),
            Err(other) => Location::Path(PathBuf::from(other)),
        }
    }
}

impl From<&OsStr> for Location {
    fn from(argument: &OsStr) -> Self {
        Location::from(argument.to_owned())
    }
}

impl From<&str> for Location {
    fn from(argument: &str) -> Self {
        Location::from(OsString::from(argument))
    }
}

impl From<String> for Location {
    fn from(argument: String) -> Self {
        Location::from(OsString::from(argument))
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::from(path.into_os_string())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(path) => write!(f, "{}", path.display()),
            Location::Url(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Location::Url(url) => f.debug_tuple("Url").field(&redact(url)).finish(),
        }
    }
}

fn is_url(text: &str) -> bool {
    SCHEMES.iter().any(|scheme| {
        text.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

/// `url` with its password replaced by `****`: the one in the user information
/// (`user:password@`) and any `password=` parameter.
#[must_use]
pub fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(start);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            match user_info.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":****");
                }
                None => out.push_str(user_info),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=****")
                    }
                    _ => parameter.to_owned(),
                })
                .collect();
            out.push_str(&parameters.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(Location::from("postgres://h/db").is_url());
        assert!(Location::from("PostgreSQL://h/db").is_url());
        assert!(!Location::from("postgres").is_url());
        assert!(!Location::from("./postgres://x").is_url());
        assert_eq!(
            Location::from("data/store").path(),
            Some(Path::new("data/store"))
        );
    }

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:****@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p@ss:w@h/db", "postgres://u:****@h/db"),
            (
                "postgresql://h/db?user=u&password=pw&sslmode=require",
                "postgresql://h/db?user=u&password=****&sslmode=require",
            ),
            (
                "postgres://u:pw@h?password=x",
                "postgres://u:****@h?password=****",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown);
            let location = Location::from(url);
            assert_eq!(location.to_string(), shown);
            assert!(!format!("{location:?}").contains("pw"), "{location:?}");
        }
    }

    #[test]
    fn a_url_is_not_a_directory_for_sled_only_commands() {
        let error = Location::from("postgres://u:pw@h/db")
            .require_path("salvage")
            .unwrap_err();
        assert!(matches!(error, StoreError::Unsupported { .. }), "{error}");
    }
}
