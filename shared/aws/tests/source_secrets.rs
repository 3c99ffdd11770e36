//! The sources' signing secrets in Secrets Manager (moto): one JSON secret read once and cached,
//! re-read after its max age, and every way it can fail typed as retryable or not, without a
//! secret's value in any error.

use engagement_aws::client::local_secretsmanager;
use engagement_aws::source_secrets::SourceSecretsError;
use engagement_aws::{RequestCounter, SecretsManagerSourceSecrets};
use engagement_testkit::{moto_endpoint, unique_name};
use std::time::Duration;

async fn secret_with(value: &str) -> String {
    let client = local_secretsmanager(moto_endpoint(), None);
    client
        .create_secret()
        .name(unique_name("sources"))
        .secret_string(value)
        .send()
        .await
        .expect("a secret")
        .arn()
        .expect("an arn")
        .to_string()
}

#[tokio::test]
async fn each_source_reads_its_own_secret_with_one_call_per_cold_start() {
    let arn = secret_with(r#"{"github": "gh-signing-secret", "stripe": "whsec_c3RyaXBl"}"#).await;
    let counter = RequestCounter::default();
    let secrets = SecretsManagerSourceSecrets::new(local_secretsmanager(moto_endpoint(), Some(counter.clone())), &arn);
    secrets.preload().await.expect("read at cold start");

    assert_eq!(secrets.secret_of("github").await, Ok(Some("gh-signing-secret".into())));
    assert_eq!(secrets.secret_of("stripe").await, Ok(Some("whsec_c3RyaXBl".into())));
    // A source without an entry is not connected (the handler answers 404).
    assert_eq!(secrets.secret_of("slack").await, Ok(None));
    assert_eq!(secrets.connected().await, Ok(vec!["github".to_string(), "stripe".to_string()]));
    assert_eq!(
        counter.snapshot().get("GetSecretValue"),
        Some(&1),
        "deliveries cost no Secrets Manager call"
    );
}

#[tokio::test]
async fn a_secret_the_operator_adds_is_used_once_the_value_read_is_old() {
    let arn = secret_with(r#"{"github": "old"}"#).await;
    let cached = SecretsManagerSourceSecrets::new(local_secretsmanager(moto_endpoint(), None), &arn);
    let expiring = SecretsManagerSourceSecrets::new(local_secretsmanager(moto_endpoint(), None), &arn).with_max_age(Duration::ZERO);
    assert_eq!(cached.secret_of("github").await, Ok(Some("old".into())));
    assert_eq!(expiring.secret_of("github").await, Ok(Some("old".into())));

    local_secretsmanager(moto_endpoint(), None)
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"github": "rotated", "slack": "new"}"#)
        .send()
        .await
        .expect("a new value");

    assert_eq!(cached.secret_of("github").await, Ok(Some("old".into())), "served from the cache");
    assert_eq!(cached.secret_of("slack").await, Ok(None));
    assert_eq!(expiring.secret_of("github").await, Ok(Some("rotated".into())));
    assert_eq!(expiring.secret_of("slack").await, Ok(Some("new".into())));

    // A secret deleted by the operator is not trusted from the cache: refused, not retried.
    local_secretsmanager(moto_endpoint(), None)
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("deleted");
    let error = expiring.secret_of("github").await.expect_err("deleted");
    assert!(matches!(error, SourceSecretsError::Refused { .. }), "{error:?}");
}

#[tokio::test]
async fn a_malformed_value_is_refused_without_quoting_it() {
    for value in [r#"{"github": 4711}"#, "hunter2", r#"["hunter2"]"#] {
        let arn = secret_with(value).await;
        let secrets = SecretsManagerSourceSecrets::new(local_secretsmanager(moto_endpoint(), None), &arn);
        let error = secrets.secret_of("github").await.expect_err(value);
        assert!(matches!(error, SourceSecretsError::Malformed { .. }), "{error:?}");
        assert!(!error.retryable());
        let text = error.to_string();
        assert!(!text.contains("hunter2") && !text.contains("4711"), "{text}");
    }
}

#[tokio::test]
async fn a_missing_secret_needs_an_operator_and_an_unreachable_service_a_retry() {
    let missing = SecretsManagerSourceSecrets::new(local_secretsmanager(moto_endpoint(), None), unique_name("absent"));
    let error = missing.secret_of("github").await.expect_err("no such secret");
    assert!(matches!(error, SourceSecretsError::Refused { .. }), "{error:?}");
    assert!(!error.retryable());

    // A port nothing listens on (bound, then released): connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let client = local_secretsmanager(&format!("http://127.0.0.1:{port}"), None);
    let unreachable = SecretsManagerSourceSecrets::new(client, "any");
    let error = unreachable.secret_of("github").await.expect_err("unreachable");
    assert!(matches!(error, SourceSecretsError::Unavailable { .. }), "{error:?}");
    assert!(error.retryable());
}
