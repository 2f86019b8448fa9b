//! Tokens from an OpenID Connect provider (Keycloak, or the identity system behind the
//! portal): RS256 and ES256 tokens checked against the provider's public keys (a JWKS file or
//! URL), its issuer, this server's audience and the expiry, with a clock-skew leeway; the
//! subject and the role read from claims named by configuration. [`Tokens`] is what the
//! server checks every bearer token with: HS256 tokens go to [`crate::http::auth::verify`],
//! RS256 and ES256 to the provider's keys.
//!
//! The keys are cached. A token naming a key the cache does not hold makes the cache refetch
//! (the provider rotated its keys), at most once per `oidc_jwks_refetch_s`; the cache is also
//! refetched when older than `oidc_jwks_max_age_s`, so that a withdrawn key stops counting.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Header, Validation};

use crate::config::{JwksSource, OidcConfig};
use crate::http::auth::{self, Claims, Role};
use crate::http::error::ApiError;

/// One usable public key of the provider.
#[derive(Clone)]
struct Key {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys as last read, by key id (`None`: a key without one).
struct Keys {
    by_id: HashMap<Option<String>, Key>,
    read_at: Instant,
}

/// Checks the provider's tokens; one per server.
pub struct OidcVerifier {
    config: OidcConfig,
    role_map: Vec<(String, Role)>,
    keys: RwLock<Option<Arc<Keys>>>,
    /// When the keys were last fetched or tried (serialises the fetches).
    fetching: tokio::sync::Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl OidcVerifier {
    /// A verifier; a JWKS file is read at once (an unreadable file is an error), a URL on
    /// first use ([`OidcVerifier::refresh`] fetches it ahead).
    pub fn new(config: OidcConfig) -> anyhow::Result<Self> {
        if let JwksSource::Url(url) = &config.jwks {
            if !url.starts_with("http://") {
                anyhow::bail!(
                    "oidc_jwks_url: {url:?} is not an http:// URL (this build has no TLS client: \
                     keep the provider's keys in oidc_jwks_file, refreshed by a timer, or reach \
                     the provider through a local http:// proxy)"
                );
            }
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let role_map = config
            .role_map
            .iter()
            .map(|(value, role)| {
                let role = Role::parse(role).ok_or_else(|| {
                    anyhow::anyhow!(
                        "oidc_role_map: {role:?} is not parent, officer, registrar, auditor or admin"
                    )
                })?;
                Ok((value.clone(), role))
            })
            .collect::<anyhow::Result<_>>()?;
        let verifier = Self {
            role_map,
            config,
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
            client,
        };
        if let JwksSource::File(path) = &verifier.config.jwks {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("oidc_jwks_file {}: {e}", path.display()))?;
            let keys = parse_jwks(&text)
                .map_err(|e| anyhow::anyhow!("oidc_jwks_file {}: {e}", path.display()))?;
            *verifier.keys.write().expect("keys lock") = Some(Arc::new(keys));
        }
        Ok(verifier)
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Reads the keys again now, unless they were read less than `refetch_min` ago (or
    /// `force`). Returns whether they were read.
    pub async fn refresh(&self, force: bool) -> bool {
        let requested = Instant::now();
        let mut last = self.fetching.lock().await;
        // Someone else read them while this call waited: they are as new as can be.
        if last.is_some_and(|at| at >= requested) {
            return true;
        }
        if !force && last.is_some_and(|at| at.elapsed() < self.config.refetch_min) {
            return false;
        }
        *last = Some(Instant::now());
        let read = match &self.config.jwks {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display())),
            JwksSource::Url(url) => self.fetch(url).await,
        };
        match read.and_then(|text| parse_jwks(&text)) {
            Ok(keys) => {
                metrics::counter!("ochered_oidc_jwks_reads_total", "outcome" => "ok").increment(1);
                tracing::info!(keys = keys.by_id.len(), "read the identity provider's keys");
                *self.keys.write().expect("keys lock") = Some(Arc::new(keys));
                true
            }
            Err(error) => {
                metrics::counter!("ochered_oidc_jwks_reads_total", "outcome" => "error")
                    .increment(1);
                tracing::warn!(%error, "could not read the identity provider's keys");
                false
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: {}", response.status()));
        }
        response.text().await.map_err(|e| format!("{url}: {e}"))
    }

    fn cached(&self) -> Option<Arc<Keys>> {
        self.keys.read().expect("keys lock").clone()
    }

    /// The key a token names, reading the keys again when it is unknown or they are old.
    async fn key_for(&self, header: &Header) -> Option<Key> {
        let kid = header.kid.clone();
        let find = |keys: &Keys| -> Option<Key> {
            match keys.by_id.get(&kid) {
                Some(key) => Some(key.clone()),
                // A token without a key id is checked against the provider's only key.
                None if kid.is_none() && keys.by_id.len() == 1 => {
                    keys.by_id.values().next().cloned()
                }
                None => None,
            }
        };
        let cached = self.cached();
        let fresh = cached
            .as_ref()
            .is_some_and(|keys| keys.read_at.elapsed() < self.config.max_age);
        if let Some(key) = cached.as_deref().filter(|_| fresh).and_then(find) {
            return Some(key);
        }
        self.refresh(!fresh && cached.is_some()).await;
        self.cached().as_deref().and_then(find)
    }

    /// Checks a token of the provider and reads its subject and role.
    pub async fn verify(&self, token: &str, header: &Header) -> Result<Claims, ApiError> {
        let invalid = || ApiError::unauthorized("the token is not valid");
        let key = self.key_for(header).await.ok_or_else(|| {
            ApiError::unauthorized(
                "the token is signed with a key the identity provider does not publish",
            )
        })?;
        if key.algorithm != header.alg {
            return Err(invalid());
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.config.leeway_s;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("the token has expired")
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    ApiError::unauthorized("the token is not valid yet")
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    ApiError::unauthorized("the token is from another issuer")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    ApiError::unauthorized("the token is meant for another audience")
                }
                _ => invalid(),
            })?
            .claims;
        let sub = claim(&claims, &self.config.subject_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty() && s.len() <= 128)
            .ok_or_else(|| {
                ApiError::unauthorized(format!(
                    "the token has no subject in its `{}` claim",
                    self.config.subject_claim
                ))
            })?;
        let role = self.role(&claims)?;
        Ok(Claims {
            sub: sub.to_owned(),
            role,
            exp: claims["exp"].as_i64().unwrap_or_default(),
            iat: claims["iat"].as_i64().unwrap_or_default(),
        })
    }

