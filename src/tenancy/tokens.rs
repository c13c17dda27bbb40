//! [`TokenTable`]: bearer tokens / API keys and the tenant each one is.
//!
//! Tokens are kept only as SHA-256 digests. A presented token is hashed and
//! looked up by its digest (O(1) at any number of tenants), then the stored
//! digest is compared with the presented one in constant time (`subtle`), so
//! neither the lookup nor the comparison tells an attacker how much of a
//! token was right. Tokens are never logged, printed or put in errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// Why the token table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("tenants.{tenant}.token_env: environment variable {var} is not set or empty")]
    MissingEnv { tenant: String, var: String },
    #[error("cannot read tokens_file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokens_file {} line {line}: expected \"<tenant> <token>\"", path.display())]
    Line { path: PathBuf, line: usize },
    #[error("a token of tenant {tenant} is also a token of tenant {other}")]
    Shared { tenant: String, other: String },
    #[error("a token of tenant {tenant} is shorter than {MIN_TOKEN_BYTES} bytes")]
    TooShort { tenant: String },
}

/// Tokens shorter than this are refused at start: they can be guessed.
pub const MIN_TOKEN_BYTES: usize = 16;

type Digest = [u8; 32];

/// Token digests → tenant.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_digest: HashMap<Digest, Arc<str>>,
}

fn sha256(token: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token).as_ref());
    out
}

impl TokenTable {
    /// Adds `token` as tenant `tenant`'s.
    ///
    /// # Errors
    /// [`TokenError::TooShort`], or [`TokenError::Shared`] when another tenant has it.
    pub fn insert(&mut self, tenant: &Arc<str>, token: &str) -> Result<(), TokenError> {
        if token.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::TooShort {
                tenant: tenant.to_string(),
            });
        }
        match self
            .by_digest
            .insert(sha256(token.as_bytes()), tenant.clone())
        {
            Some(other) if other != *tenant => Err(TokenError::Shared {
                tenant: tenant.to_string(),
                other: other.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Adds the tokens in environment variable `var` (comma-separated) as `tenant`'s.
    ///
    /// # Errors
    /// [`TokenError::MissingEnv`] when the variable is unset or empty, or as [`TokenTable::insert`].
    pub fn insert_env(&mut self, tenant: &Arc<str>, var: &str) -> Result<(), TokenError> {
        let value = std::env::var(var).unwrap_or_default();
        let tokens: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            return Err(TokenError::MissingEnv {
                tenant: tenant.to_string(),
                var: var.to_owned(),
            });
        }
        tokens.into_iter().try_for_each(|t| self.insert(tenant, t))
    }

    /// Adds every `<tenant> <token>` line of `path`; `intern` turns a tenant id
    /// into the shared `Arc<str>` of that tenant.
    ///
    /// # Errors
    /// [`TokenError::Read`], [`TokenError::Line`] for a malformed line (its text is not
    /// repeated: it holds a secret), or as [`TokenTable::insert`].
    pub fn insert_file(
        &mut self,
        path: &Path,
        mut intern: impl FnMut(&str) -> Option<Arc<str>>,
    ) -> Result<(), TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || TokenError::Line {
                path: path.to_owned(),
                line: n + 1,
            };
            let mut words = line.split_whitespace();
            let (Some(tenant), Some(token), None) = (words.next(), words.next(), words.next())
            else {
                return Err(bad());
            };
            let tenant = intern(tenant).ok_or_else(bad)?;
            self.insert(&tenant, token)?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The tenant whose token `token` is.
    pub fn tenant_of(&self, token: &[u8]) -> Option<&Arc<str>> {
        let presented = sha256(token);
        let (stored, tenant) = self.by_digest.get_key_value(&presented)?;
        bool::from(stored.ct_eq(&presented)).then_some(tenant)
    }
}

/// The token of an `authorization` value: `Bearer <token>` or `ApiKey <token>`
/// (scheme case-insensitive).
pub fn token_of(authorization: &[u8]) -> Option<&[u8]> {
    let space = authorization.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = authorization.split_at(space);
    let token = rest.trim_ascii();
    let known = scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"apikey");
    (known && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_their_tenant_and_nothing_else() {
        let acme: Arc<str> = Arc::from("acme");
        let globex: Arc<str> = Arc::from("globex");
        let mut table = TokenTable::default();
        table.insert(&acme, "acme-secret-0123456789").unwrap();
        table.insert(&globex, "globex-secret-0123456789").unwrap();
        assert_eq!(
            table.tenant_of(b"acme-secret-0123456789").map(|t| &**t),
            Some("acme")
        );
        assert_eq!(
            table.tenant_of(b"globex-secret-0123456789").map(|t| &**t),
            Some("globex")
        );
        assert!(table.tenant_of(b"acme-secret-012345678").is_none());
        assert!(table.tenant_of(b"").is_none());
        assert!(matches!(
            table.insert(&globex, "acme-secret-0123456789"),
            Err(TokenError::Shared { .. })
        ));
        assert!(matches!(
            table.insert(&acme, "short"),
            Err(TokenError::TooShort { .. })
        ));
    }

    #[test]
    fn authorization_schemes() {
        assert_eq!(token_of(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(token_of(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(token_of(b"ApiKey k1"), Some(&b"k1"[..]));
        assert_eq!(token_of(b"Basic dXNlcjpwYXNz"), None);
        assert_eq!(token_of(b"Bearer "), None);
        assert_eq!(token_of(b"abc"), None);
    }

    #[test]
    fn file_lines_name_tenant_and_token_and_errors_never_quote_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# comment\n\nacme acme-secret-0123456789\nglobex   globex-secret-0123456789\n",
        )
        .unwrap();
        let mut table = TokenTable::default();
        table.insert_file(&path, |t| Some(Arc::from(t))).unwrap();
        assert_eq!(table.len(), 2);
        std::fs::write(&path, "acme acme-secret-0123456789 extra-word\n").unwrap();
        let error = TokenTable::default()
            .insert_file(&path, |t| Some(Arc::from(t)))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 1"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
