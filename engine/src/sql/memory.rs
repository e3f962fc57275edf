//! Memory for queries: each query has a limit of its own, inside a limit that all the queries of
//! a server share, so that many queries at once cannot together take what the served city
//! needs. A query past either limit stops with a clear error (no spilling to disk).
//!
//! An operator that can spill (a sort, an aggregation) answers a refused reservation by sorting
//! what it holds to write it to disk — seconds of work that no time limit interrupts, wasted
//! since spilling is off. So such an operator is not refused: its query is stopped through its
//! [`QueryControl`] (at its next batch, with a memory error) and the one batch it asked for is
//! granted meanwhile.

use super::control::{QueryControl, Stop};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the error of a query says when the shared memory is taken (not its own limit).
pub const SHARED_EXHAUSTED: &str = "the memory the server keeps for queries is in use";

/// Bytes reserved against a limit.
#[derive(Debug)]
struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    fn give(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// The memory all queries of a server share.
#[derive(Debug)]
pub struct SharedMemory(Budget);

impl SharedMemory {
    /// A shared limit of `bytes`.
    pub fn new(bytes: usize) -> Arc<SharedMemory> {
        Arc::new(SharedMemory(Budget::new(bytes)))
    }

    /// Bytes reserved by all queries now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Acquire)
    }
}

/// The memory pool of one query: its own limit, drawn from the shared memory.
#[derive(Debug)]
pub struct QueryMemory {
    own: Budget,
    shared: Option<Arc<SharedMemory>>,
    control: Option<Arc<QueryControl>>,
}

impl QueryMemory {
    /// A pool of `bytes` for one query, drawn from `shared` if given; past it, the query is
    /// stopped through `control` when it has one.
    pub fn new(
        bytes: usize,
        shared: Option<Arc<SharedMemory>>,
        control: Option<Arc<QueryControl>>,
    ) -> QueryMemory {
        QueryMemory {
            own: Budget::new(bytes),
            shared,
            control,
        }
    }

    /// A refusal: for an operator that would answer it by spilling, the query is stopped
    /// instead and the bytes are granted until it notices.
    fn refuse(&self, r: &MemoryReservation, additional: usize, e: DataFusionError) -> DfResult<()> {
        match &self.control {
            Some(c) if r.consumer().can_spill() => {
                c.stop(Stop::Memory);
                self.own.take(additional);
                if let Some(s) = &self.shared {
                    s.0.take(additional);
                }
                Ok(())
            }
            _ => Err(e),
        }
    }
}

impl fmt::Display for QueryMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryMemory({} bytes)", self.own.limit)
    }
}

impl MemoryPool for QueryMemory {
    fn name(&self) -> &str {
        "QueryMemory"
    }

    fn grow(&self, _r: &MemoryReservation, additional: usize) {
        self.own.take(additional);
        if let Some(s) = &self.shared {
            s.0.take(additional);
        }
    }

    fn shrink(&self, _r: &MemoryReservation, shrink: usize) {
        self.own.give(shrink);
        if let Some(s) = &self.shared {
            s.0.give(shrink);
        }
    }

    fn try_grow(&self, r: &MemoryReservation, additional: usize) -> DfResult<()> {
        if !self.own.try_take(additional) {
            let e = DataFusionError::ResourcesExhausted(format!(
                "{} needs {additional} more bytes past the query's limit of {}",
                r.consumer().name(),
                self.own.limit
            ));
            return self.refuse(r, additional, e);
        }
        if let Some(s) = &self.shared
            && !s.0.try_take(additional)
        {
            self.own.give(additional);
            let e = DataFusionError::ResourcesExhausted(format!(
                "{SHARED_EXHAUSTED} ({} bytes by all queries together)",
                s.0.limit
            ));
            return self.refuse(r, additional, e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.used.load(Ordering::Acquire)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.own.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_query_stops_at_its_own_limit_and_at_the_shared_one() {
        let shared = SharedMemory::new(100);
        let a: Arc<dyn MemoryPool> = Arc::new(QueryMemory::new(80, Some(shared.clone()), None));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryMemory::new(80, Some(shared.clone()), None));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        assert!(ra.try_grow(70).is_ok());
        assert!(ra.try_grow(20).is_err(), "past its own 80");
        let e = rb.try_grow(40).unwrap_err().to_string();
        assert!(e.contains(SHARED_EXHAUSTED), "{e}");
        assert_eq!(b.reserved(), 0, "a refused grow takes nothing");
        assert!(rb.try_grow(30).is_ok());
        drop(ra);
        assert_eq!(shared.used(), 30);
        assert!(rb.try_grow(40).is_ok());
    }

    #[test]
    fn an_operator_that_would_spill_stops_its_query_instead() {
        let control = QueryControl::unlimited();
        let pool: Arc<dyn MemoryPool> =
            Arc::new(QueryMemory::new(100, None, Some(control.clone())));
        let sorter = MemoryConsumer::new("sort")
            .with_can_spill(true)
            .register(&pool);
        let table = MemoryConsumer::new("hash table").register(&pool);
        assert!(table.try_grow(60).is_ok());
        assert!(
            table.try_grow(60).is_err(),
            "a consumer that cannot spill is refused"
        );
        assert!(control.stopped().is_none());
        assert!(sorter.try_grow(60).is_ok(), "granted, but…");
        assert_eq!(
            control.stopped(),
            Some(Stop::Memory),
            "…its query is stopped"
        );
    }
}
