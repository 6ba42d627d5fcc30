//! Scale-out: how many worker threads, processes and hosts one computation spans.
//!
//! lambdaflow scales on timely itself, with timely's own arguments: `-w` threads per process,
//! `-n` processes, `-p` this process's index and `-h` a hostfile of `host:port` lines (without
//! it, process `i` listens on `localhost:2101+i`). The same arguments work in every binary and
//! example, through [`Cluster`] (a `clap` argument group).

use std::path::PathBuf;

use timely::CommunicationConfig;

/// Where this process sits in a timely computation.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct Cluster {
    /// Worker threads in this process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
    /// Processes in the computation.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// This process's index, from 0.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: usize,
    /// File with one `host:port` per process (default: localhost:2101, 2102, ...).
    #[arg(short = 'h', long = "hostfile")]
    pub hostfile: Option<PathBuf>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::threads(1)
    }
}

impl Cluster {
    /// One process with `workers` threads.
    pub fn threads(workers: usize) -> Self {
        Cluster {
            workers,
            processes: 1,
            process: 0,
            hostfile: None,
        }
    }

    /// Total workers across all processes.
    pub fn peers(&self) -> usize {
        self.workers * self.processes
    }

    /// The timely configuration, checking the arguments.
    pub fn timely_config(&self) -> Result<timely::Config, String> {
        if self.workers == 0 || self.processes == 0 {
            return Err("need at least one worker and one process".into());
        }
        if self.process >= self.processes {
            return Err(format!(
                "process index {} is not below {}",
                self.process, self.processes
            ));
        }
        let communication = if self.processes == 1 {
            CommunicationConfig::Process(self.workers)
        } else {
            let addresses = match &self.hostfile {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read hostfile {}: {e}", path.display()))?;
                    let hosts: Vec<String> = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect();
                    if hosts.len() < self.processes {
                        return Err(format!(
                            "hostfile {} lists {} hosts for {} processes",
                            path.display(),
                            hosts.len(),
                            self.processes
                        ));
                    }
                    hosts
                }
                None => (0..self.processes)
                    .map(|i| format!("localhost:{}", 2101 + i))
                    .collect(),
            };
            CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        })
    }
}
