//! Counters for `GET /metrics`, rendered in the Prometheus text exposition format (version 0.0.4).
//! A handful of counters does not need a metrics framework: atomics and one small map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Object bytes received in accepted upload bodies.
    pub bytes_in: AtomicU64,
    /// Object bytes sent in download bodies.
    pub bytes_out: AtomicU64,
    /// Objects written to the store (new ones only).
    pub objects_stored: AtomicU64,
    /// Uploads refused because the body did not decode or hash to its id.
    pub objects_rejected: AtomicU64,
    /// Stored objects found corrupt when read (each moved aside where the store can).
    pub objects_corrupt: AtomicU64,
    /// Records written to the store.
    pub records_stored: AtomicU64,
    /// Objects named in admin deletions (absent ones included).
    pub objects_deleted: AtomicU64,
    /// Records named in admin deletions (absent ones included).
    pub records_deleted: AtomicU64,
    /// Delta encodings written to the store (new ones only).
    pub deltas_stored: AtomicU64,
    /// Delta encodings named in admin deletions (absent ones included).
    pub deltas_deleted: AtomicU64,
    /// Client connections open now (a gauge).
    pub connections: AtomicU64,
    /// Connections closed at the connection cap to make room for a new one (each had waited
    /// longest for a request head).
    pub connections_shed: AtomicU64,
    /// Downloads waiting for a download slot now (a gauge; see
    /// [`Limits::max_concurrent_downloads`](crate::Limits::max_concurrent_downloads)).
    pub downloads_waiting: AtomicU64,
}

impl Metrics {
    /// Counts one request.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        let mut m = self.requests.lock().expect("metrics lock poisoned");
        *m.entry((route.to_string(), method.to_string(), status))
            .or_insert(0) += 1;
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text rendering. `uploads_in_flight` and `downloads_in_flight` (downloads
    /// holding a slot) are sampled by the caller.
    pub fn render(&self, uploads_in_flight: usize, downloads_in_flight: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP nshard_http_requests_total HTTP requests by route, method and status.\n\
             # TYPE nshard_http_requests_total counter"
        );
        for ((route, method, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                s,
                "nshard_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        let counters = [
            (
                "nshard_received_bytes_total",
                "Object bytes received in upload bodies.",
                &self.bytes_in,
            ),
            (
                "nshard_sent_bytes_total",
                "Object bytes sent in download bodies.",
                &self.bytes_out,
            ),
            (
                "nshard_objects_stored_total",
                "New objects written to the store.",
                &self.objects_stored,
            ),
            (
                "nshard_objects_rejected_total",
                "Uploads refused because the body did not decode or hash to its id.",
                &self.objects_rejected,
            ),
            (
                "nshard_objects_corrupt_total",
                "Stored objects found corrupt when read (moved aside to corrupt/ where the store can).",
                &self.objects_corrupt,
            ),
            (
                "nshard_records_stored_total",
                "Records written to the store.",
                &self.records_stored,
            ),
            (
                "nshard_objects_deleted_total",
                "Objects named in admin deletions (absent ones included).",
                &self.objects_deleted,
            ),
            (
                "nshard_records_deleted_total",
                "Records named in admin deletions (absent ones included).",
                &self.records_deleted,
            ),
            (
                "nshard_deltas_stored_total",
                "New delta encodings written to the store.",
                &self.deltas_stored,
            ),
            (
                "nshard_deltas_deleted_total",
                "Delta encodings named in admin deletions (absent ones included).",
                &self.deltas_deleted,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP nshard_uploads_in_flight Uploads being received or verified.\n\
             # TYPE nshard_uploads_in_flight gauge\nnshard_uploads_in_flight {uploads_in_flight}"
        );
        let _ = writeln!(
            s,
            "# HELP nshard_downloads_in_flight Downloads holding a download slot (their object in memory).\n\
             # TYPE nshard_downloads_in_flight gauge\nnshard_downloads_in_flight {downloads_in_flight}"
        );
        let _ = writeln!(
            s,
            "# HELP nshard_downloads_waiting Downloads waiting for a download slot.\n\
             # TYPE nshard_downloads_waiting gauge\nnshard_downloads_waiting {}",
            self.downloads_waiting.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP nshard_connections_open Client connections open now.\n\
             # TYPE nshard_connections_open gauge\nnshard_connections_open {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP nshard_connections_shed_total Connections closed at the connection cap while they waited for a request head.\n\
             # TYPE nshard_connections_shed_total counter\nnshard_connections_shed_total {}",
            self.connections_shed.load(Ordering::Relaxed)
        );
        s
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request("/v1/objects/{id}", "PUT", 201);
        m.request("/v1/objects/{id}", "PUT", 201);
        m.request("/v1/deltas/{name}", "PUT", 422);
        m.request("we\"ird", "GET", 404);
        Metrics::add(&m.bytes_in, 10);
        Metrics::add(&m.objects_deleted, 7);
        m.downloads_waiting.fetch_add(5, Ordering::Relaxed);
        let t = m.render(3, 2);
        assert!(t.contains(
            "nshard_http_requests_total{route=\"/v1/objects/{id}\",method=\"PUT\",status=\"201\"} 2"
        ));
        assert!(t.contains(
            "nshard_http_requests_total{route=\"/v1/deltas/{name}\",method=\"PUT\",status=\"422\"} 1"
        ));
        assert!(t.contains("route=\"we\\\"ird\""));
        assert!(t.contains("nshard_received_bytes_total 10"));
        assert!(t.contains("nshard_objects_deleted_total 7"));
        assert!(t.contains("nshard_records_stored_total 0"));
        Metrics::add(&m.deltas_stored, 2);
        assert!(m.render(0, 0).contains("nshard_deltas_stored_total 2"));
        assert!(t.contains("nshard_deltas_deleted_total 0"));
        assert!(t.contains("nshard_uploads_in_flight 3"));
        assert!(t.contains("nshard_downloads_in_flight 2"));
        assert!(t.contains("nshard_downloads_waiting 5"));
    }
}
