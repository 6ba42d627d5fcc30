//! Aggregates carried as differences, and their consolidation before the arrangements.
//!
//! Differential dataflow sums the differences of equal records. When a view's value is a sum
//! (revenue, counts), the cheapest way to maintain it is to *be* the difference: a record
//! `(key, ())` whose difference is the vector of sums. Arrangements then aggregate for free while
//! they consolidate, and no `reduce` operator has to keep a second copy of the state.
//!
//! [`Sums`] is that difference type. [`pre_aggregate`] folds equal records of a time together in
//! a hash map before they are exchanged and arranged, so a replay of millions of events reaches
//! the arrangements as one record per key: "time is the price, events are cheap".

use std::borrow::Borrow;
use std::hash::Hash;

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use crate::event::Time;

/// `N` 128-bit signed sums, added component-wise: a difference type for views whose values are
/// sums.
///
/// As DuckDB's `SUM(BIGINT)` gives a 128-bit `HUGEINT`, a sum of 64-bit values never wraps:
/// 2^64 events of 2^63 each still fit. (Addition wraps beyond that rather than panicking, so no
/// input can crash a worker.) Rendered to JSON they are exact integers, however large.
///
/// ```
/// use differential_dataflow::difference::Semigroup;
/// use lambdaflow::aggregate::Sums;
/// let mut a = Sums([1, 10]);
/// a.plus_equals(&Sums([1, -4]));
/// assert_eq!(a, Sums([2, 6]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sums<const N: usize>(pub [i128; N]);

impl<const N: usize> Default for Sums<N> {
    fn default() -> Self {
        Sums([0; N])
    }
}

impl<const N: usize> IsZero for Sums<N> {
    fn is_zero(&self) -> bool {
        self.0.iter().all(|x| *x == 0)
    }
}

impl<const N: usize> Semigroup for Sums<N> {
    fn plus_equals(&mut self, rhs: &Self) {
        for (a, b) in self.0.iter_mut().zip(rhs.0.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
}

impl<const N: usize> Monoid for Sums<N> {
    fn zero() -> Self {
        Sums([0; N])
    }
}

impl<const N: usize> Abelian for Sums<N> {
    fn negate(&mut self) {
        for a in self.0.iter_mut() {
            *a = a.wrapping_neg();
        }
    }
}

/// Scaling by a record's multiplicity, so `explode` can turn an event into sums.
impl<const N: usize> Multiply<isize> for Sums<N> {
    type Output = Sums<N>;
    fn multiply(self, rhs: &isize) -> Sums<N> {
        Sums(self.0.map(|a| a.wrapping_mul(*rhs as i128)))
    }
}

impl<const N: usize> Serialize for Sums<N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

impl<'de, const N: usize> Deserialize<'de> for Sums<N> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let values = Vec::<i128>::deserialize(deserializer)?;
        let array = <[i128; N]>::try_from(values)
            .map_err(|v| serde::de::Error::invalid_length(v.len(), &"a fixed number of sums"))?;
        Ok(Sums(array))
    }
}

/// Folds equal records of the same time together before they leave this worker.
///
/// Records are held in one hash map per pending time until the input frontier passes their
/// time, then emitted once each with their accumulated difference (zero sums are dropped), all
/// under one capability held at the earliest pending time: the speed lane's many distinct
/// times cost no capability or message each. For the batch lane this turns a replay into one
/// record per key and time; for the speed lane it costs at most one tick of latency, since the
/// lane's frontier advances every tick.
pub fn pre_aggregate<'s, D, R>(
    collection: VecCollection<'s, Time, D, R>,
) -> VecCollection<'s, Time, D, R>
where
    D: Clone + Hash + Eq + 'static,
    R: Semigroup + 'static,
{
    fold_by_key(collection, D::clone, |record: &D, diff: &R, add| {
        add(record, diff.clone())
    })
}

/// Each input record turned into at most one `(key, difference)` by `each` (which hands them
/// to `add`, borrowing the key), folded by key and time as [`pre_aggregate`] does: in the one
/// operator that reads the records, so no key is allocated for a record whose key is already
/// pending (`own` makes the key of a new one), and no record per input travels further.
pub fn fold_by_key<'s, D, DR, Q, K, R, F>(
    collection: VecCollection<'s, Time, D, DR>,
    own: fn(&Q) -> K,
    mut each: F,
) -> VecCollection<'s, Time, K, R>
where
    D: Clone + 'static,
    DR: Semigroup + 'static,
    Q: ?Sized + Hash + Eq + 'static,
    K: Borrow<Q> + Clone + Hash + Eq + 'static,
    R: Semigroup + 'static,
    F: FnMut(&D, &DR, &mut dyn FnMut(&Q, R)) + 'static,
{
    collection
        .inner
        .unary_frontier(Pipeline, "PreAggregate", |_cap, _info| {
            // A map per pending time, and one capability: the earliest pending time.
            let mut pending: FxHashMap<Time, FxHashMap<K, R>> = FxHashMap::default();
            let mut held: Option<Capability<Time>> = None;
            let mut ready: Vec<(K, Time, R)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    if let Some(least) = cap.least()
                        && held.as_ref().is_none_or(|h| least < h.time())
                    {
                        held = cap.retain_least(0);
                    }
                    // A run of records of one time (a replay is one long run) finds its map
                    // once.
                    for run in data.chunk_by(|a, b| a.1 == b.1) {
                        let map = pending.entry(run[0].1).or_default();
                        for (record, _, diff) in run {
                            each(
                                record,
                                diff,
                                &mut |key: &Q, add: R| match map.get_mut(key) {
                                    Some(sum) => sum.plus_equals(&add),
                                    None => {
                                        map.insert(own(key), add);
                                    }
                                },
                            );
                        }
                    }
                    data.clear();
                });
                let frontier = frontier.frontier();
                let Some(cap) = held.as_mut() else { return };
                if frontier.less_equal(cap.time()) {
                    return;
                }
                let mut left: Option<Time> = None;
                for (time, map) in pending.extract_if(|t, _| {
                    let keep = frontier.less_equal(t);
                    if keep {
                        left = Some(left.map_or(*t, |l| l.min(*t)));
                    }
                    !keep
                }) {
                    ready.extend(
                        map.into_iter()
                            .filter(|(_, diff)| !diff.is_zero())
                            .map(|(record, diff)| (record, time, diff)),
                    );
                }
                if !ready.is_empty() {
                    output.session(&*cap).give_iterator(ready.drain(..));
                }
                match left {
                    Some(t) => cap.downgrade(&t),
                    None => held = None,
                }
            }
        })
        .as_collection()
}
