//! End-to-end harness: the built `.wasm` inside a real Envoy, over real TCP on
//! 127.0.0.1, in front of echo upstreams that report what they received.
//!
//! `Envoy::start` writes a config for the given filter JSON and versions, starts
//! Envoy on ephemeral ports, waits until its listener is up, and kills it on drop.

pub mod certs;
pub mod echo;
pub mod examples;
pub mod flagd;
pub mod grpc;
pub mod prom;
pub mod rds;
pub mod rollout_run;
pub mod settle;
pub mod shipped;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use echo::{Echo, Seen};
pub use rollout_cli::exposition::{parse_prometheus, Sample};
pub use rollout_cli::http::{agent, mtls_agent};
pub use rollout_cli::{envoy_bin, workspace_root};

/// The worker counts (`--concurrency`) the counting suites run with: each worker has its own
/// copy of the filter's VM, so a count is right only if the workers' counts add up.
pub const WORKER_COUNTS: [u32; 2] = [1, 2];

/// `#[test]`s `NAME::one_worker` and `NAME::two_workers`, each calling `NAME(workers)`.
#[macro_export]
macro_rules! on_one_and_two_workers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn one_worker() {
                super::$name($crate::WORKER_COUNTS[0])
            }
            #[test]
            fn two_workers() {
                super::$name($crate::WORKER_COUNTS[1])
            }
        }
    )*};
}

/// Clients on [`Spread::CONNECTIONS`] keep-alive connections, taken in turn: Envoy balances
/// connections, not requests, so one connection would keep every request on one worker.
pub struct Spread {
    agents: Vec<ureq::Agent>,
    next: Cell<usize>,
}

impl Spread {
    pub const CONNECTIONS: usize = 4;

    pub fn new() -> Spread {
        Spread {
            agents: (0..Self::CONNECTIONS).map(|_| agent()).collect(),
            next: Cell::new(0),
        }
    }

    /// The next connection's client.
    pub fn next(&self) -> &ureq::Agent {
        let i = self.next.get();
        self.next.set((i + 1) % self.agents.len());
        &self.agents[i]
    }
}

impl Default for Spread {
    fn default() -> Self {
        Self::new()
    }
}

/// The test-only build whose VM traps on request (`make build-trap`).
pub fn trap_wasm_path() -> PathBuf {
    workspace_root().join("target/trap/wasm32-wasip1/release/rollout_filter.wasm")
}

/// The no-op Rust proxy-wasm filter (`make noop-wasm`): what any wasm filter costs.
pub fn noop_wasm_path() -> PathBuf {
    workspace_root().join("target/wasm32-wasip1/release/bench_noop_filter.wasm")
}

/// `$ROLLOUT_WASM`, else the shipped module (`make build`).
pub fn wasm_path() -> PathBuf {
    match std::env::var_os("ROLLOUT_WASM") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/rollout-filter.wasm"),
    }
}

/// A file of the workspace (a shipped config), as text.
pub fn read_workspace_file(rel: &str) -> String {
    let path = workspace_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replace the only occurrence of `from`; anything else means the shipped file changed shape.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    let n = text.matches(from).count();
    assert_eq!(
        n, 1,
        "expected `{from}` once in the shipped file, found it {n} times"
    );
    text.replacen(from, to, 1)
}

/// Replace a watched file (RDS, ECDS) as a control plane's file sink must: write a temporary
/// file in the same directory, then rename it over (Envoy reacts to the rename, never to a
/// half-written file).
pub fn write_atomically(dir: &Path, file: &str, content: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, dir.join(file)).unwrap_or_else(|e| panic!("rename to {file}: {e}"));
}

/// Background traffic until [`Traffic::finish`], to show that what a test changes meanwhile
/// (a reload, a route update) fails no request: thread 0 keeps one keep-alive connection
/// throughout, thread 1 opens a new connection for every request.
pub struct Traffic<S> {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<S>>>,
}

