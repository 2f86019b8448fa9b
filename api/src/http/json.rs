//! A JSON body extractor whose errors are problem+json naming the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;

/// The largest CSV upload accepted (the general JSON body limit does not apply to files).
pub const UPLOAD_LIMIT_BYTES: usize = 2 * 1024 * 1024;

/// Like `axum::Json`, but a wrong type, an unknown, missing or repeated field is a 422 naming
/// the field's path (e.g. `preferences[1]`, `slots[0].start`), malformed JSON is a 400, a body over the limit is a 413, and a
/// missing or wrong content type is a 415.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_content = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
            });
        if !json_content {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as application/json",
            )
            .with_field("Content-Type"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large("the request body is larger than the server accepts")
            } else {
                ApiError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
        parse(&bytes).map(Body)
    }
}

/// Parses JSON bytes into `T`, naming the field on failure.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Data => {
                let message = strip_position(&inner.to_string());
                ApiError::invalid(field_of(&path, &message), message)
            }
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "Malformed JSON",
                format!("the body is not valid JSON: {inner}"),
            )
            .with_field("body"),
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Malformed JSON",
            format!("trailing characters after the JSON value: {e}"),
        )
        .with_field("body")
    })?;
    Ok(value)
}

/// The field an error is about: serde's path, completed by the field a "missing field" or
/// "duplicate field" message names (serde reports those at the enclosing object), or `body`
/// for the whole body.
fn field_of(path: &str, message: &str) -> String {
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .filter(|name| !name.is_empty());
    match (path, named) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Form {
        birth_date: chrono::NaiveDate,
        preferences: Vec<ochered_core::domain::InstitutionId>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Form>(br#"{"birth_date":"2020-02-30","preferences":[]}"#).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.field.as_deref()),
            (422, Some("birth_date"))
        );
        let e = parse::<Form>(br#"{"birth_date":"2020-02-03","preferences":["ok","bad id!"]}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("preferences[1]"));
        let e = parse::<Form>(br#"{"birth_date":"2020-02-03","preferences":[],"extra":1}"#)
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert!(e.detail.contains("extra"), "{}", e.detail);
        let e = parse::<Form>(br#"{"preferences":[]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("birth_date"));
        let e = parse::<Form>(
            br#"{"birth_date":"2020-02-03","birth_date":"2020-02-04","preferences":[]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("birth_date"));
        let e = parse::<Form>(br#"{"birth_date":"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = parse::<Form>(b"\xff\xfe").unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let deep = "[".repeat(10_000);
        let e = parse::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
    }
}
