//! The harness: moto processes per service group, their replicas and endpoints, and the latency proxy.

use super::*;

/// The services the sweeps and the baseline call, and the variable that routes each one
/// (`AWS_ENDPOINT_URL_` + the service ID in capitals, spaces as `_`; the Rust SDK and
/// boto3 read the same names).
pub(crate) const SERVICES: &[(&str, &str)] = &[
    ("kms", "AWS_ENDPOINT_URL_KMS"),
    ("sts", "AWS_ENDPOINT_URL_STS"),
    ("config", "AWS_ENDPOINT_URL_CONFIG_SERVICE"),
    ("s3", "AWS_ENDPOINT_URL_S3"),
    ("dynamodb", "AWS_ENDPOINT_URL_DYNAMODB"),
    ("rds", "AWS_ENDPOINT_URL_RDS"),
];

/// Which services share a moto process, for 1, 2 or 4 processes. KMS and STS always share
/// one: moto knows an assumed role's credentials only in the process that issued them, and
/// the key reader role crosses into the security account. The first group also serves
/// anything not listed (AWS_ENDPOINT_URL).
pub(crate) fn groups(processes: usize) -> &'static [&'static [&'static str]] {
    match processes {
        1 => &[&["kms", "sts", "config", "s3", "dynamodb", "rds"]],
        2 => &[&["kms", "sts", "config"], &["s3", "dynamodb", "rds"]],
        _ => &[&["kms", "sts", "config"], &["s3"], &["dynamodb"], &["rds"]],
    }
}

pub(crate) struct Moto {
    pub(crate) child: Child,
    pub(crate) endpoint: String,
    pub(crate) port: u16,
}

