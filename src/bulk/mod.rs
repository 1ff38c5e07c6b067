//! Bulk data: synthetic data sets (`gen`), the input formats of `idnode import` (JSON Lines
//! and CSV, [`Reader`]), the offline import into a stopped node's store (`offline`), and
//! the plots of `idnode bench` reports (`plot`).
//!
//! CSV format: one row per value,
//! `identifier,index,type,data[,ttl[,classification[,domain[,risk]]]]`, rows
//! of one identifier consecutive; a header row starting with `identifier` is skipped; fields
//! are quoted with `"` when they hold `,`, `"` or a newline (`""` inside quotes).

pub mod gen;
pub mod offline;
pub mod plot;

use std::io::BufRead;

use crate::dataset::{RecordJson, ValueJson};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    /// From a file name: `.csv` is CSV, anything else JSON Lines.
    pub fn of(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::JsonLines,
        }
    }
}

/// A record read from an input file, or why its line could not be read.
pub type Item = Result<RecordJson, String>;

/// One CSV row: its identifier and value, or why it cannot be read.
type CsvRow = Result<(String, ValueJson), String>;

/// Streams records from JSON Lines or CSV, one at a time (bounded memory).
pub struct Reader<R: BufRead> {
    input: R,
    format: Format,
    line: usize,
    /// The CSV row after the last record (read ahead: the next record's first row, or an
    /// unreadable row), and its line.
    pending: Option<(CsvRow, usize)>,
    /// The first line of the item returned last.
    start: usize,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, format: Format) -> Reader<R> {
        Reader {
            input,
            format,
            line: 0,
            pending: None,
            start: 0,
            done: false,
        }
    }

    /// Lines consumed so far.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The line the item returned last starts on (a record's first CSV row, or the line
    /// an error is about), counting from 1.
    pub fn start_line(&self) -> usize {
        self.start
    }

    fn next_line(&mut self) -> Option<std::io::Result<String>> {
        let mut buf = String::new();
        match self.input.read_line(&mut buf) {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                while buf.ends_with('\n') || buf.ends_with('\r') {
                    buf.pop();
                }
                Some(Ok(buf))
            }
            Err(e) => Some(Err(e)),
        }
    }

    fn csv_row(&mut self) -> Option<CsvRow> {
        loop {
            let line = match self.next_line()? {
                Ok(l) => l,
                Err(e) => return Some(Err(e.to_string())),
            };
            if line.trim().is_empty() || (self.line == 1 && line.starts_with("identifier")) {
                continue;
            }
            let fields = match split_csv(&line) {
                Some(f) => f,
                None => return Some(Err(format!("line {}: unbalanced quotes", self.line))),
            };
            if fields.len() < 4 || fields.len() > 8 {
                return Some(Err(format!(
                    "line {}: expected identifier,index,type,data[,ttl[,classification[,domain[,risk]]]]",
                    self.line
                )));
            }
            let index = match fields[1].parse() {
                Ok(i) => i,
                Err(_) => {
                    return Some(Err(format!(
                        "line {}: index {:?} is not a number",
                        self.line, fields[1]
                    )))
                }
            };
            let ttl = match fields.get(4).filter(|t| !t.is_empty()) {
                None => None,
                Some(t) => match t.parse() {
                    Ok(t) => Some(t),
                    Err(_) => {
                        return Some(Err(format!(
                            "line {}: ttl {t:?} is not a number",
                            self.line
                        )))
                    }
                },
            };
            let value = ValueJson {
                index,
                value_type: fields[2].clone(),
                data: fields[3].clone(),
                format: None,
                ttl,
                permissions: None,
                classification: fields.get(5).filter(|c| !c.is_empty()).cloned(),
                references: Vec::new(),
                timestamp: None,
                domain: fields.get(6).filter(|d| !d.is_empty()).cloned(),
                risk: fields.get(7).filter(|r| !r.is_empty()).cloned(),
            };
            return Some(Ok((fields[0].clone(), value)));
        }
    }
}

