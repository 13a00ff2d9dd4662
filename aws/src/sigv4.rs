//! AWS Signature Version 4 for one request, pure (the host supplies the time).
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>
//!
//! Bedrock requests are signed over `content-type`, `host` and `x-amz-date` (and
//! `x-amz-security-token` with temporary credentials) and the SHA-256 of the body.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Credentials as configured: `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`.
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// Splits a provider key; `None` when it is not an access key pair (a bearer API key).
    pub fn parse(secret: &'a str) -> Option<Credentials<'a>> {
        let mut parts = secret.splitn(3, ':');
        let access_key_id = parts.next().filter(|s| !s.is_empty())?;
        let secret_access_key = parts.next().filter(|s| !s.is_empty())?;
        Some(Credentials {
            access_key_id,
            secret_access_key,
            session_token: parts.next().filter(|s| !s.is_empty()),
        })
    }
}

/// What is signed: the request as it will reach AWS.
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// The path exactly as sent (each segment already percent-encoded once), without a query.
    pub path: &'a str,
    /// Canonical query string (empty for Bedrock's runtime APIs).
    pub query: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// The headers to send: `authorization`, `x-amz-date`, and `x-amz-security-token` if any.
pub struct Signed {
    pub authorization: String,
    pub amz_date: String,
    pub security_token: Option<String>,
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `YYYYMMDDTHHMMSSZ` for Unix seconds (UTC).
pub fn amz_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// URI-encodes each segment of an already-encoded path again, as SigV4 wants for every service
/// but S3.
fn canonical_uri(path: &str, out: &mut String) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Signs `req` for `service` in `region` at `amz_date` (from [`amz_date`]).
pub fn sign(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Signed {
    let date = &amz_date[..8.min(amz_date.len())];
    let body_hash = hex::encode(Sha256::digest(req.body));
    let mut canonical = String::with_capacity(256 + req.path.len());
    canonical.push_str(req.method);
    canonical.push('\n');
    canonical_uri(req.path, &mut canonical);
    canonical.push('\n');
    canonical.push_str(req.query);
    canonical.push('\n');
    let mut signed_headers = String::from("host;x-amz-date");
    if !req.content_type.is_empty() {
        let _ = writeln!(canonical, "content-type:{}", req.content_type.trim());
        signed_headers.insert_str(0, "content-type;");
    }
    let _ = write!(
        canonical,
        "host:{}\nx-amz-date:{amz_date}\n",
        req.host.trim()
    );
    if let Some(token) = creds.session_token {
        let _ = writeln!(canonical, "x-amz-security-token:{token}");
        signed_headers.push_str(";x-amz-security-token");
    }
    let _ = write!(canonical, "\n{signed_headers}\n{body_hash}");

    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = String::with_capacity(4 + creds.secret_access_key.len());
    key.push_str("AWS4");
    key.push_str(creds.secret_access_key);
    let k_date = hmac(key.as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
        amz_date: amz_date.to_owned(),
        security_token: creds.session_token.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: Credentials<'static> = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };

    /// AWS's SigV4 test suite, case `get-vanilla`.
    #[test]
    fn the_aws_test_suite_vanilla_case_signs_as_published() {
        let req = Request {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            query: "",
            content_type: "",
            body: b"",
        };
        let signed = sign(&req, &EXAMPLE, "us-east-1", "service", "20150830T123600Z");
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_798_761_599), "20261231T235959Z");
    }

    #[test]
    fn paths_are_encoded_again_and_credentials_parsed() {
        let mut out = String::new();
        canonical_uri("/model/us.anthropic.claude%3A0/converse", &mut out);
        assert_eq!(out, "/model/us.anthropic.claude%253A0/converse");
        let c = Credentials::parse("AKID:secret:token").expect("pair");
        assert_eq!(
            (c.access_key_id, c.secret_access_key, c.session_token),
            ("AKID", "secret", Some("token"))
        );
        assert!(Credentials::parse("bedrock-api-key-without-colon").is_none());
    }
}
