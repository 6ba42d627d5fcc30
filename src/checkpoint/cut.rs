//! Cuts: the collections a checkpoint keeps, and the operator that keeps them.
//!
//! A cut passes its collection through unchanged, and beside it keeps the collection's
//! consolidated contents: every update of a time its frontier has passed, summed by record
//! (one entry per key of a sum), and the updates of later times by time. When a checkpoint at
//! `H` is requested it stops absorbing at `H`, and once its frontier passes `H` it hands over
//! what it has, the contents at `H`: lent, not copied, to the thread that encodes them
//! ([`Encode`]), so that the worker goes on at once; the updates of later times wait by time
//! until the contents come back.
//!
//! A cut whose collection is arranged as it is (a view's, [`Views::register`]) keeps no copy
//! when its dataflow runs in one process: the arrangement holds the same contents, exchanged
//! by key, and the checkpoint reads them from its trace ([`Cuts::read_from`]), which the cuts
//! keep readable at the lanes' time ([`Cuts::hold`]: a later checkpoint's time is never
//! before it). Processes checkpoint at times of their own, and an arrangement holds the other
//! processes' updates for its keys, so with several processes every cut keeps its copy.
//!
//! [`Views::register`]: crate::view::Views::register
//!
//! When the dataflow is restored, each cut the checkpoint has (the same name and fingerprint)
//! first emits the contents it is given, at time 0, keeps them as its own, and drops what its
//! input brings at time 0. A cut the checkpoint lacks (a view defined or changed since) is
//! *rebuilt*: it passes its input at time 0 as at every time, and the engine replays at time 0
//! the history the checkpoint covers (see [`checkpoint`](super)), which only such cuts take.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use differential_dataflow::difference::Semigroup;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Antichain;
use timely::scheduling::{Activator, SyncActivator};
use tracing::debug;

use super::{Checkpoint, Loaded, Point, State};
use crate::event::Time;
use crate::serve::{Contents, ViewTrace};

/// A cut's contents for a checkpoint, encoded when called (on the thread that writes it).
pub(crate) type Encode = Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>;

/// How long a checkpoint reads arrangements between two steps of the worker: a view of
/// millions of keys is copied over many steps (a second's worth at 10M events), and ingest and
/// queries wait for one of them at most, not for the whole copy.
const READ_STEP: Duration = Duration::from_millis(1);

/// How a cut starts.
#[derive(Default)]
enum Start {
    /// From nothing: no checkpoint is restored.
    #[default]
    Empty,
    /// From these states (encoded), ignoring its input at time 0.
    Restored(Vec<State>),
    /// From its input at time 0 (the history the checkpoint covers).
    Rebuilt,
}

/// What a restore does with a dataflow's cuts: how many it restores and which it rebuilds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fit {
    /// How many cuts start from their states in the checkpoint.
    pub restored: usize,
    /// The cuts the checkpoint lacks, which start from the history it covers.
    pub rebuilt: Vec<String>,
}

/// The cuts of one dataflow on one worker, shared by their operators and the worker.
#[derive(Clone)]
pub(crate) struct Cuts(Rc<RefCell<Registry>>);

/// A cut's contents read from the arrangement of its collection.
trait ReadState {
    /// Keeps the contents readable at `time` and later (compaction no further).
    fn hold(&mut self, time: Time);
    /// Reads more of the contents before `time`, until `until`; once the arrangement holds
    /// all of them and every key is read, the contents to encode.
    fn read(&mut self, time: Time, until: Instant) -> Option<Encode>;
    /// Whether it has started reading and has more to read.
    fn reading(&self) -> bool;
}

struct FromTrace<K, V, R>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    R: ExchangeData + Semigroup,
{
    trace: ViewTrace<K, V, R>,
    name: String,
    held: Option<Time>,
    /// The contents being read, for a checkpoint, and how long its steps took (for the log).
    reading: Option<(Contents<K, V, R>, Steps)>,
}

