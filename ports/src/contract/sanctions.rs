//! Contract of [`Sanctions`].

use std::future::Future;

use chrono::{Duration, Utc};
use wire::UserId;

use super::fixtures::unique;
use super::Fixture;
use crate::{Ban, Sanctions, Standing, TokenStanding};

/// Runs every sanctions case, each on a fresh adapter from `make`.
pub async fn sanctions_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn Sanctions>>,
{
    bans_are_set_replaced_and_lifted(make().await).await;
    revocations_only_move_forward(make().await).await;
}

fn ban(reason: &str, until: Option<chrono::DateTime<Utc>>) -> Ban {
    Ban {
        reason: reason.to_owned(),
        until,
        // Stored with millisecond precision by some adapters: compare what they can keep.
        banned_at: chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
            .expect("now"),
    }
}

async fn bans_are_set_replaced_and_lifted(fixture: Fixture<dyn Sanctions>) {
    let sanctions = fixture.port;
    let user = UserId::new(unique("user"));
    let bystander = UserId::new(unique("user"));
    assert_eq!(
        sanctions.standing(&user).await.expect("standing"),
        Standing::default(),
        "a user never sanctioned stands clean"
    );
    assert!(
        !sanctions.lift_ban(&user).await.expect("lift"),
        "no ban to lift"
    );

    let first = ban("spam", None);
    sanctions.ban(&user, &first).await.expect("ban");
    let standing = sanctions.standing(&user).await.expect("standing");
    assert_eq!(standing.ban.as_ref(), Some(&first));
    assert!(standing.ban_at(Utc::now()).is_some());
    assert_eq!(
        sanctions.standing(&bystander).await.expect("standing"),
        Standing::default(),
        "a ban is the user's own"
    );

    let until = chrono::DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).expect("time");
    let second = ban("abuse", Some(until));
    sanctions.ban(&user, &second).await.expect("ban again");
    let standing = sanctions.standing(&user).await.expect("standing");
    assert_eq!(
        standing.ban.as_ref(),
        Some(&second),
        "a new ban replaces the old"
    );
    assert!(
        standing.ban_at(until + Duration::seconds(1)).is_none(),
        "ends at `until`"
    );

    assert!(sanctions.lift_ban(&user).await.expect("lift"));
    assert_eq!(sanctions.standing(&user).await.expect("standing").ban, None);
    assert!(!sanctions.lift_ban(&user).await.expect("lift again"));
}

async fn revocations_only_move_forward(fixture: Fixture<dyn Sanctions>) {
    let sanctions = fixture.port;
    let user = UserId::new(unique("user"));
    let now = Utc::now().timestamp();
    sanctions.revoke_tokens(&user, now).await.expect("revoke");
    let standing = sanctions.standing(&user).await.expect("standing");
    assert_eq!(standing.tokens_valid_from, Some(now));
    assert_eq!(standing.token(Some(now - 1)), TokenStanding::Revoked);
    assert_eq!(standing.token(Some(now)), TokenStanding::Valid);
    assert_eq!(
        standing.token(None),
        TokenStanding::Revoked,
        "no `iat`: refused"
    );

    sanctions
        .revoke_tokens(&user, now - 100)
        .await
        .expect("older revoke");
    assert_eq!(
        sanctions
            .standing(&user)
            .await
            .expect("standing")
            .tokens_valid_from,
        Some(now),
        "an older limit changes nothing"
    );
    sanctions.ban(&user, &ban("spam", None)).await.expect("ban");
    sanctions.lift_ban(&user).await.expect("lift");
    sanctions
        .revoke_tokens(&user, now + 5)
        .await
        .expect("revoke");
    let standing = sanctions.standing(&user).await.expect("standing");
    assert_eq!(
        standing.tokens_valid_from,
        Some(now + 5),
        "bans leave revocations alone"
    );
    assert_eq!(standing.ban, None);
}
