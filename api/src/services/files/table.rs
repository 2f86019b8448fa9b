//! Exported tables: CSV (RFC 4180, UTF-8 with a byte-order mark) and XLSX (the table on its
//! first sheet, what was exported on a second sheet, `about`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use chrono_tz::Tz;

use crate::http::error::ApiError;

pub const CSV_MEDIA_TYPE: &str = "text/csv; charset=utf-8; header=present";
pub const XLSX_MEDIA_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The format of an exported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

/// Splits `kindergarten.K1.3.2027.csv` into the name and the format.
pub fn split_file<'a>(file: &'a str, what: &str) -> Result<(&'a str, Format), ApiError> {
    match file.rsplit_once('.') {
        Some((name, "csv")) if !name.is_empty() => Ok((name, Format::Csv)),
        Some((name, "xlsx")) if !name.is_empty() => Ok((name, Format::Xlsx)),
        _ => Err(
            ApiError::not_found(format!("no such file: ask for {what}.csv or {what}.xlsx"))
                .with_field(what),
        ),
    }
}

/// One cell of an exported table.
pub enum Cell {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Empty,
}

/// A table to export and what it is. Its times are written in `time_zone` (the authority's),
/// and the header of a time column names the zone: `registered_at (Asia/Novosibirsk)`.
pub struct Table {
    pub sheet: &'static str,
    pub columns: Vec<String>,
    pub time_zone: Tz,
    pub rows: Vec<Vec<Cell>>,
    pub about: Vec<(&'static str, String)>,
}

impl Table {
    /// The table as a file to download: `{stem}.csv` or `{stem}.xlsx`.
    pub fn respond(self, format: Format, stem: &str) -> Result<Response, ApiError> {
        let (bytes, media_type, extension) = match format {
            Format::Csv => (self.to_csv()?, CSV_MEDIA_TYPE, "csv"),
            Format::Xlsx => (self.to_xlsx()?, XLSX_MEDIA_TYPE, "xlsx"),
        };
        let mut response = (StatusCode::OK, bytes).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
        // Ids are ASCII letters, digits, '-', '_' and '.', so the name needs no escaping.
        let disposition = format!("attachment; filename=\"{stem}.{extension}\"");
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).map_err(|_| ApiError::internal())?,
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        Ok(response)
    }

    /// RFC 4180 CSV in UTF-8 with a byte-order mark (so that Excel detects UTF-8).
    fn to_csv(&self) -> Result<Vec<u8>, ApiError> {
        let mut out = "\u{feff}".as_bytes().to_vec();
        {
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .quote_style(csv::QuoteStyle::Necessary)
                .from_writer(&mut out);
            let failed = |e: csv::Error| {
                tracing::error!(error = %e, "csv export failed");
                ApiError::internal()
            };
            writer.write_record(&self.columns).map_err(failed)?;
            for row in &self.rows {
                let fields = row.iter().map(|cell| match cell {
                    Cell::Int(n) => n.to_string(),
                    Cell::Text(s) => s.clone(),
                    Cell::Time(t) => local_rfc3339(*t, self.time_zone),
                    Cell::Empty => String::new(),
                });
                writer.write_record(fields).map_err(failed)?;
            }
            writer.flush().map_err(|e| failed(e.into()))?;
        }
        Ok(out)
    }

    fn to_xlsx(&self) -> Result<Vec<u8>, ApiError> {
        use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook, XlsxError};
        let zone = self.time_zone;
        let excel_time = |t: DateTime<Utc>| -> Result<ExcelDateTime, XlsxError> {
            let t = t.with_timezone(&zone);
            ExcelDateTime::from_ymd(
                u16::try_from(t.year()).unwrap_or(1900),
                t.month() as u8,
                t.day() as u8,
            )?
            .and_hms_milli(
                t.hour() as u16,
                t.minute() as u8,
                t.second() as u8,
                (t.timestamp_subsec_millis() % 1000) as u16,
            )
        };
        let build = || -> Result<Vec<u8>, XlsxError> {
            let bold = CellFormat::new().set_bold();
            let time = CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss.000");
            let mut workbook = Workbook::new();
            let sheet = workbook.add_worksheet();
            sheet.set_name(self.sheet)?;
            for (c, name) in self.columns.iter().enumerate() {
                let c = c as u16;
                sheet.write_string_with_format(0, c, name.as_str(), &bold)?;
                sheet.set_column_width(
                    c,
                    if name.contains("_at") || name.starts_with("deadline") {
                        24
                    } else {
                        14
                    },
                )?;
            }
            for (r, row) in self.rows.iter().enumerate() {
                let r = r as u32 + 1;
                for (c, cell) in row.iter().enumerate() {
                    let c = c as u16;
                    match cell {
                        Cell::Int(n) => {
                            sheet.write_number(r, c, *n as f64)?;
                        }
                        Cell::Text(s) => {
                            sheet.write_string(r, c, s.as_str())?;
                        }
                        Cell::Time(t) => {
                            sheet.write_datetime_with_format(r, c, excel_time(*t)?, &time)?;
                        }
                        Cell::Empty => {}
                    }
                }
            }
            sheet.set_freeze_panes(1, 0)?;
            let last_column = self.columns.len().saturating_sub(1) as u16;
            sheet.autofilter(0, 0, self.rows.len() as u32, last_column)?;

            let about = workbook.add_worksheet();
            about.set_name("about")?;
            about.set_column_width(0, 16)?;
            about.set_column_width(1, 80)?;
            let exported_at = rfc3339(Utc::now());
            let mut lines: Vec<(&str, &str)> =
                self.about.iter().map(|(k, v)| (*k, v.as_str())).collect();
            lines.push(("exported_at", &exported_at));
            let rows = self.rows.len().to_string();
            lines.push(("rows", &rows));
            lines.push(("time_zone", zone.name()));
            for (r, (key, value)) in lines.iter().enumerate() {
                about.write_string_with_format(r as u32, 0, *key, &bold)?;
                about.write_string(r as u32, 1, *value)?;
            }
            workbook.save_to_buffer()
        };
        build().map_err(|e| {
            tracing::error!(error = %e, "xlsx export failed");
            ApiError::internal()
        })
    }
}

