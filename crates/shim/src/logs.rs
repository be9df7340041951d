//! Docker's `json-file` log driver: one JSON object per line
//! (`{"log":"hi\n","stream":"stdout","time":"..."}`), messages split at newlines, long lines
//! split at 16 KiB like Docker's copier, rotation by max-size / max-file (file, file.1, ...).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::SystemTime;

/// Docker's copier buffer: a line longer than this is logged in pieces.
const MAX_LINE: usize = 16 * 1024;

pub struct JsonFileLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_file: u32,
    /// Unterminated tail per stream (stdout, stderr), flushed at a newline, at MAX_LINE or at end.
    partial: [Vec<u8>; 2],
    line: Vec<u8>,
}

impl JsonFileLog {
    pub fn open(path: PathBuf, max_size: Option<u64>, max_file: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            size,
            max_size: max_size.filter(|s| *s > 0),
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
            line: Vec::with_capacity(256),
        })
    }

    /// Feeds output of `stream` (0 stdout, 1 stderr).
    pub fn write(&mut self, stream: usize, mut data: &[u8]) {
        let now = SystemTime::now();
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let (line, rest) = data.split_at(i + 1);
                    if self.partial[stream].is_empty() {
                        self.emit(stream, line, now);
                    } else {
                        let mut buf = std::mem::take(&mut self.partial[stream]);
                        buf.extend_from_slice(line);
                        self.emit(stream, &buf, now);
                        buf.clear();
                        self.partial[stream] = buf;
                    }
                    data = rest;
                }
                None => {
                    self.partial[stream].extend_from_slice(data);
                    data = &[];
                }
            }
            while self.partial[stream].len() >= MAX_LINE {
                let rest = self.partial[stream].split_off(MAX_LINE);
                let head = std::mem::replace(&mut self.partial[stream], rest);
                self.emit(stream, &head, now);
            }
        }
    }

    /// Logs what is left without a newline (at the end of the stream).
    pub fn flush(&mut self) {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                let buf = std::mem::take(&mut self.partial[s]);
                self.emit(s, &buf, SystemTime::now());
            }
        }
    }

    fn emit(&mut self, stream: usize, msg: &[u8], t: SystemTime) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        line.extend_from_slice(b"{\"log\":");
        encode_json_string(&mut line, msg);
        line.extend_from_slice(if stream == 0 {
            b",\"stream\":\"stdout\",\"time\":\""
        } else {
            b",\"stream\":\"stderr\",\"time\":\""
        });
        line.extend_from_slice(berth_shim_proto::rfc3339_nanos_go(t).as_bytes());
        line.extend_from_slice(b"\"}\n");
        if let Some(max) = self.max_size {
            // Docker checks capacity before each write
            if self.size >= max {
                self.rotate();
            }
        }
        if self.file.write_all(&line).is_ok() {
            self.size += line.len() as u64;
        }
        self.line = line;
    }

    fn rotate(&mut self) {
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.max_file > 1 {
            let _ = std::fs::remove_file(name(self.max_file - 1));
            for i in (1..self.max_file - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
            if let Ok(f) = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .custom_flags(libc::O_CLOEXEC)
                .open(&self.path)
            {
                self.file = f;
            }
        } else {
            // max-file 1: start the same file over
            let _ = self.file.set_len(0);
        }
        self.size = 0;
    }
}

/// JSON string encoding as Docker's jsonlog does it: Go's escaping, including `<`, `>`, `&`
/// as \u003c etc., U+2028/9, and invalid UTF-8 replaced by U+FFFD.
pub fn encode_json_string(out: &mut Vec<u8>, msg: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in msg.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    let v = c as u32;
                    out.extend_from_slice(b"\\u");
                    for sh in [12, 8, 4, 0] {
                        out.push(HEX[((v >> sh) & 0xf) as usize]);
                    }
                }
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(c as u32 >> 4) as usize]);
                    out.push(HEX[(c as u32 & 0xf) as usize]);
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        let mut v = Vec::new();
        encode_json_string(&mut v, b"a\"b\\<x>&\x01\t\xff\n");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            r#""a\"b\\\u003cx\u003e\u0026\u0001\t�\n""#
        );
    }

    #[test]
    fn lines_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut l = JsonFileLog::open(p.clone(), Some(100), 3).unwrap();
        l.write(0, b"hi\npart");
        l.write(1, b"err\n");
        l.write(0, b"ial\n");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|x| serde_json::from_str(x).unwrap())
            .collect();
        assert_eq!(lines.len(), 1); // rotated after the first 100 bytes
        for i in 0..20 {
            l.write(0, format!("line {i}\n").as_bytes());
        }
        l.flush();
        assert!(p.exists());
        assert!(d.path().join("c-json.log.1").exists());
        assert!(d.path().join("c-json.log.2").exists());
        assert!(!d.path().join("c-json.log.3").exists());
        let first = std::fs::read_to_string(d.path().join("c-json.log.2")).unwrap();
        assert!(first.starts_with("{\"log\":\""));
        let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        assert_eq!(v["stream"], "stdout");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn docker_format_exactly() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let mut l = JsonFileLog::open(p.clone(), None, 1).unwrap();
        l.write(0, b"hi\n");
        l.write(1, b"oops\n");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut it = text.lines();
        let a = it.next().unwrap();
        assert!(
            a.starts_with(r#"{"log":"hi\n","stream":"stdout","time":"20"#),
            "{a}"
        );
        assert!(a.ends_with("Z\"}"));
        let b = it.next().unwrap();
        assert!(b.starts_with(r#"{"log":"oops\n","stream":"stderr","time":""#));
        let big = vec![b'x'; MAX_LINE + 10];
        l.write(0, &big);
        l.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 4);
    }
}