impl<K, V, R> ReadState for FromTrace<K, V, R>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    R: ExchangeData + Semigroup,
{
    fn hold(&mut self, time: Time) {
        if self.held.is_some_and(|held| held >= time) {
            return;
        }
        self.held = Some(time);
        let frontier = Antichain::from_elem(time);
        self.trace.set_logical_compaction(frontier.borrow());
        self.trace.set_physical_compaction(frontier.borrow());
    }

    fn read(&mut self, time: Time, until: Instant) -> Option<Encode> {
        if self.reading.is_none() {
            self.reading = Contents::before(&mut self.trace, time)
                .map(|contents| (contents, Steps::default()));
        }
        let (contents, steps) = self.reading.as_mut()?;
        let step = Instant::now();
        let done = contents.read(until);
        steps.took(step.elapsed());
        if !done {
            return None;
        }
        let (contents, steps) = self.reading.take()?;
        let records = contents.into_records();
        debug!(
            cut = %self.name,
            records = records.iter().map(Vec::len).sum::<usize>(),
            steps = steps.count,
            seconds = steps.spent.as_secs_f64(),
            longest_step_seconds = steps.longest.as_secs_f64(),
            "checkpoint read an arrangement"
        );
        let name = self.name.clone();
        Some(Box::new(move || {
            let len = records.iter().map(Vec::len).sum();
            encode_state(len, || records.iter().flatten())
                .map_err(|e| format!("cannot write checkpoint state of {name}: {e}"))
        }))
    }

    fn reading(&self) -> bool {
        self.reading.is_some()
    }
}

/// How long the steps of a reading took.
#[derive(Default)]
struct Steps {
    count: usize,
    spent: Duration,
    longest: Duration,
}

impl Steps {
    fn took(&mut self, step: Duration) {
        self.count += 1;
        self.spent += step;
        self.longest = self.longest.max(step);
    }
}

/// The gate of a part of a dataflow ([`Cuts::gate`]), until the part is built.
pub(crate) struct Gate {
    cuts: Cuts,
    first: usize,
    open: Rc<Cell<bool>>,
}

impl Gate {
    /// The part is built: its cuts are those built since the gate.
    pub(crate) fn close(self) {
        let mut registry = self.cuts.0.borrow_mut();
        let end = registry.points.len();
        registry.gates.push((self.first..end, self.open));
    }
}

#[derive(Default)]
struct Registry {
    /// Whether the cuts keep their contents (checkpoints are taken); if not, a cut is only a
    /// point (restores still fill it).
    keeping: bool,
    /// Whether a cut whose collection is arranged as it is reads its contents from the
    /// arrangement rather than keeping a copy (one process only: see the module).
    from_arrangements: bool,
    points: Vec<Point>,
    /// For each cut, the arrangement it reads its contents from, if it does.
    sources: Vec<Option<Box<dyn ReadState>>>,
    activators: Vec<Activator>,
    /// For each cut, how it starts.
    starts: Vec<Start>,
    /// The time of the checkpoint being taken, and each cut's state for it once it has it.
    request: Option<(Time, Vec<Option<Encode>>)>,
    /// Why a cut could not read the state it was given.
    failure: Option<String>,
    /// The gates of the dataflow's parts: the cuts each part has, and whether its gate lets
    /// the history at time 0 through ([`Cuts::gate`]).
    gates: Vec<(std::ops::Range<usize>, Rc<Cell<bool>>)>,
}

impl Cuts {
    /// Cuts that keep their contents for checkpoints if `keeping`.
    pub(crate) fn new(keeping: bool) -> Cuts {
        Cuts(Rc::new(RefCell::new(Registry {
            keeping,
            ..Registry::default()
        })))
    }

    /// These cuts read the contents of a cut arranged as it is from its arrangement
    /// ([`cut_arranged`](Self::cut_arranged)) when `yes` (the dataflow runs in one process).
    pub(crate) fn reading_arrangements(self, yes: bool) -> Cuts {
        self.0.borrow_mut().from_arrangements = yes;
        self
    }