impl<S: Send + 'static> Traffic<S> {
    /// `request(agent, n)` sends request number `n` (the even ones on thread 0, the odd ones
    /// on thread 1) and returns what the test keeps of it; each thread then waits `pause`.
    pub fn start<F>(pause: Duration, request: F) -> Traffic<S>
    where
        F: Fn(&ureq::Agent, usize) -> S + Clone + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|t| {
                let (stop, request) = (stop.clone(), request.clone());
                std::thread::spawn(move || {
                    let a = if t == 0 {
                        agent()
                    } else {
                        // No idle connection is kept, so each request opens its own.
                        ureq::AgentBuilder::new()
                            .timeout(Duration::from_secs(10))
                            .max_idle_connections(0)
                            .build()
                    };
                    let mut out = Vec::new();
                    let mut n = t;
                    while !stop.load(Ordering::Relaxed) {
                        out.push(request(&a, n));
                        n += 2;
                        std::thread::sleep(pause);
                    }
                    out
                })
            })
            .collect();
        Traffic { stop, threads }
    }

    /// Stop the traffic; every thread's samples (thread 0's first).
    pub fn finish(self) -> Vec<S> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|h| h.join().expect("traffic thread"))
            .collect()
    }
}

/// Files for a TLS listener that requires a client certificate signed by `ca`.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// `forward_client_cert_details` for the HCM, e.g. `FORWARD_ONLY`; `None` leaves the default.
    pub xfcc: Option<&'static str>,
    /// With `SANITIZE_SET`: put the verified client certificate into XFCC (`Cert=`).
    pub xfcc_set_cert: bool,
}

impl ServerTls {
    /// The listener's `transport_socket:` (indented for a filter chain): TLS with this
    /// certificate, requiring a client certificate signed by the CA.
    pub fn transport_socket_yaml(&self) -> String {
        format!(
            r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{ certificate_chain: {{ filename: "{}" }}, private_key: {{ filename: "{}" }} }}]
            validation_context: {{ trusted_ca: {{ filename: "{}" }} }}
"#,
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The filter's JSON configuration.
    pub filter_config: String,
    /// One echo upstream per name; the first is the default route.
    pub versions: Vec<String>,
    pub route_header: String,
    pub tls: Option<ServerTls>,
    /// Upstreams that answer every `n`th request with 503, by version name.
    pub fail_every: Vec<(String, u64)>,
    /// Versions whose cluster points at a closed port (Envoy answers 503 itself).
    pub dead_versions: Vec<String>,
    /// The `.wasm` to load; `None`: [`wasm_path`].
    pub wasm: Option<PathBuf>,
    /// `FAIL_OPEN`, `FAIL_CLOSED` or `FAIL_RELOAD`.
    pub failure_policy: &'static str,
    /// Also a gRPC server per version (HTTP/2 upstream, failing as `fail_every` says), which
    /// requests with a gRPC content-type are routed to.
    pub grpc: bool,
    /// Envoy's worker threads (`--concurrency`).
    pub workers: u32,
    /// HTTP/2 clusters besides the versions' (name, port): a flagd sync server, say.
    pub h2_clusters: Vec<(String, u16)>,
}

impl Options {
    pub fn new(filter_config: impl Into<String>, versions: &[&str]) -> Self {
        Options {
            filter_config: filter_config.into(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            route_header: "x-rollout-version".into(),
            tls: None,
            fail_every: Vec::new(),
            dead_versions: Vec::new(),
            wasm: None,
            failure_policy: "FAIL_OPEN",
            grpc: false,
            workers: 1,
            h2_clusters: Vec::new(),
        }
    }
}

/// A running Envoy with its echo upstreams. Killed on drop.
pub struct Envoy {
    child: Child,
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub upstreams: Vec<Echo>,
    /// With [`Options::grpc`]: the gRPC servers, in version order.
    pub grpc_upstreams: Vec<grpc::GrpcServer>,
}

impl Envoy {
    /// Start Envoy and wait for its listener. `Err` carries Envoy's log.
    pub fn start(opts: &Options) -> Result<Envoy, String> {
        // Every n-th request of this version fails (0: none).
        let fail_every = |v: &String| {
            opts.fail_every
                .iter()
                .find(|(n, _)| n == v)
                .map_or(0, |(_, k)| *k)
        };
        let upstreams: Vec<Echo> = opts
            .versions
            .iter()
            .map(|v| {
                if opts.dead_versions.contains(v) {
                    Echo::dead(v)
                } else {
                    Echo::start_failing(v, fail_every(v))
                }
            })
            .collect();
        let grpc_upstreams: Vec<grpc::GrpcServer> = if opts.grpc {
            opts.versions
                .iter()
                .map(|v| grpc::GrpcServer::start(v, fail_every(v)))
                .collect()
        } else {
            Vec::new()
        };
        let yaml = render_config(opts, &upstreams, &grpc_upstreams);
        let mut envoy = Self::start_yaml_with(&yaml, upstreams, opts.workers, "wasm:info")?;
        envoy.grpc_upstreams = grpc_upstreams;
        Ok(envoy)
    }

