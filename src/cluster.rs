//! Scale-out: how many worker threads, processes and hosts one computation spans.
//!
//! lambdaflow scales on timely itself, with timely's own arguments: `-w` threads per process,
//! `-n` processes, `-p` this process's index and `-h` a hostfile of `host:port` lines (without
//! it, process `i` listens on `localhost:2101+i`). The same arguments work in every binary and
//! example, through [`Cluster`] (a `clap` argument group).
//!
//! Processes connect to each other here rather than in timely, with the same handshake, so
//! that waiting for a peer is logged through `tracing` (timely prints it on stdout, which
//! belongs to the program) and gives up after [`CONNECT_TIMEOUT`] instead of retrying forever.

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Config as CommunicationConfig, Hooks};
use tracing::info;

/// How long a process waits for its peers to come up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

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

    /// The addresses of every process, checking the arguments.
    pub fn addresses(&self) -> Result<Vec<String>, String> {
        if self.workers == 0 || self.processes == 0 {
            return Err("need at least one worker and one process".into());
        }
        if self.process >= self.processes {
            return Err(format!(
                "process index {} is not below {}",
                self.process, self.processes
            ));
        }
        match &self.hostfile {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read hostfile {}: {e}", path.display()))?;
                let hosts: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .take(self.processes)
                    .collect();
                if hosts.len() < self.processes {
                    return Err(format!(
                        "hostfile {} lists {} hosts for {} processes",
                        path.display(),
                        hosts.len(),
                        self.processes
                    ));
                }
                Ok(hosts)
            }
            None => Ok((0..self.processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect()),
        }
    }

    /// Connects to the other processes and builds this process's timely allocators.
    pub fn allocators(&self) -> Result<(Vec<AllocatorBuilder>, Box<dyn Any + Send>), String> {
        let addresses = self.addresses()?;
        if self.processes == 1 {
            return CommunicationConfig::Process(self.workers).try_build();
        }
        let sockets = connect(&addresses, self.process)
            .map_err(|e| format!("cannot connect process {} to its peers: {e}", self.process))?;
        let hooks = Hooks::default();
        let local = ProcessBuilder::new_typed_vector(
            self.workers,
            hooks.refill.clone(),
            hooks.spill.clone(),
        );
        let (builders, guard) =
            initialize_networking_from_sockets(local, sockets, self.process, self.workers, hooks)
                .map_err(|e| format!("cannot start networking: {e}"))?;
        Ok((
            builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
            Box::new(guard),
        ))
    }
}

/// Opens one socket to every other process (timely's handshake: the connecting process sends
/// its index as a big-endian `u64`); lower indices are connected to, higher ones accepted.
fn connect(addresses: &[String], me: usize) -> io::Result<Vec<Option<TcpStream>>> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let listener = TcpListener::bind(addresses[me].as_str())?;
    listener.set_nonblocking(true)?;
    let mut sockets: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    let mut last_report = Instant::now();
    loop {
        for (peer, address) in addresses.iter().enumerate().take(me) {
            if sockets[peer].is_some() {
                continue;
            }
            if let Ok(mut stream) = TcpStream::connect(address.as_str()) {
                stream.set_nodelay(true)?;
                stream.write_all(&(me as u64).to_be_bytes())?;
                sockets[peer] = Some(stream);
            }
        }
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false)?;
                    stream.set_nodelay(true)?;
                    let mut index = [0u8; 8];
                    stream.read_exact(&mut index)?;
                    let peer = u64::from_be_bytes(index) as usize;
                    if peer <= me || peer >= addresses.len() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unexpected peer index {peer}"),
                        ));
                    }
                    sockets[peer] = Some(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let missing = (0..addresses.len())
            .filter(|p| *p != me && sockets[*p].is_none())
            .count();
        if missing == 0 {
            info!(
                process = me,
                peers = addresses.len(),
                "connected to every process"
            );
            return Ok(sockets);
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{missing} processes did not connect"),
            ));
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            info!(process = me, missing, "waiting for the other processes");
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
