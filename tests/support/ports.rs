//! Ports for test servers and timely meshes, without bind-then-release races.
//!
//! A port picked by binding port 0 and releasing it can be taken by anyone before the program
//! under test binds it. Instead ports come from a range the kernel never hands out on its own
//! (below Linux's ephemeral range, 32768 and up), each at most once per machine-wide cycle: a
//! counter in a file under the temporary directory, advanced under an exclusive file lock, so
//! that test processes running at once (`cargo nextest`) never get the same port. A port that
//! something else holds is skipped.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;

const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// A port on loopback that no other test of this machine has been given lately, and that is
/// free now.
pub fn free_port() -> u16 {
    let path = std::env::temp_dir().join("lambdaflow-test-ports");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .expect("the port counter opens");
    file.lock().expect("the port counter locks");
    let mut text = String::new();
    file.read_to_string(&mut text)
        .expect("the port counter reads");
    let mut next = text.trim().parse::<u16>().unwrap_or(FIRST);
    let port = loop {
        let port = if (FIRST..LAST).contains(&next) {
            next
        } else {
            FIRST
        };
        next = port + 1;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break port;
        }
    };
    file.set_len(0).expect("the port counter truncates");
    file.seek(SeekFrom::Start(0))
        .expect("the port counter seeks");
    write!(file, "{next}").expect("the port counter writes");
    port
}
