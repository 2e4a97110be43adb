//! The Bookinfo applications, built into the binary: small axum servers that behave
//! like Istio's samples/bookinfo services where the labs look.
//!
//! ```text
//!  productpage v1 ──► details v1 | v2 (v2 answers 500 to about half of the reads)
//!        │                 timeout 3 s, one attempt
//!        └─────────► reviews v1 (no stars) | v2 (black) | v3 (red)
//!                          timeout 3 s, two attempts (Bookinfo's hard-coded retry)
//!                          └─ v2, v3 ──► ratings v1
//!                                  v2 waits up to 10 s, v3 up to 2.5 s
//! ```
//!
//! Every call goes through the caller's outbound proxy (`Host: reviews:9080`), with
//! the headers Bookinfo copies from the incoming request ([`PROPAGATED`]), so the
//! proxies' spans join into one trace. productpage takes the user from `?u=NAME`, the
//! `end-user` header or a `user` cookie, and passes it on as `end-user` (what the
//! routing labs match on). It answers HTML, or JSON ([`Page`]) with
//! `Accept: application/json` or `?format=json`; it answers 200 even when a service
//! behind it fails, with the message Bookinfo shows.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Headers Bookinfo's services copy from the request they serve to the calls they
/// make: trace context (W3C, B3, Lightstep), the request id, the user and the client.
pub const PROPAGATED: [&str; 14] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "end-user",
    "user-agent",
    "cookie",
];

/// productpage's timeout for each call to details and reviews (Bookinfo's 3 s).
pub const PRODUCTPAGE_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts productpage makes at reviews before giving up (Bookinfo's hard-coded retry).
pub const PRODUCTPAGE_REVIEWS_ATTEMPTS: usize = 2;
/// How long reviews v2 waits for ratings.
pub const REVIEWS_V2_RATINGS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reviews v3 waits for ratings (the "fixed" timeout).
pub const REVIEWS_V3_RATINGS_TIMEOUT: Duration = Duration::from_millis(2_500);
/// Share of reads details v2 fails.
pub const DETAILS_V2_FAILURE_RATE: f64 = 0.5;

/// The message productpage shows when details fails.
pub const DETAILS_UNAVAILABLE: &str =
    "Sorry, product details are currently unavailable for this book.";
/// The message productpage shows when reviews fails.
pub const REVIEWS_UNAVAILABLE: &str =
    "Sorry, product reviews are currently unavailable for this book.";
/// The message reviews puts in place of the stars when ratings fails.
pub const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// Which program an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// The page: calls details, then reviews.
    ProductPage,
    /// Book details; `buggy` fails about half of the reads with 500.
    Details {
        /// details v2: fails [`DETAILS_V2_FAILURE_RATE`] of the reads.
        buggy: bool,
    },
    /// Book reviews; v2 and v3 call ratings and show stars in their colour.
    Reviews {
        /// `None` for v1 (no ratings call), else the colour of the stars.
        stars: Option<&'static str>,
        /// How long to wait for ratings.
        ratings_timeout: Duration,
    },
    /// Star ratings.
    Ratings,
}

/// One instance of the demo application: an app and the proxy beside it.
#[derive(Debug, Clone, Copy)]
pub struct Instance {
    /// Service name, e.g. `reviews`.
    pub service: &'static str,
    /// Version label, e.g. `v2`.
    pub version: &'static str,
    /// What it runs.
    pub kind: AppKind,
}

impl Instance {
    /// Workload name, `<service>-<version>`.
    pub fn workload(&self) -> String {
        format!("{}-{}", self.service, self.version)
    }
}

/// Every instance of the demo, productpage (the ingress) first.
pub const INSTANCES: [Instance; 7] = [
    Instance {
        service: "productpage",
        version: "v1",
        kind: AppKind::ProductPage,
    },
    Instance {
        service: "details",
        version: "v1",
        kind: AppKind::Details { buggy: false },
    },
    Instance {
        service: "details",
        version: "v2",
        kind: AppKind::Details { buggy: true },
    },
    Instance {
        service: "reviews",
        version: "v1",
        kind: AppKind::Reviews {
            stars: None,
            ratings_timeout: REVIEWS_V2_RATINGS_TIMEOUT,
        },
    },
    Instance {
        service: "reviews",
        version: "v2",
        kind: AppKind::Reviews {
            stars: Some("black"),
            ratings_timeout: REVIEWS_V2_RATINGS_TIMEOUT,
        },
    },
    Instance {
        service: "reviews",
        version: "v3",
        kind: AppKind::Reviews {
            stars: Some("red"),
            ratings_timeout: REVIEWS_V3_RATINGS_TIMEOUT,
        },
    },
    Instance {
        service: "ratings",
        version: "v1",
        kind: AppKind::Ratings,
    },
];

