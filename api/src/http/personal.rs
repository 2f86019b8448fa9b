//! Personal data of submissions: sealed (encrypted under a key of the applicant's own) before
//! the command reaches the engine, so the log holds only ciphertext.

use ochered_core::command::{Command, Sealed, SEALED_NONCE_HEX};
use ochered_core::domain::PersonKey;
use ochered_core::RejectionKind;
use ochered_writer::privacy::{NewKey, PrivacyError};
use ochered_writer::Writer;

use crate::http::error::ApiError;
use crate::state::AppState;
use crate::wire::ContactView;

/// A failure of the data keys' store: 503 when it does not answer, else an opaque 500.
pub fn privacy_error(error: PrivacyError) -> ApiError {
    if error.is_unavailable() {
        ApiError::unavailable("the store is unavailable; retry shortly")
    } else {
        tracing::error!(%error, "personal data");
        ApiError::internal()
    }
}

/// Seals a submission's personal data into its command (`command(sealed)`), and gives the
/// new data key that must be stored with the command's events when the applicant has none
/// yet ([`Privacy::seal_for_event`](ochered_writer::privacy::Privacy::seal_for_event); send
/// both with [`crate::http::command::Write::send_with_key`]). Bad input is refused before
/// anything is made: the rules are asked first, against the current state; the writer then
/// decides again, authoritatively (a rejected command stores neither its data nor its key).
pub async fn with_sealed(
    state: &AppState,
    w: &Writer,
    child: &PersonKey,
    contact: Option<ContactView>,
    command: impl Fn(Option<Sealed>) -> Command,
) -> Result<(Command, Option<NewKey>), ApiError> {
    let Some(contact) = contact else {
        return Ok((command(None), None));
    };
    let placeholder = Sealed {
        nonce: "0".repeat(SEALED_NONCE_HEX),
        ciphertext: "0".repeat(32),
    };
    let check = command(Some(placeholder));
    if let Some(Err(rejection)) = w.check([&check]).pop() {
        if rejection.kind() == RejectionKind::Invalid {
            return Err(ApiError::from_rejection(&rejection));
        }
    }
    let plaintext = serde_json::to_vec(&contact).map_err(|_| ApiError::internal())?;
    let (sealed, new_key) = state
        .privacy
        .seal_for_event(w.authority(), child, &plaintext)
        .await
        .map_err(privacy_error)?;
    Ok((command(Some(sealed)), new_key))
}

/// The contact sealed with an application, opened: none when none was given, after erasure
/// (`erased`), or when the person's key is gone. Only for callers who may see it (the
/// submitter and officers); auditors never reach this.
pub async fn open_contact(
    state: &AppState,
    authority: &str,
    child: &PersonKey,
    sealed: Option<&Sealed>,
    erased: bool,
) -> Result<Option<ContactView>, ApiError> {
    match sealed {
        Some(sealed) if !erased => Ok(state
            .privacy
            .open(authority, child, sealed)
            .await
            .map_err(privacy_error)?
            .and_then(|bytes| serde_json::from_slice::<ContactView>(&bytes).ok())),
        _ => Ok(None),
    }
}
