//! Host names in upstream addresses (mesh-file endpoints, `--inbound`'s app), resolved as
//! Envoy resolves a `STRICT_DNS` cluster's: every [`REFRESH`], by one thread of its own
//! (`meshtel-dns`), whether connections are being made or not, so that the first
//! connection after a quiet spell goes to the name's current address; and a failed
//! refresh keeps the last answer (a resolver outage does not cut a mesh off from
//! addresses it knew). A name not known yet is looked up when a connection first needs
//! it, one lookup per name at a time however many connections wait: a resolver that
//! hangs holds one blocking thread per name, not one per connection attempt. A name that
//! has never resolved is tried again [`RETRY_AFTER_FAILURE`] after a failure, connections
//! failing at once meanwhile; one unused for [`FORGET_AFTER`] is no longer refreshed.
//!
//! IP addresses are not looked up.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, LazyLock, Once};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often a name's answer is looked up again.
pub const REFRESH: Duration = if cfg!(test) { Duration::from_secs(1) } else { Duration::from_secs(5) };
/// How long after a failed lookup the next one starts.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How long a name no connection asked for is still refreshed.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Names remembered at most; past it, the least recently used go. Names come from the
/// mesh file and flags, not from requests.
const MAX_NAMES: usize = 10_000;
/// Least time between two WARN lines about one name's failed lookups.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Refreshes running at once at most, each on a thread of its own: a name whose
/// resolver hangs holds one of them, not the refresh of every other name.
const MAX_REFRESHING: usize = 16;

/// Refreshes running now.
static REFRESHING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A lookup's addresses, or why it failed.
type Answer = Result<Arc<[SocketAddr]>, String>;

/// What is known of one name.
struct Entry {
    /// The latest usable answer and when it is to be refreshed, or the latest failure
    /// (of a name that never resolved) and when it may be tried again.
    answer: Option<(Answer, Instant)>,
    /// Set while a lookup runs: `true` once it has ended.
    pending: Option<watch::Receiver<bool>>,
    /// When a failed lookup was last logged at WARN: at most one per [`WARN_EVERY`],
    /// however often the answers flap.
    warned_at: Option<Instant>,
    /// Whether the latest lookup failed (an INFO says when it resolves again).
    failing: bool,
    /// When a connection last asked for the name.
    used_at: Instant,
}

static NAMES: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(Mutex::default);
static REFRESHER: Once = Once::new();