    /// The cuts built so far, in order.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.0.borrow().points.clone()
    }

    /// What [`restore_from`](Self::restore_from) would do with `checkpoint`: it restores the
    /// cuts it has (the same name and fingerprint) and rebuilds the others.
    pub(crate) fn fit(&self, checkpoint: &Checkpoint) -> Fit {
        let registry = self.0.borrow();
        let (restored, rebuilt): (Vec<&Point>, Vec<&Point>) = registry
            .points
            .iter()
            .partition(|point| checkpoint.points.contains(point));
        Fit {
            restored: restored.len(),
            rebuilt: rebuilt.into_iter().map(|p| p.name.clone()).collect(),
        }
    }

    /// Gives each cut its state in `checkpoint` (the parts of the workers whose local index is
    /// `index` modulo `local`, so that a restore may use another number of workers), or marks
    /// it rebuilt if the checkpoint has no state for it (see [`fit`](Self::fit)). Call it
    /// after the dataflow is built and before it first runs.
    pub(crate) fn restore_from(&self, loaded: &Loaded, index: usize, local: usize) {
        let checkpoint = &loaded.checkpoint;
        let parts: Vec<Vec<State>> = (0..checkpoint.workers.len())
            .filter(|part| part % local == index)
            .map(|part| loaded.take(part))
            .collect();
        let mut registry = self.0.borrow_mut();
        registry.starts = registry
            .points
            .iter()
            .map(|point| {
                let Some(cut) = checkpoint.points.iter().position(|p| p == point) else {
                    return Start::Rebuilt;
                };
                Start::Restored(
                    parts
                        .iter()
                        .filter_map(|states| states.get(cut).cloned())
                        .collect(),
                )
            })
            .collect();
        let Registry { gates, starts, .. } = &mut *registry;
        for (cuts, open) in gates.iter() {
            let rebuilt = starts
                .get(cuts.clone())
                .is_some_and(|starts| starts.iter().any(|s| matches!(s, Start::Rebuilt)));
            open.set(rebuilt);
        }
    }

    /// `events` for the part of the dataflow built next (the typed pipeline, a SQL view), up to
    /// [`Gate::close`]. After a restore, the history replayed at time 0 is for the rebuilt cuts
    /// only (restored cuts drop it): it passes the gate only if the part has one, so the views
    /// restored do not run it through their code just to drop it at their cuts. The gate is
    /// open until a restore decides.
    pub(crate) fn gate<'s, D: Clone + 'static>(
        &self,
        events: VecCollection<'s, Time, D>,
    ) -> (VecCollection<'s, Time, D>, Gate) {
        let open = Rc::new(Cell::new(true));
        let gate = Gate {
            cuts: self.clone(),
            first: self.0.borrow().points.len(),
            open: open.clone(),
        };
        let gated = events
            .inner
            .unary(Pipeline, "Gate", move |_, _| {
                move |input, output| {
                    input.for_each(|capability, data| {
                        if !open.get() {
                            data.retain(|(_, time, _)| *time != 0);
                        }
                        output.session(&capability).give_container(data);
                    });
                }
            })
            .as_collection();
        (gated, gate)
    }

    /// Asks every cut for its contents at `time` (at or after every time its frontier has
    /// passed): see [`take`](Self::take).
    pub(crate) fn request(&self, time: Time) {
        let mut registry = self.0.borrow_mut();
        let cuts = registry.points.len();
        registry.request = Some((time, (0..cuts).map(|_| None).collect()));
        for activator in &registry.activators {
            activator.activate();
        }
    }

    /// The contents every cut has written for the request, in order, once all have (and the
    /// request is then done). The cuts that read an arrangement read it for [`READ_STEP`] per
    /// call: call it again after the worker's next step.
    pub(crate) fn take(&self) -> Option<Vec<Encode>> {
        let mut registry = self.0.borrow_mut();
        let Registry {
            request, sources, ..
        } = &mut *registry;
        let (time, states) = request.as_mut()?;
        // One arrangement at a time, the first not read yet.
        let unread = states
            .iter_mut()
            .zip(sources.iter_mut())
            .find(|(state, source)| state.is_none() && source.is_some());
        if let Some((state, Some(source))) = unread {
            *state = source.read(*time, Instant::now() + READ_STEP);
        }
        if states.iter().any(Option::is_none) {
            return None;
        }
        let (_, states) = registry.request.take()?;
        Some(states.into_iter().flatten().collect())
    }

    /// Whether a cut is reading an arrangement for the request, with more to read at once:
    /// the worker then steps without parking.
    pub(crate) fn reading(&self) -> bool {
        let registry = self.0.borrow();
        registry.request.is_some() && registry.sources.iter().flatten().any(|s| s.reading())
    }

    /// Keeps every arrangement the cuts read from readable at `time` and later (and at the time
    /// of a checkpoint being taken): call it with the lanes' time less one, before which no
    /// checkpoint can be asked for.
    pub(crate) fn hold(&self, time: Time) {
        let mut registry = self.0.borrow_mut();
        let asked = registry.request.as_ref().map(|(t, _)| t.saturating_sub(1));
        let time = asked.map_or(time, |a| a.min(time));
        for source in registry.sources.iter_mut().flatten() {
            source.hold(time);
        }
    }

    /// Cuts `collection` like [`cut`](Self::cut), for a collection its caller arranges as it
    /// is: with the index to hand [`read_from`](Self::read_from) with the arrangement, if the
    /// cut is to read its contents from it rather than keep a copy.
    pub(crate) fn cut_arranged<'s, D, R>(
        &self,
        name: &str,
        definition: &str,
        collection: VecCollection<'s, Time, D, R>,
    ) -> (VecCollection<'s, Time, D, R>, Option<usize>)
    where
        D: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
    {
        let reads = {
            let registry = self.0.borrow();
            registry.keeping && registry.from_arrangements
        };
        let (index, cut) = self.cut_keeping(name, definition, collection, !reads);
        (cut, reads.then_some(index))
    }

    /// Cut `index` (from [`cut_arranged`](Self::cut_arranged)) reads its contents from `trace`,
    /// the arrangement of its collection.
    pub(crate) fn read_from<K, V, R>(&self, index: usize, trace: ViewTrace<K, V, R>)
    where
        K: ExchangeData + Hash,
        V: ExchangeData,
        R: ExchangeData + Semigroup,
    {
        let mut registry = self.0.borrow_mut();
        let name = registry
            .points
            .get(index)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        if let Some(slot) = registry.sources.get_mut(index) {
            *slot = Some(Box::new(FromTrace {
                trace,
                name,
                held: None,
                reading: None,
            }));
        }
    }

    /// Why a cut could not read the state it was given, if one could not.
    pub(crate) fn failure(&self) -> Option<String> {
        self.0.borrow().failure.clone()
    }

    /// Cuts `collection` (see the module): `name` unique in the dataflow, `definition` what the
    /// state depends on besides the types (a SQL view's text).
    pub(crate) fn cut<'s, D, R>(
        &self,
        name: &str,
        definition: &str,
        collection: VecCollection<'s, Time, D, R>,
    ) -> VecCollection<'s, Time, D, R>
    where
        D: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
    {
        self.cut_keeping(name, definition, collection, true).1
    }

    /// The cut operator, keeping a copy of the contents if checkpoints are taken and `copy`;
    /// with the cut's index.
    fn cut_keeping<'s, D, R>(
        &self,
        name: &str,
        definition: &str,
        collection: VecCollection<'s, Time, D, R>,
        copy: bool,
    ) -> (usize, VecCollection<'s, Time, D, R>)
    where
        D: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
    {
        let (index, keeping) = {
            let mut registry = self.0.borrow_mut();
            registry.sources.push(None);
            registry.points.push(Point {
                name: name.to_string(),
                fingerprint: format!(
                    "{} {} {definition}",
                    std::any::type_name::<D>(),
                    std::any::type_name::<R>()
                ),
            });
            (registry.points.len() - 1, registry.keeping && copy)
        };
        let registry = self.0.clone();
        let scope = collection.scope();
        let name = name.to_string();
        let cut = collection
            .inner
            .unary_frontier(Pipeline, "Checkpoint", move |capability, info| {
                registry
                    .borrow_mut()
                    .activators
                    .push(scope.activator_for(info.address.clone()));
                let mut first = Some(capability);
                // Whether its input at time 0 is the history a restored state holds already.
                let mut restored = false;
                // Everything before the frontier (or the request), and the rest by time. While
                // a checkpoint encodes the state (lent), the updates wait in `later`.
                let mut state: Option<FxHashMap<D, R>> = Some(FxHashMap::default());
                let mut later: BTreeMap<Time, FxHashMap<D, R>> = BTreeMap::new();
                let home = Arc::new(Mutex::new(None));
                let activator = scope.worker().sync_activator_for(info.address.to_vec());
                move |(input, frontier), output| {
                    if let Some(capability) = first.take() {
                        let start = registry
                            .borrow_mut()
                            .starts
                            .get_mut(index)
                            .map(std::mem::take)
                            .unwrap_or_default();
                        if let (Start::Restored(given), Some(state)) = (start, state.as_mut()) {
                            restored = true;
                            let mut session = output.session(&capability);
                            for given in given {
                                let read = each_record(&given, |record: D, diff: R| {
                                    if keeping {
                                        add(state, record.clone(), diff.clone());
                                    }
                                    session.give((record, 0, diff));
                                });
                                if let Err(e) = read {
                                    registry.borrow_mut().failure.get_or_insert_with(|| {
                                        format!("cannot read checkpoint state of {name}: {e}")
                                    });
                                }
                            }
                        }
                    }
                    input.for_each(|capability, data| {
                        if restored {
                            data.retain(|(_, time, _)| *time != 0);
                        }
                        for (record, time, diff) in data.iter().filter(|_| keeping) {
                            add(
                                later.entry(*time).or_default(),
                                record.clone(),
                                diff.clone(),
                            );
                        }
                        output.session(&capability).give_container(data);
                    });
                    if state.is_none() {
                        state = home.lock().unwrap_or_else(PoisonError::into_inner).take();
                    }
                    let Some(kept) = state.as_mut() else {
                        return;
                    };
                    let complete = frontier.frontier().first().copied().unwrap_or(Time::MAX);
                    let mut registry = registry.borrow_mut();
                    // A cut that keeps no copy is read from its arrangement instead.
                    let asked = match &registry.request {
                        Some((time, states)) if keeping && states[index].is_none() => Some(*time),
                        _ => None,
                    };
                    let limit = asked.map_or(complete, |t| t.min(complete));
                    let rest = later.split_off(&limit);
                    for (_, updates) in std::mem::replace(&mut later, rest) {
                        for (record, diff) in updates {
                            add(kept, record, diff);
                        }
                    }
                    if let Some(time) = asked
                        && complete >= time
                        && let Some((_, states)) = registry.request.as_mut()
                        && let Some(kept) = state.take()
                    {
                        let lent = Lent {
                            state: kept,
                            home: home.clone(),
                            activator: activator.clone(),
                        };
                        let name = name.clone();
                        states[index] = Some(Box::new(move || {
                            let state = &lent.state;
                            encode_state(state.len(), || state.iter()).map_err(|e| {
                                format!("cannot write checkpoint state of {name}: {e}")
                            })
                        }));
                    }
                }
            })
            .as_collection();
        (index, cut)
    }
}

