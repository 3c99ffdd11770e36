//! Business metrics in CloudWatch Embedded Metric Format: the adapter that turns the handlers'
//! metrics events (`tracing` events on the target `engagement::metrics::METRICS`, fields as
//! described there) into one JSON line each on stdout, which Lambda's log pipeline turns into
//! metrics (namespace `Engagement`). Installed only inside Lambda (`wiring::init_tracing`):
//! tests and `pyramid` stay quiet.

use engagement::metrics::METRICS;
use serde_json::{json, Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;

pub const NAMESPACE: &str = "Engagement";

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

/// A `tracing` layer writing each metrics event as an EMF line to `W` (stdout in Lambda).
pub struct EmfLayer<W> {
    writer: W,
}

impl EmfLayer<fn() -> std::io::Stdout> {
    /// EMF lines on stdout, where Lambda's log pipeline reads them.
    pub fn stdout() -> Self {
        EmfLayer {
            writer: std::io::stdout as fn() -> std::io::Stdout,
        }
    }
}

impl<W: for<'a> MakeWriter<'a> + 'static> EmfLayer<W> {
    pub fn new(writer: W) -> Self {
        EmfLayer { writer }
    }
}

/// The fields of one metrics event.
#[derive(Default)]
struct Fields {
    function: String,
    dimensions: Vec<(&'static str, String)>,
    counts: Vec<(&'static str, u64)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "function" {
            self.function = value.to_string();
        } else {
            self.dimensions.push((field.name(), value.to_string()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.counts.push((field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.counts.push((field.name(), u64::try_from(value).unwrap_or_default()));
    }

    // A message, or a field of another type: not part of the metric.
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber, W: for<'a> MakeWriter<'a> + 'static> tracing_subscriber::Layer<S> for EmfLayer<W> {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        if event.metadata().target() != METRICS {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let counts: Vec<(&str, u64)> = fields.counts.into_iter().filter(|(_, n)| *n > 0).collect();
        if counts.is_empty() {
            return;
        }
        let dimensions: Vec<(&str, &str)> = fields.dimensions.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let line = format!("{}\n", document(&fields.function, &dimensions, &counts, now));
        // A metric that cannot be written is lost; the invocation goes on.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

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

    /// EMF lines written by the layer, one JSON document each.
    fn lines(written: &Mutex<Vec<u8>>) -> Vec<Value> {
        let text = String::from_utf8(written.lock().expect("the buffer").clone()).expect("UTF-8");
        text.lines().map(|line| serde_json::from_str(line).expect("JSON")).collect()
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn metrics_events_become_emf_lines_and_nothing_else_does() {
        let buffer = Buffer::default();
        let written = Buffer::clone(&buffer);
        let subscriber = tracing_subscriber::registry().with(EmfLayer::new(move || buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: METRICS, function = "rescore", Direction = "up", LevelChanges = 1u64);
            tracing::info!(target: METRICS, function = "ingest", Recorded = 3u64, Duplicates = 0u64);
            tracing::info!(target: METRICS, function = "ingest", Duplicates = 0u64);
            tracing::info!(customer_id = "c-1", "rescored");
        });
        let documents = lines(&written.0);
        assert_eq!(documents.len(), 2, "one line per metrics event with a count: {documents:?}");
        let mut first = documents[0].clone();
        first["_aws"]["Timestamp"] = json!(0);
        assert_eq!(first, document("rescore", &[("Direction", "up")], &[("LevelChanges", 1)], 0));
        assert_eq!(documents[1]["Function"], "ingest");
        assert_eq!(documents[1]["Recorded"], 3);
        assert!(documents[1].get("Duplicates").is_none(), "zeros are left out");
    }
}
