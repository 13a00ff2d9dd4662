//! Envoy under test: the real binary bootstrapped from the control plane (its own node id,
//! admin port and client certificate), polled until it is live and its listener answers
//! through the filter; its admin endpoints (stats, config dump), and the usage records its
//! access log carries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::artifacts::{envoy_bin, wasm_path};
use crate::config::Ports;
use crate::control_plane::{bootstrap_text, dataplane_key, ControlPlane};
use crate::process::{free_port, wait_until, Proc};

pub struct Envoy {
    pub proc: Proc,
    pub bootstrap: PathBuf,
    pub ports: Ports,
}

impl Envoy {
    pub async fn start(dir: &Path, cp: &ControlPlane) -> Envoy {
        Self::start_workers(dir, cp, 1).await
    }

    pub async fn start_workers(dir: &Path, cp: &ControlPlane, workers: u32) -> Envoy {
        Self::start_node(
            dir,
            cp,
            workers,
            "test-gateway",
            cp.ports.envoy_admin,
            |b| b,
        )
        .await
    }

    /// Envoy from a bootstrap without the records service (as generated before it existed):
    /// its workers send their request records themselves.
    pub async fn start_without_records_service(dir: &Path, cp: &ControlPlane) -> Envoy {
        let dir = dir.join("no-records-service");
        std::fs::create_dir_all(&dir).expect("node dir");
        Self::start_node(&dir, cp, 2, "test-gateway", cp.ports.envoy_admin, |text| {
            let start = text
                .find("bootstrap_extensions:")
                .expect("the records service");
            let end = start + text[start..].find("dynamic_resources:").expect("ADS");
            format!("{}{}", &text[..start], &text[end..])
        })
        .await
    }

    /// Another Envoy of the same gateway: its own node id and admin port, the same listener
    /// (Envoy binds it with `SO_REUSEPORT`, so the kernel shares connections between them).
    pub async fn start_another(dir: &Path, cp: &ControlPlane, node_id: &str) -> Envoy {
        let dir = dir.join(node_id);
        std::fs::create_dir_all(&dir).expect("node dir");
        Self::start_node(&dir, cp, 1, node_id, free_port(), |b| b).await
    }

    async fn start_node(
        dir: &Path,
        cp: &ControlPlane,
        workers: u32,
        node_id: &str,
        admin_port: u16,
        edit: impl FnOnce(String) -> String,
    ) -> Envoy {
        wasm_path();
        let bootstrap = dir.join("bootstrap.yaml");
        // The node's client certificate for the xDS port lands in `certs/`.
        let text = bootstrap_text(&cp.config, node_id, &dir.join("certs")).replace(
            &format!("port_value: {}", cp.ports.envoy_admin),
            &format!("port_value: {admin_port}"),
        );
        std::fs::write(&bootstrap, edit(text)).expect("bootstrap file");
        let mut cmd = Command::new(envoy_bin());
        cmd.env("SWITCHYARD_DATAPLANE_KEY", dataplane_key(&cp.config));
        cmd.arg("-c")
            .arg(&bootstrap)
            .args(["--use-dynamic-base-id", "-l", "info"])
            .args(["--concurrency", &workers.to_string()])
            // Access-log lines are read by the tests: flush them quickly.
            .args(["--file-flush-interval-msec", "50"]);
        let proc = Proc::spawn("envoy", cmd, dir.join("envoy.log"));
        let envoy = Envoy {
            proc,
            bootstrap,
            ports: Ports {
                envoy_admin: admin_port,
                ..cp.ports
            },
        };
        // Ready when this Envoy is live (its admin says so: the listener port may be shared
        // with another Envoy already answering) and the listener answers through the filter
        // (401 without a key).
        let ready = format!("http://127.0.0.1:{admin_port}/ready");
        wait_until("Envoy live", Duration::from_secs(60), || {
            let ready = ready.clone();
            async move { reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        let url = envoy.url("/v1/models");
        wait_until(
            "Envoy listener with the filter",
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 401) }
            },
        )
        .await;
        envoy
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.gateway))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.gateway)
    }

    /// A counter's value from `/stats/prometheus` (0 when absent).
    pub async fn counter(&self, name: &str) -> u64 {
        let stats = self.stats().await;
        stats
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Waits until a counter reaches `at_least` (the filter flushes its counters every second).
    pub async fn wait_counter(&self, name: &str, at_least: u64) -> u64 {
        wait_until(
            &format!("{name} >= {at_least}"),
            Duration::from_secs(5),
            || async { self.counter(name).await >= at_least },
        )
        .await;
        self.counter(name).await
    }

    /// This Envoy's `/config_dump` (`query`: `""`, or e.g. `"?include_eds"`): what the control
    /// plane has pushed to it, as Envoy holds it.
    pub async fn config_dump(&self, query: &str) -> String {
        let url = format!(
            "http://127.0.0.1:{}/config_dump{query}",
            self.ports.envoy_admin
        );
        reqwest::get(&url)
            .await
            .expect("config_dump")
            .text()
            .await
            .unwrap_or_default()
    }

    /// Sets the level of one of Envoy's log components at run time (admin `/logging`).
    pub async fn log_level(&self, component: &str, level: &str) {
        let url = format!(
            "http://127.0.0.1:{}/logging?{component}={level}",
            self.ports.envoy_admin
        );
        let status = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .expect("logging")
            .status();
        assert_eq!(status, 200, "log level {component}={level}");
    }

    /// The calls between Envoy and the filter's VM that `request` makes (one request, with no
    /// other in flight), as Envoy's wasm trace shows them: each a crossing between V8 and
    /// Envoy, the filter's most expensive kind of work (see [`Crossings`]).
    pub async fn crossings<F: std::future::Future<Output = ()>>(&self, request: F) -> Crossings {
        let before = self.proc.log_text().len();
        self.log_level("wasm", "trace").await;
        request.await;
        // The trace is written as the calls happen; the request's context is deleted last.
        wait_until(
            "the request's context deleted in the wasm trace",
            Duration::from_secs(10),
            || async { self.proc.log_text()[before..].contains("[host->vm] proxy_on_delete(") },
        )
        .await;
        self.log_level("wasm", "info").await;
        Crossings::read(&self.proc.log_text()[before..])
    }

    pub async fn stats(&self) -> String {
        let url = format!(
            "http://127.0.0.1:{}/stats/prometheus",
            self.ports.envoy_admin
        );
        reqwest::get(&url)
            .await
            .expect("stats")
            .text()
            .await
            .unwrap_or_default()
    }
}