    /// Start Envoy with a config of the caller's. It must have an admin on port 0
    /// and a listener named `front`; `upstreams` are kept alive with it.
    pub fn start_yaml(yaml: &str, upstreams: Vec<Echo>) -> Result<Envoy, String> {
        Self::start_yaml_with(yaml, upstreams, 1, "wasm:info")
    }

    /// [`Envoy::start_yaml`] with `workers` worker threads and Envoy's
    /// `--component-log-level` (e.g. `wasm:debug`).
    pub fn start_yaml_with(
        yaml: &str,
        upstreams: Vec<Echo>,
        workers: u32,
        levels: &str,
    ) -> Result<Envoy, String> {
        Self::start_yaml_on(yaml, upstreams, workers, levels, "front")
    }

    /// [`Envoy::start_yaml_with`] for a config without a listener `front`: ready, and
    /// [`Envoy::listener`], once the listener called `ready` is bound.
    pub fn start_yaml_on(
        yaml: &str,
        upstreams: Vec<Echo>,
        workers: u32,
        levels: &str,
        ready: &str,
    ) -> Result<Envoy, String> {
        let workers = workers.to_string();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cfg_path = dir.path().join("envoy.yaml");
        std::fs::write(&cfg_path, yaml).map_err(|e| e.to_string())?;
        let admin_path = dir.path().join("admin.txt");
        let log_path = dir.path().join("envoy.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;

        let bin = envoy_bin();
        if !bin.exists() {
            return Err(format!(
                "no Envoy at {} (run `make envoy` or set ENVOY=)",
                bin.display()
            ));
        }
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&cfg_path)
            .args([
                "--concurrency",
                &workers,
                "--use-dynamic-base-id",
                "--log-level",
                "warn",
            ])
            .args(["--component-log-level", levels])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut envoy = Envoy {
            child,
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            upstreams,
            grpc_upstreams: Vec::new(),
        };
        envoy.wait_ready(ready)?;
        Ok(envoy)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, listener: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_path = self.dir.path().join("admin.txt");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Envoy exited with {status}:\n{}", self.log()));
            }
            if self.admin.port() == 0 {
                if let Ok(s) = std::fs::read_to_string(&admin_path) {
                    if let Ok(a) = s.trim().parse() {
                        self.admin = a;
                    }
                }
            }
            if self.admin.port() != 0 {
                if let Some(addr) = self.listener_named(listener) {
                    self.listener = addr;
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("Envoy not ready after 60 s:\n{}", self.log()))
    }

    /// The bound address of the listener called `name` (for configs with several listeners).
    pub fn listener_named(&self, name: &str) -> Option<SocketAddr> {
        let body = self.admin_get("/listeners?format=json").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let sa = v["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == name)?["local_address"]["socket_address"]
            .clone();
        let port = sa["port_value"].as_u64()?;
        (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port as u16)))
    }

    pub fn admin_get(&self, path: &str) -> Result<String, String> {
        self.admin("GET", path)
    }

    pub fn admin_post(&self, path: &str) -> Result<String, String> {
        self.admin("POST", path)
    }

