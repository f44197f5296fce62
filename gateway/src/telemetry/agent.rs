//! The series one agent's accepted batches move, looked up in the recorder once per agent and
//! category instead of once per batch: a labelled metric call builds its label list and hashes
//! it into the registry every time, which was a quarter of a small request's allocations.
//!
//! The handles are the recorder's own (the same series a `metrics::counter!` call with the
//! same labels reaches), so the exposition is unchanged: a series appears when its agent first
//! has a batch of that category accepted. A reload builds new ones with the new token table.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, SharedString};
use oneway_protocol::Category;

use super::{ACCEPTED, AGENT_LAST_PUSH, BYTES, POINTS, REQUESTS, unix_seconds};

/// One agent's handles: its name (the `agent` label) and, per category, the series of an
/// accepted batch.
#[derive(Debug)]
pub struct AgentSeries {
    name: Arc<str>,
    categories: [OnceLock<CategorySeries>; Category::ALL.len()],
    forwarded: OnceLock<Counter>,
    spooled: OnceLock<Counter>,
    last_push: OnceLock<Gauge>,
}

/// The series an accepted batch of one category moves.
#[derive(Debug)]
struct CategorySeries {
    written: Counter,
    points: Counter,
    compressed: Counter,
    decoded: Counter,
}

/// An accepted batch, as it is counted.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// Its category.
    pub category: Category,
    /// Spooled rather than forwarded.
    pub spooled: bool,
    /// Points.
    pub points: u64,
    /// Body bytes as received.
    pub compressed: u64,
    /// Body bytes decoded.
    pub decoded: u64,
}

impl AgentSeries {
    /// The (not yet registered) series of the agent `name`.
    pub fn new(name: Arc<str>) -> AgentSeries {
        AgentSeries {
            name,
            categories: std::array::from_fn(|_| OnceLock::new()),
            forwarded: OnceLock::new(),
            spooled: OnceLock::new(),
            last_push: OnceLock::new(),
        }
    }

    /// The name as a label value (no copy of the text).
    pub fn label(&self) -> SharedString {
        SharedString::from(Arc::clone(&self.name))
    }

    /// Runs `f` on the series of `category`, made on first use (every category has its slot;
    /// one that had none would be looked up at each call, never counted under another's).
    fn with_category(&self, category: Category, f: impl FnOnce(&CategorySeries)) {
        let make = || {
            let c = category.as_str();
            CategorySeries {
                written: metrics::counter!(REQUESTS, "route" => "write", "category" => c, "status" => "2xx", "agent" => self.label()),
                points: metrics::counter!(POINTS, "category" => c, "agent" => self.label()),
                compressed: metrics::counter!(BYTES, "category" => c, "stage" => "compressed", "agent" => self.label()),
                decoded: metrics::counter!(BYTES, "category" => c, "stage" => "decoded", "agent" => self.label()),
            }
        };
        match Category::ALL.iter().position(|c| *c == category) {
            Some(slot) => f(self.categories[slot].get_or_init(make)),
            None => f(&make()),
        }
    }

    /// Counts an accepted batch: how it was delivered, its points and bytes, and now as the
    /// agent's last push.
    pub fn accepted(&self, batch: Batch) {
        let (outcome, delivered) = if batch.spooled {
            ("spooled", &self.spooled)
        } else {
            ("forwarded", &self.forwarded)
        };
        delivered
            .get_or_init(
                || metrics::counter!(ACCEPTED, "outcome" => outcome, "agent" => self.label()),
            )
            .increment(1);
        self.with_category(batch.category, |c| {
            c.points.increment(batch.points);
            c.compressed.increment(batch.compressed);
            c.decoded.increment(batch.decoded);
        });
        self.last_push
            .get_or_init(|| metrics::gauge!(AGENT_LAST_PUSH, "agent" => self.label()))
            .set(unix_seconds());
    }

    /// Counts a write of `category` answered 2xx.
    pub fn written(&self, category: Category) {
        self.with_category(category, |c| c.written.increment(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// The value of the one line of `text` that starts with `series`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn each_category_is_counted_under_its_own_labels_and_a_new_table_reaches_the_same_series() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let first = AgentSeries::new(Arc::from("agent-01"));
            for (n, category) in Category::ALL.into_iter().enumerate() {
                let n = n as u64 + 1;
                first.accepted(Batch {
                    category,
                    spooled: n.is_multiple_of(2),
                    points: n,
                    compressed: 10 * n,
                    decoded: 100 * n,
                });
                first.written(category);
            }
            // A reload's table: new handles, the same series.
            let second = AgentSeries::new(Arc::from("agent-01"));
            second.accepted(Batch {
                category: Category::Metric,
                spooled: false,
                points: 5,
                compressed: 1,
                decoded: 1,
            });
        });
        let text = handle.render();
        for (n, category) in Category::ALL.into_iter().enumerate() {
            let n = n as f64 + 1.0;
            let c = category.as_str();
            let extra = if category == Category::Metric {
                5.0
            } else {
                0.0
            };
            assert_eq!(
                value(
                    &text,
                    &format!(r#"{POINTS}{{category="{c}",agent="agent-01"}}"#)
                ),
                Some(n + extra),
                "{text}"
            );
            assert_eq!(
                value(
                    &text,
                    &format!(r#"{BYTES}{{category="{c}",stage="decoded",agent="agent-01"}}"#)
                ),
                Some(100.0 * n + if extra > 0.0 { 1.0 } else { 0.0 }),
            );
            assert_eq!(
                value(
                    &text,
                    &format!(
                        r#"{REQUESTS}{{route="write",category="{c}",status="2xx",agent="agent-01"}}"#
                    )
                ),
                Some(1.0),
            );
        }
        let batches = Category::ALL.len() as f64;
        let spooled = (batches / 2.0).floor();
        assert_eq!(
            value(
                &text,
                &format!(r#"{ACCEPTED}{{outcome="spooled",agent="agent-01"}}"#)
            ),
            Some(spooled)
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"{ACCEPTED}{{outcome="forwarded",agent="agent-01"}}"#)
            ),
            Some(batches - spooled + 1.0)
        );
        assert!(value(&text, &format!(r#"{AGENT_LAST_PUSH}{{agent="agent-01"}}"#)).is_some());
    }
}
