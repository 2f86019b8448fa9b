//! Bearer tokens (JWT, HS256) carrying a role and a subject, and the rules of who may do what.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Parent,
    Officer,
    Registrar,
    Auditor,
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "parent" => Some(Role::Parent),
            "officer" => Some(Role::Officer),
            "registrar" => Some(Role::Registrar),
            "auditor" => Some(Role::Auditor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Parent => "parent",
            Role::Officer => "officer",
            Role::Registrar => "registrar",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
}

/// Mints a token valid for `ttl_hours`.
pub fn mint(secret: &[u8], role: Role, sub: &str, ttl_hours: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: sub.to_owned(),
        role,
        iat: now,
        exp: now + ttl_hours * 3600,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding cannot fail")
}

/// Signs any claims as an HS256 token, e.g. a malformed one for a test; [`mint`] makes
/// proper ones.
pub fn encode_claims(secret: &[u8], claims: &impl Serialize) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding cannot fail")
}

pub fn mint_from_args(args: &crate::config::TokenArgs) -> anyhow::Result<String> {
    let role = Role::parse(&args.role).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown role {:?}: use parent, officer, registrar, auditor or admin",
            args.role
        )
    })?;
    if args.sub.is_empty() || args.sub.len() > 128 {
        anyhow::bail!("--sub must be 1-128 bytes");
    }
    if args.ttl_hours < 1 {
        anyhow::bail!("--ttl-hours must be at least 1");
    }
    let secret = match (&args.jwt_secret, &args.jwt_secret_file) {
        (Some(secret), _) => secret.clone(),
        (None, Some(path)) => crate::config::read_secret_file(path, "--jwt-secret-file")?,
        (None, None) => crate::config::DEV_JWT_SECRET.to_owned(),
    };
    Ok(mint(secret.as_bytes(), role, &args.sub, args.ttl_hours))
}

/// A caller whose token a middleware already verified (the rate limiter does), kept in the
/// request's extensions so the token is checked once.
#[derive(Debug, Clone)]
pub struct Verified(pub Caller);

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub sub: String,
    pub role: Role,
}

impl Caller {
    /// Refuses unless the caller has one of the roles (admin always may).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this",
                self.role.as_str()
            )))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
    let token = header.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
    })?;
    Ok(token.trim())
}

/// Checks an HS256 token: the signature, `exp` (required, in the future, 5 s leeway), `nbf`
/// (if present, not in the future, the same leeway) and `sub` (required, 1-128 bytes). A
/// token without `exp` or with an empty subject never passes.
pub fn verify(secret: &[u8], token: &str) -> Result<Claims, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                ApiError::unauthorized("the token has expired")
            }
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                ApiError::unauthorized("the token is not valid yet (nbf)")
            }
            _ => ApiError::unauthorized("the token is not valid"),
        })?;
    if claims.sub.is_empty() || claims.sub.len() > 128 {
        return Err(ApiError::unauthorized(
            "the token's subject must be 1-128 bytes",
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_expire() {
        let token = mint(b"s", Role::Officer, "o-1", 1);
        let claims = verify(b"s", &token).unwrap();
        assert_eq!((claims.role, claims.sub.as_str()), (Role::Officer, "o-1"));
        assert_eq!(verify(b"other", &token).unwrap_err().status.as_u16(), 401);
        let expired = mint(b"s", Role::Parent, "p", -1);
        let error = verify(b"s", &expired).unwrap_err();
        assert!(error.detail.contains("expired"));
    }

    #[test]
    fn exp_is_required_and_enforced() {
        #[derive(Serialize)]
        struct NoExp<'a> {
            sub: &'a str,
            role: Role,
            iat: i64,
        }
        let now = chrono::Utc::now().timestamp();
        let key = EncodingKey::from_secret(b"s");
        let header = Header::new(Algorithm::HS256);
        let without = encode(
            &header,
            &NoExp {
                sub: "p",
                role: Role::Parent,
                iat: now,
            },
            &key,
        )
        .unwrap();
        let error = verify(b"s", &without).unwrap_err();
        assert_eq!(error.status.as_u16(), 401);
        // Expired beyond the 5 s leeway, and a string where a number belongs.
        let old = Claims {
            sub: "p".into(),
            role: Role::Parent,
            iat: now - 100,
            exp: now - 60,
        };
        assert!(verify(b"s", &encode(&header, &old, &key).unwrap())
            .unwrap_err()
            .detail
            .contains("expired"));
        let text_exp =
            serde_json::json!({"sub": "p", "role": "parent", "iat": now, "exp": "never"});
        assert_eq!(
            verify(b"s", &encode(&header, &text_exp, &key).unwrap())
                .unwrap_err()
                .status
                .as_u16(),
            401
        );
        // Another algorithm is refused even with the right secret.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                exp: now + 60,
                ..old
            },
            &key,
        )
        .unwrap();
        assert_eq!(verify(b"s", &hs512).unwrap_err().status.as_u16(), 401);
    }
}
