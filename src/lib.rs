//! # lambdaflow
//!
//! The Lambda architecture without writing the logic twice: one differential dataflow with a
//! **batch lane** (bounded history, replayed at coarse times for throughput) and a **speed lane**
//! (live events at their own times, for latency), feeding the *same* view code. Views are
//! arranged (indexed, shared) and served by joining a stream of queries against them inside the
//! dataflow, consistent as of a time. Event time is the timestamp and the dataflow frontier is
//! the watermark.
//!
//! The modules read like the architecture:
//!
//! * [`event`], [`history`]: what flows in, and how files are read in shares;
//! * [`master`]: the master dataset, the durable log of every accepted event;
//! * [`lane`], [`live`], [`watermark`]: the two lanes, the live input and its one judge of
//!   lateness per process;
//! * [`aggregate`], [`view`]: views as arranged collections, sums as differences;
//! * [`rank`]: per-key minima, maxima, argmax and top-k;
//! * [`window`]: tumbling, sliding and session windows over event time, for any view;
//! * [`serve`], [`answer`]: queries answered inside the dataflow, by key, scattered and
//!   gathered, or a page at a time;
//! * [`engine`], [`cluster`], [`metrics`]: running it on threads, processes and hosts;
//! * [`checkpoint`]: the views' state at one time, so a restart replays only what followed;
//! * [`sql`]: views written in SQL (DuckDB's dialect), planned and rendered to the same
//!   operators;
//! * [`ecommerce`]: the built-in reference pipeline (see `docs/REFERENCE.md`);
//! * [`nexmark`]: the NEXMark benchmark's events, generator and queries q0-q8;
//! * `server` (the cargo feature of that name, on by default): the HTTP server over the master
//!   dataset, and the `lambdaflow` binary. An embedder that only runs pipelines in its own
//!   process turns default features off and builds without axum, tokio's runtime or reqwest.
//!
//! ```no_run
//! use lambdaflow::prelude::*;
//!
//! let mut engine = Engine::start(&Cluster::threads(2), Settings::default(),
//!                            History::Files(vec!["history.jsonl".into()]), Ecommerce)?;
//! engine.end_live(); // no live events in this example
//! let client = engine.client();
//! let answer = client.query_final(Query::all("revenue_by_day")).expect("answered");
//! println!("{}", answer.to_json());
//! engine.join()?;
//! # Ok::<(), String>(())
//! ```

pub mod aggregate;
pub mod answer;
pub mod changelog;
pub mod checkpoint;
pub mod cluster;
pub mod ecommerce;
pub mod engine;
pub mod event;
pub mod history;
pub mod lane;
pub mod live;
pub mod master;
pub mod metrics;
pub mod nexmark;
pub mod progress;
pub mod rank;
pub mod retire;
pub mod serve;
#[cfg(feature = "server")]
pub mod server;
pub mod sql;
pub mod view;
pub mod watermark;
pub mod window;

/// The names most programs need.
pub mod prelude {
    pub use crate::aggregate::Sums;
    pub use crate::answer::{Answer, AnswerValue, Query};
    pub use crate::cluster::Cluster;
    pub use crate::ecommerce::Ecommerce;
    pub use crate::engine::{Client, Engine, Pipeline, QueryError, Settings};
    pub use crate::event::{Event, Format, Reject, Time};
    pub use crate::history::History;
    pub use crate::lane::BatchTime;
    pub use crate::live::{LiveSender, SendError, Verdicts};
    pub use crate::rank::Rank;
    pub use crate::view::{ViewKey, Views};
    pub use crate::watermark::LatePolicy;
}
