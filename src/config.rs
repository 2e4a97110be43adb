//! The one configuration of the `meshtel` binary: a TOML file (`--config`), then
//! `MESHTEL_*` environment variables, then flags, each overriding the one before.
//!
//! ```toml
//! data_dir = "./meshtel-data"
//! [listen]
//! grpc = "127.0.0.1:4317"      # OTLP gRPC
//! http = "127.0.0.1:4318"      # OTLP HTTP, /metrics, /healthz
//! zipkin = "127.0.0.1:9411"    # Zipkin v2
//! query = "127.0.0.1:16686"    # Jaeger API
//! [store]
//! wal.sync = "interval"        # or "always"
//! retention_max_age = "7d"
//! [ingest]
//! max_request_bytes = "16 MiB"
//! [query]
//! base_path = ""
//! [report]
//! metrics.max_series = 10000   # Istio series per metric; beyond: dropped and counted
//! metrics.series_expiry = "1h"  # Istio series without a request this long are removed; "0s" = never
//! [edges]
//! retention = "7d"             # service-graph rollups kept this long
//! [http]
//! header_read_timeout = "10s"  # OTLP HTTP, Zipkin, query: headers not complete by then → closed
//!                              # (and every port's connections that send nothing by then)
//! body_read_timeout = "30s"    # body not complete by then → 408; a gRPC call unanswered → CANCELLED
//! write_timeout = "30s"        # client reads nothing of its answer this long → closed (a trace
//!                              # read's answer dropped with its turn)
//! allowed_hosts = []           # names answered besides localhost while bound to loopback
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use meshtel_collector::IngestLimits;
use meshtel_collector::ReportConfig;
use meshtel_query::QueryConfig;
use meshtel_store::{EdgeConfig, StoreConfig};
use serde::{Deserialize, Serialize};

/// Where each server listens. `host:port`; port 0 picks a free port (the bound
/// addresses are logged and written to `<data_dir>/listeners.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// OTLP gRPC (`TraceService/Export`). Default `127.0.0.1:4317`.
    #[serde(default = "default_grpc")]
    pub grpc: String,
    /// OTLP HTTP (`POST /v1/traces`), `/metrics`, `/healthz`, `/readyz`. Default
    /// `127.0.0.1:4318`.
    #[serde(default = "default_http")]
    pub http: String,
    /// Zipkin v2 (`POST /api/v2/spans`). Default `127.0.0.1:9411`.
    #[serde(default = "default_zipkin")]
    pub zipkin: String,
    /// Jaeger query API (`/api/...`, `/api/v3/...`). Default `127.0.0.1:16686`.
    #[serde(default = "default_query")]
    pub query: String,
}

fn default_grpc() -> String {
    "127.0.0.1:4317".into()
}
fn default_http() -> String {
    "127.0.0.1:4318".into()
}
fn default_zipkin() -> String {
    "127.0.0.1:9411".into()
}
fn default_query() -> String {
    "127.0.0.1:16686".into()
}