/// What an app needs to call other services: its proxy's outbound listener.
#[derive(Clone)]
pub struct Upstream {
    outbound: SocketAddr,
    client: reqwest::Client,
}

impl Upstream {
    /// Calls through the proxy listening on `outbound`, with `client`'s pool.
    pub fn new(outbound: SocketAddr, client: reqwest::Client) -> Upstream {
        Upstream { outbound, client }
    }

    /// `GET http://<host><path>` through the outbound proxy, with `headers`; waits at
    /// most `timeout` for the whole answer.
    async fn get(&self, host: &str, path: &str, headers: &HeaderMap, timeout: Duration) -> Reply {
        let mut request = self
            .client
            .get(format!("http://{}{path}", self.outbound))
            .header(header::HOST, host)
            .timeout(timeout);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Reply::failed(&error),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(body) => Reply {
                status: Some(status),
                body: serde_json::from_slice(&body).ok(),
                failure: None,
            },
            Err(error) => Reply::failed(&error),
        }
    }
}

/// The outcome of one call.
#[derive(Debug)]
struct Reply {
    /// The status, when an answer came.
    status: Option<u16>,
    /// The JSON body, when it was JSON.
    body: Option<Value>,
    /// Why no answer came (timeout, connection).
    failure: Option<String>,
}

impl Reply {
    fn failed(error: &reqwest::Error) -> Reply {
        let failure = if error.is_timeout() {
            "timed out".to_owned()
        } else {
            "connection failed".to_owned()
        };
        Reply {
            status: None,
            body: None,
            failure: Some(failure),
        }
    }

    fn ok_body(&self) -> Option<&Value> {
        (self.status == Some(200))
            .then_some(self.body.as_ref())
            .flatten()
    }

    fn describe(&self) -> String {
        match (&self.status, &self.failure) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(failure)) => failure.clone(),
            (None, None) => "no answer".to_owned(),
        }
    }
}

/// The headers of `incoming` that Bookinfo passes on.
fn propagated(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in PROPAGATED {
        if let Some(value) = incoming.get(name) {
            out.insert(HeaderName::from_static(name), value.clone());
        }
    }
    out
}

/// The app of `instance`, calling other services through `upstream`.
pub fn router(instance: &Instance, upstream: Upstream) -> Router {
    match instance.kind {
        AppKind::ProductPage => Router::new()
            .route("/", get(|| async { Html(INDEX_HTML) }))
            .route("/productpage", get(productpage))
            .route("/health", get(health))
            .with_state(upstream),
        AppKind::Details { buggy } => Router::new()
            .route(
                "/details/{id}",
                get(move |Path(id): Path<u32>| details(id, buggy)),
            )
            .route("/health", get(health)),
        AppKind::Reviews {
            stars,
            ratings_timeout,
        } => {
            let state = ReviewsState {
                upstream,
                podname: instance.workload(),
                stars,
                ratings_timeout,
            };
            Router::new()
                .route("/reviews/{id}", get(reviews))
                .route("/health", get(health))
                .with_state(state)
        }
        AppKind::Ratings => Router::new()
            .route("/ratings/{id}", get(ratings))
            .route("/health", get(health)),
    }
}

async fn health() -> axum::Json<Value> {
    axum::Json(json!({"status": "Healthy"}))
}

/// Simulated work of `base` ± 50 %, so that latencies look like services'.
async fn work(base: Duration) {
    let factor = rand::rng().random_range(0.5..1.5);
    tokio::time::sleep(base.mul_f64(factor)).await;
}

async fn details(id: u32, buggy: bool) -> Response {
    work(Duration::from_millis(2)).await;
    if buggy && rand::rng().random_bool(DETAILS_V2_FAILURE_RATE) {
        let body = json!({"error": "details v2 could not read the book's record"});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    }
    axum::Json(json!({
        "id": id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }))
    .into_response()
}

async fn ratings(Path(id): Path<u32>) -> axum::Json<Value> {
    work(Duration::from_millis(4)).await;
    axum::Json(json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}))
}

