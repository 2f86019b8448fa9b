//! Tokens of an OpenID Connect provider: RS256 and ES256 tokens checked against a JWKS (a
//! file, or a URL whose keys rotate), with the issuer, the audience and the expiry (with its
//! leeway) enforced, and the subject and role read from configured claims. The keys, the
//! JWKS and the provider's endpoint are made here.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ochered_api::config::{JwksSource, OidcConfig, ServeArgs, ServerConfig};
use ochered_api::http::auth::Role;
use ochered_api::http::oidc::Tokens;
use serde_json::{json, Value};

const ISSUER: &str = "https://id.example/realms/city";
const AUDIENCE: &str = "ochered";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of the provider, with its public half as a JWK.
struct ProviderKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl ProviderKey {
    fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        Self {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
            }),
        }
    }

    fn ec(kid: &str) -> Self {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::SecretKey::random(&mut rand_core::OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let point = key.public_key().to_encoded_point(false);
        Self {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": kid,
                "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()),
            }),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&ProviderKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims a provider puts in a parent's or an officer's token (Keycloak's shape).
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 300,
        "preferred_username": format!("user-{sub}"),
        "realm_access": { "roles": roles },
    })
}

fn config(jwks: JwksSource) -> OidcConfig {
    OidcConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks,
        refetch_min: Duration::from_secs(60),
        max_age: Duration::from_secs(3600),
        leeway_s: 60,
        subject_claim: "sub".into(),
        role_claim: "realm_access.roles".into(),
        role_map: vec![("school-officer".into(), "officer".into())],
    }
}

fn file_tokens(dir: &Path, keys: &[&ProviderKey], secret: Option<&[u8]>) -> Tokens {
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks(keys)).unwrap();
    Tokens::new(
        secret.unwrap_or(b"development"),
        secret.is_none(),
        Some(config(JwksSource::File(path))),
    )
    .unwrap()
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_accepted_with_the_configured_claims() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ec) = (ProviderKey::rsa("r1"), ProviderKey::ec("e1"));
    let tokens = file_tokens(dir.path(), &[&rsa, &ec], None);

    // A role named as itself, and a provider role mapped to one; unrelated roles ignored.
    let parent = rsa.sign(&claims("p-1", &["offline_access", "parent"]));
    let claims_of = tokens.verify(&parent).await.unwrap();
    assert_eq!(
        (claims_of.sub.as_str(), claims_of.role),
        ("p-1", Role::Parent)
    );
    let officer = ec.sign(&claims("o-1", &["school-officer", "uma_authorization"]));
    let claims_of = tokens.verify(&officer).await.unwrap();
    assert_eq!(
        (claims_of.sub.as_str(), claims_of.role),
        ("o-1", Role::Officer)
    );

    // The subject from another claim, by configuration.
    let path = dir.path().join("jwks.json");
    let mut by_name = config(JwksSource::File(path));
    by_name.subject_claim = "preferred_username".into();
    let tokens_by_name = Tokens::new(b"development", true, Some(by_name)).unwrap();
    assert_eq!(
        tokens_by_name.verify(&parent).await.unwrap().sub,
        "user-p-1"
    );

    // No role of this service, or two of them: refused (403), naming the claim.
    for roles in [&["offline_access"][..], &["parent", "admin"][..]] {
        let error = tokens
            .verify(&rsa.sign(&claims("x", roles)))
            .await
            .unwrap_err();
        assert_eq!(error.status.as_u16(), 403, "{roles:?}");
        assert!(
            error.detail.contains("realm_access.roles"),
            "{}",
            error.detail
        );
    }
    // No subject: refused.
    let mut no_sub = claims("x", &["parent"]);
    no_sub["sub"] = json!("");
    let error = tokens.verify(&rsa.sign(&no_sub)).await.unwrap_err();
    assert_eq!(error.status.as_u16(), 401);
}