/// Adds `diff` to `record`'s sum, keeping no zero.
fn add<D: Hash + Eq, R: Semigroup>(sums: &mut FxHashMap<D, R>, record: D, diff: R) {
    match sums.entry(record) {
        Entry::Occupied(mut sum) => {
            sum.get_mut().plus_equals(&diff);
            if sum.get().is_zero() {
                sum.remove();
            }
        }
        Entry::Vacant(slot) => {
            if !diff.is_zero() {
                slot.insert(diff);
            }
        }
    }
}

/// How a cut's state is encoded: bincode (not self-describing, so a state of millions of
/// records decodes several times faster than as MessagePack), with integers as varints.
fn state_encoding() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

/// A cut's contents lent to the thread that encodes them for a checkpoint: moved off the
/// worker rather than copied (a copy of millions of records would hold the worker for as
/// long), and handed back to the cut when encoded, or dropped unencoded. The cut keeps the
/// updates that come meanwhile by time, and takes its contents back at its next activation.
struct Lent<D, R> {
    state: FxHashMap<D, R>,
    home: Arc<Mutex<Option<FxHashMap<D, R>>>>,
    activator: SyncActivator,
}

impl<D, R> Drop for Lent<D, R> {
    fn drop(&mut self) {
        let state = std::mem::take(&mut self.state);
        *self.home.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
        // A dataflow that is gone has no cut to hand them to.
        let _ = self.activator.activate();
    }
}

