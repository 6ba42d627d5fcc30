//! Views: named, arranged collections that the serving layer answers from.
//!
//! A view is ordinary differential code: a function of the unified event collection that yields
//! a keyed collection `(key, value)` with some difference type. [`Views::register`] arranges it
//! (indexed by key, sharded by the key's hash, compacted as the frontier advances) and wires it
//! to the serving operator, so queries can read it by key or whole. [`Views::top_k`] adds a
//! ranked view that shares the arrangement of another: it is a scatter/gather query, not a copy.
//!
//! Views are written once and fed by both lanes: nothing here knows whether an update came from
//! replayed history or from a live event.

use std::cell::RefCell;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use differential_dataflow::difference::Semigroup;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::{ExchangeData, VecCollection};
use serde::Serialize;
use serde_json::Value;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::{ProbeHandle, Stream};

use crate::aggregate::pre_aggregate;
use crate::answer::{Combined, KeyedValues, RenderRows, Replies, Rows, gather, write_values};
use crate::changelog::{Changelog, Finality, Render, changelog};
use crate::checkpoint::Cuts;
use crate::event::Time;
use crate::metrics::Metrics;
use crate::retire::Horizon;
use crate::serve::{QueryMsg, Reader, Routed, ViewTrace, serve};

mod key;
pub use key::ViewKey;

/// How a view's answers are shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewKind {
    /// Rows by key.
    Keyed,
    /// One ranked list.
    Ranked,
}

/// What the catalog knows of a view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ViewInfo {
    /// Its name, unique in a pipeline.
    pub name: String,
    /// One line saying what it holds.
    pub description: String,
    /// Rows by key, or a ranking.
    pub kind: ViewKind,
    /// Whether its rows become final (windows): its changelog holds a row back until then.
    pub windowed: bool,
    /// For a ranking: the keyed view it ranks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks: Option<String>,
    /// For a SQL view: the statement that defined it. Its rows are JSON objects with every
    /// output column by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// For a SQL ranking: how many rows it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Reads a view's keys from their text.
type KeyParser<K> = Rc<dyn Fn(&str) -> Option<K>>;

/// The rows of a keyed view that one worker found: keys with their accumulated values.
type KeyedRows<K, V, R> = KeyedValues<K, V, R>;

/// A registered view's arrangement, for deriving further views from it.
pub struct ViewRef<'s, K: ViewKey, V: ExchangeData, R: ExchangeData + Semigroup> {
    name: String,
    arranged: Arranged<'s, ViewTrace<K, V, R>>,
    finality: Finality<K>,
}

impl<'s, K: ViewKey, V: ExchangeData, R: ExchangeData + Semigroup> ViewRef<'s, K, V, R> {
    /// The view's arrangement by key, for later stages to join or reduce against
    /// (`join_core`, `reduce_abelian`): they share the view's state, nothing is arranged again.
    pub fn arranged(&self) -> Arranged<'s, ViewTrace<K, V, R>> {
        self.arranged.clone()
    }

    /// Says when each row becomes final (for a window: its end). The changelog then emits a
    /// row once the watermark passes that time, and afterwards only for late-data corrections.
    pub fn final_after(&self, end: impl Fn(&K) -> Time + 'static) {
        *self.finality.borrow_mut() = Some(Box::new(end));
    }
}

/// The set of views of one dataflow, as a pipeline registers them.
pub struct Views<'s> {
    queries: Stream<'s, Time, Vec<(QueryMsg, Time, isize)>>,
    replies: Rc<RefCell<Replies>>,
    metrics: Arc<Metrics>,
    /// Where changelogs go (and how many workers each process has), if they are kept.
    changelog: Option<(Arc<Changelog>, usize)>,
    /// Watches every arrangement: its frontier says how far every view is complete.
    probe: ProbeHandle<Time>,
    /// How long a page's time stays readable after the page.
    page_hold: Duration,
    catalog: Vec<ViewInfo>,
    /// Whether each keyed view said when its rows become final, asked once all are registered.
    windowed: Vec<(usize, Box<dyn Fn() -> bool + 's>)>,
    /// Where the views' state begins, for checkpoints.
    cuts: Cuts,
    /// How late an update may come, if that is bounded: windows retire past it.
    horizon: Horizon,
}

