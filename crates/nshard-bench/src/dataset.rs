//! Tabular datasets (CSV or JSON Lines) and their typical changes: rows appended at the end, or a
//! block of rows inserted in the middle.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::rng::Rng;

/// Row format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// A change to a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataKind {
    /// Add this fraction of v1's rows at the end.
    Append(f64),
    /// Insert this fraction of v1's rows as one block in the middle.
    Insert(f64),
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "pe", "da", "gu", "ho", "ri", "zen", "tor",
    "mal", "qui", "bes", "nar", "fel", "ost", "lin", "dra", "cor",
];
const EVENTS: &[&str] = &[
    "view", "click", "purchase", "refund", "signup", "search", "share",
];
const COUNTRIES: &[&str] = &["DE", "FR", "US", "JP", "BR", "IN", "NG", "CA", "ES", "KR"];

fn word(rng: &mut Rng, out: &mut String) {
    for _ in 0..2 + rng.below(3) {
        out.push_str(SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]);
    }
}

/// Appends one row with this id.
fn row(rng: &mut Rng, format: Format, id: u64, out: &mut String) {
    let ts = 1_704_067_200 + id * 13 + rng.below(13);
    let user = rng.below(100_000);
    let event = EVENTS[rng.below(EVENTS.len() as u64) as usize];
    let amount = rng.below(100_000) as f64 / 100.0;
    let country = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
    let mut comment = String::new();
    for i in 0..3 + rng.below(10) {
        if i > 0 {
            comment.push(' ');
        }
        word(rng, &mut comment);
    }
    match format {
        Format::Csv => out.push_str(&format!(
            "{id},{ts},u{user},{event},{amount:.2},{country},\"{comment}\"\n"
        )),
        Format::Jsonl => out.push_str(&format!(
            "{{\"id\":{id},\"ts\":{ts},\"user\":\"u{user}\",\"event\":\"{event}\",\"amount\":{amount:.2},\"country\":\"{country}\",\"comment\":\"{comment}\"}}\n"
        )),
    }
}

const CSV_HEADER: &str = "id,ts,user,event,amount,country,comment\n";

/// Writes about `bytes` of rows; returns (rows, bytes written).
pub fn generate<W: Write>(
    w: &mut W,
    format: Format,
    bytes: u64,
    seed: u64,
) -> io::Result<(u64, u64)> {
    let mut rng = Rng::new(seed);
    let mut s = String::new();
    if format == Format::Csv {
        s.push_str(CSV_HEADER);
    }
    let (mut written, mut rows) = (0u64, 0u64);
    while written + (s.len() as u64) < bytes {
        row(&mut rng, format, rows, &mut s);
        rows += 1;
        if s.len() > 1 << 20 {
            w.write_all(s.as_bytes())?;
            written += s.len() as u64;
            s.clear();
        }
    }
    w.write_all(s.as_bytes())?;
    Ok((rows, written + s.len() as u64))
}

/// Applies `kind` to the dataset `from`, writing `to`. Returns (rows added, bytes added, those bytes
/// after zstd level 1).
pub fn mutate(from: &Path, to: &Path, kind: DataKind, seed: u64) -> Result<(u64, u64, u64)> {
    let mut f = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let size = f.metadata()?.len();
    let mut first = [0u8; 1];
    let format = if f.read(&mut first)? == 1 && first[0] == b'{' {
        Format::Jsonl
    } else {
        Format::Csv
    };
    f.seek(SeekFrom::Start(0))?;
    let mut lines = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let rows = if format == Format::Csv {
        lines.saturating_sub(1)
    } else {
        lines
    };
    let (frac, split) = match kind {
        DataKind::Append(p) => (p, size),
        DataKind::Insert(p) => {
            // The first line break after the middle byte.
            f.seek(SeekFrom::Start(size / 2))?;
            let mut r = BufReader::new(&mut f);
            let mut skip = Vec::new();
            r.read_until(b'\n', &mut skip)?;
            (p, size / 2 + skip.len() as u64)
        }
    };
    let add = ((rows as f64 * frac).ceil() as u64).max(1);
    let mut rng = Rng::new(seed ^ 0x6461_7461);
    let mut block = String::new();
    for i in 0..add {
        row(&mut rng, format, rows + i, &mut block);
    }
    let mut w = BufWriter::with_capacity(
        4 << 20,
        File::create(to).with_context(|| format!("creating {}", to.display()))?,
    );
    f.seek(SeekFrom::Start(0))?;
    io::copy(&mut (&mut f).take(split), &mut w)?;
    w.write_all(block.as_bytes())?;
    io::copy(&mut f, &mut w)?;
    w.flush()?;
    let z = zstd::bulk::compress(block.as_bytes(), 1)?.len() as u64;
    Ok((add, block.len() as u64, z))
}
