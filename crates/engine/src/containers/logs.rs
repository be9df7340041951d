//! Reading a container's json-file log (written by the shim in Docker's format:
//! `{"log":"...","stream":"stdout","time":"RFC3339Nano"}` per line).

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// None = all
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// unix nanos; 0 = none
    pub since: i64,
    pub until: i64,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

/// One log message ready to send: stream (1/2) and bytes (timestamp prefixed if asked).
pub struct Message {
    pub stream: u8,
    pub data: Vec<u8>,
}

fn nanos(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|d| d.timestamp_nanos_opt())
        .unwrap_or(0)
}

fn convert(line: &str, o: &LogOptions) -> Option<Message> {
    let l: Line = serde_json::from_str(line).ok()?;
    let stream = match l.stream.as_str() {
        "stderr" => 2,
        _ => 1,
    };
    if (stream == 1 && !o.stdout) || (stream == 2 && !o.stderr) {
        return None;
    }
    if o.since != 0 || o.until != 0 {
        let t = nanos(&l.time);
        if (o.since != 0 && t < o.since) || (o.until != 0 && t > o.until) {
            return None;
        }
    }
    let mut data = Vec::new();
    if o.timestamps {
        data.extend_from_slice(l.time.as_bytes());
        data.push(b' ');
    }
    data.extend_from_slice(l.log.as_bytes());
    Some(Message { stream, data })
}

/// The rotated files, oldest first, then the live one.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for n in (1..100).rev() {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if p.exists() {
            v.push(p);
        }
    }
    v.push(path.to_path_buf());
    v
}

/// Everything already in the log; returns the messages and the live file's read offset.
pub fn read_all(path: &Path, o: &LogOptions) -> (Vec<Message>, u64) {
    let mut out = Vec::new();
    let mut offset = 0;
    for f in files(path) {
        let Ok(file) = std::fs::File::open(&f) else {
            continue;
        };
        let mut r = BufReader::new(file);
        let mut line = String::new();
        let mut pos = 0u64;
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !line.ends_with('\n') {
                        break; // partial line: the shim is mid-write, pick it up later
                    }
                    pos += n as u64;
                    if let Some(m) = convert(&line, o) {
                        out.push(m);
                    }
                }
            }
        }
        offset = pos;
    }
    if let Some(n) = o.tail
        && out.len() > n
    {
        out.drain(..out.len() - n);
    }
    (out, offset)
}

/// New complete lines of the live file from `offset`; returns the new offset. A file that got
/// shorter was rotated: start again from its beginning.
pub fn read_from(path: &Path, offset: u64, o: &LogOptions) -> (Vec<Message>, u64) {
    let mut out = Vec::new();
    let Ok(mut file) = std::fs::File::open(path) else {
        return (out, offset);
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut pos = if len < offset { 0 } else { offset };
    if file.seek(SeekFrom::Start(pos)).is_err() {
        return (out, offset);
    }
    let mut r = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !line.ends_with('\n') {
                    break;
                }
                pos += n as u64;
                if let Some(m) = convert(&line, o) {
                    out.push(m);
                }
            }
        }
    }
    (out, pos)
}
