//! A private PostgreSQL database per test, made with `psql` on the rig's cluster and dropped
//! again afterwards, so tests that run at the same time never see each other's rows.

use std::process::Command;

/// A database that exists for as long as this value does.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates the database `e2e_<label>_<random>` on the cluster `admin_url` points at.
    pub fn create(admin_url: &str, label: &str) -> Self {
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let name = format!(
            "e2e_{label}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
        .to_lowercase();
        psql(admin_url, &format!("CREATE DATABASE \"{name}\""));
        let url = with_database(admin_url, &name);
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the new database, for `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends connections a killed Slipway may have left behind in the server.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let dropped = Command::new("psql")
            .args([
                &self.admin_url,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &sql,
            ])
            .output();
        if !matches!(&dropped, Ok(output) if output.status.success()) {
            eprintln!(
                "could not drop the test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

fn psql(url: &str, sql: &str) {
    let output = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql (is the rig up? run scripts/test): {e}"));
    assert!(
        output.status.success(),
        "psql -c {sql:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `admin_url` with its database name replaced by `database`, keeping any query string.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:55432/postgres", "x"),
            "postgres://u:p@127.0.0.1:55432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:55432", "x"),
            "postgres://u:p@127.0.0.1:55432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1/postgres?sslmode=disable", "x"),
            "postgres://u:p@127.0.0.1/x?sslmode=disable"
        );
    }
}