    /// The one role the token's role claim maps to.
    fn role(&self, claims: &serde_json::Value) -> Result<Role, ApiError> {
        let name = &self.config.role_claim;
        let values: Vec<&str> = match claim(claims, name) {
            Some(serde_json::Value::String(value)) => vec![value.as_str()],
            Some(serde_json::Value::Array(values)) => {
                values.iter().filter_map(|v| v.as_str()).collect()
            }
            _ => Vec::new(),
        };
        let mut roles: Vec<Role> = values
            .iter()
            .filter_map(|value| {
                self.role_map
                    .iter()
                    .find(|(provider, _)| provider == value)
                    .map(|(_, role)| *role)
                    .or_else(|| Role::parse(value))
            })
            .collect();
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        match roles.as_slice() {
            [role] => Ok(*role),
            [] => Err(ApiError::forbidden(format!(
                "the token's `{name}` claim names no role of this service"
            ))),
            _ => Err(ApiError::forbidden(format!(
                "the token's `{name}` claim names several roles of this service; give the account one"
            ))),
        }
    }
}

/// A claim by name, or by a dotted path into nested objects (`realm_access.roles`).
fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(claims, |value, part| value.get(part))
}

/// The signing keys of a JWKS: RSA keys (RS256) and P-256 keys (ES256); encryption keys,
/// other curves and symmetric keys are left out.
fn parse_jwks(text: &str) -> Result<Keys, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut by_id = HashMap::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let declared_elsewise = match jwk.common.key_algorithm {
            None => false,
            Some(KeyAlgorithm::RS256) => algorithm != Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => algorithm != Algorithm::ES256,
            Some(_) => true,
        };
        if declared_elsewise {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        by_id.insert(jwk.common.key_id.clone(), Key { algorithm, key });
    }
    if by_id.is_empty() {
        return Err("it holds no RS256 or ES256 signing key".into());
    }
    Ok(Keys {
        by_id,
        read_at: Instant::now(),
    })
}

/// How the server checks bearer tokens: HS256 with the shared secret, and RS256 or ES256
/// with the identity provider's keys when one is configured.
pub struct Tokens {
    /// None when a provider is configured and no secret is: the development secret is
    /// public, so its tokens are then refused.
    hs256: Option<Vec<u8>>,
    oidc: Option<OidcVerifier>,
}

impl Tokens {
    pub fn new(
        jwt_secret: &[u8],
        jwt_secret_is_default: bool,
        oidc: Option<OidcConfig>,
    ) -> anyhow::Result<Self> {
        let hs256 = (oidc.is_none() || !jwt_secret_is_default).then(|| jwt_secret.to_vec());
        Ok(Self {
            hs256,
            oidc: oidc.map(OidcVerifier::new).transpose()?,
        })
    }

    /// Only the shared secret (tests, tools).
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            hs256: Some(secret.to_vec()),
            oidc: None,
        }
    }

    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.oidc.as_ref()
    }

    /// Checks a bearer token by its algorithm.
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid = || ApiError::unauthorized("the token is not valid");
        let header = decode_header(token).map_err(|_| invalid())?;
        match (header.alg, &self.hs256, &self.oidc) {
            (Algorithm::HS256, Some(secret), _) => auth::verify(secret, token),
            (Algorithm::HS256, None, _) => Err(ApiError::unauthorized(
                "HS256 tokens are not accepted here: sign in with the identity provider",
            )),
            (Algorithm::RS256 | Algorithm::ES256, _, Some(oidc)) => {
                oidc.verify(token, &header).await
            }
            _ => Err(invalid()),
        }
    }
}
