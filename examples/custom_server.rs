//! Your own events and views behind lambdaflow's server: the same HTTP API, master dataset,
//! metrics and multi-process scale-out as the built-in e-commerce pipeline.
//!
//! Teaches: implementing `Event` and `Pipeline` for your own types, and calling `server::serve`
//! with every option of `lambdaflow run` (`server::args::RunArgs`, flattened into the command line).
//!
//! ```text
//! cargo run --release --example custom_server -- --data-dir /tmp/sensors
//! curl -XPOST localhost:8080/events --data-binary $'{"ts":1000,"sensor":7,"celsius":21}\n'
//! curl localhost:8080/views/sensor_stats/7
//! ```

use clap::Parser;
use differential_dataflow::VecCollection;
use lambdaflow::prelude::*;
use lambdaflow::server::args::RunArgs;
use lambdaflow::server::serve;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A temperature reading: the event type, serialized to the master dataset with serde.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Reading {
    ts: u64,
    sensor: u64,
    celsius: i64,
}

impl Event for Reading {
    fn time(&self) -> Time {
        self.ts
    }

    fn parse(line: &[u8], format: Format) -> Result<Self, String> {
        match format {
            Format::JsonLines => serde_json::from_slice(line).map_err(|e| e.to_string()),
            _ => Err("readings are JSON Lines".into()),
        }
    }
}

/// The business logic, written once for history and live readings.
struct Sensors;

impl Pipeline for Sensors {
    type Event = Reading;

    fn build<'s>(&self, readings: VecCollection<'s, Time, Reading>, views: &mut Views<'s>) {
        let stats = views.register(
            "sensor_stats",
            "number of readings and mean temperature per sensor",
            readings.explode(|r| Some(((r.sensor, ()), Sums([1, i128::from(r.celsius)])))),
            |_, values| values.first().map(|(_, s)| json!({"readings": s.0[0], "mean_celsius": s.0[1] as f64 / s.0[0] as f64})),
        );
        views.top_k(
            "busiest_sensors",
            "the 5 sensors with the most readings",
            &stats,
            5,
            |_, values: &[((), Sums<2>)]| values.first().map(|(_, s)| s.0[0]),
            |sensor, readings| json!({"sensor": sensor, "readings": readings}),
        );
    }
}

/// Every option of `lambdaflow run`, from the library (its `--history`, `--sql` and `--schema`
/// are for the built-in events: this server leaves them unread).
#[derive(Parser)]
#[command(disable_help_flag = true)] // `-h` names the hostfile
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Args::parse().run.config()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(serve(config, Sensors, |_| {}, async {
        let _ = tokio::signal::ctrl_c().await;
    }))
}
