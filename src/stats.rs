//! Counters. Each thread keeps its own plain counters (nothing shared on the hot path) and
//! hands a copy over at the end; `Summary` adds them up.

use crate::decode::DecodeError;
use std::collections::BTreeMap;

/// What the reader saw: every packet of the input, decoded or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub packets: u64,
    pub bytes: u64,
    /// UDP or TCP packets whose headers decoded.
    pub decoded: u64,
    pub not_ip: u64,
    pub other_ip: u64,
    pub fragments: u64,
    /// Skipped by reason (`DecodeError::reason`).
    pub malformed: BTreeMap<&'static str, u64>,
    pub dns_udp: u64,
    pub dns_tcp_segments: u64,
    pub syns: u64,
    /// Multicast DNS (5353) and LLMNR (5355): counted, kept out of the cache and detectors.
    pub mdns: u64,
    pub llmnr: u64,
    pub unsupported_linktype: u64,
    pub defrag: crate::decode::defrag::DefragStats,
}

impl ReaderStats {
    pub fn malformed(&mut self, e: DecodeError) {
        *self.malformed.entry(e.reason()).or_default() += 1;
    }
}

/// What one worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub dns_messages: u64,
    pub dns_queries: u64,
    pub dns_responses: u64,
    /// Messages that did not parse, by reason (`ParseError::reason`).
    pub dns_errors: BTreeMap<&'static str, u64>,
    /// Parsed messages with a recoverable oddity.
    pub dns_anomalies: u64,
    pub dns_tcp_messages: u64,
    pub syns: u64,
    pub cached_answers: u64,
    pub alerts: BTreeMap<&'static str, u64>,
}

impl WorkerStats {
    pub fn add(&mut self, o: &WorkerStats) {
        self.dns_messages += o.dns_messages;
        self.dns_queries += o.dns_queries;
        self.dns_responses += o.dns_responses;
        for (k, v) in &o.dns_errors {
            *self.dns_errors.entry(k).or_default() += v;
        }
        self.dns_anomalies += o.dns_anomalies;
        self.dns_tcp_messages += o.dns_tcp_messages;
        self.syns += o.syns;
        self.cached_answers += o.cached_answers;
        for (k, v) in &o.alerts {
            *self.alerts.entry(k).or_default() += v;
        }
    }
}

/// CPU time (user and system) each of the pipeline's threads used: where a run's time went,
/// so that an operator can tell which stage a faster link would saturate first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// The thread that fed the pipeline (decoded and routed; in replay it also read the
    /// files, live the capture threads that fill its queue are not counted), from start to
    /// finish.
    pub reader: std::time::Duration,
    /// One per worker, in worker order.
    pub workers: Vec<std::time::Duration>,
    pub output: std::time::Duration,
}

impl CpuTime {
    /// Seconds per thread, as the replay summary and the live stats record both write them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "reader": self.reader.as_secs_f64(),
            "workers": self.workers.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
            "output": self.output.as_secs_f64(),
        })
    }
}

/// CPU time the calling thread has used so far; zero where the clock is unavailable.
pub fn thread_cpu() -> std::time::Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time another running thread of this process has used so far (zero once it has
/// ended, or where the clock is unavailable): for the live stats, read while the threads run.
pub fn cpu_of<T>(h: &std::thread::JoinHandle<T>) -> std::time::Duration {
    use std::os::unix::thread::JoinHandleExt;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the handle is not joined yet, so its pthread_t names a thread of this
    // process; `clock` is a valid, writable clockid_t.
    if unsafe { libc::pthread_getcpuclockid(h.as_pthread_t(), &mut clock) } != 0 {
        return std::time::Duration::ZERO;
    }
    clock_time(clock)
}

fn clock_time(clock: libc::clockid_t) -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::thread_cpu;

    #[test]
    fn thread_cpu_counts_this_threads_work_only() {
        let before = thread_cpu();
        // Busy work the optimiser cannot drop.
        let mut x = 1u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        let spent = thread_cpu() - before;
        assert!(spent > std::time::Duration::ZERO, "{spent:?} (x {x})");
        // A thread that only sleeps uses next to none.
        let slept = std::thread::spawn(|| {
            let t = thread_cpu();
            std::thread::sleep(std::time::Duration::from_millis(50));
            thread_cpu() - t
        })
        .join()
        .unwrap();
        assert!(slept < std::time::Duration::from_millis(20), "{slept:?}");
    }
}
