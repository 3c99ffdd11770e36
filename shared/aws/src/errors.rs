//! What an AWS SDK error means for the caller: worth retrying later (throttling, a 5xx, a timeout,
//! an endpoint that cannot be reached) or not (a validation error, denied access, a missing table
//! or bus: a retry fails the same way, and an operator has to act).

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use engagement::ports::StoreError;

/// Codes DynamoDB answers with a 4xx status that a later attempt can pass (the SDK's own lists,
/// `THROTTLING_ERRORS` and `TRANSIENT_ERRORS`, hold the rest).
const CONFLICT_ERRORS: &[&str] = &["TransactionConflictException", "ReplicatedWriteConflictException"];

/// Why a transaction's action was cancelled, where a later attempt can pass.
const TRANSIENT_CANCELLATIONS: &[&str] = &[
    "None",
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A later attempt can succeed: 503 with `Retry-After`, an invocation retried.
    Transient,
    /// A later attempt fails the same way: 500, logged, alarmed.
    Permanent,
}

/// Whether an error code is one a later attempt can pass.
pub fn transient_code(code: &str) -> bool {
    [THROTTLING_ERRORS, TRANSIENT_ERRORS, CONFLICT_ERRORS]
        .iter()
        .any(|codes| codes.contains(&code))
}

/// Classifies an SDK error (after the SDK's own retries).
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Failure {
    match error {
        // The request could not even be built: sending it again builds it the same way.
        SdkError::ConstructionFailure(_) => Failure::Permanent,
        SdkError::ServiceError(service) => {
            let transient = service.raw().status().is_server_error() || service.err().code().is_some_and(transient_code);
            if transient {
                Failure::Transient
            } else {
                Failure::Permanent
            }
        }
        // Timeouts, connections refused or reset, answers that could not be read.
        _ => Failure::Transient,
    }
}

/// A failed DynamoDB call as a store error, with the SDK's text for the log (never for clients).
pub fn store_error<E>(operation: &str, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = format!("{operation}: {}", DisplayErrorContext(&error));
    match classify(&error) {
        Failure::Transient => StoreError::Unavailable(text),
        Failure::Permanent => StoreError::Rejected(text),
    }
}

/// A cancelled transaction (by the codes of its actions' reasons) as a store error.
pub fn cancelled<'a>(what: &str, codes: impl IntoIterator<Item = &'a str>) -> StoreError {
    let codes: Vec<&str> = codes.into_iter().collect();
    let text = format!("{what}: TransactWriteItems cancelled: {codes:?}");
    if codes.iter().all(|code| TRANSIENT_CANCELLATIONS.contains(code)) {
        StoreError::Unavailable(text)
    } else {
        StoreError::Rejected(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellations_are_transient_only_when_every_reason_is() {
        assert!(matches!(
            cancelled("erase", ["None", "TransactionConflict"]),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(cancelled("erase", ["None", "ValidationError"]), StoreError::Rejected(_)));
        assert!(transient_code("ProvisionedThroughputExceededException"));
        assert!(!transient_code("ResourceNotFoundException"));
        assert!(!transient_code("AccessDeniedException"));
    }
}
