//! The read and admin API (function `api`): customers with their standing and why, listings by
//! level and risk, the pyramid, movers, the rules in force, identity links (merging customers),
//! consent and GDPR erasure. Every error is RFC 9457 `application/problem+json`; cursors are
//! sealed against tampering. The routes and bodies are described in `functions/api/openapi.yaml`.

// A `Problem` is built at most once per request, on the error path: boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod dashboard;
mod views;

use engagement::erasure::{email_of, seal_contact, ContactKey, NONCE_BYTES};
use engagement::events::{recorded_events, CustomerErased, DomainEvent, CUSTOMER_ERASED_SCHEMA_VERSION};
use engagement::flow::{self, day_of, end_of_day, Day, DayFlow};
use engagement::ports::{
    Clock, CustomerAdmin, CustomerId, CustomerReads, EventBus, IdentityLookup, Insights, InteractionLog, LinkOutcome, NudgeLedger,
    Standings, StoredCustomer,
};
use engagement::{
    replay, validate_interaction, Channel, Direction, FieldError, Identity, Interaction, Level, Rules, Timestamp, MILLIS_PER_DAY,
};
use engagement_http::{
    bus_problem, has_json_body, json_response, query, query_param, request_id, route, store_problem, CursorSigner, HttpRequest,
    HttpResponse, Problem,
};
use engagement_rescoring::Rescoring;
use http::Method;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use tracing::Instrument;
pub use views::*;

/// Listing sizes: what a page holds when the client does not say, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
const DEFAULT_INTERACTIONS: usize = 20;
/// Interactions read per page when replaying a whole history (`?at=`).
const REPLAY_PAGE: usize = 500;
/// The weekly series goes back at most five years.
const MAX_WEEKS: u32 = 260;
/// Periods (transitions, movers) span at most about ten years.
const MAX_PERIOD_DAYS: i64 = 3660;

pub struct Api<S, B, C> {
    pub store: S,
    pub bus: B,
    pub clock: C,
    pub rules: Arc<Rules>,
    pub cursors: CursorSigner,
    /// Seals the email `Customer Erased` carries to the marketing tools (`engagement::erasure`).
    pub contact_key: ContactKey,
}

type Answer = Result<HttpResponse, Problem>;

