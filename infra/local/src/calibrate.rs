//! `pyramid calibrate`: reads the labels file, finds each labelled person and their history in a
//! store (the local one, or a deployed table read-only through the history index), and hands
//! them to the pure calibration (`engagement-calibrate`). Nothing is written to the store.

use engagement::ports::{CustomerReads, IdentityLookup};
use engagement::{Channel, Identity, Interaction, Level, Rules, Timestamp};
use engagement_aws::DynamoStore;
use engagement_calibrate::Label;
use futures::{stream, StreamExt as _, TryStreamExt as _};
use std::collections::HashMap;
use std::sync::Arc;

/// A row that parsed: who, at which level, when.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub line: usize,
    pub identity: Identity,
    pub level: Level,
    pub as_of: Timestamp,
}

/// A row refused, with its line in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("the labels file has no rows (expected a header `channel,handle,level[,as_of]` and one row per person)")]
    Empty,
    #[error("the labels file's header lacks the column {0:?} (expected `channel,handle,level[,as_of]`)")]
    MissingColumn(&'static str),
    #[error("the labels file is not CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// Parses the labels CSV: each row's problem is reported by line, the other rows still count.
pub fn parse_labels(text: &str, rules: &Rules, now: Timestamp) -> Result<(Vec<Row>, Vec<RowProblem>), LabelsError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers()?.clone();
    let column = |name: &'static str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(LabelsError::Empty);
    }
    let channel_at = column("channel").ok_or(LabelsError::MissingColumn("channel"))?;
    let handle_at = column("handle").ok_or(LabelsError::MissingColumn("handle"))?;
    let level_at = column("level").ok_or(LabelsError::MissingColumn("level"))?;
    let as_of_at = column("as_of");
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut seen_any = false;
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line() as usize);
                problems.push(RowProblem {
                    line,
                    reason: format!("not a CSV row: {error}"),
                });
                seen_any = true;
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        seen_any = true;
        let line = record.position().map_or(0, |p| line_of(text, p.byte()));
        let field = |at: usize| record.get(at).unwrap_or_default();
        let mut reasons = Vec::new();
        let identity = match Channel::parse(field(channel_at)) {
            Ok(channel) => {
                let style = rules.handle_style(&channel);
                Identity::new(channel, style, field(handle_at))
                    .map_err(|e| reasons.push(format!("unknown identity: handle {e}")))
                    .ok()
            }
            Err(error) => {
                reasons.push(format!("unknown identity: channel {error}"));
                None
            }
        };
        let level = field(level_at)
            .parse::<Level>()
            .map_err(|_| {
                reasons.push(format!(
                    "unknown level {:?} (expected observing, following, endorsing, contributing, owning or leading)",
                    field(level_at)
                ))
            })
            .ok();
        let as_of = match as_of_at.map(field).filter(|v| !v.is_empty()) {
            None => Some(now),
            Some(text) => match Timestamp::parse_rfc3339(text) {
                Some(at) if at <= now => Some(at),
                Some(_) => {
                    reasons.push(format!("bad date: as_of {text:?} is in the future"));
                    None
                }
                None => {
                    reasons.push(format!(
                        "bad date: as_of {text:?} is not an RFC 3339 instant (e.g. 2026-01-31T00:00:00Z)"
                    ));
                    None
                }
            },
        };
        match (identity, level, as_of) {
            (Some(identity), Some(level), Some(as_of)) if reasons.is_empty() => rows.push(Row {
                line,
                identity,
                level,
                as_of,
            }),
            _ => problems.push(RowProblem {
                line,
                reason: reasons.join("; "),
            }),
        }
    }
    if !seen_any {
        return Err(LabelsError::Empty);
    }
    Ok((rows, problems))
}

/// The line a record starts on: the reader's position may sit on blank lines before it.
fn line_of(text: &str, byte: u64) -> usize {
    let start = usize::try_from(byte).unwrap_or(usize::MAX).min(text.len());
    let skipped = text[start..].len() - text[start..].trim_start_matches(['\r', '\n']).len();
    text.as_bytes()[..start + skipped].iter().filter(|b| **b == b'\n').count() + 1
}