impl ListenConfig {
    /// Checks that each address is `host:port` (an IP address, `[IPv6]` or a name,
    /// and a port from 0 to 65535) before anything is created; binding says the rest.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, addr) in [
            ("grpc", &self.grpc),
            ("http", &self.http),
            ("zipkin", &self.zipkin),
            ("query", &self.query),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_ok() {
                continue;
            }
            let named_host = addr.rsplit_once(':').is_some_and(|(host, port)| {
                // A name: not something that reads as a broken IPv4 address
                // (`999.1.1.1`, `1.2.3`), which a resolver would only fail on later.
                let looks_numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
                !host.is_empty()
                    && !looks_numeric
                    && !host.contains([':', '/', '[', ']'])
                    && !host.contains(|c: char| c.is_whitespace() || c.is_control())
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && port.parse::<u16>().is_ok()
            });
            if !named_host {
                // Host and port in form, but a port no socket has.
                let port_past = addr.rsplit_once(':').and_then(|(_, port)| {
                    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
                    (digits && port.parse::<u16>().is_err())
                        .then(|| format!("port {port} is past 65535, the highest port; "))
                });
                anyhow::bail!(
                    "invalid configuration: [listen] {key} = {addr:?} (--{key}-listen, \
                     MESHTEL_{}_LISTEN): {}expected host:port, e.g. 127.0.0.1:4317 or \
                     [::1]:4317 (port 0 picks a free one)",
                    key.to_uppercase(),
                    port_past.unwrap_or_default()
                );
            }
        }
        // The three ingest listeners are bound together (serve, collector): one address
        // twice could never start. Port 0 is a new free port each time.
        let ingest = [
            ("grpc", &self.grpc),
            ("http", &self.http),
            ("zipkin", &self.zipkin),
        ];
        for (i, (key, addr)) in ingest.iter().enumerate() {
            if let Some((other, _)) = ingest[i + 1..].iter().find(|(_, other)| other == addr)
                && !addr.ends_with(":0")
            {
                anyhow::bail!(
                    "invalid configuration: [listen] {key} and {other} are both {addr:?} \
                     (--{key}-listen, --{other}-listen): each listener needs its own address"
                );
            }
        }
        Ok(())
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            grpc: default_grpc(),
            http: default_http(),
            zipkin: default_zipkin(),
            query: default_query(),
        }
    }
}

/// Bounds on slow clients of the HTTP listeners (OTLP HTTP, Zipkin, query); the gRPC
/// listener has its own HTTP/2 flow control and keep-alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Longest time a connection may take to send a request's headers, counted from
    /// its first byte, or from the end of the previous response on a keep-alive
    /// connection; also how long any connection, the gRPC port's included, may stay
    /// silent after it opens, and an h2c connection without a new request. When it
    /// passes, the connection is closed without an answer (a slowloris client) and
    /// counted in
    /// `meshtel_http_connections_timed_out_total{phase="headers"}`. Default `10s`.
    #[serde(
        default = "default_header_read_timeout",
        with = "meshtel_store::config::humantime_serde_compat"
    )]
    pub header_read_timeout: Duration,
    /// Longest time a request's body may take to arrive, counted from the end of its
    /// headers. When it passes, the request is answered 408 and its connection closed,
    /// counted in `meshtel_http_connections_timed_out_total{phase="body"}`. Also the
    /// longest a gRPC call on the gRPC port may go unanswered (its message included)
    /// before it is cancelled. Default `30s`.
    #[serde(
        default = "default_body_read_timeout",
        with = "meshtel_store::config::humantime_serde_compat"
    )]
    pub body_read_timeout: Duration,
    /// Longest time a client may read nothing of its response while the server has
    /// more to send. When it passes, the connection is closed, freeing the answer it
    /// held, and counted in `meshtel_http_connections_timed_out_total{phase="write"}`;
    /// over HTTP/2, a trace read's answer left unread this long is dropped with its
    /// turn (`meshtel_query_reads_dropped_unread_total`). Default `30s`.
    #[serde(
        default = "default_write_timeout",
        with = "meshtel_store::config::humantime_serde_compat"
    )]
    pub write_timeout: Duration,
    /// Host names meshtel's HTTP listeners answer under while bound to a loopback
    /// address, besides loopback names (`localhost`, `*.localhost`, `127.0.0.0/8`,
    /// `[::1]`), which are always answered: a request naming another host is refused
    /// with 403, a guard against DNS rebinding (see `host_check`). Add the name a
    /// reverse proxy on the same machine sends in `Host`. Listeners bound to other
    /// addresses answer any host. Default empty.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// 30 s without reading a byte of an answer: a client's own timeouts are shorter, so
/// only a stuck or hostile one takes longer.
pub fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

/// 10 s for a request's headers: a client sends them in one write, so only a stalled or
/// hostile one needs longer.
pub fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

