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