/// The header of a time column: its name and the zone its times are in.
pub fn zoned(name: &str, zone: Tz) -> String {
    format!("{name} ({})", zone.name())
}

/// A time as RFC 3339 in the zone, with its offset and as many fractional digits as it needs.
pub fn local_rfc3339(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A time as RFC 3339 in UTC, with as many fractional digits as it needs.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The authority's time zone (UTC before it is configured): a table's `time_zone`.
pub(super) fn time_zone(s: &ochered_core::State) -> Tz {
    s.config().map_or(Tz::UTC, |c| c.time_zone)
}

/// Column names as a table's `columns`.
pub(super) fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn table() -> Table {
        let at = DateTime::parse_from_rfc3339("2026-03-01T09:30:15.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let zone: Tz = "Asia/Novosibirsk".parse().unwrap();
        Table {
            sheet: "queue",
            columns: ["position", "application", "tier"]
                .map(str::to_owned)
                .into_iter()
                .chain([zoned("registered_at", zone)])
                .collect(),
            time_zone: zone,
            rows: vec![
                vec![Cell::Int(1), Cell::Int(17), Cell::Int(3), Cell::Time(at)],
                vec![
                    Cell::Int(2),
                    Cell::Text("a, \"quoted\" Сад".into()),
                    Cell::Empty,
                    Cell::Empty,
                ],
            ],
            about: vec![("queue", "kindergarten.K1.3.2027".into())],
        }
    }

    #[test]
    fn csv_is_rfc4180_with_a_bom() {
        let bytes = table().to_csv().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "\u{feff}position,application,tier,registered_at (Asia/Novosibirsk)\r\n\
             1,17,3,2026-03-01T16:30:15.250+07:00\r\n\
             2,\"a, \"\"quoted\"\" Сад\",,\r\n"
        );
    }

    #[test]
    fn xlsx_holds_the_table_and_the_about_sheet() {
        let bytes = table().to_xlsx().unwrap();
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut read = |name: &str| {
            let mut text = String::new();
            zip.by_name(name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        let workbook = read("xl/workbook.xml");
        assert!(workbook.contains(r#"name="queue""#), "{workbook}");
        assert!(workbook.contains(r#"name="about""#), "{workbook}");
        let strings = read("xl/sharedStrings.xml");
        for s in [
            "registered_at (Asia/Novosibirsk)",
            "Asia/Novosibirsk",
            "a, \"quoted\" Сад",
            "kindergarten.K1.3.2027",
        ] {
            assert!(strings.contains(s), "{s} missing from {strings}");
        }
        let sheet = read("xl/worksheets/sheet1.xml");
        assert!(sheet.contains("<v>17</v>"), "{sheet}");
        // 2026-03-01 16:30:15.250 (local time in Novosibirsk) as an Excel serial date.
        assert!(sheet.contains("<v>46082.68767"), "{sheet}");
    }

    #[test]
    fn file_names_carry_the_format() {
        assert_eq!(
            split_file("kindergarten.K1.3.2027.xlsx", "queue").unwrap(),
            ("kindergarten.K1.3.2027", Format::Xlsx)
        );
        assert_eq!(split_file("r1.csv", "round").unwrap(), ("r1", Format::Csv));
        assert!(split_file("x.pdf", "queue").is_err());
        assert!(split_file(".csv", "queue").is_err());
    }
}