/// The addresses to connect to for `upstream` (`host:port`).
pub async fn resolve(upstream: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(address) = upstream.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    REFRESHER.call_once(start_refresher);
    loop {
        let mut pending = {
            let mut names = NAMES.lock();
            let now = Instant::now();
            if !names.contains_key(upstream) {
                if names.len() >= MAX_NAMES {
                    forget_least_used(&mut names);
                }
                let entry = Entry { answer: None, pending: None, warned_at: None, failing: false, used_at: now };
                names.insert(upstream.to_owned(), entry);
            }
            let Some(entry) = names.get_mut(upstream) else {
                continue;
            };
            entry.used_at = now;
            match &entry.answer {
                Some((Ok(addresses), _)) => return Ok(addresses.to_vec()),
                Some((Err(message), retry_at)) if now < *retry_at => {
                    return Err(io::Error::other(message.clone()));
                }
                _ => {}
            }
            match &entry.pending {
                Some(pending) => pending.clone(),
                None => {
                    let (done, pending) = watch::channel(false);
                    entry.pending = Some(pending.clone());
                    let name = upstream.to_owned();
                    // In a task of its own: callers that give up (their connect timeout)
                    // leave it to finish and fill the entry for the next ones.
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let lookup_name = name.clone();
                        let looked_up = tokio::task::spawn_blocking(move || lookup(&lookup_name)).await;
                        let looked_up = looked_up.unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
                        record(&name, looked_up, started);
                        let _ = done.send(true);
                    });
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

/// The resolver's answer for `name` (`host:port`), on the calling thread.
fn lookup(name: &str) -> io::Result<Vec<SocketAddr>> {
    #[cfg(test)]
    {
        *tests::LOOKUPS.lock().entry(name.to_owned()).or_default() += 1;
        let slow = tests::SLOW.lock().get(name).copied();
        if let Some(hang) = slow {
            std::thread::sleep(hang);
        }
        if let Some(fake) = tests::FAKE.lock().get(name) {
            return fake.clone().map_err(io::Error::other);
        }
    }
    Ok(name.to_socket_addrs()?.collect())
}

/// Stores what a lookup of `name` started at `started` found, and logs what changed.
fn record(name: &str, looked_up: io::Result<Vec<SocketAddr>>, started: Instant) {
    let answer: Answer = match looked_up {
        Ok(addresses) if addresses.is_empty() => Err(format!("resolving {name}: no address")),
        Ok(addresses) => Ok(addresses.into()),
        Err(error) => Err(format!("resolving {name}: {error}")),
    };
    let now = Instant::now();
    let took_ms = now.duration_since(started).as_millis() as u64;
    let mut names = NAMES.lock();
    let Some(entry) = names.get_mut(name) else {
        return;
    };
    entry.pending = None;
    let warn_now = answer.is_err() && entry.warned_at.is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
    if warn_now {
        entry.warned_at = Some(now);
    }
    // The INFO that it resolves again follows a failure that was told, within the minute.
    let warned = entry.warned_at.is_some_and(|at| now.duration_since(at) < WARN_EVERY) || warn_now;
    entry.failing |= answer.is_err();
    match (answer, &entry.answer) {
        (Ok(addresses), _) => {
            if std::mem::take(&mut entry.failing) && warned {
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
}

/// Forgets the least recently used name that no lookup is running for.
fn forget_least_used(names: &mut HashMap<String, Entry>) {
    let oldest = names.iter().filter(|(_, e)| e.pending.is_none()).min_by_key(|(_, e)| e.used_at).map(|(name, _)| name.clone());
    if let Some(name) = oldest {
        names.remove(&name);
    }
}

/// The thread that starts the refreshes of the answers in use.
fn start_refresher() {
    let started = std::thread::Builder::new().name("meshtel-dns".into()).spawn(|| {
        loop {
            std::thread::sleep(REFRESH / 5);
            refresh_due();
        }
    });
    if let Err(error) = started {
        warn!(%error, "no thread to refresh upstream host names: each keeps the address it first resolved to");
    }
}

/// Looks up again every name whose answer is due, each on a thread of its own (at
/// most [`MAX_REFRESHING`] at once; the rest at the next tick), and forgets those no
/// longer used.
fn refresh_due() {
    use std::sync::atomic::Ordering;
    let now = Instant::now();
    let mut names = NAMES.lock();
    names.retain(|_, entry| entry.pending.is_some() || now.duration_since(entry.used_at) < FORGET_AFTER);
    for (name, entry) in names.iter_mut() {
        let due = entry.pending.is_none() && matches!(&entry.answer, Some((Ok(_), refresh_at)) if now >= *refresh_at);
        if !due || REFRESHING.load(Ordering::Relaxed) >= MAX_REFRESHING {
            continue;
        }
        let (done, pending) = watch::channel(false);
        let name = name.clone();
        REFRESHING.fetch_add(1, Ordering::Relaxed);
        let refresh = move || {
            record(&name, lookup(&name), now);
            let _ = done.send(true);
            REFRESHING.fetch_sub(1, Ordering::Relaxed);
        };
        match std::thread::Builder::new().name("meshtel-dns".into()).spawn(refresh) {
            Ok(_) => entry.pending = Some(pending),
            Err(error) => {
                REFRESHING.fetch_sub(1, Ordering::Relaxed);
                warn!(%error, "no thread to refresh an upstream host name; tried again at the next tick");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers by name, or why they fail.
    type Answers = Mutex<HashMap<String, Result<Vec<SocketAddr>, String>>>;

    /// Answers `lookup` gives instead of the resolver's, by name.
    pub(super) static FAKE: LazyLock<Answers> = LazyLock::new(Mutex::default);
    /// How long lookups of a name hang, by name.
    pub(super) static SLOW: LazyLock<Mutex<HashMap<String, Duration>>> = LazyLock::new(Mutex::default);
    /// Lookups made, by name.
    pub(super) static LOOKUPS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Mutex::default);

    fn answer(name: &str, addresses: &[&str]) {
        let addresses = addresses.iter().map(|a| a.parse().expect("address")).collect();
        FAKE.lock().insert(name.to_owned(), Ok(addresses));
    }

    fn lookups(name: &str) -> usize {
        LOOKUPS.lock().get(name).copied().unwrap_or(0)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[tokio::test]
    async fn ip_addresses_are_taken_as_they_are_and_names_are_looked_up() {
        assert_eq!(resolve("127.0.0.1:9080").await.expect("ip"), [addr("127.0.0.1:9080")]);
        assert_eq!(resolve("[::1]:9080").await.expect("ipv6"), [addr("[::1]:9080")]);
        // `localhost` resolves from /etc/hosts, without a DNS server.
        let local = resolve("localhost:9080").await.expect("localhost");
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 9080), "{local:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_waiting_for_a_name_share_one_lookup() {
        let name = "shared.test:80";
        answer(name, &["10.0.0.1:80"]);
        let waiting: Vec<_> = (0..50).map(|_| tokio::spawn(resolve(name))).collect();
        for task in waiting {
            assert_eq!(task.await.expect("task").expect("resolves"), [addr("10.0.0.1:80")]);
        }
        assert_eq!(lookups(name), 1);
    }

    /// As Envoy's STRICT_DNS: the answer is refreshed on a timer, so the first connection
    /// after a quiet spell goes to the current address; a failed refresh keeps the last.
    #[tokio::test]
    async fn answers_are_refreshed_without_traffic_and_kept_when_a_refresh_fails() {
        let name = "switch.test:80";
        answer(name, &["10.0.0.3:80"]);
        assert_eq!(resolve(name).await.expect("resolves"), [addr("10.0.0.3:80")]);
        answer(name, &["10.0.0.2:80"]);
        tokio::time::sleep(REFRESH * 5 / 2).await;
        assert_eq!(resolve(name).await.expect("refreshed"), [addr("10.0.0.2:80")], "the first connection after the change");
        FAKE.lock().insert(name.to_owned(), Err("SERVFAIL".to_owned()));
        let before = lookups(name);
        tokio::time::sleep(REFRESH * 5 / 2).await;
        assert!(lookups(name) > before, "refreshed while failing");
        assert_eq!(resolve(name).await.expect("kept"), [addr("10.0.0.2:80")]);
    }

    /// Names whose resolver hangs hold their own refreshes, not the others'.
    #[tokio::test]
    async fn a_hung_name_does_not_hold_up_the_refresh_of_the_others() {
        let hung: Vec<String> = (1..=4).map(|i| format!("hung{i}.test:80")).collect();
        for name in &hung {
            answer(name, &["10.0.1.1:80"]);
            resolve(name).await.expect("resolves before it hangs");
            SLOW.lock().insert(name.clone(), REFRESH * 10);
        }
        let name = "healthy.test:80";
        answer(name, &["10.0.1.2:80"]);
        assert_eq!(resolve(name).await.expect("resolves"), [addr("10.0.1.2:80")]);
        tokio::time::sleep(REFRESH * 3 / 2).await;
        answer(name, &["10.0.1.3:80"]);
        tokio::time::sleep(REFRESH * 5 / 2).await;
        assert_eq!(resolve(name).await.expect("refreshed"), [addr("10.0.1.3:80")]);
        for name in &hung {
            assert_eq!(resolve(name).await.expect("kept while hanging"), [addr("10.0.1.1:80")]);
        }
    }

    #[tokio::test]
    async fn a_name_that_never_resolved_fails_naming_it_and_waits_before_the_next_lookup() {
        let name = "never.test:80";
        FAKE.lock().insert(name.to_owned(), Err("NXDOMAIN".to_owned()));
        let error = resolve(name).await.expect_err("does not resolve").to_string();
        assert!(error.contains("resolving never.test:80") && error.contains("NXDOMAIN"), "{error}");
        // Within RETRY_AFTER_FAILURE the failure is answered without a lookup.
        assert_eq!(resolve(name).await.expect_err("still failing").to_string(), error);
        assert_eq!(lookups(name), 1);
    }
}
