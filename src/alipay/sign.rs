//! RSA2 = SHA256withRSA (PKCS#1 v1.5) over Alipay's canonical string, base64.
//!
//! Canonical string: the parameters sorted by key (byte order), without `sign`, with
//! empty values left out, each as `key=value` (raw, not URL-encoded), joined by `&`.
//! A notify is verified without `sign_type` as well; a request Atelier signs keeps its
//! `sign_type=RSA2` in the signed string (Alipay's SDKs do both).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

/// Which parameters the canonical string leaves out besides empty values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A request to the gateway: only `sign`.
    Request,
    /// A notify or return from Alipay: `sign` and `sign_type`.
    Notify,
}

/// The string Alipay signs: sorted `k=v` pairs joined by `&`.
pub fn canonical(params: &[(String, String)], purpose: Purpose) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, v)| {
            !v.is_empty() && k != "sign" && !(purpose == Purpose::Notify && k == "sign_type")
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Strips PEM armour and whitespace: Alipay's console hands out bare base64 keys.
fn der_of(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// The merchant's private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
/// (`BEGIN RSA PRIVATE KEY`), PEM or bare base64.
pub fn private_key(text: &str) -> Result<RsaPrivateKey, String> {
    let der = der_of(text).ok_or("the private key is not PEM or base64")?;
    RsaPrivateKey::from_pkcs8_der(&der)
        .or_else(|_| RsaPrivateKey::from_pkcs1_der(&der))
        .map_err(|_| "the private key is not an RSA key (PKCS#8 or PKCS#1)".to_string())
}

/// Alipay's public key: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1, PEM or bare base64.
pub fn public_key(text: &str) -> Result<RsaPublicKey, String> {
    let der = der_of(text).ok_or("the public key is not PEM or base64")?;
    RsaPublicKey::from_public_key_der(&der)
        .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
        .map_err(|_| "the public key is not an RSA key (SPKI or PKCS#1)".to_string())
}

/// SHA256withRSA of `content`, base64.
pub fn sign(content: &str, key: &RsaPrivateKey) -> String {
    let signer = SigningKey::<Sha256>::new(key.clone());
    STANDARD.encode(signer.sign(content.as_bytes()).to_bytes())
}

/// Whether `signature` (base64) is a SHA256withRSA signature of `content`.
pub fn verify(content: &str, signature: &str, key: &RsaPublicKey) -> bool {
    let Ok(bytes) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(content.as_bytes(), &signature)
        .is_ok()
}

/// Verifies a notify's form parameters (sign over the canonical string without
/// `sign` and `sign_type`; `sign_type` must be RSA2).
pub fn verify_notify(params: &[(String, String)], key: &RsaPublicKey) -> Result<(), &'static str> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let signature = get("sign").ok_or("no sign")?;
    if get("sign_type").map(String::as_str) != Some("RSA2") {
        return Err("sign_type is not RSA2");
    }
    if verify(&canonical(params, Purpose::Notify), signature, key) {
        Ok(())
    } else {
        Err("bad signature")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example of Alipay's notify documentation (docs.antom.com, "Verifying the
    /// asynchronous notification"): `sign` and `sign_type` removed, the rest sorted.
    #[test]
    fn canonical_string_of_the_documented_example() {
        let params = p(&[
            ("notify_id", "5b89a773c60af059d96b1693dd3b3d6nc1"),
            ("notify_type", "trade_status_sync"),
            ("sign", "b34d89788d9012f77f5b74ac232145f5"),
            ("trade_no", "2018110922001332950500389138"),
            ("total_fee", "0.01"),
            ("out_trade_no", "test20181109153145"),
            ("notify_time", "2018-11-09 15:36:17"),
            ("currency", "USD"),
            ("trade_status", "TRADE_FINISHED"),
            ("sign_type", "MD5"),
        ]);
        assert_eq!(
            canonical(&params, Purpose::Notify),
            "currency=USD&notify_id=5b89a773c60af059d96b1693dd3b3d6nc1\
             &notify_time=2018-11-09 15:36:17&notify_type=trade_status_sync\
             &out_trade_no=test20181109153145&total_fee=0.01\
             &trade_no=2018110922001332950500389138&trade_status=TRADE_FINISHED"
        );
        let request = p(&[("b", "2"), ("a", "1"), ("sign_type", "RSA2"), ("c", "")]);
        assert_eq!(
            canonical(&request, Purpose::Request),
            "a=1&b=2&sign_type=RSA2"
        );
    }
    /// A key made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024` and
    /// the signature `openssl dgst -sha256 -sign key.pem | base64` (OpenSSL 3.0) gives
    /// for the canonical string of a request: the same bytes here (PKCS#1 v1.5 is
    /// deterministic), and it verifies. Alipay publishes no key with a signed example,
    /// so OpenSSL's SHA256withRSA is the independent reference.
    #[test]
    fn signature_vector_from_openssl() {
        const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBAKIP3lStv6dWVUuc\nvcjsVKIwKPDdwjYLMvGod6D6M5SVGK3BebuqP+fsYs9OmPerkVVRi2qGJrAYKGkd\nCQJ+e4rBBwyEaR8ItuxCThP/S/vSXEhhta6/Oa2BWPa82cFj9m0bX/T4fEJ4f6dS\nwia6l7eNkVg56tku5RBs1hr6+GoDAgMBAAECgYA7nXK/25pgyBVgVyxJOQZ5ExY8\nZJcIol3/H2XCRcerpJ0LbdyF+D7B5ecDM3p5wRcZN4H9kZOxu3FCGXgy/qwa7L+Y\nZZ0esRNluZTfHfEFNltzNp7+KxjQQMNqnwO78LBUtSlSej+lq6/cjzRJGPLAwKLx\nIVg+CeXxtGjT2759IQJBAM7DccH6OyDD8Td4rYyZbrwXauDXfu6z6EG8qOO7nN5l\nj8SbN1s0SHpiU4gYLbeqvQTN/XYQ2aUmVNqdB2GUfSUCQQDIp14MlE7WC3WS5cnP\nlwk1A6YNA4Oud82Ok3nI0xl5Pr6dAGFR0nKWdT/AzPgmGNZ6nztJoogd234rRyIT\nx6YHAkBp2BlK8JsGKeg4ulk1aXILbX1z/jznW0ehJz/Z3LfwDVOslLygvsH/jIgw\nWhhFNm0uoXiH0RZpeZbklpApvsbVAkAAziMje8jhNQSQxVlM+vcvfkdBUB1MKvDp\nPJBFjQtSID1VlfXOBUEud2P9GxV32auqrE7pmbxgGkxkUhHB8JArAkBiOF5WrkSr\nfh4HsDNzY0Dsz9+/sxKqu5seiQHbT/MfMmaczONdDH4WMM2QfKIgjTNR4xAySM9s\nVt+stcqNCpwm\n-----END PRIVATE KEY-----";
        const SIG: &str = "XP/eI4ZQ4UpBKX041I+qyS3j+hCQw09292eWXU7iHyh9JNxBI365fU6eVodDpT0j3a+9RdpT0TWBXDxjmB8IJgzUITgiV5DL8EAsV3CIZLEFvAHDPPKL3ulo8pI4jSwbIEXfSJk8WAu2oqXXxYiWOUao2HP/+GgZ/EMc0hQI4c4=";
        let params = p(&[
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "36.00"),
            ("sign_type", "RSA2"),
            ("notify_time", "2026-12-03 21:00:06"),
            ("empty", ""),
            ("trade_no", "2026120322001437561000012345"),
            ("out_trade_no", "AT0001"),
            ("charset", "utf-8"),
            ("app_id", "2021000000000000"),
            ("sign", "ignored"),
        ]);
        let content = canonical(&params, Purpose::Request);
        assert_eq!(
            content,
            "app_id=2021000000000000&charset=utf-8&notify_time=2026-12-03 21:00:06\
             &out_trade_no=AT0001&sign_type=RSA2&total_amount=36.00\
             &trade_no=2026120322001437561000012345&trade_status=TRADE_SUCCESS"
        );
        let key = private_key(KEY).unwrap();
        assert_eq!(sign(&content, &key), SIG);
        let public = RsaPublicKey::from(&key);
        assert!(verify(&content, SIG, &public));
        assert!(!verify(&content.replace("36.00", "36.01"), SIG, &public));
        assert!(!verify(&content, "not base64!", &public));
        // Bare base64 (as Alipay's console hands keys out) reads the same.
        let bare: String = KEY.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(sign(&content, &private_key(&bare).unwrap()), SIG);
    }

    /// A notify signed by Alipay itself, with the Alipay public key it was verified
    /// against: the fixture of Alipay's official Node SDK
    /// (`alipay/alipay-sdk-nodejs-all`, `test/alipay.test.ts`, `checkNotifySign`,
    /// "with sign_type arguments verify success"). `fund_bill_list` arrives form-encoded
    /// as the JSON text below. Verified as posted; any changed field or a dropped one fails.
    #[test]
    fn a_notify_signed_by_alipay_verifies() {
        const ALIPAY_PUBLIC_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqObrdC7hrgAVM98tK0nv3hSQRGGKT4lBsQjHiGjeYZjOPIPHR5knm2jnnz/YGIXIofVHkA/tAlBAd5DrY7YpvI4tP5EONLtZKC2ghBMx7McI2wRD0xiqzxOQr1FuhZGJ8/AUokBzJrzY+aGX2xcOrxFYRlFilvVLTXg4LWjR1tdPkO6+i7wQZAIVMClPkwVRZEbaERRHlKqTzv2gGv5rDU8gRoe1LeaN+6BlbTqHWkQcNCUNrA8C6l17XAXGKDsm/9TFWwO8EPHHHCaQdjtV5/FdcWIt+L8SR1ss7EXTjYDFtxcKVv9rEoY1lX8T4mX+GbXfZHraG5NCF1+XioL5JwIDAQAB";
        let notify = p(&[
            ("gmt_create", "2019-08-15 15:56:22"),
            ("charset", "utf-8"),
            ("seller_email", "z97-yuquerevenue@service.aliyun.com"),
            ("subject", "语雀空间 500人规模"),
            ("sign", "QfTb8tqE1BMhS5qAnXtvsF3/jBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb/nLWZpXyyh0LEWdK2S6Ri7nPwrVgOs08zugLO20vOQz44y3ti2Ncm8/wZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r/U8ONNQjWXd0HIul4TG+Q3fm3svmSvFEy0WnzuhcyHPX5Gm4ELNctL6Qd5YniGJFNcc7kopHYtI/XD9YCKCH6Ct02rzUs9i11C9CsadtZn+WhxF26Dqt9sGEFajkJ8cxUTLi8+VCpLHsgPE8P0y095uQcDdK0YjCh4x7wVSov+lrmOQ=="),
            ("buyer_id", "2088102534368455"),
            ("invoice_amount", "0.10"),
            ("notify_id", "2019081500222155624068450559358070"),
            ("fund_bill_list", r#"[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]"#),
            ("notify_type", "trade_status_sync"),
            ("trade_status", "TRADE_SUCCESS"),
            ("receipt_amount", "0.10"),
            ("buyer_pay_amount", "0.10"),
            ("sign_type", "RSA2"),
            ("app_id", "2019073166072302"),
            ("seller_id", "2088531891668739"),
            ("gmt_payment", "2019-08-15 15:56:24"),
            ("notify_time", "2019-08-15 15:56:25"),
            ("version", "1.0"),
            ("out_trade_no", "20190815155618536-564-57"),
            ("total_amount", "0.10"),
            ("trade_no", "2019081522001468450512505578"),
            ("auth_app_id", "2019073166072302"),
            ("buyer_logon_id", "xud***@126.com"),
            ("point_amount", "0.00"),
        ]);
        let key = public_key(ALIPAY_PUBLIC_KEY).unwrap();
        assert_eq!(verify_notify(&notify, &key), Ok(()));
        let tampered: Vec<(String, String)> = notify
            .iter()
            .map(|(k, v)| {
                let v = if k == "total_amount" {
                    "10.00".to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        assert_eq!(verify_notify(&tampered, &key), Err("bad signature"));
        let dropped: Vec<(String, String)> = notify
            .iter()
            .filter(|(k, _)| k != "buyer_id")
            .cloned()
            .collect();
        assert_eq!(verify_notify(&dropped, &key), Err("bad signature"));
    }
}
