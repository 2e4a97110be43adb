//! Host names in upstream addresses (mesh-file endpoints, `--inbound`'s app), resolved as
//! Envoy resolves a `STRICT_DNS` cluster's: an answer is used for [`REFRESH`], then
//! looked up again in the background while the last answer keeps being used, and kept
//! when a later lookup fails (a resolver outage does not cut a mesh off from addresses it
//! knew). One lookup per name runs at a time, whatever the number of connections waiting
//! for it: a resolver that hangs holds one blocking thread per name, not one per
//! connection attempt. A name that has never resolved is tried again [`RETRY_AFTER_FAILURE`]
//! after a failure, connections failing at once meanwhile.
//!
//! IP addresses are not looked up.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};

/// How long an answer is used before it is looked up again.
pub const REFRESH: Duration = Duration::from_secs(5);
/// How long after a failed lookup the next one starts.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Names remembered at most; past it, those not being looked up are forgotten. Names come
/// from the mesh file and flags, not from requests.
const MAX_NAMES: usize = 10_000;

/// A lookup's addresses, or why it failed.
type Answer = Result<Arc<[SocketAddr]>, String>;

/// What is known of one name.
#[derive(Default)]
struct Entry {
    /// The latest usable answer and when it is to be refreshed, or the latest failure
    /// (of a name that never resolved) and when it may be tried again.
    answer: Option<(Answer, Instant)>,
    /// Set while a lookup runs: `true` once it has ended.
    pending: Option<watch::Receiver<bool>>,
    /// When a failed lookup was last logged at WARN: at most one per [`WARN_EVERY`].
    warned_at: Option<Instant>,
}

/// Least time between two WARN lines about one name's failed lookups.
const WARN_EVERY: Duration = Duration::from_secs(60);

static NAMES: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(Mutex::default);

/// The addresses to connect to for `upstream` (`host:port`).
pub async fn resolve(upstream: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(address) = upstream.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    loop {
        let mut pending = {
            let mut names = NAMES.lock();
            if !names.contains_key(upstream) {
                names.insert(upstream.to_owned(), Entry::default());
            }
            let Some(entry) = names.get_mut(upstream) else {
                continue;
            };
            let now = Instant::now();
            match &entry.answer {
                Some((Ok(addresses), refresh_at)) => {
                    let addresses = addresses.to_vec();
                    if now >= *refresh_at && entry.pending.is_none() {
                        entry.pending = Some(start_lookup(upstream));
                    }
                    return Ok(addresses);
                }
                Some((Err(message), retry_at)) if now < *retry_at => {
                    return Err(io::Error::other(message.clone()));
                }
                _ => {}
            }
            match &entry.pending {
                Some(pending) => pending.clone(),
                None => {
                    let pending = start_lookup(upstream);
                    entry.pending = Some(pending.clone());
                    pending
                }
            }
        };
        // A lookup whose task went away (its runtime stopped) is started again.
        if pending.wait_for(|done| *done).await.is_err()
            && let Some(entry) = NAMES.lock().get_mut(upstream)
        {
            entry.pending = None;
        }
    }
}

/// Looks `name` up on a blocking thread, in a task of its own: callers that give up
/// (their connect timeout) leave it to finish and fill the entry for the next ones.
fn start_lookup(name: &str) -> watch::Receiver<bool> {
    let (done, pending) = watch::channel(false);
    let name = name.to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
        let looked_up = tokio::net::lookup_host(name.as_str()).await;
        let answer: Answer = match looked_up {
            Ok(addresses) => {
                let addresses: Vec<SocketAddr> = addresses.collect();
                if addresses.is_empty() {
                    Err(format!("resolving {name}: no address"))
                } else {
                    Ok(addresses.into())
                }
            }
            Err(error) => Err(format!("resolving {name}: {error}")),
        };
        let now = Instant::now();
        let mut names = NAMES.lock();
        if names.len() > MAX_NAMES {
            names.retain(|_, entry| entry.pending.is_some());
        }
        let entry = names.entry(name.clone()).or_default();
        entry.pending = None;
        let took_ms = started.elapsed().as_millis() as u64;
        let warn_now = answer.is_err() && entry.warned_at.is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
        if warn_now {
            entry.warned_at = Some(now);
        }
        match (answer, &entry.answer) {
            (Ok(addresses), _) => {
                if entry.warned_at.take().is_some() {
                    info!(name, addresses = ?addresses, took_ms, "upstream host name resolves again");
                }
                entry.answer = Some((Ok(addresses), now + REFRESH));
            }
            (Err(error), Some((Ok(known), _))) => {
                if warn_now {
                    warn!(name, error, took_ms, using = ?known, at_most_every = "60s", "upstream host name lookup failed; the addresses it last resolved to stay in use");
                }
                let known = known.clone();
                entry.answer = Some((Ok(known), now + RETRY_AFTER_FAILURE));
            }
            (Err(error), _) => {
                if warn_now {
                    warn!(name, error, took_ms, at_most_every = "60s", "upstream host name does not resolve; connections to it fail until it does");
                }
                entry.answer = Some((Err(error), now + RETRY_AFTER_FAILURE));
            }
        }
        let _ = done.send(true);
    });
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_addresses_are_taken_as_they_are_and_names_are_looked_up_once_per_refresh() {
        assert_eq!(resolve("127.0.0.1:9080").await.expect("ip"), ["127.0.0.1:9080".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(resolve("[::1]:9080").await.expect("ipv6"), ["[::1]:9080".parse::<SocketAddr>().expect("addr")]);
        // `localhost` resolves from /etc/hosts, without a DNS server.
        let first = resolve("localhost:9080").await.expect("localhost");
        assert!(first.iter().all(|a| a.ip().is_loopback() && a.port() == 9080), "{first:?}");
        let refresh_at = |name: &str| NAMES.lock().get(name).and_then(|e| e.answer.as_ref().map(|(_, at)| *at));
        let at = refresh_at("localhost:9080").expect("remembered");
        for _ in 0..100 {
            assert_eq!(resolve("localhost:9080").await.expect("cached"), first);
        }
        assert_eq!(refresh_at("localhost:9080"), Some(at), "one lookup for all of them");
    }

    #[tokio::test]
    async fn an_address_that_does_not_resolve_fails_naming_it_and_waits_before_the_next_lookup() {
        // Without a port the lookup fails at once, with no DNS server asked.
        let name = "no-port-here";
        let error = resolve(name).await.expect_err("does not resolve").to_string();
        assert!(error.contains("resolving no-port-here"), "{error}");
        let retry_at = NAMES.lock().get(name).and_then(|e| e.answer.as_ref().map(|(_, at)| *at)).expect("remembered");
        // Within RETRY_AFTER_FAILURE the failure is answered without a lookup.
        let again = resolve(name).await.expect_err("still failing").to_string();
        assert_eq!(again, error);
        assert_eq!(NAMES.lock().get(name).and_then(|e| e.answer.as_ref().map(|(_, at)| *at)), Some(retry_at));
    }
}