/// The usage records the filter published, as Envoy's access log printed them, each with the
/// response code Envoy logged on the same line added as `status`.
pub fn usage_records(envoy_log: &str) -> Vec<serde_json::Value> {
    envoy_log
        .lines()
        .filter_map(|line| {
            let (head, usage) = line.split_once(" usage=")?;
            let mut record: serde_json::Value = serde_json::from_str(usage.trim()).ok()?;
            // `[time] "METHOD PATH" STATUS FLAGS ...`
            let status: u64 = head.split("\" ").nth(1)?.split(' ').next()?.parse().ok()?;
            record["status"] = status.into();
            let field = |name: &str| {
                head.split(' ')
                    .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            if let Some(attempts) = field("attempts").and_then(|a| a.parse::<u64>().ok()) {
                record["attempts"] = attempts.into();
            }
            if let Some(cluster) = field("cluster") {
                record["cluster"] = cluster.into();
            }
            Some(record)
        })
        .collect()
}

/// The calls one HTTP request made between Envoy and the filter (see [`Envoy::crossings`]):
/// `(direction, name)` in order, direction `host->vm` (a callback into the filter, including
/// the memory it is asked to allocate for a value it reads) or `vm->host` (a host call).
/// Calls of the root context (ticks, the records service) are left out.
#[derive(Debug, Default)]
pub struct Crossings {
    pub calls: Vec<(String, String)>,
}

impl Crossings {
    fn read(trace: &str) -> Crossings {
        let mut calls = Vec::new();
        // The worker thread that runs the request's context, and whether a root context's
        // callback (a tick, a queue) is running on it.
        let mut worker: Option<&str> = None;
        let mut in_root = false;
        for line in trace.lines() {
            // `[time][thread][trace][wasm] [file:line] [host->vm] name(args)`
            let Some((_, call)) = line
                .split_once("] [host->vm] ")
                .map(|(h, c)| (h, ("host->vm", c)))
                .or_else(|| {
                    line.split_once("] [vm->host] ")
                        .map(|(h, c)| (h, ("vm->host", c)))
                })
                .or_else(|| {
                    line.split_once("] [host<-vm] ")
                        .map(|(h, c)| (h, ("host<-vm", c)))
                })
            else {
                continue;
            };
            let thread = line.split(']').nth(1).unwrap_or_default();
            let (direction, rest) = call;
            let name = rest.split(['(', ' ']).next().unwrap_or_default();
            if worker.is_none() {
                // Only an HTTP context's creation starts the request: `(context, root)`.
                if direction == "host->vm" && name == "proxy_on_context_create" && calls.is_empty()
                {
                    worker = Some(thread);
                } else {
                    continue;
                }
            }
            if Some(thread) != worker {
                continue;
            }
            if matches!(
                name,
                "proxy_on_tick" | "proxy_on_queue_ready" | "proxy_on_http_call_response"
            ) {
                in_root = direction == "host->vm";
                continue;
            }
            if in_root || direction == "host<-vm" {
                continue;
            }
            calls.push((
                direction.to_owned(),
                name.trim_start_matches("env.").to_owned(),
            ));
            if name == "proxy_on_delete" {
                break;
            }
        }
        Crossings { calls }
    }

    /// How many calls there were of `name`.
    pub fn count(&self, name: &str) -> usize {
        self.calls.iter().filter(|(_, n)| n == name).count()
    }

    /// The calls the filter made to Envoy.
    pub fn host_calls(&self) -> usize {
        self.calls.iter().filter(|(d, _)| d == "vm->host").count()
    }

    /// Counts by name, most frequent first (for failure messages).
    pub fn summary(&self) -> String {
        let mut counts: Vec<(usize, &str)> = Vec::new();
        for (_, name) in &self.calls {
            match counts.iter_mut().find(|(_, n)| n == name) {
                Some((c, _)) => *c += 1,
                None => counts.push((1, name)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.0));
        counts
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
