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

    /// The agent's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The name as a label value (no copy of the text).
    pub fn label(&self) -> SharedString {
        SharedString::from(Arc::clone(&self.name))
    }

    fn category(&self, category: Category) -> &CategorySeries {
        let index = Category::ALL
            .iter()
            .position(|c| *c == category)
            .unwrap_or_default();
        self.categories[index].get_or_init(|| {
            let c = category.as_str();
            CategorySeries {
                written: metrics::counter!(REQUESTS, "route" => "write", "category" => c, "status" => "2xx", "agent" => self.label()),
                points: metrics::counter!(POINTS, "category" => c, "agent" => self.label()),
                compressed: metrics::counter!(BYTES, "category" => c, "stage" => "compressed", "agent" => self.label()),
                decoded: metrics::counter!(BYTES, "category" => c, "stage" => "decoded", "agent" => self.label()),
            }
        })
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
        let c = self.category(batch.category);
        c.points.increment(batch.points);
        c.compressed.increment(batch.compressed);
        c.decoded.increment(batch.decoded);
        self.last_push
            .get_or_init(|| metrics::gauge!(AGENT_LAST_PUSH, "agent" => self.label()))
            .set(unix_seconds());
    }

    /// Counts a write of `category` answered 2xx.
    pub fn written(&self, category: Category) {
        self.category(category).written.increment(1);
    }
}
