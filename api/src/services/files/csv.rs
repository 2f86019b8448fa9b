//! Reading an officer's CSV upload: the body as UTF-8 text, the header matched against the
//! expected columns in any order and case, comma- or semicolon-separated, rows numbered as in
//! a spreadsheet, and every bad row reported at once.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use ochered_core::domain::InstitutionKind;
use serde_json::{json, Value};

use crate::http::error::ApiError;
pub use crate::http::json::UPLOAD_LIMIT_BYTES;

/// The most data rows one upload may have.
pub const UPLOAD_ROWS_MAX: usize = 10_000;
/// How many row errors a 422 lists (`errors_total` counts them all).
const ERRORS_LISTED_MAX: usize = 100;

/// An institution kind as written in a file, in any case.
pub fn parse_kind(raw: &str) -> Result<InstitutionKind, String> {
    serde_json::from_value(Value::String(raw.to_ascii_lowercase()))
        .map_err(|_| format!("{raw:?} is not a kind: use kindergarten, school or clinic"))
}

/// The CSV column a rejection's field points at (`seats.age_group` → `age_group`).
pub fn column_of<'a>(field: &'a str, default: &'a str) -> &'a str {
    let column = field.rsplit('.').next().unwrap_or(field);
    if column.is_empty() {
        default
    } else {
        column
    }
}

/// A CSV upload: the body as UTF-8 text, a leading byte-order mark dropped.
pub struct CsvUpload(pub String);

impl<S: Send + Sync> FromRequest<S> for CsvUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let csv_content = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("text/csv")
                    || mime.eq_ignore_ascii_case("application/csv")
            });
        if !csv_content {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the file as text/csv",
            )
            .with_field("Content-Type"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large(format!(
                    "the file is larger than {} MiB; split it",
                    UPLOAD_LIMIT_BYTES >> 20
                ))
            } else {
                ApiError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
            ApiError::invalid(
                "body",
                format!(
                    "the file is not UTF-8 text (bad byte at offset {}); save it as \"CSV UTF-8\"",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Ok(CsvUpload(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        }))
    }
}

/// Errors of an upload's rows, reported all at once.
#[derive(Default)]
pub struct RowErrors(Vec<(u64, String, String)>);

impl RowErrors {
    pub fn push(&mut self, row: u64, column: &str, detail: String) {
        self.0.push((row, column.to_owned(), detail));
    }

    /// A 422 naming the first bad row and column and listing every error, if any.
    pub fn into_result(mut self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        self.0.sort_by_key(|(row, _, _)| *row);
        let total = self.0.len();
        let (row, column, detail) = &self.0[0];
        let field = format!("row {row}, {column}");
        let summary = if total == 1 {
            format!("{field}: {detail}; nothing was imported")
        } else {
            format!(
                "{field}: {detail} (and {} more errors, see `errors`); nothing was imported",
                total - 1
            )
        };
        let listed: Vec<Value> = self
            .0
            .iter()
            .take(ERRORS_LISTED_MAX)
            .map(|(row, column, detail)| json!({ "row": row, "column": column, "detail": detail }))
            .collect();
        Err(ApiError::invalid(field, summary)
            .with("errors", Value::Array(listed))
            .with("errors_total", json!(total)))
    }
}

/// A table's data rows: each row's spreadsheet number and its values.
pub type Rows = Vec<(u64, Vec<String>)>;