#[derive(Clone)]
struct ReviewsState {
    upstream: Upstream,
    podname: String,
    stars: Option<&'static str>,
    ratings_timeout: Duration,
}

async fn reviews(
    State(state): State<ReviewsState>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> axum::Json<Value> {
    work(Duration::from_millis(8)).await;
    let texts = [
        (
            "Reviewer1",
            "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
        ),
        (
            "Reviewer2",
            "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
        ),
    ];
    let mut ratings = None;
    if state.stars.is_some() {
        let reply = state
            .upstream
            .get(
                "ratings:9080",
                &format!("/ratings/{id}"),
                &propagated(&headers),
                state.ratings_timeout,
            )
            .await;
        ratings = Some(reply.ok_body().map(|body| body["ratings"].clone()));
    }
    let reviews: Vec<Value> = texts
        .iter()
        .map(|(reviewer, text)| {
            let mut review = json!({"reviewer": reviewer, "text": text});
            match (&ratings, state.stars) {
                (Some(Some(stars)), Some(color)) => {
                    review["rating"] = json!({"stars": stars[*reviewer].clone(), "color": color});
                }
                (Some(None), _) => review["rating"] = json!({"error": RATINGS_UNAVAILABLE}),
                _ => {}
            }
            review
        })
        .collect();
    axum::Json(
        json!({"id": id.to_string(), "podname": state.podname, "clustername": "null", "reviews": reviews}),
    )
}

/// `?u=NAME` (log in as NAME) and `?format=json`.
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    u: Option<String>,
    format: Option<String>,
}

/// What productpage shows, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The logged-in user, if any.
    pub user: Option<String>,
    /// The book's details, or `None` when details failed.
    pub details: Option<Value>,
    /// [`DETAILS_UNAVAILABLE`] and why, when details failed.
    pub details_error: Option<String>,
    /// The reviews, or `None` when reviews failed twice.
    pub reviews: Option<Value>,
    /// [`REVIEWS_UNAVAILABLE`] and why, when reviews failed.
    pub reviews_error: Option<String>,
    /// The reviews version that answered (`v1`, `v2`, `v3`).
    pub reviews_version: Option<String>,
    /// What the stars look like: `none` (v1), `black`, `red`, or `unavailable`.
    pub ratings: Option<String>,
}

/// The user from `?u=`, `end-user` or the `user` cookie.
fn page_user(query: &PageQuery, headers: &HeaderMap) -> Option<String> {
    let from_cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|cookies| {
                cookies
                    .split(';')
                    .find_map(|c| c.trim().strip_prefix("user=").map(str::to_owned))
            })
    };
    query
        .u
        .clone()
        .or_else(|| {
            headers
                .get("end-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(from_cookie)
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty() && u.len() <= 64)
}

async fn productpage(
    State(upstream): State<Upstream>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let user = page_user(&query, &headers);
    let mut outgoing = propagated(&headers);
    match user.as_deref().map(HeaderValue::from_str) {
        Some(Ok(value)) => {
            outgoing.insert("end-user", value);
        }
        _ => {
            outgoing.remove("end-user");
        }
    }
    let details = upstream
        .get("details:9080", "/details/0", &outgoing, PRODUCTPAGE_TIMEOUT)
        .await;
    // Bookinfo's productpage: two tries of 3 s each (the bug the delay lab finds).
    let mut reviews = None;
    for _ in 0..PRODUCTPAGE_REVIEWS_ATTEMPTS {
        let reply = upstream
            .get("reviews:9080", "/reviews/0", &outgoing, PRODUCTPAGE_TIMEOUT)
            .await;
        let ok = reply.ok_body().is_some();
        reviews = Some(reply);
        if ok {
            break;
        }
    }
    let page = build_page(user, &details, reviews.as_ref());
    let wants_json = query.format.as_deref() == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        axum::Json(page).into_response()
    } else {
        Html(render_page(&page)).into_response()
    }
}

