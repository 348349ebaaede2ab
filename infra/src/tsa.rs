//! An RFC 3161 time-stamping client: asks a time-stamping authority (TSA) for a signed token over
//! a SHA-256 digest, so a third party attests *when* a checkpoint existed.
//!
//! The request is built here in DER (a `TimeStampReq`, version 1, SHA-256 message imprint, a
//! random nonce, `certReq` true so the token carries the TSA's certificate); the answer's
//! `PKIStatusInfo` is read to tell granted from refused, and the whole `TimeStampResp` is kept as
//! it came. Checking the token's signature and chain is the verifier's job (`openssl ts -verify`
//! with the TSA's CA certificate, see docs/runbooks/audit.md); nothing here trusts it.

use std::time::Duration;

use thiserror::Error;

/// Why a time stamp was not obtained.
#[derive(Debug, Error)]
pub enum TsaError {
    /// The TSA could not be reached or answered badly; retry later.
    #[error("time-stamping authority unavailable: {0}")]
    Unavailable(String),
    /// The TSA answered and refused (its PKIStatus), or the answer is not a time-stamp response.
    #[error("time-stamping authority refused: {0}")]
    Refused(String),
}

/// Largest answer read (a token with a certificate is a few KiB).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// `id-sha256` (2.16.840.1.101.3.4.2.1).
const SHA256_OID: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|byte| *byte == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_integer(value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|byte| *byte == 0)
        .collect();
    if bytes.first().is_none_or(|byte| byte & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

/// The DER `TimeStampReq` for a SHA-256 `digest` with `nonce`.
pub fn request(digest: &[u8; 32], nonce: u64) -> Vec<u8> {
    let algorithm = tlv(0x30, &[tlv(0x06, &SHA256_OID), vec![0x05, 0x00]].concat());
    let imprint = tlv(0x30, &[algorithm, tlv(0x04, digest)].concat());
    let body = [
        der_integer(1),
        imprint,
        der_integer(nonce),
        vec![0x01, 0x01, 0xff],
    ]
    .concat();
    tlv(0x30, &body)
}

/// Reads one DER element: (tag, content, rest).
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Checks a DER `TimeStampResp`: status granted (0) or granted with modifications (1), and a
/// token present.
pub fn check_response(response: &[u8]) -> Result<(), TsaError> {
    let refused = |why: &str| TsaError::Refused(why.to_owned());
    let (tag, body, _) = element(response).ok_or_else(|| refused("answer is not DER"))?;
    if tag != 0x30 {
        return Err(refused("answer is not a TimeStampResp"));
    }
    let (tag, status_info, token) =
        element(body).ok_or_else(|| refused("answer has no PKIStatusInfo"))?;
    let (int_tag, status, _) =
        element(status_info).ok_or_else(|| refused("PKIStatusInfo is empty"))?;
    if tag != 0x30 || int_tag != 0x02 || status.is_empty() || status.len() > 2 {
        return Err(refused("malformed PKIStatusInfo"));
    }
    let status = status
        .iter()
        .fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte));
    if status > 1 {
        return Err(TsaError::Refused(format!("PKIStatus {status}")));
    }
    if token.is_empty() {
        return Err(refused("granted without a token"));
    }
    Ok(())
}

/// A TSA at one URL.
#[derive(Debug, Clone)]
pub struct TsaClient {
    url: String,
    http: reqwest012::Client,
}

impl TsaClient {
    /// A client for `url` (`http://` or `https://`), each request bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, TsaError> {
        let http = reqwest012::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| TsaError::Unavailable(format!("http client: {error}")))?;
        Ok(TsaClient {
            url: url.to_owned(),
            http,
        })
    }

    /// The TSA's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks for a token over `digest`; returns the DER `TimeStampResp`.
    pub async fn stamp(&self, digest: &[u8; 32], nonce: u64) -> Result<Vec<u8>, TsaError> {
        let answer = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/timestamp-query")
            .body(request(digest, nonce))
            .send()
            .await
            .map_err(|error| TsaError::Unavailable(error.to_string()))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(TsaError::Unavailable(format!("HTTP {status}")));
        }
        let bytes = answer
            .bytes()
            .await
            .map_err(|error| TsaError::Unavailable(error.to_string()))?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(TsaError::Refused(format!(
                "answer of {} bytes is over {MAX_RESPONSE_BYTES}",
                bytes.len()
            )));
        }
        check_response(&bytes)?;
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_expected_der() {
        let request = request(&[0xab; 32], 0x0102);
        // SEQUENCE { INTEGER 1, SEQUENCE { SEQUENCE { OID sha256, NULL }, OCTET STRING (32) },
        //            INTEGER 0x0102, BOOLEAN TRUE }
        let expected_head = [
            0x30, 0x3d, 0x02, 0x01, 0x01, 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09,
        ];
        assert_eq!(&request[..expected_head.len()], &expected_head);
        assert_eq!(
            &request[request.len() - 7..],
            &[0x02, 0x02, 0x01, 0x02, 0x01, 0x01, 0xff]
        );
        assert_eq!(der_integer(0x80), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_integer(0), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn responses_are_judged_by_their_status() {
        let granted = tlv(
            0x30,
            &[tlv(0x30, &der_integer(0)), tlv(0x30, b"token")].concat(),
        );
        assert!(check_response(&granted).is_ok());
        let refused = tlv(0x30, &tlv(0x30, &der_integer(2)));
        assert!(matches!(
            check_response(&refused),
            Err(TsaError::Refused(_))
        ));
        let no_token = tlv(0x30, &tlv(0x30, &der_integer(0)));
        assert!(check_response(&no_token).is_err());
        assert!(check_response(b"garbage").is_err());
        assert!(check_response(&[]).is_err());
    }
}
