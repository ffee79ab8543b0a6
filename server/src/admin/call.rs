//! What an admin request is, read from its method and path before anything else of it: the
//! action (for the metrics and the audit log) and how its answer counts.

use actix_web::http::{Method, StatusCode};

/// The admin API's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    Disconnect,
    Ban,
    Unban,
    RevokeTokens,
    DeleteMessage,
    SetRetention,
    SetLegalHold,
    ReadAudit,
    ReadJob,
    EraseUser,
    Export,
    /// No admin route has this method and path.
    Unknown,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::Disconnect => "disconnect",
            AdminAction::Ban => "ban",
            AdminAction::Unban => "unban",
            AdminAction::RevokeTokens => "revoke_tokens",
            AdminAction::DeleteMessage => "delete_message",
            AdminAction::SetRetention => "set_retention",
            AdminAction::SetLegalHold => "set_legal_hold",
            AdminAction::ReadAudit => "read_audit",
            AdminAction::ReadJob => "read_job",
            AdminAction::EraseUser => "erase_user",
            AdminAction::Export => "export",
            AdminAction::Unknown => "unknown",
        }
    }

    /// The action of `method` on `path` (a path under `/api/v1/admin`).
    pub fn of(method: &Method, path: &str) -> Self {
        let segments: Vec<&str> = path
            .trim_start_matches("/api/v1/admin/")
            .split('/')
            .collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["users", _, "disconnect"]) => AdminAction::Disconnect,
            ("PUT", ["users", _, "ban"]) => AdminAction::Ban,
            ("DELETE", ["users", _, "ban"]) => AdminAction::Unban,
            ("POST", ["users", _, "revoke_tokens"]) => AdminAction::RevokeTokens,
            ("DELETE", ["conversations", _, "messages", _]) => AdminAction::DeleteMessage,
            ("PUT", ["conversations", _, "retention"]) => AdminAction::SetRetention,
            ("PUT", ["conversations", _, "legal_hold"]) => AdminAction::SetLegalHold,
            ("GET", ["audit"]) => AdminAction::ReadAudit,
            ("GET", ["jobs", _]) => AdminAction::ReadJob,
            ("POST", ["users", _, "erase"]) => AdminAction::EraseUser,
            ("POST", ["users", _, "export"]) => AdminAction::Export,
            _ => AdminAction::Unknown,
        }
    }
}

/// How an admin call ended, from its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    Ok,
    Unauthorized,
    ClientError,
    Error,
}

impl CallResult {
    pub fn of(status: StatusCode) -> Self {
        if status.is_success() {
            CallResult::Ok
        } else if status == StatusCode::UNAUTHORIZED {
            CallResult::Unauthorized
        } else if status.is_client_error() {
            CallResult::ClientError
        } else {
            CallResult::Error
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::Unauthorized => "unauthorized",
            CallResult::ClientError => "client_error",
            CallResult::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_method_and_path() {
        for (method, path, action) in [
            (
                Method::POST,
                "/api/v1/admin/users/alice/disconnect",
                AdminAction::Disconnect,
            ),
            (
                Method::PUT,
                "/api/v1/admin/users/alice/ban",
                AdminAction::Ban,
            ),
            (
                Method::DELETE,
                "/api/v1/admin/users/alice/ban",
                AdminAction::Unban,
            ),
            (
                Method::POST,
                "/api/v1/admin/users/a/revoke_tokens",
                AdminAction::RevokeTokens,
            ),
            (
                Method::POST,
                "/api/v1/admin/users/a/erase",
                AdminAction::EraseUser,
            ),
            (
                Method::DELETE,
                "/api/v1/admin/conversations/c/messages/m",
                AdminAction::DeleteMessage,
            ),
            (
                Method::PUT,
                "/api/v1/admin/conversations/c/retention",
                AdminAction::SetRetention,
            ),
            (
                Method::PUT,
                "/api/v1/admin/conversations/c/legal_hold",
                AdminAction::SetLegalHold,
            ),
            (Method::GET, "/api/v1/admin/audit", AdminAction::ReadAudit),
            (
                Method::GET,
                "/api/v1/admin/jobs/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                AdminAction::ReadJob,
            ),
            (
                Method::POST,
                "/api/v1/admin/users/alice/export",
                AdminAction::Export,
            ),
            (
                Method::GET,
                "/api/v1/admin/users/alice/ban",
                AdminAction::Unknown,
            ),
            (
                Method::POST,
                "/api/v1/admin/users/a/b/disconnect",
                AdminAction::Unknown,
            ),
        ] {
            assert_eq!(AdminAction::of(&method, path), action, "{method} {path}");
        }
    }
}