    fn admin(&self, method: &str, path: &str) -> Result<String, String> {
        let url = format!("http://{}{}", self.admin, path);
        ureq::request(method, &url)
            .timeout(Duration::from_secs(10))
            .call()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|e| e.to_string())
    }

    /// Every counter and gauge from `/stats`, by full name, once the filter's values have
    /// settled ([`settle::settled_at`]: unchanged for 250 ms, which spans every VM's flush).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        settle::settled_at(&self.admin.to_string(), settle::QUIET)
    }

    /// [`Envoy::stats`] quiet for `quiet`, e.g. [`settle::MEMORY_QUIET`] for the memory gauge.
    pub fn stats_quiet_for(&self, quiet: Duration) -> BTreeMap<String, u64> {
        settle::settled_at(&self.admin.to_string(), quiet)
    }

    /// `/stats` once `done` holds for it and still holds [`settle::QUIET`] later, after every
    /// VM has flushed again (a count passing through its expected value on its way to a wrong
    /// one does not pass), or as it is after `timeout`: for counts that reach Envoy after the
    /// filter has defined their metrics. Only what `done` reads need settle, not the metrics
    /// of idle rollouts still being defined.
    pub fn stats_when(
        &self,
        timeout: Duration,
        done: impl Fn(&BTreeMap<String, u64>) -> bool,
    ) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.stats_now()) {
                std::thread::sleep(settle::QUIET);
                let again = self.stats_now();
                if done(&again) {
                    return again;
                }
            }
            if Instant::now() >= deadline {
                return self.stats_now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/stats` as it is now, for Envoy's own stats (the filter's may lag 100 ms).
    pub fn stats_now(&self) -> BTreeMap<String, u64> {
        settle::stats_at(&self.admin.to_string())
    }

    /// Connections the listener `front` accepted, per worker (its `worker_<n>.downstream_cx_total`;
    /// the harness's bootstraps name its stats `front`).
    pub fn connections_per_worker(&self) -> Vec<u64> {
        let prefix = "listener.front.worker_";
        self.stats_now()
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?;
                rest.ends_with(".downstream_cx_total").then_some(*v)
            })
            .collect()
    }

    /// Panics unless each of the `workers` workers accepted a connection: with one idle, a test
    /// proves nothing about counts summed across workers.
    pub fn assert_every_worker_served(&self, workers: u32) {
        let per_worker = self.connections_per_worker();
        assert_eq!(
            per_worker.len(),
            workers as usize,
            "workers' listener stats: {per_worker:?}"
        );
        assert!(
            per_worker.iter().all(|n| *n > 0),
            "a worker accepted no connection (per worker: {per_worker:?})"
        );
    }

    /// A filter metric (`wasmcustom.` + `name`), 0 when absent.
    pub fn metric(&self, name: &str) -> u64 {
        self.stats()
            .get(&format!("wasmcustom.{name}"))
            .copied()
            .unwrap_or(0)
    }

    /// `/stats/prometheus` samples as (name, labels, value).
    pub fn prometheus(&self) -> Vec<Sample> {
        self.stats();
        parse_prometheus(&self.admin_get("/stats/prometheus").unwrap_or_default())
    }

    /// The value of the sample `name` whose labels include every pair in `labels`, summed.
    pub fn prom_value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.prometheus()
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listener, path)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.listener.port(), path)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the echo upstream reported for one request through Envoy.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub seen: Option<Seen>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The upstream that answered.
    pub fn version(&self) -> &str {
        self.seen.as_ref().map_or("", |s| s.upstream.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        rollout_cli::http::header(&self.headers, name)
    }

    /// Every value of a repeated header (e.g. `set-cookie`), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// GET `url` with `headers`; any HTTP status is a reply, transport errors are `Err`.
pub fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let r = rollout_cli::http::get(agent, url, headers)?;
    Ok(Reply {
        status: r.status,
        seen: serde_json::from_slice(&r.body).ok(),
        headers: r.headers,
    })
}

/// Send raw request bytes (any header bytes, repeated headers) over a new
/// connection and read one response. For what an HTTP client library refuses to send.
pub fn raw_request(addr: SocketAddr, head_lines: &[&[u8]]) -> Result<Reply, String> {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut req = Vec::new();
    for l in head_lines {
        req.extend_from_slice(l);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"connection: close\r\n\r\n");
    conn.write_all(&req).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no response head in {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        seen: serde_json::from_slice(body).ok(),
        headers,
    })
}

/// The start of every test bootstrap: an admin on an ephemeral port, the filter's stats tags,
/// and the `listeners:` key the listeners follow.
pub const BOOTSTRAP_HEAD: &str = r#"admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
stats_flush_on_admin: true
stats_config:
  stats_tags:
  - { tag_name: rollout, regex: "(;rollout=([^;]+))" }
  - { tag_name: version, regex: "(;version=([^;]+))" }
  - { tag_name: source, regex: "(;source=([^;]+))" }
  - { tag_name: reason, regex: "(;reason=([^;]+))" }
  - { tag_name: code_class, regex: "(;code_class=([^;]+))" }
  - { tag_name: grpc_code, regex: "(;grpc_code=([^;]+))" }
static_resources:
  listeners:
"#;

/// Routes (items of `routes:`) to `canary` when `x-rollout-version` says so, else `stable`.
pub const CANARY_HEADER_ROUTES: &str = r#"              - match: { prefix: "/", headers: [{ name: x-rollout-version, string_match: { exact: canary } }] }
                route: { cluster: canary }
              - match: { prefix: "/" }
                route: { cluster: stable }
"#;

/// A whole test bootstrap: listener `front` whose HTTP connection manager has `hcm_extra` (e.g.
/// `access_log:`) after its stat prefix, one virtual host for every domain with `routes`, the
/// filter with `filter_config` and the router, then `transport` (a TLS transport socket or
/// nothing); a static cluster per (name, port).
pub fn front_bootstrap(
    hcm_extra: &str,
    routes: &str,
    filter_config: &str,
    transport: &str,
    clusters: &[(&str, u16)],
) -> String {
    let clusters: String = clusters.iter().map(|(n, p)| static_cluster_yaml(n, *p)).collect();
    let filters = http_filters_yaml(&wasm_path(), "FAIL_OPEN", filter_config);
    front_listener_bootstrap(hcm_extra, routes, &filters, transport, &clusters, 1)
}

/// [`front_bootstrap`] from its rendered parts: `http_filters` (see [`http_filters_yaml`]) and
/// `clusters` (items of `clusters:`).
pub fn front_listener_bootstrap(
    hcm_extra: &str,
    routes: &str,
    http_filters: &str,
    transport: &str,
    clusters: &str,
    workers: u32,
) -> String {
    // With several workers, each new connection goes to the one with the fewest (the kernel's
    // SO_REUSEPORT hash could put a test's few connections all on one).
    let balance = if workers > 1 {
        "    connection_balance_config: { exact_balance: {} }\n"
    } else {
        ""
    };
    format!(
        r#"{BOOTSTRAP_HEAD}  - name: front
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    stat_prefix: front
{balance}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
{hcm_extra}          route_config:
            name: rollout
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
{routes}{http_filters}{transport}  clusters:
{clusters}"#
    )
}

/// A plain HTTP/1.1 cluster `name` with the one endpoint 127.0.0.1:`port` (an item of `clusters:`).
pub fn static_cluster_yaml(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]\n"
    )
}

/// An HTTP/2 (h2c) cluster `name` with the one endpoint 127.0.0.1:`port`: gRPC upstreams.
pub fn h2_cluster_yaml(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{ http2_protocol_options: {{}} }}\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]\n"
    )
}

/// An HttpConnectionManager's `http_filters:`: the filter (`wasm`, `failure_policy`, its JSON
/// config as a StringValue), then the router.
pub fn http_filters_yaml(wasm: &Path, failure_policy: &str, filter_config: &str) -> String {
    format!(
        r#"          http_filters:
          - name: rollout-filter
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: rollout-filter
                root_id: rollout-filter
                failure_policy: {failure_policy}
                vm_config:
                  vm_id: rollout-filter
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        wasm = wasm.display(),
        config = serde_json::to_string(filter_config).unwrap_or_default(),
    )
}

fn render_config(opts: &Options, upstreams: &[Echo], grpc: &[grpc::GrpcServer]) -> String {
    let wasm = opts.wasm.clone().unwrap_or_else(wasm_path);
    let mut routes = String::new();
    // gRPC calls go to the version's gRPC server.
    for g in grpc {
        routes.push_str(&format!(
            "              - match: {{ prefix: \"/\", headers: [{{ name: {h}, string_match: {{ exact: {v} }} }}, {{ name: content-type, string_match: {{ prefix: application/grpc }} }}] }}\n                route: {{ cluster: g_{v} }}\n",
            h = opts.route_header,
            v = g.name
        ));
    }
    for v in &opts.versions {
        routes.push_str(&format!(
            "              - match: {{ prefix: \"/\", headers: [{{ name: {h}, string_match: {{ exact: {v} }} }}] }}\n                route: {{ cluster: v_{v} }}\n",
            h = opts.route_header
        ));
    }
    let default = opts.versions.first().cloned().unwrap_or_default();
    routes.push_str(&format!(
        "              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: v_{default} }}\n"
    ));
    let mut clusters = String::new();
    for u in upstreams {
        clusters.push_str(&static_cluster_yaml(&format!("v_{}", u.name), u.addr.port()));
    }
    for g in grpc {
        clusters.push_str(&h2_cluster_yaml(&format!("g_{}", g.name), g.addr.port()));
    }
    for (name, port) in &opts.h2_clusters {
        clusters.push_str(&h2_cluster_yaml(name, *port));
    }
    let (transport, xfcc) = match &opts.tls {
        Some(t) => (
            t.transport_socket_yaml(),
            t.xfcc
                .map(|x| {
                    let set = if t.xfcc_set_cert {
                        "          set_current_client_cert_details: { cert: true }\n"
                    } else {
                        ""
                    };
                    format!("          forward_client_cert_details: {x}\n{set}")
                })
                .unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    let http_filters = http_filters_yaml(&wasm, opts.failure_policy, &opts.filter_config);
    front_listener_bootstrap(&xfcc, &routes, &http_filters, &transport, &clusters, opts.workers)
}
