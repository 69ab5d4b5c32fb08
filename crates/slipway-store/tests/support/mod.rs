//! What the store's test files share: a fresh store on each backend, and a macro that runs a
//! test once on SQLite and once on PostgreSQL (the rig's server, a new database per test).
#![allow(dead_code, reason = "each test file uses the part it needs")]

use slipway_store::Store;
use uuid::Uuid;

/// A migrated store on a new SQLite file; the directory must live as long as the store.
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.expect("sqlite opens");
    store.migrate().await.expect("sqlite migrates");
    (store, dir)
}

/// A fresh, empty PostgreSQL database on the rig's server; returns its URL.
pub async fn postgres_database() -> String {
    let admin_url = std::env::var("SLIPWAY_TEST_POSTGRES_URL")
        .expect("SLIPWAY_TEST_POSTGRES_URL is not set: run scripts/test (it starts the rig)");
    let database = format!("slipway_test_{}", Uuid::new_v4().simple());
    let admin = Store::connect(&admin_url)
        .await
        .expect("postgres admin connection");
    admin
        .execute_raw_for_tests(&format!("CREATE DATABASE {database}"))
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    format!("{base}/{database}")
}

/// A migrated store on a fresh PostgreSQL database (the directory is there to match
/// [`sqlite_store`]).
pub async fn postgres_store() -> (Store, tempfile::TempDir) {
    let store = Store::connect(&postgres_database().await)
        .await
        .expect("postgres opens");
    store.migrate().await.expect("postgres migrates");
    (store, tempfile::tempdir().expect("tempdir"))
}

/// Declares `mod name { sqlite, postgres }` tests that run `name(store)` on each backend;
/// `multi_thread:` first runs them on a two-thread runtime, for tests of concurrency.
macro_rules! on_both_backends {
    (multi_thread: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let (store, _dir) = crate::support::sqlite_store().await;
                    super::$name(store).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let (store, _dir) = crate::support::postgres_store().await;
                    super::$name(store).await;
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let (store, _dir) = crate::support::sqlite_store().await;
                    super::$name(store).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let (store, _dir) = crate::support::postgres_store().await;
                    super::$name(store).await;
                }
            }
        )*
    };
}