fn build_page(user: Option<String>, details: &Reply, reviews: Option<&Reply>) -> Page {
    let reviews_body = reviews.and_then(Reply::ok_body).cloned();
    let reviews_version = reviews_body
        .as_ref()
        .and_then(|body| body["podname"].as_str())
        .and_then(|pod| pod.rsplit('-').next())
        .map(str::to_owned);
    let ratings = reviews_body.as_ref().map(|body| {
        let list = body["reviews"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if list.iter().any(|r| r["rating"]["error"].is_string()) {
            "unavailable".to_owned()
        } else {
            list.iter()
                .find_map(|r| r["rating"]["color"].as_str())
                .unwrap_or("none")
                .to_owned()
        }
    });
    Page {
        user,
        details: details.ok_body().cloned(),
        details_error: details
            .ok_body()
            .is_none()
            .then(|| format!("{DETAILS_UNAVAILABLE} ({})", details.describe())),
        reviews_error: reviews_body.is_none().then(|| {
            let why = reviews.map_or_else(|| "not called".to_owned(), Reply::describe);
            format!("{REVIEWS_UNAVAILABLE} ({why})")
        }),
        reviews: reviews_body,
        reviews_version,
        ratings,
    }
}

/// Escapes text for HTML.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn render_page(page: &Page) -> String {
    let user = match &page.user {
        Some(user) => format!(
            "signed in as <b>{}</b> · <a href=\"/productpage\">sign out</a>",
            escape_html(user)
        ),
        None => "<a href=\"/productpage?u=jason\">sign in as jason</a>".to_owned(),
    };
    let details = match (&page.details, &page.details_error) {
        (Some(d), _) => {
            let field = |k: &str| {
                escape_html(
                    &d[k]
                        .as_str()
                        .map_or_else(|| d[k].to_string(), str::to_owned),
                )
            };
            format!(
                "<dl><dt>Type</dt><dd>{}</dd><dt>Pages</dt><dd>{}</dd><dt>Publisher</dt><dd>{}</dd>\
                 <dt>Language</dt><dd>{}</dd><dt>ISBN-10</dt><dd>{}</dd></dl>",
                field("type"),
                field("pages"),
                field("publisher"),
                field("language"),
                field("ISBN-10")
            )
        }
        (None, error) => format!(
            "<p class=\"error\">{}</p>",
            escape_html(error.as_deref().unwrap_or(DETAILS_UNAVAILABLE))
        ),
    };
    let reviews = match &page.reviews {
        Some(body) => {
            let mut html = String::new();
            for review in body["reviews"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let text = escape_html(review["text"].as_str().unwrap_or_default());
                let reviewer = escape_html(review["reviewer"].as_str().unwrap_or_default());
                let rating = &review["rating"];
                let stars = if let Some(error) = rating["error"].as_str() {
                    format!("<p class=\"error\">{}</p>", escape_html(error))
                } else if let (Some(n), Some(color)) =
                    (rating["stars"].as_u64(), rating["color"].as_str())
                {
                    let color = if color == "red" { "red" } else { "black" };
                    format!(
                        "<p style=\"color:{color}\">{}{}</p>",
                        "★".repeat(n as usize),
                        "☆".repeat(5usize.saturating_sub(n as usize))
                    )
                } else {
                    String::new()
                };
                html.push_str(&format!(
                    "<blockquote><p>{text}</p><small>{reviewer}</small>{stars}</blockquote>"
                ));
            }
            let version = escape_html(page.reviews_version.as_deref().unwrap_or("?"));
            format!("{html}<p class=\"meta\">served by reviews {version}</p>")
        }
        None => format!(
            "<p class=\"error\">{}</p>",
            escape_html(page.reviews_error.as_deref().unwrap_or(REVIEWS_UNAVAILABLE))
        ),
    };
    format!(
        "{PAGE_HEAD}<body><header><h2>BookInfo Sample (meshtel demo)</h2><span>{user}</span></header>\n\
         <h1>The Comedy of Errors</h1>\n<p><a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">Wikipedia \
         Summary</a>: The Comedy of Errors is one of William Shakespeare's early plays. It is his shortest and one of \
         his most farcical comedies.</p>\n<div class=\"cols\"><section><h3>Book Details</h3>{details}</section>\
         <section><h3>Book Reviews</h3>{reviews}</section></div>\n</body></html>\n"
    )
}

const INDEX_HTML: &str = "<!doctype html><title>Bookinfo</title><h1>Bookinfo (meshtel demo)</h1>\
<p><a href=\"/productpage\">Normal user</a> · <a href=\"/productpage?u=jason\">Test user (jason)</a></p>";

const PAGE_HEAD: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>The Comedy of Errors · Bookinfo</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}
.cols{display:flex;gap:2rem}.cols>section{flex:1}.error{color:#b00}.meta{color:#777;font-size:.85em}
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:1px solid #ddd}
blockquote{margin:0 0 1rem;padding-left:1rem;border-left:3px solid #ddd}dt{font-weight:bold}</style></head>
"#;
