//! Timing helpers shared by the benches.

use std::future::Future;
use std::time::{Duration, Instant};

/// Throughput and latency percentiles of one measurement.
pub struct Stats {
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Runs `op` `per_task` times in each of `tasks` concurrent tasks, timing
/// every call.
pub async fn concurrently<F, Fut>(tasks: usize, per_task: usize, op: F) -> Stats
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let s = Instant::now();
                op().await;
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let wall = start.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Stats {
        per_sec: all.len() as f64 / wall.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Prints one measurement as a table row.
pub fn row(name: &str, s: &Stats) {
    println!(
        "{name:<46} {:>9.0}/s   p50 {:>8.3} ms   p99 {:>8.3} ms",
        s.per_sec,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}