/// Finds each row's customer and reads their history (once per customer), 16 at a time: the
/// labels that were found, and the rows whose identity the store does not know.
pub async fn load_labels(store: &DynamoStore, rows: Vec<Row>) -> anyhow::Result<(Vec<Label>, Vec<RowProblem>)> {
    let found: Vec<(Row, IdentityLookup)> = stream::iter(rows)
        .map(|row| async move {
            let lookup = store.find_customer(&row.identity).await?;
            anyhow::Ok((row, lookup))
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut problems = Vec::new();
    let mut wanted = Vec::new();
    for (row, lookup) in &found {
        match lookup {
            IdentityLookup::Customer(id) => wanted.push(id.clone()),
            IdentityLookup::Unknown => problems.push(RowProblem {
                line: row.line,
                reason: "unknown identity: nobody with this channel and handle in the store".into(),
            }),
            IdentityLookup::Erased => problems.push(RowProblem {
                line: row.line,
                reason: "unknown identity: this person was erased".into(),
            }),
        }
    }
    wanted.sort();
    wanted.dedup();
    let histories: HashMap<String, Arc<Vec<Interaction>>> = stream::iter(wanted)
        .map(|id| async move {
            let mut history = Vec::new();
            let mut cursor = None;
            loop {
                let page = store.interactions(&id, cursor, 500).await?;
                history.extend(page.items);
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            anyhow::Ok((id.as_str().to_string(), Arc::new(history)))
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let labels = found
        .into_iter()
        .filter_map(|(row, lookup)| match lookup {
            IdentityLookup::Customer(id) => Some(Label {
                line: row.line,
                customer: id.as_str().to_string(),
                level: row.level,
                as_of: row.as_of,
                history: Arc::clone(histories.get(id.as_str())?),
            }),
            _ => None,
        })
        .collect();
    Ok((labels, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").expect("a time")
    }

    #[test]
    fn each_bad_row_is_reported_by_its_line_and_the_others_count() {
        let text = "channel,handle,level,as_of\n\
                    email,ada@example.com,owning,2026-01-01T00:00:00Z\n\
                    email,not-an-email,owning,\n\
                    email,bob@example.com,sponsor,\n\
                    email,cy@example.com,leading,yesterday\n\
                    email,di@example.com,leading,2030-01-01T00:00:00Z\n\
                    \n\
                    Email!,x,following,\n\
                    email,eve@example.com,following\n";
        let (rows, problems) = parse_labels(text, &Rules::default_rules(), now()).expect("parsed");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 9]);
        assert_eq!(rows[1].as_of, now(), "as_of defaults to now");
        let lines: Vec<(usize, &str)> = problems.iter().map(|p| (p.line, p.reason.as_str())).collect();
        assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), vec![3, 4, 5, 6, 8], "{lines:?}");
        assert!(lines[0].1.starts_with("unknown identity"), "{lines:?}");
        assert!(lines[1].1.starts_with("unknown level \"sponsor\""), "{lines:?}");
        assert!(lines[2].1.starts_with("bad date"), "{lines:?}");
        assert!(lines[3].1.contains("in the future"), "{lines:?}");
        assert!(lines[4].1.starts_with("unknown identity: channel"), "{lines:?}");
    }

    #[test]
    fn an_empty_file_or_a_header_alone_is_an_error() {
        let rules = Rules::default_rules();
        assert!(matches!(parse_labels("", &rules, now()), Err(LabelsError::Empty)));
        assert!(matches!(
            parse_labels("channel,handle,level\n", &rules, now()),
            Err(LabelsError::Empty)
        ));
        assert!(matches!(
            parse_labels("channel,handle\nemail,a@b.c\n", &rules, now()),
            Err(LabelsError::MissingColumn("level"))
        ));
    }
}