impl Moto {
    pub(crate) fn start(name: &str) -> Result<Moto> {
        let bin = Path::new(ROOT).join(".tools/venv/bin/moto_server");
        if !bin.exists() {
            bail!("{} is missing: run scripts/setup (scripts/bench does)", bin.display());
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_path = out_dir().join(format!("moto-{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // moto keeps an automated snapshot per DB instance and stops creating
            // instances at 1,000 snapshots by default.
            .env("MOTO_RDS_SNAPSHOT_LIMIT", "1000000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start moto_server")?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = child.try_wait()? {
                bail!("moto_server exited early with {s} (see {})", log_path.display());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("moto_server did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Moto { child, endpoint: format!("http://127.0.0.1:{port}"), port })
    }
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.pid())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Services whose group may run as several replicas holding the same estate. Not KMS and
/// STS (an assumed role's credentials live only in the process that issued them), Config
/// (it goes with them), nor RDS: moto's DescribeDBInstances marker carries a checksum of
/// the request made with an object's identity hash, so one process refuses another's
/// marker ("InvalidToken: Input inconsistent with page token").
pub(crate) const REPLICABLE: &[&str] = &["s3", "dynamodb"];

/// The moto process(es) serving one group of services.
pub(crate) struct Group {
    /// e.g. "kms+sts+config".
    pub(crate) name: String,
    pub(crate) services: &'static [&'static str],
    /// One, or `--replicas` holding the same estate.
    pub(crate) motos: Vec<Moto>,
}

impl Group {
    pub(crate) fn process_name(&self, i: usize) -> String {
        if self.motos.len() == 1 {
            self.name.clone()
        } else {
            format!("{}#{}", self.name, i + 1)
        }
    }
}

/// The moto processes of one run and the URL each service is reached at.
pub(crate) struct Emulators {
    pub(crate) groups: Vec<Group>,
}

impl Emulators {
    pub(crate) fn start(processes: usize, replicas: usize) -> Result<Emulators> {
        let mut out = Vec::new();
        for services in groups(processes) {
            let name = services.join("+");
            let n = if services.iter().all(|s| REPLICABLE.contains(s)) { replicas.max(1) } else { 1 };
            let mut g = Group { name, services, motos: Vec::new() };
            for i in 0..n {
                let log = if n == 1 { g.name.clone() } else { format!("{}-{}", g.name, i + 1) };
                g.motos.push(Moto::start(&log)?);
            }
            out.push(g);
        }
        Ok(Emulators { groups: out })
    }
    /// One URL per group: the moto itself, or a proxy in front of its process(es) adding
    /// `latency` per request and spreading connections over the replicas.
    pub(crate) fn urls(&self, latency: Duration) -> Result<Vec<String>> {
        self.groups
            .iter()
            .map(|g| {
                if latency.is_zero() && g.motos.len() == 1 {
                    return Ok(g.motos[0].endpoint.clone());
                }
                let ports = g.motos.iter().map(|m| m.port).collect();
                Ok(format!("http://127.0.0.1:{}", latency_proxy(ports, latency)?))
            })
            .collect()
    }
    /// Replica `i` of each group, directly (seeding writes the estate into each replica).
    pub(crate) fn replica_endpoints(&self, i: usize) -> Endpoints {
        let urls: Vec<String> =
            self.groups.iter().map(|g| g.motos.get(i).unwrap_or(&g.motos[0]).endpoint.clone()).collect();
        self.endpoints(&urls)
    }
    /// The services that have an `i`-th replica (all of them for i = 0).
    pub(crate) fn services_of_replica(&self, i: usize) -> Vec<&'static str> {
        self.groups.iter().filter(|g| g.motos.len() > i).flat_map(|g| g.services.iter().copied()).collect()
    }
    pub(crate) fn replicas(&self) -> usize {
        self.groups.iter().map(|g| g.motos.len()).max().unwrap_or(1)
    }
    /// (service, url) for every service, given one URL per group (as from `urls`).
    pub(crate) fn endpoints(&self, urls: &[String]) -> Endpoints {
        let mut by_service = BTreeMap::new();
        for (g, url) in self.groups.iter().zip(urls) {
            for s in g.services {
                by_service.insert(*s, url.clone());
            }
        }
        Endpoints { default: urls[0].clone(), by_service }
    }
    /// CPU seconds each process has used so far, by process name.
    pub(crate) fn cpu(&self) -> BTreeMap<String, f64> {
        self.groups
            .iter()
            .flat_map(|g| g.motos.iter().enumerate().map(move |(i, m)| (g.process_name(i), m.cpu_seconds())))
            .collect()
    }
    pub(crate) fn describe(&self) -> Vec<Value> {
        self.groups
            .iter()
            .map(|g| json!({"name": g.name, "services": g.services, "processes": g.motos.len()}))
            .collect()
    }
}

/// Where the evaluators send each service's calls.
#[derive(Clone)]
pub(crate) struct Endpoints {
    /// AWS_ENDPOINT_URL: anything not routed by service (the KMS process).
    pub(crate) default: String,
    pub(crate) by_service: BTreeMap<&'static str, String>,
}

impl Endpoints {
    /// The standard endpoint variables, as both the Rust SDK and boto3 read them.
    pub(crate) fn vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("AWS_ENDPOINT_URL", self.default.clone())];
        for (service, var) in SERVICES {
            v.push((var, self.by_service[service].clone()));
        }
        v
    }
}

/// A TCP forwarder to 127.0.0.1:`upstreams` (each new connection to the next one, round
/// robin) that holds each request `delay` before passing it on (once per request/response
/// exchange on a keep-alive connection): a stand-in for the round trip to a real AWS
/// endpoint, which moto on loopback does not have.
pub(crate) fn latency_proxy(upstreams: Vec<u16>, delay: Duration) -> Result<u16> {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().flatten().enumerate() {
            let upstream = upstreams[n % upstreams.len()];
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let awaiting_request = Arc::new(AtomicBool::new(true));
                let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else { return };
                let flag = awaiting_request.clone();
                let upstream_half = std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if flag.swap(false, Ordering::SeqCst) && !delay.is_zero() {
                            std::thread::sleep(delay);
                        }
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = from_server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    awaiting_request.store(true, Ordering::SeqCst);
                    if to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_client.shutdown(Shutdown::Both);
                let _ = upstream_half.join();
            });
        }
    });
    Ok(port)
}
