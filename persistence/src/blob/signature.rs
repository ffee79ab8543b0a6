//! Signed URLs for the local blob store: `?expires=UNIX&max=BYTES&signature=HEX`, where the
//! signature is HMAC-SHA256 over the method, the key, the expiry and the size limit. Anyone
//! holding the URL may make that one kind of request on that one key until it expires.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use ports::{BlobKey, TransferMethod};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The query string of a signed URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SignedQuery {
    /// Unix seconds after which the URL is refused.
    pub expires: i64,
    /// Most bytes an upload may carry (0 for downloads).
    #[serde(default)]
    pub max: u64,
    pub signature: String,
}

/// Why a signed URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("the URL has expired")]
    Expired,
    #[error("the URL's signature does not match")]
    BadSignature,
}

/// Signs and checks the local store's URLs with one secret key.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("UrlSigner(<redacted>)")
    }
}

impl UrlSigner {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, method: TransferMethod, key: &BlobKey, expires: i64, max: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        let signed = format!("{}\n{key}\n{expires}\n{max}", method.as_str());
        mac.update(signed.as_bytes());
        mac
    }

    /// The query for a request of `method` on `key` until `expires_at`.
    pub fn sign(
        &self,
        method: TransferMethod,
        key: &BlobKey,
        expires_at: DateTime<Utc>,
        max: u64,
    ) -> SignedQuery {
        let expires = expires_at.timestamp();
        let signature = self.mac(method, key, expires, max).finalize().into_bytes();
        SignedQuery {
            expires,
            max,
            signature: hex::encode(signature),
        }
    }

    /// Whether `query` allows `method` on `key` now (the signature is compared in constant
    /// time).
    pub fn check(
        &self,
        method: TransferMethod,
        key: &BlobKey,
        query: &SignedQuery,
        now: DateTime<Utc>,
    ) -> Result<(), UrlRefused> {
        let signature = hex::decode(&query.signature).map_err(|_| UrlRefused::BadSignature)?;
        self.mac(method, key, query.expires, query.max)
            .verify_slice(&signature)
            .map_err(|_| UrlRefused::BadSignature)?;
        if now.timestamp() >= query.expires {
            return Err(UrlRefused::Expired);
        }
        Ok(())
    }
}

impl SignedQuery {
    pub fn to_query_string(&self) -> String {
        format!(
            "expires={}&max={}&signature={}",
            self.expires, self.max, self.signature
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> BlobKey {
        BlobKey::parse(name).expect("key")
    }

    #[test]
    fn a_signature_allows_only_its_method_key_and_limit_until_it_expires() {
        let signer = UrlSigner::new(b"secret");
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(60);
        let query = signer.sign(TransferMethod::Put, &key("a/b"), later, 10);
        assert_eq!(
            signer.check(TransferMethod::Put, &key("a/b"), &query, now),
            Ok(())
        );
        let refused = Err(UrlRefused::BadSignature);
        assert_eq!(
            signer.check(TransferMethod::Get, &key("a/b"), &query, now),
            refused
        );
        assert_eq!(
            signer.check(TransferMethod::Put, &key("a/c"), &query, now),
            refused
        );
        let bigger = SignedQuery {
            max: 11,
            ..query.clone()
        };
        assert_eq!(
            signer.check(TransferMethod::Put, &key("a/b"), &bigger, now),
            refused
        );
        let other = UrlSigner::new(b"other");
        assert_eq!(
            other.check(TransferMethod::Put, &key("a/b"), &query, now),
            refused
        );
        let expired = later + chrono::Duration::seconds(1);
        assert_eq!(
            signer.check(TransferMethod::Put, &key("a/b"), &query, expired),
            Err(UrlRefused::Expired)
        );
    }
}
