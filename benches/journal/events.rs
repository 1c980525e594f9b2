//! Deterministic, realistic progress events (~317 bytes of JSON each).
//!
//! Fields vary per event (task, percentage, counts, instance ids, node names, add-on versions)
//! so that compression ratios are not trivially perfect; instance ids come from a fixed pool of
//! 4,096 ids, as a real upgrade touches a bounded set of instances.

use serde::{Deserialize, Serialize};

/// Nested details of a progress event.
#[derive(Debug, Clone, Serialize)]
pub struct Details {
    pub nodes_ready: u32,
    pub nodes_total: u32,
    pub az: &'static str,
}

/// One progress event as a producer serializes it.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub upgrade_id: String,
    pub task_id: String,
    pub percentage: f64,
    pub message: String,
    pub details: Details,
}

/// Typed form of one `logbook events` NDJSON line (envelope + payload), for the typed parse.
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are parsed, not read")]
pub struct Line {
    pub offset: u64,
    pub ts: String,
    pub schema_version: u16,
    #[serde(rename = "type")]
    pub kind: String,
    pub upgrade_id: String,
    pub task_id: String,
    pub percentage: f64,
    pub message: String,
    pub details: LineDetails,
}

/// Typed details of an NDJSON line.
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are parsed, not read")]
pub struct LineDetails {
    pub nodes_ready: u32,
    pub nodes_total: u32,
    pub az: String,
}

/// splitmix64: small, fast, deterministic (the journal simulator's generator).
pub use logbook::journal::storage::sim::SimRng as Rng;

const AZS: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];
const ADDONS: [&str; 5] = [
    "vpc-cni",
    "coredns",
    "kube-proxy",
    "aws-ebs-csi-driver",
    "metrics-server",
];
const NAMESPACES: [&str; 4] = ["payments", "checkout", "search", "kube-system"];

/// Number of distinct tasks events refer to (the naive peer's document holds them all).
pub const TASKS: u64 = 1000;

/// Generates the event stream.
#[derive(Debug)]
pub struct EventGen {
    rng: Rng,
    instances: Vec<String>,
}

impl EventGen {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let instances = (0..4096)
            .map(|_| format!("i-0{:016x}", rng.next_u64()))
            .collect();
        EventGen { rng, instances }
    }

    fn instance(&mut self) -> &str {
        let i = self.rng.below(self.instances.len() as u64) as usize;
        &self.instances[i]
    }

    /// The next event.
    pub fn event(&mut self) -> Progress {
        let r = &mut self.rng;
        let task = r.below(TASKS);
        let color = if task.is_multiple_of(2) {
            "blue"
        } else {
            "green"
        };
        let upgrade = 1_763_853_000 + r.below(4) * 3600;
        let total = 3 + r.below(10) as u32;
        let ready = r.below(u64::from(total) + 1) as u32;
        let az = AZS[r.below(3) as usize];
        let kind = match r.below(50) {
            0 => "task.started",
            1 => "task.completed",
            2 => "task.retrying",
            _ => "task.progress",
        };
        let percentage = r.below(1001) as f64 / 10.0;
        let group = r.below(6);
        let message = match self.rng.below(4) {
            0 => {
                let attempt = self.rng.below(30) + 1;
                let a = self.instance().to_owned();
                let b = self.instance().to_owned();
                format!(
                    "Creating node group ng-{color}-{group} ({ready}/{total}): waiting for \
                     instances {a} and {b} to join the cluster (attempt {attempt}/30)"
                )
            }
            1 => {
                let r = &mut self.rng;
                let (a, b, c) = (r.below(256), r.below(256), r.below(256));
                let pods = 5 + r.below(60);
                let evicted = r.below(pods + 1);
                let ns = NAMESPACES[r.below(4) as usize];
                let allowed = r.below(3);
                format!(
                    "Draining node ip-10-{a}-{b}-{c}.eu-west-1.compute.internal: evicted \
                     {evicted} of {pods} pods, {} remaining, PodDisruptionBudget {ns}/web \
                     allows {allowed} more",
                    pods - evicted
                )
            }
            2 => {
                let r = &mut self.rng;
                let addon = ADDONS[r.below(5) as usize];
                let (minor, patch, patch2) = (10 + r.below(20), r.below(9), r.below(9));
                let replicas = 2 + r.below(8);
                let updated = r.below(replicas + 1);
                let node = self.instance().to_owned();
                format!(
                    "Upgrading add-on {addon} from v1.{minor}.{patch}-eksbuild.1 to \
                     v1.{}.{patch2}-eksbuild.2: {updated}/{replicas} replicas updated, waiting \
                     for readiness on {node}",
                    minor + 1
                )
            }
            _ => {
                let pods = self.rng.below(40);
                let secs = 5 + self.rng.below(55);
                let node = self.instance().to_owned();
                format!(
                    "Cordoning old node group ng-{color}-{group} ({ready}/{total} done): \
                     instance {node} in {az} still runs {pods} pods, next check in {secs}s"
                )
            }
        };
        Progress {
            kind,
            upgrade_id: format!("upgrade-{upgrade}"),
            task_id: format!("{color}-ng-{task:04}"),
            percentage,
            message,
            details: Details {
                nodes_ready: ready,
                nodes_total: total,
                az,
            },
        }
    }

    /// `n` events.
    pub fn pool(&mut self, n: usize) -> Vec<Progress> {
        (0..n).map(|_| self.event()).collect()
    }
}