impl<'s> Views<'s> {
    pub(crate) fn new(
        queries: Stream<'s, Time, Vec<(QueryMsg, Time, isize)>>,
        replies: Rc<RefCell<Replies>>,
        metrics: Arc<Metrics>,
        changelog: Option<(Arc<Changelog>, usize)>,
        probe: ProbeHandle<Time>,
        page_hold: Duration,
        cuts: Cuts,
    ) -> Self {
        Views {
            queries,
            replies,
            metrics,
            changelog,
            probe,
            page_hold,
            catalog: Vec::new(),
            windowed: Vec::new(),
            cuts,
            horizon: Horizon::none(),
        }
    }

    /// The views of a dataflow whose updates enter before their event time plus `horizon`.
    pub(crate) fn with_horizon(mut self, horizon: Option<Time>) -> Self {
        self.horizon = horizon.map_or_else(Horizon::none, Horizon::after);
        self
    }

    /// How late an update may reach a window, if the engine bounds it (a maximum lateness):
    /// what [`retire`](crate::retire) needs to give a finished window's state back.
    pub fn horizon(&self) -> Horizon {
        self.horizon.clone().counted(self.metrics.clone())
    }

    /// The cuts of the views registered so far (see [`checkpoint`](crate::checkpoint)).
    pub(crate) fn cuts(&self) -> Cuts {
        self.cuts.clone()
    }

    /// Marks `collection` as where state begins, for checkpoints (see
    /// [`checkpoint`](crate::checkpoint)): a restore gives it back its consolidated contents
    /// and replays only later events through what comes before it. What comes before must
    /// hold no state (maps, filters, `explode`, window assignment, pre-aggregation); what
    /// comes after may (reduces, joins, sessions). `name` is unique in the pipeline.
    /// [`register`](Self::register) cuts its own collection; a view registered with
    /// [`register_derived`](Self::register_derived) cuts the inputs of its stateful operators
    /// with this.
    pub fn checkpoint<D, R>(
        &mut self,
        name: &str,
        collection: VecCollection<'s, Time, D, R>,
    ) -> VecCollection<'s, Time, D, R>
    where
        D: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
    {
        self.cuts.cut(name, "", collection)
    }

    pub(crate) fn into_catalog(mut self) -> Vec<ViewInfo> {
        for (index, windowed) in &self.windowed {
            if let Some(info) = self.catalog.get_mut(*index) {
                info.windowed = windowed();
            }
        }
        self.catalog
    }

    fn add(&mut self, name: &str, description: &str, kind: ViewKind) -> usize {
        assert!(
            self.catalog.iter().all(|v| v.name != name),
            "view {name:?} is registered twice"
        );
        self.catalog.push(ViewInfo {
            name: name.to_string(),
            description: description.to_string(),
            kind,
            windowed: false,
            ranks: None,
            sql: None,
            limit: None,
        });
        self.catalog.len() - 1
    }

    /// Registers a keyed view. `render` turns a key's accumulated values (never empty) into the
    /// JSON value of its row, or `None` to show no row.
    ///
    /// Equal records are consolidated before they are exchanged ([`pre_aggregate`]), then
    /// arranged by key. The collection is where the view's state begins, for checkpoints
    /// (see [`checkpoint`](Self::checkpoint)): it must be a function of the events without
    /// state; a view over a reduce, a join or sessions is registered with
    /// [`register_derived`](Self::register_derived).
    pub fn register<K, V, R, F>(
        &mut self,
        name: &str,
        description: &str,
        collection: VecCollection<'s, Time, (K, V), R>,
        render: F,
    ) -> ViewRef<'s, K, V, R>
    where
        K: ViewKey,
        V: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
        F: Fn(&K, &[(V, R)]) -> Option<Value> + Send + Sync + 'static,
    {
        self.register_with(name, description, collection, K::parse_key, render)
    }

