//! The capacity policy, sans-IO: given the bytes each class holds, which class gives up
//! how many bytes next. The store deletes the oldest rows of that class and asks again.

use proto::{DropClass, DropCount, DropReason};

/// Every class, in the order of its on-disk number (`records.class` = the index here).
/// Append-only, like the wire enums.
pub(super) const CLASSES: [DropClass; 4] =
    [DropClass::Telemetry, DropClass::Event, DropClass::Snapshot, DropClass::Health];

/// Every drop reason, in the order of its index in the drop counters.
pub(super) const REASONS: [DropReason; 2] = [DropReason::Capacity, DropReason::Corrupt];

/// Who gives way first under `capacity_bytes`: samples that the next sample supersedes,
/// then the agent's own health, and only then events (which also carry command results).
pub(super) const EVICTION_ORDER: [DropClass; 3] =
    [DropClass::Telemetry, DropClass::Health, DropClass::Event];

/// Who gives way first when the in-memory pending batch is over its bound (disk full).
pub(super) const PENDING_SHED_ORDER: [DropClass; 4] =
    [DropClass::Telemetry, DropClass::Snapshot, DropClass::Health, DropClass::Event];

/// A value per class, indexed by [`class_index`].
pub(super) type PerClass<T> = [T; 4];

/// A counter per class and reason, indexed by [`class_index`] and [`reason_index`].
pub(super) type DropTable = [[u64; 2]; 4];

pub(super) fn class_index(class: DropClass) -> usize {
    match class {
        DropClass::Telemetry => 0,
        DropClass::Event => 1,
        DropClass::Snapshot => 2,
        DropClass::Health => 3,
    }
}

/// The class stored as `index`, or `None` for a number no build ever wrote.
pub(super) fn class_from_index(index: i64) -> Option<DropClass> {
    usize::try_from(index).ok().and_then(|index| CLASSES.get(index).copied())
}

pub(super) fn reason_index(reason: DropReason) -> usize {
    match reason {
        DropReason::Capacity => 0,
        DropReason::Corrupt => 1,
    }
}

/// The two byte budgets of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Capacity {
    /// For telemetry, events and health together.
    pub bytes: u64,
    /// For snapshot chunks, counted apart.
    pub snapshot_bytes: u64,
}

/// Free at least `bytes` from the oldest records of `class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Eviction {
    pub class: DropClass,
    pub bytes: u64,
}

impl Capacity {
    /// The budget a single record of `class` must fit in.
    pub fn limit_for(self, class: DropClass) -> u64 {
        match class {
            DropClass::Snapshot => self.snapshot_bytes,
            DropClass::Telemetry | DropClass::Event | DropClass::Health => self.bytes,
        }
    }

    /// The next eviction needed to bring `bytes` (per class) within both budgets, or
    /// `None` when it already is. Rows are whole, so an eviction may free more than asked;
    /// ask again after applying it.
    pub fn next_eviction(self, bytes: &PerClass<u64>) -> Option<Eviction> {
        let main_bytes: u64 = EVICTION_ORDER.iter().map(|&class| bytes[class_index(class)]).sum();
        let excess = main_bytes.saturating_sub(self.bytes);
        if excess > 0 {
            let class = EVICTION_ORDER.into_iter().find(|&class| bytes[class_index(class)] > 0)?;
            return Some(Eviction { class, bytes: excess.min(bytes[class_index(class)]) });
        }
        let snapshot_bytes = bytes[class_index(DropClass::Snapshot)];
        let excess = snapshot_bytes.saturating_sub(self.snapshot_bytes);
        (excess > 0).then_some(Eviction { class: DropClass::Snapshot, bytes: excess })
    }
}

pub(super) fn add_tables(a: &DropTable, b: &DropTable) -> DropTable {
    let mut sum = *a;
    for (row, other) in sum.iter_mut().zip(b) {
        for (count, other) in row.iter_mut().zip(other) {
            *count += other;
        }
    }
    sum
}

/// The non-zero entries of `table`.
pub(super) fn drop_counts(table: &DropTable) -> Vec<DropCount> {
    let mut counts = Vec::new();
    for (class_index, &class) in CLASSES.iter().enumerate() {
        for (reason_index, &reason) in REASONS.iter().enumerate() {
            let count = table[class_index][reason_index];
            if count > 0 {
                counts.push(DropCount { class, reason, count });
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPACITY: Capacity = Capacity { bytes: 1000, snapshot_bytes: 500 };

    fn bytes(telemetry: u64, event: u64, snapshot: u64, health: u64) -> PerClass<u64> {
        [telemetry, event, snapshot, health]
    }

    #[test]
    fn within_budget_evicts_nothing() {
        assert_eq!(CAPACITY.next_eviction(&bytes(400, 400, 500, 200)), None);
        assert_eq!(CAPACITY.next_eviction(&bytes(0, 0, 0, 0)), None);
    }

    #[test]
    fn telemetry_goes_first() {
        assert_eq!(
            CAPACITY.next_eviction(&bytes(300, 800, 0, 100)),
            Some(Eviction { class: DropClass::Telemetry, bytes: 200 })
        );
    }

    #[test]
    fn then_health_then_events() {
        assert_eq!(
            CAPACITY.next_eviction(&bytes(0, 900, 0, 300)),
            Some(Eviction { class: DropClass::Health, bytes: 200 })
        );
        assert_eq!(
            CAPACITY.next_eviction(&bytes(0, 1300, 0, 0)),
            Some(Eviction { class: DropClass::Event, bytes: 300 })
        );
    }

    #[test]
    fn an_eviction_never_asks_more_than_the_class_holds() {
        assert_eq!(
            CAPACITY.next_eviction(&bytes(50, 1000, 0, 0)),
            Some(Eviction { class: DropClass::Telemetry, bytes: 50 })
        );
    }

    #[test]
    fn snapshots_have_their_own_budget() {
        assert_eq!(CAPACITY.next_eviction(&bytes(0, 0, 10_000, 0)).map(|e| e.bytes), Some(9500));
        assert_eq!(
            CAPACITY.next_eviction(&bytes(0, 1000, 500, 0)),
            None,
            "snapshots do not count against the main budget"
        );
        assert_eq!(
            CAPACITY.next_eviction(&bytes(1100, 0, 600, 0)).map(|e| e.class),
            Some(DropClass::Telemetry),
            "the main budget is settled first"
        );
    }

    #[test]
    fn single_record_limits() {
        assert_eq!(CAPACITY.limit_for(DropClass::Snapshot), 500);
        assert_eq!(CAPACITY.limit_for(DropClass::Event), 1000);
    }

    #[test]
    fn class_numbers_round_trip() {
        for class in CLASSES {
            let index = i64::try_from(class_index(class)).expect("small");
            assert_eq!(class_from_index(index), Some(class));
        }
        assert_eq!(class_from_index(4), None);
        assert_eq!(class_from_index(-1), None);
    }
}
