//! Field checks shared by the rules of every service: free text, subjects, sealed personal
//! data and lists of institutions (docs/RULES.md#bad-input).

use std::collections::BTreeSet;

use crate::command::{Sealed, SEALED_CIPHERTEXT_HEX_MAX, SEALED_NONCE_HEX};
use crate::domain::{InstitutionId, InstitutionKind};
use crate::rejection::Rejection;
use crate::state::State;

/// Longest free-text field (names, reasons, subjects) in characters.
pub const TEXT_MAX_CHARS: usize = 500;

pub(super) fn check_text(field: &str, value: &str, min_chars: usize) -> Result<(), Rejection> {
    let n = value.chars().count();
    if n < min_chars {
        return Err(Rejection::invalid(field, "must not be empty"));
    }
    if n > TEXT_MAX_CHARS {
        return Err(Rejection::invalid(
            field,
            format!("must be at most {TEXT_MAX_CHARS} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Rejection::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// The account that acted: an opaque subject id, never personal data.
pub(super) fn check_subject(field: &str, subject: &str) -> Result<(), Rejection> {
    check_text(field, subject, 1)?;
    if subject.len() > 128 {
        return Err(Rejection::invalid(field, "must be at most 128 bytes"));
    }
    Ok(())
}

/// A sealed value must look like what the shell's sealing produces: a 24-byte nonce and a
/// bounded ciphertext of at least the 16-byte tag, both lower-case hex. The core cannot
/// decrypt it; this only keeps malformed or oversized blobs out of the log.
pub(super) fn check_sealed(sealed: Option<&Sealed>) -> Result<(), Rejection> {
    let Some(sealed) = sealed else {
        return Ok(());
    };
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if sealed.nonce.len() != SEALED_NONCE_HEX || !is_hex(&sealed.nonce) {
        return Err(Rejection::invalid(
            "sealed.nonce",
            format!("must be {SEALED_NONCE_HEX} lower-case hexadecimal digits"),
        ));
    }
    let n = sealed.ciphertext.len();
    if !(32..=SEALED_CIPHERTEXT_HEX_MAX).contains(&n) || n % 2 != 0 || !is_hex(&sealed.ciphertext) {
        return Err(Rejection::invalid(
            "sealed.ciphertext",
            format!("must be 32-{SEALED_CIPHERTEXT_HEX_MAX} lower-case hexadecimal digits, an even number"),
        ));
    }
    Ok(())
}

/// A non-empty list of at most `max` distinct, registered institutions of one kind.
pub(super) fn check_institutions(
    state: &State,
    field: &str,
    ids: &[InstitutionId],
    kind: InstitutionKind,
    max: usize,
) -> Result<(), Rejection> {
    if ids.is_empty() {
        return Err(Rejection::invalid(
            field,
            "must list at least one institution",
        ));
    }
    if ids.len() > max {
        return Err(Rejection::TooMany {
            field: field.into(),
            count: ids.len(),
            max,
        });
    }
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(Rejection::invalid(field, format!("{id} is listed twice")));
        }
        let idx = state
            .institution_idx(id)
            .ok_or_else(|| Rejection::UnknownInstitution {
                field: field.into(),
                id: id.to_string(),
            })?;
        if state.institution(idx).kind != kind {
            return Err(Rejection::WrongInstitutionKind {
                field: field.into(),
                id: id.to_string(),
                expected: format!("{kind:?}").to_lowercase(),
            });
        }
    }
    Ok(())
}
