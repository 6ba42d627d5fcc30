//! Ranking within a key: its least or greatest value, the values at the best score, the top k.
//!
//! Streaming queries keep asking the same few questions of a group: the highest bid of a window
//! (NEXMark q7), an auction's winning price (q4), the auctions with the most bids (q5, all ties
//! kept), a seller's last ten auctions (q6). Each is a `reduce` whose logic is a few lines that
//! are easy to get subtly wrong (ties, multiplicities, a retracted maximum), so they live here
//! once, as methods on keyed collections ([`Rank`]), each checked against a naive fold.
//!
//! A `reduce` hands its logic a key's values in ascending order with their multiplicities, and
//! re-runs it for a key whenever the key's values change: a retracted maximum gives way to the
//! next value, exactly. Records with a negative or zero total multiplicity (never present in a
//! well-formed collection) are ignored.
//!
//! ```
//! use differential_dataflow::input::Input;
//! use lambdaflow::rank::Rank;
//!
//! timely::example(|scope| {
//!     let bids = scope.new_collection_from(vec![(1u64, 30u64), (1, 50), (1, 50), (2, 7)]).1;
//!     bids.clone().max_by_key(); // (1, 50), (2, 7): each key's greatest value, once
//!     bids.clone().argmax_by_key(|price| *price); // (1, 50) twice, (2, 7)
//!     bids.top_k_by_key(2); // (1, 50) twice, (2, 7)
//! });
//! ```

use std::hash::Hash;

use differential_dataflow::{ExchangeData, VecCollection};

use crate::event::Time;

/// Ranking operators on a collection of `(key, value)` pairs, per key.
pub trait Rank<'s, K, V> {
    /// Each key's greatest value, once.
    fn max_by_key(self) -> VecCollection<'s, Time, (K, V)>;

    /// Each key's least value, once.
    fn min_by_key(self) -> VecCollection<'s, Time, (K, V)>;

    /// Each key's values of the greatest `score`, every tie, each as often as it occurs.
    fn argmax_by_key<S, F>(self, score: F) -> VecCollection<'s, Time, (K, V)>
    where
        S: Ord,
        F: Fn(&V) -> S + 'static;

    /// Each key's `k` greatest values, counting multiplicity (a value occurring three times
    /// takes three of the `k` places; of equal values at the cut only some are kept).
    fn top_k_by_key(self, k: usize) -> VecCollection<'s, Time, (K, V)>;
}

impl<'s, K, V> Rank<'s, K, V> for VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn max_by_key(self) -> VecCollection<'s, Time, (K, V)> {
        self.reduce_named("Max", |_key, values, out| {
            if let Some((top, _)) = present(values).next_back() {
                out.push(((*top).clone(), 1));
            }
        })
    }

    fn min_by_key(self) -> VecCollection<'s, Time, (K, V)> {
        self.reduce_named("Min", |_key, values, out| {
            if let Some((least, _)) = present(values).next() {
                out.push(((*least).clone(), 1));
            }
        })
    }

    fn argmax_by_key<S, F>(self, score: F) -> VecCollection<'s, Time, (K, V)>
    where
        S: Ord,
        F: Fn(&V) -> S + 'static,
    {
        self.reduce_named("ArgMax", move |_key, values, out| {
            let Some(best) = present(values).map(|(v, _)| score(v)).max() else {
                return;
            };
            out.extend(
                present(values)
                    .filter(|(v, _)| score(v) == best)
                    .map(|(v, n)| ((*v).clone(), n)),
            );
        })
    }

    fn top_k_by_key(self, k: usize) -> VecCollection<'s, Time, (K, V)> {
        let k = isize::try_from(k).unwrap_or(isize::MAX);
        self.reduce_named("TopK", move |_key, values, out| {
            let mut left = k;
            for (value, n) in present(values).rev() {
                if left == 0 {
                    break;
                }
                let taken = n.min(left);
                out.push(((*value).clone(), taken));
                left -= taken;
            }
        })
    }
}