impl<S, B, C> Api<S, B, C>
where
    S: CustomerReads + InteractionLog + Insights + NudgeLedger + CustomerAdmin + Standings,
    B: EventBus,
    C: Clock,
{
    /// The decide-and-write step: a merge is rescored at once.
    fn rescoring(&self) -> Rescoring<'_, S, B, C> {
        Rescoring {
            store: &self.store,
            bus: &self.bus,
            clock: &self.clock,
            rules: &self.rules,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Handles an HTTP request to any API route.
    pub async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        if dashboard::is_asset_path(&path) {
            return match method {
                Method::GET | Method::HEAD => dashboard::asset(&path).unwrap_or_else(|| Problem::not_found("no such asset").response()),
                _ => Problem::method_not_allowed_but(method.as_str(), &path, &["GET", "HEAD"])
                    .at(&path)
                    .response(),
            };
        }
        let request_id = request_id(&request);
        let span = tracing::info_span!("api", method = %method, %request_id, customer_id = tracing::field::Empty);
        match self.dispatch(&request).instrument(span).await {
            Ok(response) => response,
            Err(problem) => {
                if problem.status == 500 {
                    tracing::info!(target: engagement::metrics::METRICS, function = "api", InternalErrors = 1u64);
                }
                problem.at(&path).answer(&request_id)
            }
        }
    }

    async fn dispatch(&self, request: &HttpRequest) -> Answer {
        let path = request.uri().path();
        let Some(segments) = route(request) else {
            return Err(Problem::not_found(format!("no route {path}")));
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let q = query(request);
        let method = request.method();
        let wrong_method = |allowed: &[&str]| Err(Problem::method_not_allowed_but(method.as_str(), path, allowed));
        match segments.as_slice() {
            ["customers"] => match *method {
                Method::GET => self.list_customers(&q).await,
                _ => wrong_method(&["GET"]),
            },
            ["customers", "by-identity"] => match *method {
                Method::GET => self.by_identity(&q).await,
                _ => wrong_method(&["GET"]),
            },
            ["customers", id] => {
                tracing::Span::current().record("customer_id", *id);
                let id = CustomerId(id.to_string());
                match *method {
                    Method::GET => self.get_customer(&id, &q).await,
                    Method::DELETE => self.erase(&id).await,
                    _ => wrong_method(&["GET", "DELETE"]),
                }
            }
            ["customers", id, "identities"] => match *method {
                Method::POST => self.link(&CustomerId(id.to_string()), request).await,
                _ => wrong_method(&["POST"]),
            },
            ["customers", id, "consent", channel] => match *method {
                Method::PUT => self.consent(&CustomerId(id.to_string()), channel, request).await,
                _ => wrong_method(&["PUT"]),
            },
            ["pyramid"] => match *method {
                Method::GET => self.pyramid(&q).await,
                _ => wrong_method(&["GET"]),
            },
            ["pyramid", "weekly"] => match *method {
                Method::GET => self.weekly(&q).await,
                _ => wrong_method(&["GET"]),
            },
            ["transitions"] => match *method {
                Method::GET => self.transitions(&q).await,
                _ => wrong_method(&["GET"]),
            },
            ["nudges", "outcomes"] => match *method {
                Method::GET => self.nudge_outcomes().await,
                _ => wrong_method(&["GET"]),
            },
            ["movers"] => match *method {
                Method::GET => self.movers(&q).await,
                _ => wrong_method(&["GET"]),
            },
            // The rules in force: what the levels mean, what each kind weighs, what the playbooks do.
            ["rules"] => match *method {
                Method::GET => Ok(json_response(200, &RulesView::new(&self.rules))),
                _ => wrong_method(&["GET"]),
            },
            _ => Err(Problem::not_found(format!("no route {path}"))),
        }
    }

    async fn load(&self, id: &CustomerId) -> Result<StoredCustomer, Problem> {
        // Ids the engine never gives out are not looked up (a 2 KB "id" would be the store's
        // validation error, not the client's 404).
        let plausible = id.as_str().len() <= 64
            && id
                .as_str()
                .strip_prefix("cus_")
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !plausible {
            return Err(Problem::not_found(format!(
                "no customer {}",
                id.as_str().chars().take(64).collect::<String>()
            )));
        }
        self.store
            .load_customer(id)
            .await
            .map_err(|e| store_problem(&e))?
            .ok_or_else(|| Problem::not_found(format!("no customer {id}")))
    }

    /// `GET /v1/customers/{id}`: the customer now, or as of `?at=` by replaying the history.
    async fn get_customer(&self, id: &CustomerId, q: &[(String, String)]) -> Answer {
        let at = optional_time(q, "at")?;
        let limit = limit(q, DEFAULT_INTERACTIONS)?;
        let customer = self.load(id).await?;
        let rules = &self.rules;
        let now = self.now();
        let nudges = self.store.nudges_of(&customer).await.map_err(|e| store_problem(&e))?;
        let view = match at {
            None => {
                let page = self
                    .store
                    .interactions(&customer.id, self.open_cursor(q, &format!("interactions:{}", customer.id))?, limit)
                    .await
                    .map_err(|e| store_problem(&e))?;
                let cursor = page.cursor.map(|c| self.cursors.seal(&format!("interactions:{}", customer.id), &c));
                let decision = engagement::decide(rules, &customer.state, now);
                // The timeline as recorded (no replay): what the engine decided, when.
                let timeline = self.store.level_changes(&customer).await.map_err(|e| store_problem(&e))?;
                CustomerView::new(&customer, &decision, now, Some(timeline), page.items, cursor, nudges)
            }
            Some(at) => {
                // Time travel: every interaction up to `at`, replayed as the engine would have.
                let mut history = Vec::new();
                let mut cursor = None;
                loop {
                    let page = self
                        .store
                        .interactions(&customer.id, cursor, REPLAY_PAGE)
                        .await
                        .map_err(|e| store_problem(&e))?;
                    history.extend(page.items);
                    cursor = page.cursor;
                    if cursor.is_none() {
                        break;
                    }
                }
                let replayed = replay(rules, &history, at);
                let mut shown: Vec<Interaction> = history.into_iter().filter(|i| i.occurred_at <= at).collect();
                shown.truncate(limit);
                let nudges = nudges.into_iter().filter(|n| n.decided_at <= at).collect();
                let mut as_of = customer.clone();
                as_of.state.consent = replayed.state.consent.clone();
                CustomerView::new(&as_of, &replayed.decision, at, Some(replayed.timeline), shown, None, nudges)
            }
        };
        Ok(json_response(200, &view))
    }

    /// `GET /v1/customers/by-identity?channel=&handle=`
    async fn by_identity(&self, q: &[(String, String)]) -> Answer {
        let identity = identity_from(query_param(q, "channel"), query_param(q, "handle"), "query.", &self.rules)?;
        match self.store.find_customer(&identity).await.map_err(|e| store_problem(&e))? {
            IdentityLookup::Customer(id) => self.get_customer(&id, &[]).await,
            IdentityLookup::Erased | IdentityLookup::Unknown => Err(Problem::not_found("no customer has this identity")),
        }
    }

    /// `GET /v1/customers?level=&at_risk=true&direction=up|down&since=&cursor=&limit=` (`moved`:
    /// the older name of `direction`, still read).
    async fn list_customers(&self, q: &[(String, String)]) -> Answer {
        let query = ListingQuery::parse(q)?;
        let now = self.now();
        let listing = query.listing_name();
        // Without a level, the listing walks the levels from the top (a drop cannot reach
        // leading, a rise cannot reach observing); the cursor remembers where, and the `since`
        // the first page used (a default one moves with the clock).
        let start = match self.open_cursor(q, &listing)? {
            Some(opened) => split_level_cursor(&opened)?,
            None => (
                query.level.unwrap_or(query.top()),
                query
                    .direction
                    .map(|_| query.explicit_since.unwrap_or(now.minus_millis(30 * MILLIS_PER_DAY))),
                None,
            ),
        };
        let since = start.1;
        let (customers, next) = self.walk_levels(&query, start, now).await?;
        let cursor = next.map(|(level, store_cursor)| self.cursors.seal(&listing, &level_cursor(level, since, store_cursor.as_deref())));
        Ok(json_response(200, &Listing { customers, cursor }))
    }

    /// Reads level after level from `place` until the page is full or the levels run out;
    /// returns the customers and where the next page starts, if anywhere.
    async fn walk_levels(
        &self,
        query: &ListingQuery,
        place: ListingPlace,
        now: Timestamp,
    ) -> Result<(Vec<CustomerSummaryView>, Option<(Level, Option<String>)>), Problem> {
        let (mut current, since, mut cursor) = place;
        let mut items = Vec::new();
        loop {
            let page = self
                .store
                .customers_at_level(current, since, cursor, query.limit - items.len())
                .await
                .map_err(|e| store_problem(&e))?;
            items.extend(
                page.items
                    .into_iter()
                    .filter(|c| !query.at_risk || c.standing.at_risk_at.is_some_and(|t| t <= now))
                    .filter(|c| query.direction.is_none() || c.moved == query.direction)
                    .map(|c| CustomerSummaryView::new(c, now)),
            );
            cursor = page.cursor;
            let next_level = match (&cursor, query.level) {
                (Some(_), _) => Some(current),
                (None, None) => current.down().filter(|next| *next >= query.bottom()),
                (None, Some(_)) => None,
            };
            match next_level {
                Some(next) if items.len() < query.limit => current = next,
                Some(next) => return Ok((items, Some((next, cursor)))),
                None => return Ok((items, None)),
            }
        }
    }

    /// The flows of `first..` up to tomorrow (a rise is dated at its interaction, which may be
    /// a few minutes ahead of this clock).
    async fn flows_from(&self, first: Day) -> Result<Vec<DayFlow>, Problem> {
        let last = day_of(self.now()) + 1;
        self.store.flows(first, last).await.map_err(|e| store_problem(&e))
    }

    /// `GET /v1/pyramid[?at=]`: customers per level, now (the maintained counts) or at the end
    /// of the day of `at` (today's counts with each later day's flow undone), and movers over the
    /// 7 and 30 days up to then.
    async fn pyramid(&self, q: &[(String, String)]) -> Answer {
        let now = self.now();
        let at = optional_time(q, "at")?;
        if at.is_some_and(|at| at > now) {
            return Err(Problem::invalid_field("query.at", "must not be in the future"));
        }
        let day = day_of(at.unwrap_or(now));
        let current = self.store.pyramid_counts().await.map_err(|e| store_problem(&e))?;
        let flows = self.flows_from(day - 29).await?;
        let counts = match at {
            None => current,
            Some(_) => flow::counts_at_end_of(&current, &flows, day),
        };
        let week = flow::movers(&flows, day - 6, day);
        let month = flow::movers(&flows, day - 29, day);
        let as_of = at.map_or(now, |_| end_of_day(day));
        Ok(json_response(200, &PyramidView::new(&counts, &week, &month, as_of)))
    }

    /// `GET /v1/pyramid/weekly?weeks=&at=`: the pyramid at the end of each week, oldest first.
    async fn weekly(&self, q: &[(String, String)]) -> Answer {
        let now = self.now();
        let at = optional_time(q, "at")?.unwrap_or(now);
        if at > now {
            return Err(Problem::invalid_field("query.at", "must not be in the future"));
        }
        let weeks = match query_param(q, "weeks") {
            None => 52,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_WEEKS).contains(&n) => n,
                _ => {
                    return Err(Problem::invalid_field(
                        "query.weeks",
                        format!("must be a whole number from 1 to {MAX_WEEKS}"),
                    ))
                }
            },
        };
        let last = day_of(at);
        let current = self.store.pyramid_counts().await.map_err(|e| store_problem(&e))?;
        let flows = self.flows_from(last - 7 * i64::from(weeks)).await?;
        let series = flow::weekly(&current, &flows, last, weeks);
        Ok(json_response(
            200,
            &WeeklyView::new(&series, if at == now { now } else { end_of_day(last) }),
        ))
    }

    /// `GET /v1/transitions?from=&to=`: who moved from which level to which in a period (whole
    /// UTC days), who joined and who left, with the pyramid at its start and end.
    async fn transitions(&self, q: &[(String, String)]) -> Answer {
        let now = self.now();
        let to = optional_time(q, "to")?.unwrap_or(now);
        let from = optional_time(q, "from")?.unwrap_or(to.minus_millis(29 * MILLIS_PER_DAY));
        if to > now {
            return Err(Problem::invalid_field("query.to", "must not be in the future"));
        }
        if from > to {
            return Err(Problem::invalid_field("query.from", "must not be after query.to"));
        }
        let (first, last) = whole_days(from, to, "query.from")?;
        let current = self.store.pyramid_counts().await.map_err(|e| store_problem(&e))?;
        let flows = self.flows_from(first).await?;
        let view = TransitionsView::new(
            end_of_day(first - 1).plus_millis(1),
            end_of_day(last),
            &flow::counts_at_end_of(&current, &flows, first - 1),
            &flow::counts_at_end_of(&current, &flows, last),
            &flow::total(&flows, first, last),
        );
        Ok(json_response(200, &view))
    }

    /// `GET /v1/nudges/outcomes`: per playbook step, what was decided and who rose afterwards,
    /// sent against held out.
    async fn nudge_outcomes(&self) -> Answer {
        let steps = self.store.nudge_outcomes().await.map_err(|e| store_problem(&e))?;
        Ok(json_response(200, &OutcomesView::new(steps, &self.rules)))
    }

    /// `GET /v1/movers?since=&direction=up|down`
    async fn movers(&self, q: &[(String, String)]) -> Answer {
        let now = self.now();
        let since = optional_time(q, "since")?.unwrap_or(now.minus_millis(7 * MILLIS_PER_DAY));
        let direction = direction_param(q, "direction")?;
        if since > now {
            return Err(Problem::invalid_field("query.since", "must not be in the future"));
        }
        let (first, last) = whole_days(since, now, "query.since")?;
        let flows = self.flows_from(first).await?;
        let movers = flow::movers(&flows, first, last + 1);
        Ok(json_response(200, &MoversView::new(&movers, since, now, direction)))
    }

    /// `POST /v1/customers/{id}/identities`: links an identity; if another customer has it, the
    /// two merge into this one (evidence merged, strictest consent, the old id redirects here).
    async fn link(&self, id: &CustomerId, request: &HttpRequest) -> Answer {
        let body = json_body(request)?;
        let identity = identity_from(
            body.get("channel").and_then(Value::as_str),
            body.get("handle").and_then(Value::as_str),
            "",
            &self.rules,
        )?;
        if let Some(object) = body.as_object() {
            let unknown: Vec<FieldError> = object
                .keys()
                .filter(|k| *k != "channel" && *k != "handle")
                .map(|k| FieldError {
                    path: k.clone(),
                    reason: "unknown field".into(),
                })
                .collect();
            if !unknown.is_empty() {
                return Err(Problem::invalid(unknown));
            }
        }
        let customer = self.load(id).await?;
        let outcome = self
            .store
            .link_identity(&customer.id, &identity, self.now())
            .await
            .map_err(|e| store_problem(&e))?;
        if let LinkOutcome::Merged { merged } = &outcome {
            tracing::info!(customer_id = %customer.id, merged = %merged, "customers merged");
            // Merged evidence may lift the level: decide now rather than at the next sweep
            // (the merge left the customer due, so a failure here is retried by the sweep).
            if let Err(error) = self.rescoring().rescore(&customer.id, &mut HashSet::new()).await {
                tracing::warn!(%error, "merged customer not rescored yet; the sweep will");
            }
        }
        let status = if outcome == LinkOutcome::AlreadyLinked { 200 } else { 201 };
        Ok(json_response(status, &LinkView::new(&customer.id, &identity, &outcome)))
    }

    /// `PUT /v1/customers/{id}/consent/{channel}` with `{"granted": bool}`: recorded as a
    /// consent interaction from source `api`, so it is scored, replayed and audited like any other.
    async fn consent(&self, id: &CustomerId, channel: &str, request: &HttpRequest) -> Answer {
        let channel = Channel::parse(channel).map_err(|e| Problem::invalid_field("path.channel", e.to_string()))?;
        let body = json_body(request)?;
        let granted = match body.get("granted") {
            Some(Value::Bool(granted)) => *granted,
            Some(_) => return Err(Problem::invalid_field("granted", "must be true or false")),
            None => return Err(Problem::invalid_field("granted", "required")),
        };
        let customer = self.load(id).await?;
        let Some(identity) = customer.identities.iter().find(|i| i.channel == channel) else {
            return Err(Problem {
                errors: vec![FieldError {
                    path: "path.channel".into(),
                    reason: format!("the customer has no identity on {channel}; link one first"),
                }],
                ..Problem::new(
                    409,
                    "no-identity-on-channel",
                    "No identity on this channel",
                    format!("customer {} has no {channel} identity", customer.id),
                )
            });
        };
        let now = self.now();
        let kind = if granted { "consent_granted" } else { "consent_withdrawn" };
        // Through the same validation as ingest: rules without these kinds refuse it here.
        let submitted = serde_json::json!({
            "id": format!("consent:{}:{channel}:{}:{kind}", customer.id, now.millis()),
            "source": "api",
            "customer": {"channel": channel, "handle": identity.handle},
            "kind": kind,
            "occurred_at": now,
        });
        let interaction = validate_interaction(&submitted, &self.rules, now).map_err(|errors| {
            tracing::error!(%errors, "the rules refuse consent interactions");
            Problem::new(
                500,
                "rules",
                "Rules without consent kinds",
                "the deployed rules have no consent_granted/consent_withdrawn kind",
            )
        })?;
        let outcomes = self
            .store
            .record_interactions(std::slice::from_ref(&interaction), now)
            .await
            .map_err(|e| store_problem(&e))?;
        let events = recorded_events(&outcomes, &[kind], now);
        if let Err(error) = self.bus.publish(&events).await {
            engagement_http::outbox::keep_unpublished(&self.store, &events, now, &error).await;
        }
        Ok(json_response(
            200,
            &serde_json::json!({"customer_id": customer.id, "channel": channel, "granted": granted, "at": now}),
        ))
    }

    /// `DELETE /v1/customers/{id}`: GDPR erasure. Everything about the customer is removed, the
    /// identities become salted-hash tombstones (re-ingestion is refused) and `Customer Erased`
    /// tells the marketing tools to erase their copies.
    async fn erase(&self, id: &CustomerId) -> Answer {
        let customer = self.load(id).await?;
        let now = self.now();
        // Told first, erased second: if telling fails nothing is erased yet and the DELETE can be
        // retried; if erasing fails after telling, a retry tells again (same event id) and erases.
        // The tools find the person by email, and the store forgets it next: it travels sealed.
        let sealed_contact = match email_of(&customer.identities, &self.rules) {
            None => None,
            Some(email) => {
                let mut nonce = [0u8; NONCE_BYTES];
                getrandom::fill(&mut nonce).map_err(|error| {
                    Problem::new(
                        500,
                        "random",
                        "No randomness",
                        "the erasure could not be sealed; nothing was erased, retry this DELETE",
                    )
                    .because(format!("the OS random generator failed: {error}"))
                })?;
                Some(seal_contact(&self.contact_key, &customer.id, email, nonce))
            }
        };
        let event = DomainEvent::CustomerErased(CustomerErased {
            schema_version: CUSTOMER_ERASED_SCHEMA_VERSION,
            customer_id: customer.id.clone(),
            erased_at: now,
            sealed_contact,
        });
        if let Err(error) = self.bus.publish(std::slice::from_ref(&event)).await {
            let problem = bus_problem(&error, "marketing tools could not be told; nothing was erased, retry this DELETE");
            return Err(problem.because(format!("Customer Erased not published, nothing erased: {error}")));
        }
        let erased = self.store.erase_customer(&customer.id, now).await.map_err(|e| store_problem(&e))?;
        if !erased {
            return Err(Problem::not_found(format!("no customer {id}")));
        }
        tracing::info!(customer_id = %customer.id, "customer erased");
        let mut response = http::Response::new(Vec::new());
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        Ok(response)
    }

    fn open_cursor(&self, q: &[(String, String)], listing: &str) -> Result<Option<String>, Problem> {
        match query_param(q, "cursor") {
            None => Ok(None),
            Some(sealed) => self.cursors.open(listing, sealed).map(Some).ok_or_else(|| {
                Problem::invalid_field(
                    "query.cursor",
                    "not a cursor this listing gave (it was changed, or belongs to another listing)",
                )
            }),
        }
    }
}

