//! Contract of [`Presence`].

use std::future::Future;

use wire::{NodeId, SessionId, UserId};

use super::fixtures::unique;
use super::Fixture;
use crate::Presence;

/// Runs every presence case, each on a fresh presence from `make`.
pub async fn presence_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn Presence>>,
{
    online_from_the_first_session_to_the_last(make().await).await;
}

async fn online_from_the_first_session_to_the_last(fixture: Fixture<dyn Presence>) {
    let presence = fixture.port;
    let user = UserId::new(unique("user"));
    let never_seen = UserId::new(unique("never"));
    let node = NodeId::new(unique("node"));
    let other_node = NodeId::new(unique("node"));
    let first = SessionId::new(unique("session"));
    let second = SessionId::new(unique("session"));

    let initial = presence
        .get(std::slice::from_ref(&never_seen))
        .await
        .expect("get");
    let info = &initial[&never_seen];
    assert!(!info.online);
    assert_eq!(info.last_seen, None, "never seen: no last_seen");

    assert!(presence
        .connect(&user, &first, &node)
        .await
        .expect("connect"));
    assert!(
        !presence
            .connect(&user, &second, &other_node)
            .await
            .expect("connect"),
        "a second session is not a transition"
    );
    assert_eq!(
        presence.session_count(&user).await.expect("count"),
        2,
        "sessions on every node count"
    );
    assert_eq!(presence.session_count(&never_seen).await.expect("count"), 0);
    assert!(
        !presence
            .disconnect(&user, &SessionId::new(unique("unknown")), &node)
            .await
            .expect("disconnect"),
        "an unknown session changes nothing"
    );
    assert!(!presence
        .disconnect(&user, &first, &node)
        .await
        .expect("disconnect"));
    let online = presence
        .get(std::slice::from_ref(&user))
        .await
        .expect("get");
    assert!(online[&user].online, "one session left");
    assert_eq!(
        presence.session_count(&user).await.expect("count"),
        1,
        "the session on the other node"
    );

    assert!(
        presence
            .disconnect(&user, &second, &other_node)
            .await
            .expect("disconnect"),
        "the last session going is a transition"
    );
    let offline = presence
        .get(&[user.clone(), never_seen.clone()])
        .await
        .expect("get");
    assert_eq!(offline.len(), 2);
    assert!(!offline[&user].online);
    assert!(offline[&user].last_seen.is_some(), "last_seen once offline");
    assert!(presence
        .connect(&user, &first, &node)
        .await
        .expect("reconnect"));
}