/// A key's values that are present (a positive multiplicity), in ascending order.
fn present<'a, V>(values: &'a [(&'a V, isize)]) -> impl DoubleEndedIterator<Item = (&'a V, isize)> {
    values.iter().filter(|(_, n)| *n > 0).map(|(v, n)| (*v, *n))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use differential_dataflow::input::Input;
    use proptest::prelude::*;

    use super::Rank;

    type Updates = Vec<((u8, u8), isize)>;

    /// The four operators' outputs: max, min, argmax, top 3.
    type Outputs = [BTreeMap<(u8, u8), isize>; 4];

    /// The final contents of each operator's output over `updates` (applied in rounds, one time
    /// each), consolidated.
    fn run(rounds: &[Updates]) -> Outputs {
        let outputs: Arc<Mutex<Outputs>> = Arc::default();
        let collected = outputs.clone();
        let rounds = rounds.to_vec();
        timely::execute_directly(move |worker| {
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, pairs) = scope.new_collection::<(u8, u8), isize>();
                let ranked = [
                    pairs.clone().max_by_key(),
                    pairs.clone().min_by_key(),
                    pairs.clone().argmax_by_key(|v| v / 4),
                    pairs.top_k_by_key(3),
                ];
                for (i, out) in ranked.into_iter().enumerate() {
                    let collected = collected.clone();
                    out.inspect(move |(record, _, diff)| {
                        let mut all = collected.lock().expect("not poisoned");
                        let n = all[i].entry(*record).or_default();
                        *n += diff;
                        if *n == 0 {
                            all[i].remove(record);
                        }
                    });
                }
                input
            });
            for (time, round) in rounds.iter().enumerate() {
                input.advance_to(time as u64);
                for (record, diff) in round {
                    input.update(*record, *diff);
                }
            }
            input.close();
            while worker.step() {}
        });
        let outputs = outputs.lock().expect("not poisoned");
        outputs.clone()
    }

    /// The naive answer: each key's multiset, then the four questions asked of it directly.
    fn oracle(rounds: &[Updates]) -> Outputs {
        let mut groups: BTreeMap<u8, BTreeMap<u8, isize>> = BTreeMap::new();
        for (record, diff) in rounds.iter().flatten() {
            *groups
                .entry(record.0)
                .or_default()
                .entry(record.1)
                .or_default() += diff;
        }
        let mut answers: Outputs = Default::default();
        for (key, values) in groups {
            let mut held: Vec<(u8, isize)> = values.into_iter().filter(|(_, n)| *n > 0).collect();
            held.sort();
            let Some(&(max, _)) = held.last() else {
                continue;
            };
            answers[0].insert((key, max), 1);
            answers[1].insert((key, held[0].0), 1);
            let best = held.iter().map(|(v, _)| v / 4).max().unwrap_or(0);
            for (v, n) in held.iter().filter(|(v, _)| v / 4 == best) {
                answers[2].insert((key, *v), *n);
            }
            let mut places = 3;
            for (v, n) in held.iter().rev() {
                if places == 0 {
                    break;
                }
                let taken = (*n).min(places);
                answers[3].insert((key, *v), taken);
                places -= taken;
            }
        }
        answers
    }

    proptest! {
        /// Over random insertions and retractions in several rounds, every operator's final
        /// output is the naive fold's.
        #[test]
        fn each_ranking_equals_a_naive_fold(
            inserted in prop::collection::vec(((0u8..4, 0u8..20), 1isize..3), 0..40),
            retract in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            rounds in 1usize..4,
        ) {
            // Retractions only of what was inserted, so every multiplicity stays at or above 0.
            let mut all: Vec<Updates> = vec![Vec::new(); rounds + 1];
            for (i, update) in inserted.iter().enumerate() {
                all[i % rounds].push(*update);
            }
            if !inserted.is_empty() {
                for index in &retract {
                    let (record, n) = inserted[index.index(inserted.len())];
                    all[rounds].push((record, -n));
                }
                let mut left: BTreeMap<(u8, u8), isize> = BTreeMap::new();
                for (record, diff) in all.iter().flatten() {
                    *left.entry(*record).or_default() += diff;
                }
                // A record retracted twice over is put back to zero, not below.
                for (record, n) in left {
                    if n < 0 {
                        all[rounds].push((record, -n));
                    }
                }
            }
            prop_assert_eq!(run(&all), oracle(&all));
        }
    }
}
