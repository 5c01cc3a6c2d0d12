//! Hex and standard padded base64 (RFC 4648 sections 8 and 4), the two text encodings that
//! signed notes, checkpoints and key strings use.
//!
//! Decoding is strict, so that one byte string has one text form: base64 must be padded, and
//! the bits that padding drops must be zero (Go's `StdEncoding` accepts them set; no encoder
//! sets them). Hex decoding accepts either case; encoding writes lowercase.

use crate::ProofError;

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex, two digits a byte.
pub fn hex_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The bytes of hex text (either case); an odd length or a non-hex digit is an error.
pub fn hex_decode(text: &str) -> Result<Vec<u8>, ProofError> {
    let invalid = |offset| ProofError::InvalidEncoding { encoding: "hex", offset };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(invalid(bytes.len()));
    }
    let digit = |at: usize| char::from(bytes[at]).to_digit(16).ok_or(invalid(at));
    (0..bytes.len()).step_by(2).map(|at| Ok((digit(at)? << 4 | digit(at + 1)?) as u8)).collect()
}

/// Standard base64 with `=` padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 4];
        group[1..=chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes(group);
        // A chunk of n bytes fills n + 1 characters; padding fills the rest of the four.
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (bits >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes of standard padded base64; anything else, including set padding bits, is an error.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, ProofError> {
    let invalid = |offset| ProofError::InvalidEncoding { encoding: "base64", offset };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(invalid(bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (start, quad) in (0..).step_by(4).zip(bytes.chunks(4)) {
        let last = start + 4 == bytes.len();
        let pad = if last { quad.iter().rev().take_while(|&&c| c == b'=').count() } else { 0 };
        if pad > 2 {
            return Err(invalid(start + 4 - pad));
        }
        let mut bits = 0u32;
        for (i, &c) in quad[..4 - pad].iter().enumerate() {
            let value = BASE64_ALPHABET.iter().position(|&a| a == c).ok_or(invalid(start + i))?;
            bits = bits << 6 | value as u32;
        }
        bits <<= 6 * pad;
        let group = bits.to_be_bytes();
        let kept = 3 - pad;
        if group[1 + kept..].iter().any(|&b| b != 0) {
            return Err(invalid(start + 3 - pad));
        }
        out.extend_from_slice(&group[1..=kept]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4648 section 10, "Test Vectors".
    const RFC4648: [(&str, &str, &str); 7] = [
        ("", "", ""),
        ("f", "Zg==", "66"),
        ("fo", "Zm8=", "666F"),
        ("foo", "Zm9v", "666F6F"),
        ("foob", "Zm9vYg==", "666F6F62"),
        ("fooba", "Zm9vYmE=", "666F6F6261"),
        ("foobar", "Zm9vYmFy", "666F6F626172"),
    ];

    #[test]
    fn rfc4648_vectors_encode_and_decode() {
        for (plain, base64, base16) in RFC4648 {
            assert_eq!(base64_encode(plain.as_bytes()), base64);
            assert_eq!(base64_decode(base64).unwrap(), plain.as_bytes());
            assert_eq!(hex_encode(plain.as_bytes()), base16.to_lowercase());
            assert_eq!(hex_decode(base16).unwrap(), plain.as_bytes());
            assert_eq!(hex_decode(&base16.to_lowercase()).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn every_byte_string_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..bytes.len() {
            for slice in [&bytes[..len], &bytes[bytes.len() - len..]] {
                assert_eq!(base64_decode(&base64_encode(slice)).unwrap(), slice);
                assert_eq!(hex_decode(&hex_encode(slice)).unwrap(), slice);
            }
        }
    }

    #[test]
    fn malformed_text_is_refused_at_its_offset() {
        let base64 = |offset| Err(ProofError::InvalidEncoding { encoding: "base64", offset });
        let hex = |offset| Err(ProofError::InvalidEncoding { encoding: "hex", offset });
        assert_eq!(base64_decode("Zg="), base64(3)); // not a multiple of four
        assert_eq!(base64_decode("Zg"), base64(2)); // unpadded
        assert_eq!(base64_decode("Zh=="), base64(1)); // padding bits set: not canonical
        assert_eq!(base64_decode("Zm9=Zm9v"), base64(3)); // padding inside
        assert_eq!(base64_decode("Z==="), base64(1)); // three pads
        assert_eq!(base64_decode("Zm9-"), base64(3)); // URL alphabet
        assert_eq!(base64_decode("Zm9\n"), base64(3));
        assert_eq!(hex_decode("abc"), hex(3));
        assert_eq!(hex_decode("zz"), hex(0));
        assert_eq!(hex_decode("0é0"), hex(1)); // a two-byte character
    }
}
