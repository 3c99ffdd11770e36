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

/// A minimal valid file with `replace` applied, loaded as `bad.toml`; its error text.
fn error_of(edit: impl Fn(&str) -> String) -> String {
    let text = edit(MINIMAL);
    Source::from_file("bad.toml", &text).expect_err("an invalid file").to_string()
}

const MINIMAL: &str = r#"name = "minimal"
channel = "forum"
[verification]
scheme = "github"
[[mappings]]
name = "all"
[[mappings.emit]]
kind = "forum.post"
id = "forum:{/id}"
occurred_at = "/at"
handle = "/user"
"#;

#[test]
fn the_minimal_file_loads() {
    Source::from_file("minimal.toml", MINIMAL).expect("loads");
}

#[test]
fn a_bad_file_says_which_file_and_what_is_wrong() {
    let cases: Vec<(String, &str)> = vec![
        (
            error_of(|t| t.replace(r#"scheme = "github""#, r#"scheme = "md5""#)),
            "source file bad.toml: verification.scheme \"md5\" is not one of github, hmac-sha256, stripe, slack, zendesk, standard-webhooks, secret-in-url, none",
        ),
        (
            error_of(|t| t.replace(r#"scheme = "github""#, r#"scheme = "none""#)),
            "source file bad.toml: scheme \"none\" accepts anyone's deliveries: say so explicitly with `unverified = true` under [verification]",
        ),
        (
            error_of(|t| t.replace("handle = \"/user\"\n", "")),
            "source file bad.toml: mapping \"all\": emit 1: `handle` is required: a JSON pointer to the customer's handle",
        ),
        (
            error_of(|t| t.replace(r#"handle = "/user""#, r#"handle = "user""#)),
            "source file bad.toml: mapping \"all\": emit 1: handle: \"user\" is not a JSON pointer: it must start with '/' (e.g. \"/sender/login\")",
        ),
        (
            error_of(|t| t.replace(r#"id = "forum:{/id}""#, r#"id = "forum:{id}""#)),
            "source file bad.toml: mapping \"all\": emit 1: id \"forum:{id}\": {id} is neither {delivery} nor a JSON pointer such as {/pull_request/id}",
        ),
        (
            error_of(|t| t.replace(r#"name = "minimal""#, r#"name = "Minimal Source""#)),
            "source file bad.toml: name \"Minimal Source\" must be 1..64 characters of a-z, 0-9 and '-'",
        ),
        (
            error_of(|t| t.replace(r#"scheme = "github""#, "scheme = \"hmac-sha256\"\nencoding = \"hex\"")),
            "source file bad.toml: verification.header is required for scheme \"hmac-sha256\" (the header carrying the signature)",
        ),
        (
            error_of(|t| t.replace(r#"scheme = "github""#, "scheme = \"github\"\nprefix = \"sha256=\"")),
            "source file bad.toml: verification.prefix applies only to scheme \"hmac-sha256\"",
        ),
        (
            error_of(|t| t.replace("occurred_at = \"/at\"", "occurred_at = \"/at\"\ntime_format = \"yyyy-mm-dd\"")),
            "source file bad.toml: mapping \"all\": emit 1: time_format \"yyyy-mm-dd\" is not rfc3339, unix, unix_ms or a strftime pattern such as \"%Y-%m-%d %H:%M:%S\"",
        ),
        (
            error_of(|t| t.replace("kind = \"forum.post\"", "kind = \"Forum Post\"")),
            "source file bad.toml: mapping \"all\": emit 1: kind \"Forum Post\" must be 1..64 characters of a-z, 0-9, '_', '-' or '.'",
        ),
        (
            error_of(|t| t.replace("[[mappings.emit]]", "[mappings.match]\npresent = [\"/a~2\"]\n[[mappings.emit]]")),
            "source file bad.toml: mapping \"all\": match.present: \"/a~2\" is not a JSON pointer: '~' must be followed by 0 or 1",
        ),
        (
            error_of(|t| t.split("[[mappings]]").next().unwrap_or_default().to_string()),
            "source file bad.toml: no [[mappings]]: a source must map at least one event",
        ),
    ];
    for (actual, expected) in cases {
        assert_eq!(actual, expected);
    }
}

#[test]
fn a_syntax_error_names_the_file_and_the_line() {
    let message = error_of(|t| t.replace("channel = \"forum\"", "channel = forum"));
    assert!(message.starts_with("source file bad.toml: TOML parse error at line 2"), "{message}");
    let message = error_of(|t| t.replace("channel = \"forum\"", "channel = \"forum\"\ncolour = \"blue\""));
    assert!(message.contains("unknown field `colour`"), "{message}");
}

#[test]
fn user_files_replace_builtins_by_name_and_may_not_clash() {
    let catalog = Catalog::with_files([("mine/minimal.toml", MINIMAL)]).expect("loads");
    assert!(catalog.get("minimal").is_some());
    let error = Catalog::with_files([("a.toml", MINIMAL), ("b.toml", MINIMAL)]).expect_err("two of one name");
    assert_eq!(
        error.to_string(),
        "source file b.toml: source \"minimal\" is also defined in a.toml"
    );
}
