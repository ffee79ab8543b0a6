//! Tokens (HS256 JWTs: `sub`, `exp`, `iat`, and `nbf` when a token has one) and the app
//! backends' API key.

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use wire::UserId;

use crate::config::Secret;

/// Longest `display_name` a token may carry, in bytes (it travels in every token).
pub const MAX_DISPLAY_NAME_BYTES: usize = 256;

/// Checks what `POST /api/v1/auth/token` is asked to sign: the user id (see
/// [`actors::dispatch::check_user_id`]) and the display name (at most
/// [`MAX_DISPLAY_NAME_BYTES`], no control characters). Failures are `bad_request`.
pub fn check_token_request(
    user_id: &UserId,
    display_name: Option<&str>,
) -> Result<(), actors::OpError> {
    actors::dispatch::check_user_id(user_id)?;
    let Some(display_name) = display_name else {
        return Ok(());
    };
    if display_name.len() > MAX_DISPLAY_NAME_BYTES {
        return Err(actors::OpError::bad_request(format!(
            "`display_name` is longer than {MAX_DISPLAY_NAME_BYTES} bytes"
        )));
    }
    if display_name.chars().any(char::is_control) {
        return Err(actors::OpError::bad_request(
            "`display_name` must not contain control characters",
        ));
    }
    Ok(())
}

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

pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    api_key: Secret,
    /// Empty: the admin API is off.
    admin_api_key: Secret,
}

/// What an `X-Admin-Key` header is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKeyCheck {
    /// No admin key is configured: the admin API does not exist (404).
    AdminApiOff,
    /// Missing or wrong (401).
    Refused,
    Accepted,
}

impl Authenticator {
    pub fn new(jwt_secret: &Secret, api_key: &Secret, admin_api_key: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A token carrying `nbf` is refused until then (RFC 7519 §4.1.5); the leeway applies to
        // `exp` and `nbf` alike, for clocks that disagree a little.
        validation.validate_nbf = true;
        validation.leeway = TOKEN_CLOCK_LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(jwt_secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(jwt_secret.expose().as_bytes()),
            validation,
            api_key: api_key.clone(),
            admin_api_key: admin_api_key.clone(),
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
        actors::dispatch::check_user_id(&user_id)
            .map_err(|error| AuthError::Invalid(format!("`sub`: {}", error.message)))?;
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

    /// Constant-time comparison of a presented API key.
    pub fn api_key_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|presented| constant_time_eq(&self.api_key, presented))
    }

    /// Checks a presented admin key (constant-time); the app API key is no admin key.
    pub fn check_admin_key(&self, presented: Option<&str>) -> AdminKeyCheck {
        if self.admin_api_key.is_empty() {
            return AdminKeyCheck::AdminApiOff;
        }
        match presented {
            Some(presented) if constant_time_eq(&self.admin_api_key, presented) => {
                AdminKeyCheck::Accepted
            }
            _ => AdminKeyCheck::Refused,
        }
    }
}

/// Compares a secret with a presented value in time independent of where they differ.
fn constant_time_eq(expected: &Secret, presented: &str) -> bool {
    let expected = expected.expose().as_bytes();
    let presented = presented.as_bytes();
    if expected.len() != presented.len() {
        return false;
    }
    expected
        .iter()
        .zip(presented)
        .fold(0u8, |difference, (left, right)| difference | (left ^ right))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        Authenticator::new(
            &Secret::new("a-test-secret-that-is-long-enough-123"),
            &Secret::new("test-api-key-1234"),
            &Secret::new("test-admin-key-5678"),
        )
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

    #[test]
    fn issued_tokens_verify() {
        let auth = authenticator();
        let (token, expires_at) = auth.issue(&UserId::new("alice"), None, 60, None).unwrap();
        let verified = auth.verify(&token).unwrap();
        assert_eq!(verified.user_id, UserId::new("alice"));
        assert_eq!(verified.expires_at, expires_at);
    }

    #[test]
    fn rejects_forged_none_and_expired_tokens() {
        let auth = authenticator();
        let other = Authenticator::new(
            &Secret::new("another-secret-that-is-long-enough-456"),
            &Secret::new("test-api-key-1234"),
            &Secret::new(""),
        );
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
            &EncodingKey::from_secret(b"a-test-secret-that-is-long-enough-123"),
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
            &EncodingKey::from_secret(b"a-test-secret-that-is-long-enough-123"),
        )
        .unwrap();
        assert!(matches!(auth.verify(&hs512), Err(AuthError::Invalid(_))));
    }

    /// A token signed with the test secret whose payload is `payload`.
    fn signed(payload: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(b"a-test-secret-that-is-long-enough-123"),
        )
        .unwrap()
    }

    #[test]
    fn not_before_is_enforced_with_the_leeway() {
        let auth = authenticator();
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
    fn token_requests_refuse_long_names_and_control_characters() {
        let alice = UserId::new("alice");
        assert!(check_token_request(&alice, Some("Alice")).is_ok());
        assert!(check_token_request(&alice, None).is_ok());
        let long_name = "x".repeat(MAX_DISPLAY_NAME_BYTES + 1);
        assert!(check_token_request(&alice, Some(&long_name)).is_err());
        assert!(check_token_request(&alice, Some("Alice\nINFO forged")).is_err());
        let forged = UserId::new("mallory\r\n2026-01-01 INFO admin logged in");
        assert!(check_token_request(&forged, None).is_err());
    }

    #[test]
    fn tokens_whose_sub_carries_control_characters_are_refused() {
        let auth = authenticator();
        let exp = Utc::now().timestamp() + 600;
        let forged =
            signed(serde_json::json!({"sub": "mallory\r\nINFO admin logged in", "exp": exp}));
        assert!(matches!(auth.verify(&forged), Err(AuthError::Invalid(_))));
        let plain = signed(serde_json::json!({"sub": "mallory", "exp": exp}));
        assert!(auth.verify(&plain).is_ok());
    }

    #[test]
    fn api_key_comparison() {
        let auth = authenticator();
        assert!(auth.api_key_matches(Some("test-api-key-1234")));
        assert!(!auth.api_key_matches(Some("test-api-key-1235")));
        assert!(!auth.api_key_matches(Some("short")));
        assert!(!auth.api_key_matches(None));
    }

    #[test]
    fn admin_key_is_its_own_secret_and_off_when_unset() {
        let auth = authenticator();
        assert_eq!(
            auth.check_admin_key(Some("test-admin-key-5678")),
            AdminKeyCheck::Accepted
        );
        assert_eq!(
            auth.check_admin_key(Some("test-api-key-1234")),
            AdminKeyCheck::Refused
        );
        assert_eq!(
            auth.check_admin_key(Some("test-admin-key-5679")),
            AdminKeyCheck::Refused
        );
        assert_eq!(auth.check_admin_key(None), AdminKeyCheck::Refused);
        let off = Authenticator::new(
            &Secret::new("a-test-secret-that-is-long-enough-123"),
            &Secret::new("test-api-key-1234"),
            &Secret::new(""),
        );
        assert_eq!(off.check_admin_key(Some("")), AdminKeyCheck::AdminApiOff);
    }

    #[test]
    fn a_token_issued_in_a_revoked_second_carries_the_revocation_limit() {
        let auth = authenticator();
        let later = Utc::now().timestamp() + 1;
        let (token, _) = auth
            .issue(&UserId::new("alice"), None, 60, Some(later))
            .unwrap();
        assert_eq!(auth.verify(&token).unwrap().issued_at, Some(later));
    }
}
