//! Signatures a receiver checks: HMAC-SHA256, keyed with the webhook's
//! secret, of `<timestamp>.<body>`, the timestamp being the
//! `X-Daas-Timestamp` header (Unix seconds). Signing the time with the body
//! lets a receiver refuse a replay of an old delivery, as Stripe's and
//! Slack's signatures do.

use std::fmt;

use ring::hmac;

/// The HMAC key of one webhook. `Debug` never shows it.
#[derive(Clone)]
pub struct Signer(hmac::Key);

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        Signer(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The `X-Daas-Signature` header of `body` sent at `timestamp`:
    /// `sha256=<hex>`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("sha256={}", hex::encode(context.sign()))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HMAC-SHA256(********)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_test_case_2() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_timestamp_and_the_body_are_signed_together() {
        // Python: hmac.new(b"whsec-test", b'1700000000.{"event":"READY"}', "sha256").hexdigest()
        let signer = Signer::new(b"whsec-test");
        assert_eq!(
            signer.sign(1_700_000_000, br#"{"event":"READY"}"#),
            "sha256=0afe65747afed0bcb0e584051c1ba20cc1e238e74d49a2d4ef99c1239b8ea04c"
        );
        assert_ne!(
            signer.sign(1_700_000_001, br#"{"event":"READY"}"#),
            signer.sign(1_700_000_000, br#"{"event":"READY"}"#),
            "another time, another signature"
        );
        assert_eq!(format!("{signer:?}"), "HMAC-SHA256(********)");
    }
}
