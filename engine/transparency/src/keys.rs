//! The server's Ed25519 key as text: the same files as the chain checkpoints use.
//!
//! - Secret key: the 32-byte Ed25519 seed as 64 lower-case hex characters and a newline
//!   (written with mode 0600).
//! - Public key: the 32-byte public key as 64 lower-case hex characters and a newline; this is
//!   also what the server publishes at its well-known path.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::VerifyError;

/// A new random signing key from the operating system's generator.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// The text of a secret key file.
pub fn secret_key_text(key: &SigningKey) -> String {
    format!("{}\n", hex::encode(key.to_bytes()))
}

/// The text of a public key file.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{}\n", hex::encode(key.to_bytes()))
}

fn key_bytes(text: &str, what: &str) -> Result<[u8; 32], VerifyError> {
    let bytes =
        hex::decode(text.trim()).map_err(|_| VerifyError::Key(format!("the {what} is not hex")))?;
    bytes
        .try_into()
        .map_err(|_| VerifyError::Key(format!("the {what} must be 32 bytes (64 hex characters)")))
}

/// Parses a secret key file's text.
pub fn parse_secret_key(text: &str) -> Result<SigningKey, VerifyError> {
    Ok(SigningKey::from_bytes(&key_bytes(text, "secret key")?))
}

/// Parses a public key file's text.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, VerifyError> {
    VerifyingKey::from_bytes(&key_bytes(text, "public key")?)
        .map_err(|_| VerifyError::Key("the public key is not a valid Ed25519 point".into()))
}

/// Writes a new key pair; refuses to overwrite an existing file. The secret key file is
/// readable by its owner only.
pub fn write_key_pair(secret: &Path, public: &Path) -> Result<VerifyingKey, std::io::Error> {
    use std::io::Write;
    let key = generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(secret)?;
    file.write_all(secret_key_text(&key).as_bytes())?;
    file.sync_all()?;
    let verifying = key.verifying_key();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(public)?;
    file.write_all(public_key_text(&verifying).as_bytes())?;
    file.sync_all()?;
    Ok(verifying)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_and_bad_text_is_refused() {
        let key = generate_key();
        let again = parse_secret_key(&secret_key_text(&key)).unwrap();
        assert_eq!(again.to_bytes(), key.to_bytes());
        let public = parse_public_key(&public_key_text(&key.verifying_key())).unwrap();
        assert_eq!(public, key.verifying_key());
        assert!(parse_secret_key("zz").is_err());
        assert!(parse_public_key(&"ab".repeat(31)).is_err());
    }
}
