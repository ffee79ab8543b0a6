//! Contract of [`AuditLog`].

use std::future::Future;

use serde_json::json;

use super::fixtures::{at, unique};
use super::Fixture;
use crate::{AuditLog, AuditQuery, AuditRecord};

/// Runs every audit case, each on a fresh adapter from `make`.
pub async fn audit_log_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn AuditLog>>,
{
    records_come_back_in_order_filtered_and_paged(make().await).await;
}

fn record(second: i64, actor: &str, action: &str, target: &str) -> AuditRecord {
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: at(second),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        details: json!({"status": 200}),
    }
}

fn ids(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|record| record.id.as_str()).collect()
}

async fn records_come_back_in_order_filtered_and_paged(fixture: Fixture<dyn AuditLog>) {
    let audit = fixture.port;
    let admin = unique("admin");
    let user = format!("user:{}", unique("mallory"));
    let appended = [
        record(1, &admin, "admin.ban", &user),
        record(
            2,
            "unknown",
            "admin.disconnect",
            "/api/v1/admin/users/x/disconnect",
        ),
        record(3, &admin, "admin.unban", &user),
        record(4, &admin, "admin.revoke_tokens", &user),
    ];
    for record in &appended {
        audit.append(record.clone()).await.expect("append");
    }
    audit
        .append(appended[0].clone())
        .await
        .expect("append again");
    let mine = |limit| AuditQuery {
        target: Some(user.clone()),
        limit,
        ..AuditQuery::default()
    };
    let all = audit.query(&mine(10)).await.expect("query");
    assert_eq!(
        all.records,
        vec![
            appended[0].clone(),
            appended[2].clone(),
            appended[3].clone()
        ]
    );
    assert_eq!(all.next_cursor, None, "nothing more");

    let first = audit.query(&mine(2)).await.expect("first page");
    assert_eq!(
        ids(&first.records),
        ids(&appended[..1])
            .into_iter()
            .chain([appended[2].id.as_str()])
            .collect::<Vec<_>>()
    );
    let cursor = first.next_cursor.clone().expect("a cursor: more follow");
    let second = audit
        .query(&AuditQuery {
            cursor: Some(cursor),
            ..mine(2)
        })
        .await
        .expect("second page");
    assert_eq!(ids(&second.records), vec![appended[3].id.as_str()]);
    assert_eq!(second.next_cursor, None);

    let by_action = audit
        .query(&AuditQuery {
            action: Some("admin.unban".to_owned()),
            actor: Some(admin.clone()),
            ..mine(10)
        })
        .await
        .expect("by action");
    assert_eq!(ids(&by_action.records), vec![appended[2].id.as_str()]);
    let since = audit
        .query(&AuditQuery {
            since: Some(at(3)),
            ..mine(10)
        })
        .await
        .expect("since");
    assert_eq!(ids(&since.records), ids(&appended[2..]));
}