/// 30 s for a request's body: 16 MiB (the largest ingest body) at about 560 KB/s, and
/// three times an OpenTelemetry SDK exporter's own 10 s timeout.
pub fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            write_timeout: default_write_timeout(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl HttpServerConfig {
    /// Every timeout must be positive.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.write_timeout.is_zero() {
            anyhow::bail!("invalid configuration: [http] write_timeout must be positive");
        }
        if self.header_read_timeout.is_zero() {
            anyhow::bail!("invalid configuration: [http] header_read_timeout must be positive");
        }
        if self.body_read_timeout.is_zero() {
            anyhow::bail!("invalid configuration: [http] body_read_timeout must be positive");
        }
        for host in &self.allowed_hosts {
            // An IPv6 address, bracketed or not, is the one name with colons.
            let ipv6 = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::Ipv6Addr>()
                .is_ok();
            if host.is_empty()
                || (!ipv6 && host.contains(':'))
                || host.contains(['/', '*'])
                || host.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                anyhow::bail!(
                    "invalid configuration: [http] allowed_hosts: {host:?} is not a host name \
                     (give the name alone, without scheme, port or wildcard)"
                );
            }
        }
        Ok(())
    }
}

/// Everything `meshtel serve`, `collector` and `query` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the WAL, the Parquet blocks and the SQLite database. Default
    /// `./meshtel-data`.
    #[serde(default = "meshtel_store::config::default_data_dir")]
    pub data_dir: PathBuf,
    /// Listen addresses.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Trace store: WAL sync, flushing, compaction, retention, memory bounds.
    #[serde(default)]
    pub store: StoreConfig,
    /// Limits on each ingest request.
    #[serde(default)]
    pub ingest: IngestLimits,
    /// Query API settings.
    #[serde(default)]
    pub query: QueryConfig,
    /// Report stream from the proxies and the Istio metrics it feeds (series cap).
    #[serde(default)]
    pub report: ReportConfig,
    /// Service-graph edge rollups (bucket size, retention).
    #[serde(default)]
    pub edges: EdgeConfig,
    /// Quota engine bounds (counters, eviction, dedup, policy reload).
    #[serde(default)]
    pub quota: meshtel_collector::QuotaConfig,
    /// Administration API: bearer token, whether reads need it.
    #[serde(default)]
    pub admin: meshtel_query::AdminConfig,
    /// Timeouts of the HTTP listeners (OTLP HTTP, Zipkin, query).
    #[serde(default)]
    pub http: HttpServerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: meshtel_store::config::default_data_dir(),
            listen: ListenConfig::default(),
            store: StoreConfig::default(),
            ingest: IngestLimits::default(),
            query: QueryConfig::default(),
            report: ReportConfig::default(),
            edges: EdgeConfig::default(),
            quota: meshtel_collector::QuotaConfig::default(),
            admin: meshtel_query::AdminConfig::default(),
            http: HttpServerConfig::default(),
        }
    }
}

/// The 1-based number of the line `error` points at, when that line sets a token.
fn secret_line(text: &str, error: &toml::de::Error) -> Option<usize> {
    let start = error.span()?.start;
    let line = text.get(..start)?.matches('\n').count();
    let content = text.lines().nth(line)?.trim_start();
    let key = content
        .split(['=', ' ', '\t'])
        .next()?
        .trim_matches(['"', '\'']);
    (key == "token" || key.ends_with(".token")).then_some(line + 1)
}