#[tokio::test]
async fn wrong_issuer_audience_key_and_time_are_refused_with_the_leeway_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let key = ProviderKey::rsa("r1");
    let tokens = file_tokens(dir.path(), &[&key], None);
    let refused = |claims: Value| {
        let token = key.sign(&claims);
        let tokens = &tokens;
        async move { tokens.verify(&token).await.unwrap_err() }
    };

    let mut other_issuer = claims("p-1", &["parent"]);
    other_issuer["iss"] = json!("https://id.example/realms/elsewhere");
    let error = refused(other_issuer).await;
    assert_eq!(error.status.as_u16(), 401);
    assert!(error.detail.contains("issuer"), "{}", error.detail);

    let mut other_audience = claims("p-1", &["parent"]);
    other_audience["aud"] = json!("another-client");
    assert!(refused(other_audience).await.detail.contains("audience"));

    // Expired 30 s ago: within the 60 s leeway. 120 s ago: refused. Not valid for 120 s more:
    // refused; for 30 s more: accepted (the clocks may differ that much).
    let mut late = claims("p-1", &["parent"]);
    late["exp"] = json!(now() - 30);
    tokens.verify(&key.sign(&late)).await.unwrap();
    late["exp"] = json!(now() - 120);
    assert!(refused(late).await.detail.contains("expired"));
    let mut early = claims("p-1", &["parent"]);
    early["nbf"] = json!(now() + 30);
    tokens.verify(&key.sign(&early)).await.unwrap();
    early["nbf"] = json!(now() + 120);
    assert!(refused(early).await.detail.contains("not valid yet"));
    let mut no_exp = claims("p-1", &["parent"]);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(refused(no_exp).await.status.as_u16(), 401);

    // A key the provider does not publish, even with a published key's id.
    let impostor = ProviderKey::rsa("r1");
    let error = tokens
        .verify(&impostor.sign(&claims("p-1", &["parent"])))
        .await
        .unwrap_err();
    assert_eq!(error.status.as_u16(), 401);
    // A token naming the provider's key with another algorithm (HS256 with the public key
    // as the secret is the classic confusion) is not checked with that key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("r1".into());
    let confused = encode(
        &header,
        &claims("p-1", &["admin"]),
        &EncodingKey::from_secret(key.jwk.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        tokens.verify(&confused).await.unwrap_err().status.as_u16(),
        401
    );
}

#[tokio::test]
async fn hs256_stays_for_development_and_is_refused_beside_a_provider_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = ProviderKey::ec("e1");
    let hs256 = ochered_api::http::auth::mint(b"configured", Role::Officer, "o-9", 1);
    let dev = ochered_api::http::auth::mint(b"development", Role::Admin, "a-9", 1);

    // HS256 only (no provider): as before; provider tokens are not accepted.
    let plain = Tokens::hs256(b"configured");
    assert_eq!(plain.verify(&hs256).await.unwrap().sub, "o-9");
    let provider_token = key.sign(&claims("p-1", &["parent"]));
    assert_eq!(
        plain
            .verify(&provider_token)
            .await
            .unwrap_err()
            .status
            .as_u16(),
        401
    );

    // A provider and a configured secret: both kinds.
    let both = file_tokens(dir.path(), &[&key], Some(b"configured"));
    assert_eq!(both.verify(&hs256).await.unwrap().sub, "o-9");
    assert_eq!(both.verify(&provider_token).await.unwrap().sub, "p-1");
    // A provider and only the public development secret: its tokens are refused.
    let provider_only = file_tokens(dir.path(), &[&key], None);
    let error = provider_only.verify(&dev).await.unwrap_err();
    assert!(
        error.detail.contains("identity provider"),
        "{}",
        error.detail
    );
}