/// How many records of a state the size of its encoding is estimated from.
const SIZE_SAMPLE: usize = 4_096;

/// A cut's `len` consolidated records (each `(record, difference)`, or references to them),
/// encoded for a checkpoint file as one sequence (as a `Vec<(D, R)>` is), in one pass, into a
/// buffer sized from the first [`SIZE_SAMPLE`] records (with an eighth to spare): a state of
/// hundreds of MB is written once, not grown and moved, and not read twice (a state lent from
/// a hash map is read in its hash order, all over memory: a pass to measure it doubled the
/// cost of encoding it). `records` gives them, once for the sample and once to write.
fn encode_state<I>(len: usize, records: impl Fn() -> I) -> Result<Vec<u8>, bincode::Error>
where
    I: Iterator,
    I::Item: serde::Serialize,
{
    use bincode::Options;
    use serde::ser::{Serialize, SerializeSeq, Serializer};
    use std::marker::PhantomData;

    struct Records<F, I>(usize, F, PhantomData<fn() -> I>);
    impl<F: Fn() -> I, I: Iterator> Serialize for Records<F, I>
    where
        I::Item: Serialize,
    {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(self.0))?;
            for record in (self.1)() {
                seq.serialize_element(&record)?;
            }
            seq.end()
        }
    }
    let mut sample = 0;
    for record in records().take(SIZE_SAMPLE) {
        sample += state_encoding().serialized_size(&record)?;
    }
    let average = usize::try_from(sample.div_ceil(len.clamp(1, SIZE_SAMPLE) as u64)).unwrap_or(0);
    let estimate = average.saturating_mul(len);
    let mut bytes = Vec::with_capacity(estimate.saturating_add(estimate / 8).saturating_add(16));
    let records = Records(len, records, PhantomData);
    state_encoding().serialize_into(&mut bytes, &records)?;
    Ok(bytes)
}

