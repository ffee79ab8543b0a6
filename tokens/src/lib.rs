//! Parley's tokens: HS256 JWTs with `sub` (the user id), `exp`, `iat`, an optional `name`, and
//! `nbf` when an app backend's token has one. `parley-server` issues and verifies them (its
//! `auth` module adds the API keys); kept in a crate of their own, free of the server, so the
//! fuzzer (`fuzz/`, target `token_verify`) can feed `verify` any string.

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use wire::UserId;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    /// `iat`, seconds since the epoch (app backends may mint tokens without it).
    pub issued_at: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Seconds of clock difference tolerated on `exp` and `nbf` (docs/protocol.md §2.2).
const TOKEN_CLOCK_LEEWAY_SECS: u64 = 60;

/// Issues and verifies tokens with one shared secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A token carrying `nbf` is refused until then (RFC 7519 §4.1.5); the leeway applies to
        // `exp` and `nbf` alike, for clocks that disagree a little.
        validation.validate_nbf = true;
        validation.leeway = TOKEN_CLOCK_LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token for `user_id` valid for `ttl_secs`. Its `iat` is now, or `not_before`
    /// when that is later (the user's tokens were revoked within this second: a fresh token
    /// must pass the revocation).
    pub fn issue(
        &self,
        user_id: &UserId,
        display_name: Option<String>,
        ttl_secs: u64,
        not_before: Option<i64>,
    ) -> Result<(String, DateTime<Utc>), AuthError> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::seconds(ttl_secs as i64);
        let claims = Claims {
            sub: user_id.to_string(),
            exp: expires_at.timestamp(),
            iat: Some(now.timestamp().max(not_before.unwrap_or(i64::MIN))),
            name: display_name,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| AuthError::Invalid(error.to_string()))?;
        let expires_at = Utc
            .timestamp_opt(claims.exp, 0)
            .single()
            .unwrap_or(expires_at);
        Ok((token, expires_at))
    }

    /// Verifies signature (HS256 only), expiry, not-before and subject.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    AuthError::Invalid("not valid yet (`nbf` is in the future)".to_owned())
                }
                _ => AuthError::Invalid(error.to_string()),
            })?;
        let claims = data.claims;
        // Tokens minted by app backends are checked like issued ones: `sub` reaches the logs.
        let user_id = UserId::new(claims.sub);
        if let Some(problem) = user_id.problem() {
            return Err(AuthError::Invalid(format!("`sub`: {problem}")));
        }
        let expires_at = Utc
            .timestamp_opt(claims.exp, 0)
            .single()
            .ok_or_else(|| AuthError::Invalid("`exp` out of range".to_owned()))?;
        Ok(Verified {
            user_id,
            expires_at,
            issued_at: claims.iat,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-test-secret-that-is-long-enough-123";

    fn tokens() -> Tokens {
        Tokens::new(SECRET)
    }

    fn unsigned(payload: &str) -> String {
        use base64_like::encode;
        format!(
            "{}.{}.",
            encode(r#"{"alg":"none","typ":"JWT"}"#),
            encode(payload)
        )
    }

    mod base64_like {
        /// Base64url without padding (enough for test tokens).
        pub fn encode(text: &str) -> String {
            const ALPHABET: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = text.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
                for index in 0..(chunk.len() + 1) {
                    out.push(ALPHABET[((n >> (18 - 6 * index)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    /// A token signed with the test secret whose payload is `payload`.
    fn signed(payload: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn issued_tokens_verify() {
        let auth = tokens();
        let (token, expires_at) = auth.issue(&UserId::new("alice"), None, 60, None).unwrap();
        let verified = auth.verify(&token).unwrap();
        assert_eq!(verified.user_id, UserId::new("alice"));
        assert_eq!(verified.expires_at, expires_at);
    }

    #[test]
    fn rejects_forged_none_and_expired_tokens() {
        let auth = tokens();
        let other = Tokens::new(b"another-secret-that-is-long-enough-456");
        let (forged, _) = other.issue(&UserId::new("alice"), None, 60, None).unwrap();
        assert!(matches!(auth.verify(&forged), Err(AuthError::Invalid(_))));
        let exp = Utc::now().timestamp() + 600;
        let none = unsigned(&format!(r#"{{"sub":"alice","exp":{exp}}}"#));
        assert!(matches!(auth.verify(&none), Err(AuthError::Invalid(_))));
        let claims = Claims {
            sub: "alice".into(),
            exp: Utc::now().timestamp() - 3600,
            iat: None,
            name: None,
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "alice".into(),
                exp,
                iat: None,
                name: None,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(auth.verify(&hs512), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn not_before_is_enforced_with_the_leeway() {
        let auth = tokens();
        let now = Utc::now().timestamp();
        let exp = now + 7200;
        let later = signed(serde_json::json!({"sub": "alice", "exp": exp, "nbf": now + 3600}));
        assert!(
            matches!(auth.verify(&later), Err(AuthError::Invalid(reason)) if reason.contains("nbf"))
        );
        let within_leeway =
            signed(serde_json::json!({"sub": "alice", "exp": exp, "nbf": now + 30}));
        assert!(auth.verify(&within_leeway).is_ok());
        let past = signed(serde_json::json!({"sub": "alice", "exp": exp, "nbf": now - 10}));
        assert!(auth.verify(&past).is_ok());
        let malformed = signed(serde_json::json!({"sub": "alice", "exp": exp, "nbf": "soon"}));
        assert!(matches!(
            auth.verify(&malformed),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn tokens_whose_sub_carries_control_characters_are_refused() {
        let auth = tokens();
        let exp = Utc::now().timestamp() + 600;
        let forged =
            signed(serde_json::json!({"sub": "mallory\r\nINFO admin logged in", "exp": exp}));
        assert!(matches!(auth.verify(&forged), Err(AuthError::Invalid(_))));
        let plain = signed(serde_json::json!({"sub": "mallory", "exp": exp}));
        assert!(auth.verify(&plain).is_ok());
    }

    #[test]
    fn a_token_issued_in_a_revoked_second_carries_the_revocation_limit() {
        let auth = tokens();
        let later = Utc::now().timestamp() + 1;
        let (token, _) = auth
            .issue(&UserId::new("alice"), None, 60, Some(later))
            .unwrap();
        assert_eq!(auth.verify(&token).unwrap().issued_at, Some(later));
    }
}