/// Reads a CSV table whose header names exactly the `required` columns and any of the
/// `optional` ones (in any order, any case). Returns each data row's spreadsheet row number
/// and its values in the order of `required` then `optional`, an absent optional column
/// giving empty values; rows with every field empty are skipped.
pub fn read_table(text: &str, required: &[&str], optional: &[&str]) -> Result<Rows, ApiError> {
    let columns: Vec<&str> = required.iter().chain(optional).copied().collect();
    let first_line = text.lines().next().unwrap_or("");
    let delimiter = if first_line.contains(';') && !first_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let expected = if optional.is_empty() {
        required.join(",")
    } else {
        format!(
            "{} (and optionally {})",
            required.join(","),
            optional.join(",")
        )
    };
    let header = reader
        .headers()
        .map_err(|e| ApiError::invalid("row 1", format!("the header row cannot be read: {e}")))?
        .clone();
    let names: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    let mut index = Vec::with_capacity(columns.len());
    for column in &columns {
        match names.iter().position(|n| n == column) {
            Some(i) => index.push(Some(i)),
            None if optional.contains(column) => index.push(None),
            None => {
                return Err(ApiError::invalid(
                    format!("row 1, {column}"),
                    format!(
                        "the header row has no column {column}; expected the columns {expected}"
                    ),
                ))
            }
        }
    }
    for (i, name) in names.iter().enumerate() {
        if !columns.contains(&name.as_str()) && !name.is_empty() {
            return Err(ApiError::invalid(
                format!("row 1, {name}"),
                format!("unknown column {name:?}; expected the columns {expected}"),
            ));
        }
        if names[..i].contains(name) {
            return Err(ApiError::invalid(
                format!("row 1, {name}"),
                format!("the column {name} is named twice"),
            ));
        }
    }

    let mut errors = RowErrors::default();
    let mut rows = Vec::new();
    let mut rows_at = RowCounter {
        text: text.as_bytes(),
        byte: 0,
        newlines: 0,
    };
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let row = e.position().map_or(0, |p| rows_at.row(p.byte()));
                errors.push(row, "row", format!("cannot be read as CSV: {e}"));
                break;
            }
        };
        let row = record.position().map_or(0, |p| rows_at.row(p.byte()));
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != header.len() {
            errors.push(
                row,
                columns[0],
                format!(
                    "has {} fields, the header has {}",
                    record.len(),
                    header.len()
                ),
            );
            continue;
        }
        if rows.len() == UPLOAD_ROWS_MAX {
            return Err(ApiError::invalid(
                "body",
                format!("the file has more than {UPLOAD_ROWS_MAX} rows; split it"),
            ));
        }
        let values = index
            .iter()
            .map(|i| i.map_or_else(String::new, |i| record[i].to_owned()))
            .collect();
        rows.push((row, values));
    }
    errors.into_result()?;
    if rows.is_empty() {
        return Err(ApiError::invalid("body", "the file has no data rows"));
    }
    Ok(rows)
}

/// Spreadsheet row numbers of records from their byte offsets (the CSV reader's own line
/// count is off after CRLF line ends). Offsets must not decrease.
struct RowCounter<'a> {
    text: &'a [u8],
    byte: usize,
    newlines: u64,
}

impl RowCounter<'_> {
    fn row(&mut self, byte: u64) -> u64 {
        // A record's offset may point at the line end before it.
        let mut start = (byte as usize).min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.byte {
            self.newlines += self.text[self.byte..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            self.byte = start;
        }
        self.newlines + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_the_bad_row_and_column() {
        // A byte-order mark the extractor did not drop is ignored too.
        let rows = read_table(
            "\u{feff}ID;Kind;Name\r\nK1;kindergarten;\"A; B\"\r\n;;\r\n",
            &["id", "kind", "name"],
            &[],
        );
        assert_eq!(rows.unwrap().len(), 1);
        let rows = read_table(
            "Kind;ID;Name\r\nkindergarten;K1;\"A; B\"\r\n;;\r\nschool;S1;C\r\n",
            &["id", "kind", "name"],
            &[],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (2, vec!["K1".into(), "kindergarten".into(), "A; B".into()]),
                (4, vec!["S1".into(), "school".into(), "C".into()]),
            ]
        );
        let rows = read_table(
            "id,kind,name\n\"K1\",school,\"two\nlines\"\n\nK2,school,x\n",
            &["id", "kind", "name"],
            &[],
        )
        .unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 5]);
        let e = read_table(
            "id,kind,name,extra\nK1,school,x,y\n",
            &["id", "kind", "name"],
            &[],
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("row 1, extra"));
        let e = read_table("id,kind,name\nK1,school\n", &["id", "kind", "name"], &[]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("row 2, id"));
        let e = read_table("id,kind,name\n", &["id", "kind", "name"], &[]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        assert_eq!(column_of("seats.age_group", "x"), "age_group");
        // Optional columns: absent ones give empty values, present ones are read.
        let rows = read_table(
            "name,id,kind\nA,K1,school\n",
            &["id", "kind", "name"],
            &["district", "address"],
        )
        .unwrap();
        assert_eq!(rows[0].1, vec!["K1", "school", "A", "", ""]);
        let rows = read_table(
            "District;id;kind;name\nNorth;K1;school;A\n",
            &["id", "kind", "name"],
            &["district", "address"],
        )
        .unwrap();
        assert_eq!(rows[0].1, vec!["K1", "school", "A", "North", ""]);
        let e = read_table(
            "id,kind,name,area\nK1,school,A,x\n",
            &["id", "kind", "name"],
            &["district"],
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("row 1, area"));
    }
}