impl Config {
    /// Reads a TOML file, or the defaults when no file is given.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).map_err(|error| {
            let context = format!("parsing config file {}", path.display());
            match secret_line(&text, &error) {
                // TOML's message quotes the line it stopped at: not one holding a secret.
                Some(line) => anyhow::anyhow!(
                    "{context}: line {line}, the [admin] token (its value is not shown): {}",
                    error.message()
                ),
                None => anyhow::Error::new(error).context(context),
            }
        })
    }

    /// Checks every section, and the settings that bound each other, before anything
    /// is created or written (the admin token, the data directory); the store gets the
    /// top-level data directory.
    pub fn finish(mut self) -> anyhow::Result<Config> {
        if self.data_dir.as_os_str().is_empty() {
            anyhow::bail!(
                "invalid configuration: data_dir is empty; name the directory for the WAL, \
                 blocks and index (the default is ./meshtel-data)"
            );
        }
        self.store.data_dir = self.data_dir.clone();
        self.listen.validate()?;
        self.store.validate()?;
        self.ingest.validate()?;
        self.query.validate()?;
        self.report.validate()?;
        self.edges.validate()?;
        self.quota.validate()?;
        self.http.validate()?;
        // A templated secret that came out empty would otherwise leave writes guarded by
        // a token generated at start, which nobody asked for and the check called set.
        if self
            .admin
            .token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            anyhow::bail!(
                "invalid configuration: [admin] token is empty; set a token, or leave it \
                 unset to have one generated at the first start"
            );
        }
        // A request of the largest size allowed must fit in the WAL write queue, or it
        // would be refused on an idle server every time it is retried.
        if self.store.max_queued_bytes.as_u64() < self.ingest.max_request_bytes.as_u64() {
            anyhow::bail!(
                "invalid configuration: [store] max_queued_bytes ({}) is smaller than \
                 [ingest] max_request_bytes ({}); a request of the largest allowed size \
                 could never be queued for the WAL: raise max_queued_bytes or lower \
                 max_request_bytes",
                self.store.max_queued_bytes,
                self.ingest.max_request_bytes
            );
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_through_toml() {
        let config = Config::default();
        let text = toml::to_string(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(config, back);
        back.finish().unwrap();
    }

    #[test]
    fn an_empty_admin_token_is_refused() {
        for token in ["", "   "] {
            let mut config = Config::default();
            config.admin.token = Some(token.into());
            let error = format!("{:#}", config.finish().unwrap_err());
            assert!(error.contains("[admin] token is empty"), "{error}");
        }
    }

    #[test]
    fn two_ingest_listeners_on_one_address_are_refused() {
        let config: Config =
            toml::from_str("[listen]\ngrpc = \"127.0.0.1:4317\"\nhttp = \"127.0.0.1:4317\"\n")
                .unwrap();
        let error = format!("{:#}", config.finish().unwrap_err());
        assert!(
            error.contains("grpc and http are both \"127.0.0.1:4317\""),
            "{error}"
        );
        let zero: Config =
            toml::from_str("[listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n").unwrap();
        zero.finish().unwrap();
    }

    #[test]
    fn allowed_hosts_take_names_and_ip_addresses_but_no_port() {
        let with = |host: &str| HttpServerConfig {
            allowed_hosts: vec![host.to_owned()],
            ..HttpServerConfig::default()
        };
        for accepted in ["tracing.example.com", "10.0.0.7", "fd00::1", "[fd00::2]"] {
            assert!(with(accepted).validate().is_ok(), "{accepted}");
        }
        for refused in ["tracing.example.com:443", "[fd00::1]:443", "*.example.com", "http://x", ""] {
            let error = with(refused).validate().unwrap_err().to_string();
            assert!(error.contains("is not a host name"), "{refused}: {error}");
        }
    }

    #[test]
    fn an_empty_data_dir_is_refused_by_name() {
        let config: Config = toml::from_str("data_dir = \"\"\n").unwrap();
        let error = format!("{:#}", config.finish().unwrap_err());
        assert!(error.contains("data_dir is empty"), "{error}");
    }

    #[test]
    fn a_malformed_token_line_is_refused_without_quoting_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshtel.toml");
        std::fs::write(
            &path,
            "data_dir = \"x\"\n[admin]\ntoken = S3cr3t-token-value\n",
        )
        .unwrap();
        let error = format!("{:#}", Config::load(Some(&path)).unwrap_err());
        assert!(!error.contains("S3cr3t"), "{error}");
        assert!(
            error.contains("line 3") && error.contains("[admin] token"),
            "{error}"
        );
        // Other lines are quoted as TOML quotes them.
        std::fs::write(&path, "[admin]\nrequire_token_for_reads = 1\n").unwrap();
        let error = format!("{:#}", Config::load(Some(&path)).unwrap_err());
        assert!(error.contains("require_token_for_reads"), "{error}");
    }

    #[test]
    fn documented_example_parses() {
        let text = r#"
data_dir = "/var/lib/meshtel"
[listen]
grpc = "0.0.0.0:4317"
[store]
wal.sync = "always"
retention_max_age = "3d"
block_order = "service"
[ingest]
max_request_bytes = "8 MiB"
[query]
base_path = "/jaeger"
"#;
        let config: Config = toml::from_str(text).unwrap();
        let config = config.finish().unwrap();
        assert_eq!(config.store.data_dir, PathBuf::from("/var/lib/meshtel"));
        assert_eq!(config.store.wal.sync, meshtel_store::WalSync::Always);
        assert_eq!(config.store.block_order, meshtel_store::BlockOrder::Service);
        assert_eq!(config.listen.grpc, "0.0.0.0:4317");
        assert_eq!(config.listen.http, "127.0.0.1:4318");
    }

    #[test]
    fn readme_config_example_parses_and_matches_the_defaults() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```toml\ndata_dir")
            .expect("README has the config example");
        let body = &readme[start + "```toml\n".len()..];
        let end = body.find("```").expect("config example is closed");
        let config: Config = toml::from_str(&body[..end]).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn a_write_queue_smaller_than_a_request_is_refused_naming_both() {
        let text =
            "[store]\nmax_queued_bytes = \"1 MiB\"\n[ingest]\nmax_request_bytes = \"2 MiB\"\n";
        let config: Config = toml::from_str(text).unwrap();
        let err = config.finish().unwrap_err().to_string();
        for needle in [
            "[store] max_queued_bytes",
            "[ingest] max_request_bytes",
            "1.0 MiB",
            "2.0 MiB",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let equal: Config = toml::from_str("[store]\nmax_queued_bytes = \"16 MiB\"\n").unwrap();
        equal.finish().unwrap();
    }

    #[test]
    fn every_section_is_checked_before_start_and_named_as_the_file_spells_it() {
        for (text, expected) in [
            ("[quota]\nmax_keys = 0\n", "[quota] max_keys"),
            (
                "[report]\nmax_records_per_batch = 0\n",
                "[report] max_records_per_batch must be",
            ),
            (
                "[report]\nmax_message_bytes = \"100 B\"\n",
                "[report] max_message_bytes",
            ),
            ("[edges]\nbucket = \"0s\"\n", "[edges] bucket"),
            ("[store]\nflush_rows = 0\n", "[store] flush_rows"),
            (
                "[store]\nmax_queued_bytes = 0\n",
                "[store] max_queued_bytes",
            ),
            (
                "[ingest]\nmax_spans_per_request = 0\n",
                "[ingest] max_spans_per_request",
            ),
            (
                "[http]\nbody_read_timeout = \"0s\"\n",
                "[http] body_read_timeout",
            ),
            (
                "[store]\nmax_queued_bytes = \"4 EiB\"\n",
                "[store] max_queued_bytes must be between 1 byte and 16 GiB, got 4.0 EiB",
            ),
            (
                "[store]\nwal.sync_interval = \"30s\"\n",
                "[store] wal.sync_interval must be between 1ms and 10s, got 30s",
            ),
            (
                "[store]\nwal.sync_interval = \"10us\"\n",
                "[store] wal.sync_interval must be between 1ms and 10s, got 10us",
            ),
            (
                "[store]\nmax_catalog_services = 0\n",
                "[store] max_catalog_services",
            ),
        ] {
            let config: Config = toml::from_str(text).unwrap();
            let err = format!("{:#}", config.finish().unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
            for wrong in ["ingest configuration", "store config", "quota.", "edges."] {
                assert!(!err.contains(wrong), "{text}: {err}");
            }
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Config>("[store]\nretention = \"1d\"\n").unwrap_err();
        assert!(err.to_string().contains("retention"), "{err}");
    }
}