    /// Like [`register`](Views::register), with the view's own reader of key texts (for keys
    /// whose type depends on the view, as a SQL view's columns do).
    pub fn register_with<K, V, R, P, F>(
        &mut self,
        name: &str,
        description: &str,
        collection: VecCollection<'s, Time, (K, V), R>,
        parse: P,
        render: F,
    ) -> ViewRef<'s, K, V, R>
    where
        K: ViewKey,
        V: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
        P: Fn(&str) -> Option<K> + 'static,
        F: Fn(&K, &[(V, R)]) -> Option<Value> + Send + Sync + 'static,
    {
        let (updates, cut) = self.cuts.cut_arranged(name, "", pre_aggregate(collection));
        self.register_keyed(name, description, updates, cut, parse, render, None)
    }

    /// Like [`register`](Views::register), for a collection that comes out of stateful
    /// operators (a reduce, a join, sessions): it is not a cut itself, so the inputs of those
    /// operators must be, with [`checkpoint`](Self::checkpoint), for the pipeline to be
    /// restored from checkpoints ([`Pipeline::checkpointed`](crate::engine::Pipeline::checkpointed)).
    pub fn register_derived<K, V, R, F>(
        &mut self,
        name: &str,
        description: &str,
        collection: VecCollection<'s, Time, (K, V), R>,
        render: F,
    ) -> ViewRef<'s, K, V, R>
    where
        K: ViewKey,
        V: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
        F: Fn(&K, &[(V, R)]) -> Option<Value> + Send + Sync + 'static,
    {
        let updates = pre_aggregate(collection);
        self.register_rendered(name, description, updates, K::parse_key, render, None)
    }

    /// Like [`register_with`](Views::register_with), and with `text`, which writes a key's rows
    /// as JSON text straight from their types (the text of `render`'s value, an array as its
    /// elements): whole answers are then written without building JSON values. The updates
    /// are arranged as they come: a caller that has not folded them by key and time already
    /// does it first ([`pre_aggregate`]).
    pub(crate) fn register_rendered<K, V, R, P, F>(
        &mut self,
        name: &str,
        description: &str,
        updates: VecCollection<'s, Time, (K, V), R>,
        parse: P,
        render: F,
        text: Option<TextRender<K, V, R>>,
    ) -> ViewRef<'s, K, V, R>
    where
        K: ViewKey,
        V: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
        P: Fn(&str) -> Option<K> + 'static,
        F: Fn(&K, &[(V, R)]) -> Option<Value> + Send + Sync + 'static,
    {
        self.register_keyed(name, description, updates, None, parse, render, text)
    }

    /// Registers a keyed view over `updates`; `cut`, if given, is the index of the cut of
    /// `updates` that reads its contents from the view's arrangement
    /// ([`Cuts::cut_arranged`](crate::checkpoint::Cuts)).
    #[allow(clippy::too_many_arguments)]
    fn register_keyed<K, V, R, P, F>(
        &mut self,
        name: &str,
        description: &str,
        updates: VecCollection<'s, Time, (K, V), R>,
        cut: Option<usize>,
        parse: P,
        render: F,
        text: Option<TextRender<K, V, R>>,
    ) -> ViewRef<'s, K, V, R>
    where
        K: ViewKey,
        V: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
        P: Fn(&str) -> Option<K> + 'static,
        F: Fn(&K, &[(V, R)]) -> Option<Value> + Send + Sync + 'static,
    {
        let index = self.add(name, description, ViewKind::Keyed);
        let arranged = updates.clone().arrange_by_key_named(name);
        if let Some(cut) = cut {
            self.cuts.read_from(cut, arranged.trace.clone());
        }
        arranged.stream.clone().probe_with(&self.probe);
        let render: Render<K, V, R> = Arc::new(render);
        let finality: Finality<K> = Rc::new(RefCell::new(None));
        let said = finality.clone();
        self.windowed
            .push((index, Box::new(move || said.borrow().is_some())));
        if let Some((hub, local)) = &self.changelog {
            changelog(
                updates,
                name,
                render.clone(),
                finality.clone(),
                Some(hub.clone()),
                *local,
            );
        }
        let routed = self.route::<K>(index, false, Rc::new(parse));
        let read = |q: &Routed<K>, reader: &mut Reader<K, V, R>| {
            let mut rows = Vec::new();
            match (&q.key, q.scan) {
                (Some(key), _) => {
                    let values = reader.get(key);
                    if !values.is_empty() {
                        rows.push((key.clone(), values));
                    }
                }
                (None, true) => reader.range(
                    q.after.as_ref(),
                    q.limit.unwrap_or(usize::MAX),
                    |k, values| rows.push((k.clone(), values)),
                ),
                (None, false) => {}
            }
            rows
        };
        let (metrics, view, worker) = (
            self.metrics.clone(),
            name.to_string(),
            self.queries.scope().index(),
        );
        let records = move |n| metrics.set_arrangement_records(&view, worker, n as u64);
        let partials = serve(
            routed,
            arranged.clone(),
            name,
            read,
            records,
            self.page_hold,
        );
        let rendering = render.clone();
        gather(
            partials,
            self.replies.clone(),
            name,
            move |query, parts: Vec<KeyedRows<K, V, R>>| {
                let mut rows: Vec<(K, Vec<(V, R)>)> = parts.into_iter().flatten().collect();
                if !query.scan {
                    let value = rows.first().and_then(|(k, values)| rendering(k, values));
                    rows.truncate(1);
                    let (render, text) = (rendering.clone(), text.clone());
                    return Combined::Row(value, Rows::new(TypedRows { rows, render, text }));
                }
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                let (render, text) = (rendering.clone(), text.clone());
                match query.limit {
                    Some(limit) => {
                        let full = rows.len() >= limit;
                        rows.truncate(limit);
                        Combined::Page(Rows::new(TypedRows { rows, render, text }), full)
                    }
                    None => Combined::Rows(Rows::new(TypedRows { rows, render, text })),
                }
            },
        );
        ViewRef {
            name: name.to_string(),
            arranged,
            finality,
        }
    }

