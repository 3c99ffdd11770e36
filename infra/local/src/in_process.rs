//! The SDK's HTTP client for the embedded store: each DynamoDB request goes straight to
//! dynoxide's operations in this process, with no socket, no HTTP framing and no second JSON
//! pass through a server. The SDK still builds, signs and parses every request and response
//! as it does against AWS, so the store adapter, its retries and its request counts are the
//! cloud's; only the transport differs.
//!
//! dynoxide's own HTTP dispatch is private, so this is its routing step for the operations the
//! store uses (the request and response bodies are dynoxide's public types, read and written
//! with serde as its server does). Errors go on the wire as dynoxide's server writes them
//! (`DynoxideError::to_json`, `status_code`).

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use dynoxide::{Database, DynoxideError};
use serde::de::DeserializeOwned;
use serde::Serialize;

const TARGET_PREFIX: &str = "DynamoDB_20120810.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Item reads: run on a connection of their own, beside the writes. (That connection keeps its
/// own copy of the table's description; the table is never deleted or changed through this
/// client, which sends no `DeleteTable` or `UpdateTable`, so the copy stays true.)
const READS: [&str; 5] = ["GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"];

/// The client to give the SDK's config (`http_client`) for `database`: its writes are run one
/// after another, in arrival order, by a thread of their own (`dynoxide`), and item reads likewise
/// by another (`dynoxide-reads`) on `reader`, a second `Database` on the same file.
///
/// SQLite in WAL mode lets one connection read while another writes, each read seeing every
/// commit made before it started, so a read sent after a write's answer sees that write, as on
/// DynamoDB with consistent reads. The writer's thread was the store's bottleneck under load,
/// and reads were about a tenth of its work: on their own thread they use the other core.
pub fn http_client(database: Database, reader: Database) -> std::io::Result<SharedHttpClient> {
    let writes = serve_in_turn("dynoxide", database)?;
    let reads = serve_in_turn("dynoxide-reads", reader)?;
    Ok(SharedHttpClient::new(InProcess { writes, reads }))
}

/// Starts a thread running the jobs sent to it on `database`, in arrival order.
fn serve_in_turn(name: &str, database: Database) -> std::io::Result<std::sync::mpsc::Sender<Job>> {
    let (requests, queue) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new().name(name.into()).spawn(move || {
        // dynoxide serialises its operations on one SQLite connection anyway: one thread running
        // them in turn keeps SQLite's blocking work off the async workers without a pool of
        // threads queueing on its lock (and waking one another) under load.
        while let Ok(job) = queue.recv() {
            let answer = match (job.work)(&database) {
                Ok(body) => (200, body),
                Err(error) => (error.status_code(), error.to_json()),
            };
            let _ = job.answer.send(answer);
        }
    })?;
    Ok(requests)
}

/// One operation, its request already read (on the caller's thread, not the store's): run on
/// the store's thread, which writes its answer.
type Work = Box<dyn FnOnce(&Database) -> Result<String, DynoxideError> + Send>;

/// One request for the store's thread, and where its answer goes.
struct Job {
    work: Work,
    answer: tokio::sync::oneshot::Sender<(u16, String)>,
}

#[derive(Clone)]
struct InProcess {
    writes: std::sync::mpsc::Sender<Job>,
    reads: std::sync::mpsc::Sender<Job>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcess(dynoxide)")
    }
}

impl HttpClient for InProcess {
    fn http_connector(&self, _settings: &HttpConnectorSettings, _components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for InProcess {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (writes, reads) = (self.writes.clone(), self.reads.clone());
        HttpConnectorFuture::new(async move {
            let operation = request
                .headers()
                .get("x-amz-target")
                .and_then(|target| target.strip_prefix(TARGET_PREFIX))
                .map(str::to_string);
            let Some(body) = request.body().bytes().map(<[u8]>::to_vec) else {
                return Err(ConnectorError::user("a streaming body cannot reach the embedded store".into()));
            };
            let Some(operation) = operation else {
                return Ok(answer(400, unknown_operation()));
            };
            let work = match prepare(&operation, &body) {
                Some(Ok(work)) => work,
                Some(Err(error)) => return Ok(answer(error.status_code(), error.to_json())),
                None => return Ok(answer(400, unknown_operation())),
            };
            let (sent, answered) = tokio::sync::oneshot::channel();
            let stopped = || ConnectorError::other("the embedded store's thread has stopped".into(), None);
            let thread = if READS.contains(&operation.as_str()) { reads } else { writes };
            thread.send(Job { work, answer: sent }).map_err(|_| stopped())?;
            let (status, body) = answered.await.map_err(|_| stopped())?;
            Ok(answer(status, body))
        })
    }
}

fn answer(status: u16, body: String) -> HttpResponse {
    let status = StatusCode::try_from(status).unwrap_or_else(|_| StatusCode::try_from(500).expect("500 is a status code"));
    let mut response = HttpResponse::new(status, SdkBody::from(body));
    response.headers_mut().insert("content-type", CONTENT_TYPE);
    response
}

fn unknown_operation() -> String {
    r#"{"__type":"com.amazon.coral.service#UnknownOperationException"}"#.to_string()
}

/// Reads one operation's request from `body` and returns the work that runs it and writes its
/// response; `None` for an operation the store never sends.
fn prepare(operation: &str, body: &[u8]) -> Option<Result<Work, DynoxideError>> {
    fn work<Request, Response>(body: &[u8], operation: fn(&Database, Request) -> dynoxide::Result<Response>) -> Result<Work, DynoxideError>
    where
        Request: DeserializeOwned + Send + 'static,
        Response: Serialize + 'static,
    {
        let request: Request = serde_json::from_slice(body).map_err(|error| unreadable(&error))?;
        Ok(Box::new(move |database: &Database| {
            let response = operation(database, request)?;
            serde_json::to_string(&response).map_err(|error| DynoxideError::InternalServerError(error.to_string()))
        }))
    }
    Some(match operation {
        "CreateTable" => work(body, Database::create_table),
        "DescribeTable" => work(body, Database::describe_table),
        "GetItem" => work(body, Database::get_item),
        "PutItem" => work(body, Database::put_item),
        "UpdateItem" => work(body, Database::update_item),
        "DeleteItem" => work(body, Database::delete_item),
        "Query" => work(body, Database::query),
        "Scan" => work(body, Database::scan),
        "BatchGetItem" => work(body, Database::batch_get_item),
        "BatchWriteItem" => work(body, Database::batch_write_item),
        "TransactWriteItems" => work(body, Database::transact_write_items),
        "TransactGetItems" => work(body, Database::transact_get_items),
        _ => return None,
    })
}

/// A body the SDK wrote that dynoxide's types cannot read: refused as DynamoDB refuses one.
fn unreadable(error: &serde_json::Error) -> DynoxideError {
    let message = error.to_string();
    if error.is_data() {
        DynoxideError::ValidationException(message)
    } else {
        DynoxideError::SerializationException(message)
    }
}
