//! Tokens (HS256 JWTs, crate `tokens`), the app backends' API key and the admin key.

use tokens::Tokens;
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

pub use tokens::{AuthError, Verified};

pub struct Authenticator {
    tokens: Tokens,
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
        Self {
            tokens: Tokens::new(jwt_secret.expose().as_bytes()),
            api_key: api_key.clone(),
            admin_api_key: admin_api_key.clone(),
        }
    }

    /// Issues and verifies the tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
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
}