/// What `GET /v1/customers` asks for.
struct ListingQuery {
    level: Option<Level>,
    at_risk: bool,
    direction: Option<Direction>,
    explicit_since: Option<Timestamp>,
    limit: usize,
}

impl ListingQuery {
    fn parse(q: &[(String, String)]) -> Result<ListingQuery, Problem> {
        let level = match query_param(q, "level") {
            None => None,
            Some(text) => Some(text.parse::<Level>().map_err(|_| {
                Problem::invalid_field(
                    "query.level",
                    "must be one of observing, following, endorsing, contributing, owning, leading",
                )
            })?),
        };
        let at_risk = match query_param(q, "at_risk") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(Problem::invalid_field("query.at_risk", "must be true or false")),
        };
        // `direction`, as on /v1/movers and in `Level Changed`; `moved` is its older alias.
        let direction = match query_param(q, "direction") {
            Some(_) => direction_param(q, "direction")?,
            None => direction_param(q, "moved")?,
        };
        let explicit_since = optional_time(q, "since")?;
        if direction.is_none() && explicit_since.is_some() {
            return Err(Problem::invalid_field("query.since", "only with direction=up or direction=down"));
        }
        Ok(ListingQuery {
            level,
            at_risk,
            direction,
            explicit_since,
            limit: limit(q, DEFAULT_LIMIT)?,
        })
    }

    /// What a cursor of this listing is sealed for: a cursor of another listing is refused.
    fn listing_name(&self) -> String {
        format!(
            "customers:{}:{}:{}:{}",
            self.level.map_or("all", Level::name),
            self.at_risk,
            self.direction.map_or("any", Direction::name),
            self.explicit_since.map_or("default".to_string(), |t| t.millis().to_string())
        )
    }

    /// The highest level a listing without a level starts at (a drop cannot reach leading).
    fn top(&self) -> Level {
        match self.direction {
            Some(Direction::Down) => Level::Owning,
            _ => Level::Leading,
        }
    }

    /// The lowest level it reaches (a rise cannot reach observing).
    fn bottom(&self) -> Level {
        match self.direction {
            Some(Direction::Up) => Level::Following,
            _ => Level::Observing,
        }
    }
}