/// A stand-in for the provider's JWKS endpoint whose keys can be swapped; counts fetches.
struct Provider {
    url: String,
    jwks: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn provider(initial: String) -> Provider {
    let jwks = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (jwks.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = served.lock().unwrap().clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Provider { url, jwks, fetches }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_unknown_keys_refetch_at_most_once_per_interval() {
    let (old, new, unknown) = (
        ProviderKey::rsa("2026-11"),
        ProviderKey::ec("2026-12"),
        ProviderKey::ec("forged"),
    );
    // Signed ahead: signing is slow in a debug build on a busy machine, and the interval
    // below must not pass while the test signs.
    let old_token = old.sign(&claims("p-1", &["parent"]));
    let new_token = new.sign(&claims("o-1", &["officer"]));
    let forged = unknown.sign(&claims("x", &["admin"]));
    const INTERVAL: Duration = Duration::from_secs(2);
    let provider = provider(jwks(&[&old])).await;
    let mut settings = config(JwksSource::Url(provider.url.clone()));
    settings.refetch_min = INTERVAL;
    let tokens = Tokens::new(b"development", true, Some(settings)).unwrap();
    let fetches = || provider.fetches.load(Ordering::SeqCst);

    // First use fetches the keys; later tokens use the cache.
    for _ in 0..3 {
        tokens.verify(&old_token).await.unwrap();
    }
    assert_eq!(fetches(), 1);

    // The provider rotates: the new key is published, the old withdrawn. A token signed
    // with the new key makes the server fetch again (once the interval has passed).
    tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
    *provider.jwks.lock().unwrap() = jwks(&[&new]);
    let claims_of = tokens.verify(&new_token).await.unwrap();
    assert_eq!(claims_of.role, Role::Officer);
    assert_eq!(fetches(), 2);
    // The old key is gone from the cache with the fetch.
    assert_eq!(
        tokens.verify(&old_token).await.unwrap_err().status.as_u16(),
        401
    );

    // A flood of tokens naming unknown keys does not hammer the provider: within the
    // interval, no fetch; after it, one.
    for _ in 0..20 {
        let error = tokens.verify(&forged).await.unwrap_err();
        assert_eq!(error.status.as_u16(), 401);
    }
    assert_eq!(fetches(), 2);
    tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
    for _ in 0..5 {
        assert!(tokens.verify(&forged).await.is_err());
    }
    assert_eq!(fetches(), 3);
    // The new key still works throughout.
    tokens.verify(&new_token).await.unwrap();
}

#[test]
fn the_provider_is_configured_by_settings_and_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = ProviderKey::ec("e1");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&key])).unwrap();
    let toml = dir.path().join("c.toml");
    std::fs::write(
        &toml,
        format!(
            "oidc_issuer = \"{ISSUER}\"\noidc_audience = \"{AUDIENCE}\"\noidc_jwks_file = \"{}\"\noidc_role_claim = \"realm_access.roles\"\noidc_role_map = [\"school-officer=officer\"]\n",
            path.display()
        ),
    )
    .unwrap();
    let args = ServeArgs::from_flags(["--config", toml.to_str().unwrap(), "--oidc-leeway-s", "5"]);
    let config = ServerConfig::resolve(args.unwrap()).unwrap();
    let oidc = config.oidc.unwrap();
    assert_eq!(oidc.jwks, JwksSource::File(path.clone()));
    assert_eq!(
        (oidc.leeway_s, oidc.role_claim.as_str()),
        (5, "realm_access.roles")
    );
    assert_eq!(
        oidc.role_map,
        [("school-officer".to_owned(), "officer".to_owned())]
    );
    assert_eq!(oidc.refetch_min, Duration::from_secs(60));

    let refused = |flags: &[&str]| {
        let error = ServerConfig::resolve(ServeArgs::from_flags(flags).unwrap())
            .map(|c| Tokens::new(&c.jwt_secret, c.jwt_secret_is_default, c.oidc))
            .and_then(|t| t.map(|_| ()))
            .unwrap_err();
        format!("{error:#}")
    };
    let file = path.to_str().unwrap();
    assert!(
        refused(&["--oidc-issuer", ISSUER, "--oidc-jwks-file", file]).contains("oidc_audience")
    );
    assert!(refused(&["--oidc-audience", AUDIENCE]).contains("oidc_issuer"));
    assert!(refused(&["--oidc-issuer", ISSUER, "--oidc-audience", AUDIENCE]).contains("oidc_jwks"));
    let https = [
        "--oidc-issuer",
        ISSUER,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-jwks-url",
        "https://id.example/certs",
    ];
    assert!(refused(&https).contains("http://"));
    let missing = [
        "--oidc-issuer",
        ISSUER,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-jwks-file",
        "/nonexistent/jwks.json",
    ];
    assert!(refused(&missing).contains("oidc_jwks_file"));
    let bad_role = [
        "--oidc-issuer",
        ISSUER,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-jwks-file",
        file,
        "--oidc-role-map",
        "x=mayor",
    ];
    assert!(refused(&bad_role).contains("mayor"));
}

#[tokio::test]
async fn the_server_lets_a_provider_token_through_and_stops_a_wrong_issuer_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = ProviderKey::rsa("r1");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&key])).unwrap();
    let database = format!("sqlite://{}", dir.path().join("q.db").display());
    let mut config = ServerConfig::resolve(
        ServeArgs::from_flags([
            "--listen",
            "127.0.0.1:0",
            "--no-demo",
            "--database-url",
            &database,
            "--oidc-issuer",
            ISSUER,
            "--oidc-audience",
            AUDIENCE,
            "--oidc-jwks-file",
            path.to_str().unwrap(),
            "--oidc-role-claim",
            "realm_access.roles",
        ])
        .unwrap(),
    )
    .unwrap();
    config.data_key = Some(ochered_writer::privacy::MasterKey::from_bytes([3; 32]));
    let server = ochered_api::spawn(config).await.unwrap();
    let client = reqwest::Client::new();
    let create = |token: String| {
        client
            .post(format!("http://{}/api/v1/authorities", server.addr))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    // An admin of the provider reaches the handler, which checks the body (422 or 400).
    let admin = create(key.sign(&claims("a-1", &["admin"]))).await.unwrap();
    assert!(
        matches!(admin.status().as_u16(), 400 | 422),
        "{}",
        admin.status()
    );
    // The same token from another issuer is stopped at the door.
    let mut elsewhere = claims("a-1", &["admin"]);
    elsewhere["iss"] = json!("https://evil.example");
    let stopped = create(key.sign(&elsewhere)).await.unwrap();
    assert_eq!(stopped.status().as_u16(), 401);
    let body: Value = serde_json::from_str(&stopped.text().await.unwrap()).unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("issuer"),
        "{body}"
    );
    // The public development secret does not open it beside a provider.
    let dev = ochered_api::http::auth::mint(
        ochered_api::config::DEV_JWT_SECRET.as_bytes(),
        Role::Admin,
        "a-2",
        1,
    );
    assert_eq!(create(dev).await.unwrap().status().as_u16(), 401);
    server.stop().await;
}
