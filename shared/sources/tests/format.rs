//! The source file format: what loads, and the clear errors for what does not.

use engagement_sources::{Catalog, Scheme, Source};

/// The example of the design (S-DESIGN.md), as a source author would write it.
pub const EXAMPLE: &str = r#"
name = "github"
description = "GitHub repository, organisation and app webhooks"
channel = "github"

[verification]
scheme = "github"

delivery_id = { header = "X-GitHub-Delivery" }

[bots]
actor = "/sender/login"
actor_type = "/sender/type"
logins = ["some-ci-user"]

[[mappings]]
name = "pull_request_merged"
[mappings.match]
headers = { "X-GitHub-Event" = "pull_request" }
equals  = { "/action" = "closed", "/pull_request/merged" = true }
present = ["/pull_request/merged_by/login"]

[[mappings.emit]]
kind = "github.pull_request_merged"
id = "github:pull_request:{/pull_request/id}:merged:author"
occurred_at = "/pull_request/merged_at"
time_format = "rfc3339"
handle = "/pull_request/user/login"
channel = "github"
name = "/pull_request/user/name"
also = [{ channel = "email", handle = "/pull_request/user/email" }]
properties = { repository = "/repository/full_name", number = "/pull_request/number" }
"#;

#[test]
fn the_designs_example_loads() {
    let source = Source::from_toml(EXAMPLE).expect("the example loads");
    assert_eq!(source.name(), "github");
    assert_eq!(source.scheme(), Scheme::Github);
    assert_eq!(source.kinds().collect::<Vec<_>>(), ["github.pull_request_merged"]);
}

#[test]
fn the_builtin_catalog_loads() {
    let catalog = Catalog::builtin();
    for name in catalog.names() {
        assert!(catalog.get(name).is_some());
    }
}
