//! Fuzzes the NSM log line parsers (`ingest::zeek`, `ingest::eve`) and the wire encoder
//! behind them. The first input byte picks the reader (Zeek TSV dns/conn with a fixed
//! header, Zeek JSON dns/conn, eve.json); the rest is split into lines and fed one by one,
//! '#' lines included, so header changes mid-file are reached. Every DNS message rendered
//! must parse back with the project's own parser: the encoder never writes a message the
//! sensor would call malformed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portent::dns::parse_message;
use portent::ingest::eve::EveState;
use portent::ingest::zeek::{JsonState, TsvState};
use portent::ingest::{Event, Kind, Line};

const DNS_HEAD: &[&[u8]] = &[
    b"#separator \\x09",
    b"#set_separator\t,",
    b"#empty_field\t(empty)",
    b"#unset_field\t-",
    b"#path\tdns",
    b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected",
];
const CONN_HEAD: &[&[u8]] = &[
    b"#separator \\x09",
    b"#path\tconn",
    b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\thistory",
];

enum Reader {
    Tsv(TsvState),
    Json(JsonState),
    Eve(EveState),
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let mut r = match pick % 5 {
        0 => Reader::Tsv(TsvState::from_headers(DNS_HEAD, Kind::ZeekDns).unwrap()),
        1 => Reader::Tsv(TsvState::from_headers(CONN_HEAD, Kind::ZeekConn).unwrap()),
        2 => Reader::Json(JsonState::empty(Kind::ZeekDns)),
        3 => Reader::Json(JsonState::empty(Kind::ZeekConn)),
        _ => Reader::Eve(EveState::default()),
    };
    let mut out = Vec::new();
    for line in rest.split(|&b| b == b'\n') {
        let before = out.len();
        let res = match &mut r {
            Reader::Tsv(st) => st.line(line, &mut out),
            Reader::Json(st) => st.line(line, &mut out),
            Reader::Eve(st) => st.line(line, &mut out),
        };
        // A line yields at most a query and a response (plus one finished v1 group).
        assert!(out.len() - before <= 3);
        if res.is_err() || res == Ok(Line::Header) {
            // Errors and headers add nothing of their own (eve may close a v1 group).
            assert!(out.len() - before <= 1);
        }
    }
    if let Reader::Eve(st) = &mut r {
        st.finish(&mut out);
    }
    for ev in &out {
        if let Event::Dns { wire, .. } = ev {
            assert!(parse_message(wire).is_ok(), "rendered message does not parse: {wire:02x?}");
        }
    }
});
