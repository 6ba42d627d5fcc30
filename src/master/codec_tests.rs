//! Tests of the payloads: the schema version, decoding newer and older event types, hostile
//! payloads, oversized events, and files of another format version.

use std::fs;

use serde::{Deserialize, Serialize};

use super::format::{self, MAX_RECORD_BYTES, Marker};
use super::tests::{Ev, append_raw, ev, evs, len_of, open, read_all, segment};
use super::*;
use crate::history::Share;

/// A record frame around any payload, with a correct checksum.
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut out = len.to_vec();
    out.extend_from_slice(&format::checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Records (whole frames) followed by their commit marker.
fn committed(records: &[u8], count: u64) -> Vec<u8> {
    let mut out = records.to_vec();
    out.extend_from_slice(&Marker::of(records, count).encode());
    out
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct V1 {
    a: u64,
    b: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct V2 {
    a: u64,
    b: String,
    #[serde(default)]
    c: Vec<u32>,
}

fn at_version(schema_version: u32) -> MasterOptions {
    MasterOptions {
        schema_version,
        ..MasterOptions::default()
    }
}

#[test]
fn records_of_an_older_schema_read_as_the_newer_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old: Vec<V1> = (0..4)
        .map(|a| V1 {
            a,
            b: format!("b{a}"),
        })
        .collect();
    {
        let (master, _) = MasterDataset::<V1>::open(dir.path(), at_version(1)).expect("open");
        master.append(&old).expect("append");
    }
    let upgraded = |v: &V1| V2 {
        a: v.a,
        b: v.b.clone(),
        c: Vec::new(),
    };
    let mut expected: Vec<V2> = old.iter().map(upgraded).collect();

    // A build at version 2 reads them, through the directory and through the dataset, and
    // appends its own.
    let mut read = Vec::new();
    read_share_with(
        &Disk,
        dir.path(),
        2,
        Share::WHOLE,
        &AtomicU64::new(0),
        |v: V2| read.push(v),
    )
    .expect("read");
    assert_eq!(read, expected);
    let (master, _) = MasterDataset::<V2>::open(dir.path(), at_version(2)).expect("open");
    let new = V2 {
        a: 9,
        b: "new".into(),
        c: vec![1, 2],
    };
    master.append(std::slice::from_ref(&new)).expect("append");
    expected.push(new);
    let mut read = Vec::new();
    master
        .read_share(Share::WHOLE, |v| read.push(v))
        .expect("read");
    assert_eq!(read, expected);

    // A build at version 1 refuses the newer record, clearly.
    let err = read_share(dir.path(), Share::WHOLE, |_: V1| {}).expect_err("newer record");
    let message = err.to_string();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        message.contains("written by schema version 2, this build reads up to 1"),
        "{message}"
    );
}

#[test]
fn the_schema_version_starts_every_payload() {
    let mut out = Vec::new();
    let len = format::encode_record(&mut out, 300, &ev(1)).expect("encode");
    assert_eq!(len, out.len() as u64);
    // 300 as a MessagePack uint16, then the event as an array of its three fields.
    assert_eq!(&out[8..12], &[0xcd, 0x01, 0x2c, 0x93]);
    let event: Ev =
        format::decode_record(&segment(std::path::Path::new("x"), 0), 0, 300, &out[8..])
            .expect("decodes");
    assert_eq!(event, ev(1));
}

#[test]
fn files_of_format_version_1_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = segment(dir.path(), 0);
    let mut header = format::encode_header(0);
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    fs::write(&path, header).expect("write");
    for err in [
        open(dir.path()).map(drop).expect_err("version 1"),
        read_all(dir.path()).map(drop).expect_err("version 1"),
        repair(dir.path()).map(drop).expect_err("version 1"),
    ] {
        let message = err.to_string();
        assert!(matches!(err, Error::Version { .. }), "{err:?}");
        assert!(message.contains("format version 1"), "{message}");
        assert!(message.contains("reads only version 2"), "{message}");
    }
    // Repair left it alone.
    assert_eq!(fs::read(&path).expect("read"), header);

    let manifest = dir.path().join("MANIFEST");
    let mut bytes = b"LFMANFST".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    fs::write(&manifest, bytes).expect("write");
    let err = verify(dir.path()).expect_err("version 1");
    assert!(
        matches!(&err, Error::Version { path, .. } if *path == manifest),
        "{err:?}"
    );
}

#[test]
fn hostile_payload_with_a_good_checksum_is_a_decode_error() {
    // Schema version 1, then an array of 3 (id 1, time 2, then a string claiming u32::MAX
    // bytes), and an array claiming u32::MAX elements.
    let strings = [1, 0x93, 1, 2, 0xdb, 0xff, 0xff, 0xff, 0xff];
    let arrays = [1, 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2];
    for payload in [&strings[..], &arrays[..]] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (master, _) = open(dir.path()).expect("open");
            master.append(&evs(0..1)).expect("append");
        }
        let path = segment(dir.path(), 0);
        let offset = len_of(&path);
        append_raw(&path, &committed(&frame(payload), 1));
        match read_all(dir.path()) {
            Err(Error::Decode {
                path: p, offset: o, ..
            }) => assert_eq!((p, o), (path, offset)),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}

#[test]
fn oversized_events_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _) = open(dir.path()).expect("open");
    let mut big = ev(0);
    big.name = "x".repeat(MAX_RECORD_BYTES as usize + 1);
    assert!(matches!(
        master.append(&[ev(1), big]),
        Err(Error::RecordTooLarge { .. })
    ));
    assert!(master.is_empty());
    master.append(&[ev(2)]).expect("append after a refusal");
    assert_eq!(read_all(dir.path()).expect("read"), vec![ev(2)]);
}
