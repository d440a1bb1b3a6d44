//! Signed single-object upload URLs: HMAC-SHA256 over bucket, key, expiry and the byte
//! limit, so that the holder of a URL can change none of them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs and checks upload URLs.
#[derive(Clone)]
pub struct UploadSigner {
    key: Vec<u8>,
}

/// Why an upload URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadUrlError {
    Expired,
    BadSignature,
}

impl UploadSigner {
    /// A signer whose key is derived from `secret` (the server's token secret).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"atelier upload urls");
        UploadSigner {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, bucket: &str, key: &str, expires: i64, max_bytes: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(format!("{bucket}\n{key}\n{expires}\n{max_bytes}").as_bytes());
        mac
    }

    /// The signature (URL-safe base64) for these parameters.
    pub fn sign(&self, bucket: &str, key: &str, expires: i64, max_bytes: u64) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            self.mac(bucket, key, expires, max_bytes)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a signature (in constant time) and the expiry (unix seconds).
    pub fn verify(
        &self,
        bucket: &str,
        key: &str,
        expires: i64,
        max_bytes: u64,
        signature: &str,
        now_secs: i64,
    ) -> Result<(), UploadUrlError> {
        use base64::Engine;
        let sent = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| UploadUrlError::BadSignature)?;
        self.mac(bucket, key, expires, max_bytes)
            .verify_slice(&sent)
            .map_err(|_| UploadUrlError::BadSignature)?;
        if now_secs > expires {
            return Err(UploadUrlError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_cannot_be_altered_or_used_late() {
        let signer = UploadSigner::new(b"secret");
        let sig = signer.sign("temp", "a/b.png", 1000, 10);
        assert_eq!(
            signer.verify("temp", "a/b.png", 1000, 10, &sig, 999),
            Ok(())
        );
        assert_eq!(
            signer.verify("temp", "a/b.png", 1000, 10, &sig, 1001),
            Err(UploadUrlError::Expired)
        );
        for (bucket, key, expires, max) in [
            ("uploads", "a/b.png", 1000, 10),
            ("temp", "a/c.png", 1000, 10),
            ("temp", "a/b.png", 2000, 10),
            ("temp", "a/b.png", 1000, 11),
        ] {
            assert_eq!(
                signer.verify(bucket, key, expires, max, &sig, 0),
                Err(UploadUrlError::BadSignature)
            );
        }
        let other = UploadSigner::new(b"other");
        assert_eq!(
            other.verify("temp", "a/b.png", 1000, 10, &sig, 0),
            Err(UploadUrlError::BadSignature)
        );
    }
}