/// Splits one CSV line; `None` for unbalanced quotes.
pub fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if field.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// Quotes a CSV field when needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        match self.format {
            Format::JsonLines => loop {
                let line = match self.next_line()? {
                    Ok(l) => l,
                    Err(e) => return Some(Err(e.to_string())),
                };
                if line.trim().is_empty() {
                    continue;
                }
                self.start = self.line;
                return Some(
                    serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", self.line)),
                );
            },
            Format::Csv => {
                let (id, first) = match self.pending.take() {
                    Some((row, line)) => {
                        self.start = line;
                        match row {
                            Ok(p) => p,
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    None => {
                        let row = self.csv_row();
                        self.start = self.line;
                        match row? {
                            Ok(p) => p,
                            Err(e) => return Some(Err(e)),
                        }
                    }
                };
                let mut values = vec![first];
                loop {
                    match self.csv_row() {
                        None => {
                            self.done = true;
                            break;
                        }
                        Some(Ok((next_id, v))) if next_id == id => values.push(v),
                        // The next record's first row, or an unreadable row: this record
                        // is complete either way (an error is the next item, so the record
                        // before a bad row is never lost).
                        Some(next) => {
                            self.pending = Some((next, self.line));
                            break;
                        }
                    }
                }
                Some(Ok(RecordJson {
                    identifier: id,
                    values,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_groups_rows_by_identifier() {
        let text = "identifier,index,type,data,ttl,classification\n\
                    88.101.5/A,1,URL,https://e.cn/a,,\n\
                    88.101.5/A,2,note,\"a, \"\"quoted\"\" note\",60,private\n\
                    88.101.5/B,1,URL,https://e.cn/b\n";
        let records: Vec<_> = Reader::new(text.as_bytes(), Format::Csv)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].values.len(), 2);
        assert_eq!(records[0].values[1].data, "a, \"quoted\" note");
        assert_eq!(records[0].values[1].ttl, Some(60));
        assert_eq!(
            records[0].values[1].classification.as_deref(),
            Some("private")
        );
        assert_eq!(records[1].identifier, "88.101.5/B");
        let mut reader = Reader::new(text.as_bytes(), Format::Csv);
        let starts: Vec<usize> =
            std::iter::from_fn(|| reader.next().map(|_| reader.start_line())).collect();
        assert_eq!(starts, [2, 4], "each record's first row");
        assert_eq!(split_csv(&csv_field("x,\"y\"")).unwrap(), ["x,\"y\""]);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let errs: Vec<_> = Reader::new(
            "{\"identifier\":\"88.101/a\",\"values\":[]}\nnot json\n".as_bytes(),
            Format::JsonLines,
        )
        .filter_map(Result::err)
        .collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("line 2"), "{errs:?}");
        let errs: Vec<_> = Reader::new("88.101/a,x,URL,u\n".as_bytes(), Format::Csv)
            .filter_map(Result::err)
            .collect();
        assert!(errs[0].contains("index"));
        // The record before a bad row is kept whole, and the error names the row's line.
        let text = "88.101/a,1,URL,u\n88.101/a,2,t,d\n88.101/b,x,URL,u\n88.101/c,1,URL,u\n";
        let mut reader = Reader::new(text.as_bytes(), Format::Csv);
        let mut seen = Vec::new();
        while let Some(item) = reader.next() {
            let what = match item {
                Ok(r) => format!("{} {}", r.identifier, r.values.len()),
                Err(e) => e,
            };
            seen.push((reader.start_line(), what));
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[0], (1, "88.101/a 2".to_owned()));
        assert_eq!(seen[1].0, 3);
        assert!(seen[1].1.starts_with("line 3"), "{seen:?}");
        assert_eq!(seen[2], (4, "88.101/c 1".to_owned()));
    }
}