/// Hands each `(record, difference)` of a state in a checkpoint file to `f` as it is read: a
/// restore emits a state of hundreds of MB without holding its bytes or collecting its records
/// first. The decoder reads no further than the state's length.
fn each_record<D, R>(state: &State, f: impl FnMut(D, R)) -> Result<(), String>
where
    D: serde::de::DeserializeOwned,
    R: serde::de::DeserializeOwned,
{
    use bincode::Options;
    use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
    use std::marker::PhantomData;

    struct Each<F, D, R>(F, PhantomData<(D, R)>);
    impl<'de, F: FnMut(D, R), D: serde::de::DeserializeOwned, R: serde::de::DeserializeOwned>
        DeserializeSeed<'de> for Each<F, D, R>
    {
        type Value = ();
        fn deserialize<De: Deserializer<'de>>(self, de: De) -> Result<(), De::Error> {
            de.deserialize_seq(self)
        }
    }
    impl<'de, F: FnMut(D, R), D: serde::de::DeserializeOwned, R: serde::de::DeserializeOwned>
        Visitor<'de> for Each<F, D, R>
    {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence of (record, difference)")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some((record, diff)) = seq.next_element::<(D, R)>()? {
                (self.0)(record, diff);
            }
            Ok(())
        }
    }
    let reader = state.reader().map_err(|e| e.to_string())?;
    let options = state_encoding().with_limit(state.len());
    let mut de = bincode::Deserializer::with_reader(reader, options);
    Each(f, PhantomData)
        .deserialize(&mut de)
        .map_err(|e| e.to_string())
}
