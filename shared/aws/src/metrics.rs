//! Business metrics in CloudWatch Embedded Metric Format: one JSON line on stdout per emission,
//! which Lambda's log pipeline turns into metrics (namespace `Engagement`). Emitted only inside
//! Lambda (`AWS_LAMBDA_FUNCTION_NAME` set): tests and `pyramid` stay quiet.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Engagement";

fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// The EMF document for counts under one set of dimensions (pure, for tests).
pub fn document(function: &str, dimensions: &[(&str, &str)], counts: &[(&str, u64)], timestamp_ms: i64) -> Value {
    let mut names: Vec<&str> = vec!["Function"];
    names.extend(dimensions.iter().map(|(name, _)| *name));
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": counts.iter().map(|(name, _)| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        }),
    );
    root.insert("Function".into(), json!(function));
    for (name, value) in dimensions {
        root.insert((*name).into(), json!(value));
    }
    for (name, count) in counts {
        root.insert((*name).into(), json!(count));
    }
    Value::Object(root)
}

/// Emits counts (zeros are left out) when running in Lambda.
pub fn emit(function: &str, dimensions: &[(&str, &str)], counts: &[(&str, u64)]) {
    let counts: Vec<(&str, u64)> = counts.iter().copied().filter(|(_, n)| *n > 0).collect();
    if counts.is_empty() || !in_lambda() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    println!("{}", document(function, dimensions, &counts, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let doc = document("rescore", &[("Direction", "up")], &[("LevelChanges", 2)], 1_700_000_000_000);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Direction"]])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            json!({"Name": "LevelChanges", "Unit": "Count"})
        );
        assert_eq!((doc["LevelChanges"].as_u64(), doc["Direction"].as_str()), (Some(2), Some("up")));
    }
}