/// A listing's place: the level it reached, the `since` it filters on (0: none) and the store's
/// cursor within the level.
fn level_cursor(level: Level, since: Option<Timestamp>, store_cursor: Option<&str>) -> String {
    format!(
        "{}|{}|{}",
        level.name(),
        since.map_or(0, Timestamp::millis),
        store_cursor.unwrap_or("")
    )
}

type ListingPlace = (Level, Option<Timestamp>, Option<String>);

fn split_level_cursor(opened: &str) -> Result<ListingPlace, Problem> {
    let invalid = || Problem::invalid_field("query.cursor", "not a cursor this listing gave");
    let mut parts = opened.splitn(3, '|');
    let (Some(level), Some(since), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let level = level.parse::<Level>().map_err(|_| invalid())?;
    let since = since.parse::<i64>().map_err(|_| invalid())?;
    Ok((
        level,
        (since != 0).then(|| Timestamp::from_millis(since)),
        (!rest.is_empty()).then(|| rest.to_string()),
    ))
}

/// The UTC days a period spans, refused (naming `field`) when longer than periods may be.
fn whole_days(from: Timestamp, to: Timestamp, field: &str) -> Result<(Day, Day), Problem> {
    let (first, last) = (day_of(from), day_of(to));
    if last - first >= MAX_PERIOD_DAYS {
        return Err(Problem::invalid_field(
            field,
            format!("the period must be at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    Ok((first, last))
}

fn direction_param(q: &[(String, String)], name: &str) -> Result<Option<Direction>, Problem> {
    match query_param(q, name) {
        None => Ok(None),
        Some("up") => Ok(Some(Direction::Up)),
        Some("down") => Ok(Some(Direction::Down)),
        Some(_) => Err(Problem::invalid_field(&format!("query.{name}"), "must be up or down")),
    }
}

fn optional_time(q: &[(String, String)], name: &str) -> Result<Option<Timestamp>, Problem> {
    match query_param(q, name) {
        None => Ok(None),
        Some(text) => Timestamp::parse_rfc3339(text)
            .map(Some)
            .ok_or_else(|| Problem::invalid_field(&format!("query.{name}"), "must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z")),
    }
}

fn limit(q: &[(String, String)], default: usize) -> Result<usize, Problem> {
    match query_param(q, "limit") {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(Problem::invalid_field(
                "query.limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn json_body(request: &HttpRequest) -> Result<Value, Problem> {
    if !has_json_body(request) {
        return Err(Problem::unsupported_media_type());
    }
    let value: Value = serde_json::from_slice(request.body()).map_err(|e| Problem::invalid_field("", format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Problem::invalid_field("", "must be a JSON object"));
    }
    Ok(value)
}

/// An identity from a channel and a handle, normalized as the rules say for that channel.
fn identity_from(channel: Option<&str>, handle: Option<&str>, prefix: &str, rules: &engagement::Rules) -> Result<Identity, Problem> {
    let mut errors = Vec::new();
    let channel = match channel.map(Channel::parse) {
        None => {
            errors.push(FieldError {
                path: format!("{prefix}channel"),
                reason: "required".into(),
            });
            None
        }
        Some(Err(error)) => {
            errors.push(FieldError {
                path: format!("{prefix}channel"),
                reason: error.to_string(),
            });
            None
        }
        Some(Ok(channel)) => Some(channel),
    };
    if handle.is_none() {
        errors.push(FieldError {
            path: format!("{prefix}handle"),
            reason: "required".into(),
        });
    }
    if let (Some(channel), Some(handle)) = (channel, handle) {
        match Identity::new(channel.clone(), rules.handle_style(&channel), handle) {
            Ok(identity) if errors.is_empty() => return Ok(identity),
            Ok(_) => {}
            Err(error) => errors.push(FieldError {
                path: format!("{prefix}handle"),
                reason: error.to_string(),
            }),
        }
    }
    Err(Problem::invalid(errors))
}