    /// Arranges a collection as a view would be, without serving it: the base of a ranked
    /// view that is not itself a view.
    pub(crate) fn arrange_only<K, V, R>(
        &mut self,
        name: &str,
        collection: VecCollection<'s, Time, (K, V), R>,
    ) -> ViewRef<'s, K, V, R>
    where
        K: ViewKey,
        V: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
    {
        let arranged = pre_aggregate(collection).arrange_by_key_named(name);
        arranged.stream.clone().probe_with(&self.probe);
        ViewRef {
            name: name.to_string(),
            arranged,
            finality: Rc::new(RefCell::new(None)),
        }
    }

    /// Records how many rows the ranking `name` holds.
    pub(crate) fn set_limit(&mut self, name: &str, limit: usize) {
        if let Some(info) = self.catalog.iter_mut().find(|v| v.name == name) {
            info.limit = Some(limit);
        }
    }

    /// Records the SQL statement that defined view `name`.
    pub(crate) fn set_sql(&mut self, name: &str, sql: &str) {
        if let Some(info) = self.catalog.iter_mut().find(|v| v.name == name) {
            info.sql = Some(sql.to_string());
        }
    }

    /// Registers a ranked view over another view's arrangement: the `k` keys with the highest
    /// `score` (ties by smaller key), rendered by `render`. Keys scored `None` are left out.
    ///
    /// Each worker ranks its own shard and sends its best `k`; the asking worker merges them.
    pub fn top_k<K, V, R, S, F, G>(
        &mut self,
        name: &str,
        description: &str,
        of: &ViewRef<'s, K, V, R>,
        k: usize,
        score: F,
        render: G,
    ) where
        K: ViewKey,
        V: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
        S: ExchangeData,
        F: Fn(&K, &[(V, R)]) -> Option<S> + 'static,
        G: Fn(&K, &S) -> Value + 'static,
    {
        let index = self.add(name, description, ViewKind::Ranked);
        self.catalog[index].ranks = Some(of.name.clone());
        let routed = self.route::<K>(index, true, Rc::new(K::parse_key));
        let ranking = |list: &mut Vec<(K, S)>, k: usize| {
            list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            list.truncate(k);
        };
        let read = move |_q: &Routed<K>, reader: &mut Reader<K, V, R>| {
            let mut best: Vec<(K, S)> = Vec::new();
            reader.for_each(|key, values| {
                if let Some(s) = score(key, &values) {
                    best.push((key.clone(), s));
                    if best.len() >= 2 * k.max(1) {
                        ranking(&mut best, k);
                    }
                }
            });
            ranking(&mut best, k);
            best
        };
        // The arrangement is the other view's: its records are counted there.
        let partials = serve(
            routed,
            of.arranged.clone(),
            &of.name,
            read,
            |_| {},
            self.page_hold,
        );
        gather(
            partials,
            self.replies.clone(),
            name,
            move |_query, parts: Vec<Vec<(K, S)>>| {
                let mut all: Vec<(K, S)> = parts.into_iter().flatten().collect();
                ranking(&mut all, k);
                Combined::Ranked(all.iter().map(|(key, s)| render(key, s)).collect())
            },
        );
    }

