//! The table of signed tree heads beside the log: one head per (authority, size), never
//! replaced, read in order and newest first, on both backends.

use ochered_store::testing::Harness;

async fn scenario(harness: &Harness) {
    let heads = harness
        .store
        .tree_heads()
        .expect("both real backends keep tree heads");
    assert_eq!(heads.newest_tree_head("city").await.unwrap(), None);
    let first = heads
        .insert_tree_head("city", 5, &[1; 32], "{\"size\":5}")
        .await
        .unwrap();
    assert_eq!(
        (first.tree_size, first.root_hash, first.head.as_str()),
        (5, [1; 32], "{\"size\":5}")
    );
    // A second head of the same size, with another root, does not replace the first: the
    // stored one comes back, and the caller sees the roots differ.
    let again = heads
        .insert_tree_head("city", 5, &[2; 32], "{\"forged\":true}")
        .await
        .unwrap();
    assert_eq!(again, first);
    for size in [9, 7] {
        heads
            .insert_tree_head(
                "city",
                size,
                &[size as u8; 32],
                &format!("{{\"size\":{size}}}"),
            )
            .await
            .unwrap();
    }
    heads
        .insert_tree_head("town", 100, &[3; 32], "{}")
        .await
        .unwrap();
    let sizes =
        |list: Vec<ochered_store::StoredHead>| list.iter().map(|h| h.tree_size).collect::<Vec<_>>();
    assert_eq!(
        sizes(heads.tree_heads("city", 0, 10).await.unwrap()),
        [5, 7, 9]
    );
    assert_eq!(sizes(heads.tree_heads("city", 5, 1).await.unwrap()), [7]);
    assert_eq!(
        sizes(heads.tree_heads("city", 9, 10).await.unwrap()),
        Vec::<i64>::new()
    );
    assert_eq!(
        heads
            .newest_tree_head("city")
            .await
            .unwrap()
            .unwrap()
            .tree_size,
        9
    );
    assert_eq!(
        heads
            .newest_tree_head("town")
            .await
            .unwrap()
            .unwrap()
            .root_hash,
        [3; 32]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    scenario(&Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    scenario(&harness).await;
}
