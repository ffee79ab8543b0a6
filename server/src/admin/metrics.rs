//! `parley_admin_calls_total{action,result}`: every admin API call, refused ones included.

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct AdminMetrics {
    /// By `action` (`disconnect`, `ban`, `unban`, `revoke_tokens`, `delete_message`,
    /// `read_audit`, `read_job`, `export`, `unknown`) and `result` (`ok`, `unauthorized`, `client_error`, `error`).
    pub calls: IntCounterVec,
}

impl AdminMetrics {
    pub fn new(registry: &Registry) -> Self {
        let calls = IntCounterVec::new(
            Opts::new(
                "parley_admin_calls_total",
                "admin API calls by action and result (ok, unauthorized, client_error, error)",
            ),
            &["action", "result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(calls.clone()))
            .expect("unique metric");
        Self { calls }
    }
}