    /// The queries for view `index`, parsed and routed to the workers that answer them.
    fn route<K: ViewKey>(
        &self,
        index: usize,
        always_scan: bool,
        parse: KeyParser<K>,
    ) -> Stream<'s, Time, Vec<Routed<K>>> {
        let peers = self.queries.scope().peers();
        self.queries
            .clone()
            .unary(Pipeline, "Route", move |_cap, _info| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        let mut session = output.session(&cap);
                        for (q, _, _) in data.drain(..).filter(|(q, _, _)| q.view == index) {
                            let after = q.after.as_deref().map(|text| parse(text));
                            let routed =
                                |route: u64, key: Option<K>, scan: bool, bad_key: bool| Routed {
                                    id: q.id,
                                    origin: q.origin,
                                    route,
                                    key,
                                    after: after.clone().flatten(),
                                    limit: q.limit.map(|l| l as usize),
                                    scan,
                                    bad_key,
                                    time: q.time,
                                    cancel: q.cancel,
                                };
                            match q.key.as_deref() {
                                Some(text) if !always_scan => match parse(text) {
                                    Some(key) => {
                                        session.give(routed(key.hashed(), Some(key), false, false))
                                    }
                                    None => {
                                        session.give(routed(q.origin as u64, None, false, true))
                                    }
                                },
                                _ => {
                                    let bad_key = matches!(after, Some(None));
                                    for worker in 0..peers {
                                        session.give(routed(worker as u64, None, true, bad_key));
                                    }
                                }
                            }
                        }
                    });
                }
            })
    }
}

/// Writes a key's rows as JSON text, one call of its last argument per row (see
/// [`Views::register_rendered`]).
pub(crate) type TextRender<K, V, R> =
    Arc<dyn Fn(&K, &[(V, R)], &mut dyn FnMut(&[u8])) + Send + Sync>;

/// A view's rows as read, with its renderers: rendered when read, off the worker threads.
struct TypedRows<K, V, R> {
    rows: Vec<(K, Vec<(V, R)>)>,
    render: Render<K, V, R>,
    text: Option<TextRender<K, V, R>>,
}

impl<K, V, R> RenderRows for TypedRows<K, V, R>
where
    K: ViewKey,
    V: ExchangeData,
    R: ExchangeData + Semigroup,
{
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn render(&self) -> Vec<(String, Value)> {
        self.rows
            .iter()
            .filter_map(|(k, values)| (self.render)(k, values).map(|v| (k.key_text(), v)))
            .collect()
    }

    fn values(&self) -> Vec<Value> {
        self.rows
            .iter()
            .filter_map(|(k, values)| (self.render)(k, values))
            .collect()
    }

    fn write_rows(&self, out: &mut dyn FnMut(&[u8])) {
        let Some(text) = &self.text else {
            return write_values(self.values(), out);
        };
        for (k, values) in &self.rows {
            text(k, values, out);
        }
    }

    fn last_key(&self) -> Option<String> {
        self.rows.last().map(|(k, _)| k.key_text())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Rows read from a view whose types are `K`, `V` and `R`, in those types (see
/// [`Rows::typed`](crate::answer::Rows::typed)).
pub(crate) fn typed_rows<K, V, R>(rows: &dyn std::any::Any) -> Option<KeyedValues<K, V, R>>
where
    K: ViewKey,
    V: ExchangeData,
    R: ExchangeData + Semigroup,
{
    rows.downcast_ref::<TypedRows<K, V, R>>()
        .map(|typed| typed.rows.clone())
}
