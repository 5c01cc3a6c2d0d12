//! Signed tree heads: a C2SP tlog-checkpoint body in a C2SP signed note, signed with Ed25519,
//! byte for byte what Go's `golang.org/x/mod/sumdb/note` writes and reads.
//!
//! - checkpoint body: `<origin>\n<tree size, decimal, no leading zeros>\n<base64 root hash>\n`
//!   (extension lines are refused: this ledger never writes them, and they would be signed
//!   text that [`Checkpoint`] drops).
//! - signed note: the body, a blank line (`\n`), then one line per signature, starting with
//!   an em dash (U+2014) and a space:
//!   `— <key name> <base64(key id (4 bytes, big-endian) || Ed25519 signature (64 bytes))>\n`,
//!   the signature being over the body bytes (up to and including its last newline). A note
//!   is UTF-8 with no control character but newline.
//! - key id: the first 4 bytes of `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)`.
//! - verifier key: `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`.
//! - signer key: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`.
//!
//! A key name is not empty and has no space, plus sign or control character.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::encoding::{base64_decode, base64_encode, hex_decode};
use crate::tree::sha256;
use crate::{Hash, ProofError};

/// The signature type byte of Ed25519 in key strings and key ids (C2SP signed-note).
const ED25519: u8 = 0x01;
/// The em dash and space that start a signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// The most signature lines a note may have: Go's limit (the spec asks verifiers for 16 at least).
pub const SIGNATURES_MAX: usize = 100;

/// A signed tree head's content: which log, how many leaves, and their RFC 9162 root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    tree_size: u64,
    root_hash: Hash,
}

impl Checkpoint {
    /// Refuses an origin that is empty or has a control character (a newline would break the body).
    pub fn new(origin: impl Into<String>, tree_size: u64, root_hash: Hash) -> Result<Self, ProofError> {
        let origin = origin.into();
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(ProofError::InvalidOrigin);
        }
        Ok(Self { origin, tree_size, root_hash })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    pub fn root_hash(&self) -> &Hash {
        &self.root_hash
    }

    /// The three-line body that is signed.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.tree_size, base64_encode(&self.root_hash))
    }

    /// The checkpoint in a body; the inverse of [`Checkpoint::body`].
    pub fn parse_body(text: &str) -> Result<Self, ProofError> {
        let malformed = |line, reason| ProofError::MalformedCheckpoint { line, reason };
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.last() != Some(&"") {
            return Err(malformed(lines.len(), "the body does not end with a newline"));
        }
        let [origin, size, root] = lines[..lines.len() - 1] else {
            let reason = if lines.len() < 4 { "a body has 3 lines" } else { "extension lines are not allowed" };
            return Err(malformed(lines.len().min(4), reason));
        };
        let tree_size = parse_decimal(size).ok_or(malformed(2, "the tree size is not a canonical decimal"))?;
        let root_hash = base64_decode(root).ok().and_then(|bytes| Hash::try_from(bytes).ok());
        let root_hash = root_hash.ok_or(malformed(3, "the root hash is not base64 of 32 bytes"))?;
        Checkpoint::new(origin, tree_size, root_hash)
            .map_err(|_| malformed(1, "the origin is empty or has a control character"))
    }
}

/// A u64 written in ASCII digits, without leading zeros unless it is 0.
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn check_name(name: &str) -> Result<(), ProofError> {
    let bad = |c: char| c == '+' || c.is_whitespace() || c.is_control();
    if name.is_empty() || name.chars().any(bad) {
        return Err(ProofError::InvalidKeyName { name: name.to_owned() });
    }
    Ok(())
}

fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let hash = sha256(&[name.as_bytes(), b"\n", &[ED25519], public_key]);
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
}

/// `(name, stated key id, key bytes)` of `<name>+<8 hex digits>+<base64(0x01 || 32 bytes)>`.
fn parse_key_string(text: &str) -> Result<(&str, u32, [u8; 32]), ProofError> {
    let malformed = |reason| ProofError::MalformedKey { reason };
    // The name has no '+', so the first two split it off; base64 may hold more.
    let [name, id, key] = text.splitn(3, '+').collect::<Vec<_>>()[..] else {
        return Err(malformed("a key is <name>+<key id>+<base64 key>"));
    };
    let id = (id.len() == 8).then(|| hex_decode(id).ok()?.try_into().ok()).flatten();
    let id = id.map(u32::from_be_bytes).ok_or(malformed("the key id is not 8 hex digits"))?;
    let key = base64_decode(key).map_err(|_| malformed("the key is not base64"))?;
    let Some((&ED25519, key)) = key.split_first() else {
        return Err(malformed("its type byte is not 0x01, Ed25519's: not an Ed25519 key"));
    };
    Ok((name, id, key.try_into().map_err(|_| malformed("an Ed25519 key is 32 bytes"))?))
}

fn check_key_id(stated: u32, computed: u32) -> Result<(), ProofError> {
    if stated == computed {
        Ok(())
    } else {
        Err(ProofError::KeyIdMismatch { stated, computed })
    }
}

fn key_string(name: &str, id: u32, key: &[u8; 32]) -> String {
    let mut typed = vec![ED25519];
    typed.extend_from_slice(key);
    format!("{name}+{id:08x}+{}", base64_encode(&typed))
}

/// A named Ed25519 signing key. `Debug` shows its name and id, never the seed.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl SignerKey {
    /// The key with this name whose Ed25519 seed (RFC 8032 private key) is `seed`.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, ProofError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(Self { name: name.to_owned(), id: key_id(name, key.verifying_key().as_bytes()), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// The secret key string `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`. A method rather
    /// than `Display`, so that formatting a value never writes the secret by accident.
    pub fn encode(&self) -> String {
        format!("PRIVATE+KEY+{}", key_string(&self.name, self.id, self.key.as_bytes()))
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}+{:08x})", self.name, self.id)
    }
}

impl FromStr for SignerKey {
    type Err = ProofError;

    fn from_str(text: &str) -> Result<Self, ProofError> {
        let malformed = ProofError::MalformedKey { reason: "a signer key starts with PRIVATE+KEY+" };
        let (name, stated, seed) = parse_key_string(text.strip_prefix("PRIVATE+KEY+").ok_or(malformed)?)?;
        let signer = Self::from_seed(name, seed)?;
        check_key_id(stated, signer.id)?;
        Ok(signer)
    }
}

/// A named Ed25519 public key; `Display` writes the verifier key string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Refuses a bad name, or 32 bytes that are not an Ed25519 public key.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, ProofError> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(&public_key)
            .map_err(|_| ProofError::MalformedKey { reason: "the bytes are not an Ed25519 public key" })?;
        Ok(Self { name: name.to_owned(), id: key_id(name, &public_key), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&key_string(&self.name, self.id, self.key.as_bytes()))
    }
}

impl FromStr for VerifierKey {
    type Err = ProofError;

    fn from_str(text: &str) -> Result<Self, ProofError> {
        let (name, stated, public_key) = parse_key_string(text)?;
        let verifier = Self::new(name, public_key)?;
        check_key_id(stated, verifier.id)?;
        Ok(verifier)
    }
}

/// The signed note of `checkpoint`, with one signature by `key`.
pub fn sign(checkpoint: &Checkpoint, key: &SignerKey) -> String {
    signed(&checkpoint.body(), key)
}

/// The signed note of any `text`: it must end with a newline and have no other control
/// character.
pub fn sign_text(text: &str, key: &SignerKey) -> Result<String, ProofError> {
    check_characters(text)?;
    if !text.ends_with('\n') {
        let line = text.split('\n').count();
        return Err(ProofError::MalformedNote { line, reason: "the text does not end with a newline" });
    }
    Ok(signed(text, key))
}

fn signed(text: &str, key: &SignerKey) -> String {
    let mut blob = key.id.to_be_bytes().to_vec();
    blob.extend_from_slice(&key.key.sign(text.as_bytes()).to_bytes());
    format!("{text}\n{SIGNATURE_PREFIX}{} {}\n", key.name, base64_encode(&blob))
}

/// The checkpoint in `note`, if a signature line by `key` verifies.
pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, ProofError> {
    Checkpoint::parse_body(open_text(note, key)?)
}

/// The signed text of `note`, if the note is well formed and has a signature line by `key`
/// (same name and id) and every such line verifies. Lines by other keys are ignored, as the
/// spec requires; Ed25519 verification is strict (no small-order keys, canonical signatures).
pub fn open_text<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, ProofError> {
    check_characters(note)?;
    let lines = note.split('\n').count();
    let malformed = |line, reason| ProofError::MalformedNote { line, reason };
    // The text ends at the last blank line: the signature lines are never empty.
    let split = note.rfind("\n\n").ok_or(malformed(lines, "no blank line before the signatures"))?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err(malformed(lines, "the signatures do not end with a newline"));
    }
    let first_line = text.split('\n').count() + 1;
    let mut verified = false;
    for (i, line) in signatures.split_terminator('\n').enumerate() {
        if i == SIGNATURES_MAX {
            return Err(ProofError::TooManySignatures { max: SIGNATURES_MAX });
        }
        let line_number = first_line + i;
        let (name, id, signature) = parse_signature_line(line)
            .ok_or(malformed(line_number, "a signature line is \u{2014} <key name> <base64 signature>"))?;
        if name != key.name || id != key.id {
            continue;
        }
        let bad = || ProofError::BadSignature { name: key.name.clone(), id, line: line_number };
        let signature = Signature::from_slice(&signature).map_err(|_| bad())?;
        key.key.verify_strict(text.as_bytes(), &signature).map_err(|_| bad())?;
        verified = true;
    }
    if !verified {
        return Err(ProofError::NoSignatureByKey { name: key.name.clone(), id: key.id });
    }
    Ok(text)
}

/// `(key name, key id, signature bytes)` of a signature line, if it is one.
fn parse_signature_line(line: &str) -> Option<(&str, u32, Vec<u8>)> {
    let (name, base64) = line.strip_prefix(SIGNATURE_PREFIX)?.split_once(' ')?;
    check_name(name).ok()?;
    let mut blob = base64_decode(base64).ok()?;
    if blob.len() < 5 {
        return None;
    }
    let signature = blob.split_off(4);
    Some((name, u32::from_be_bytes(blob.try_into().ok()?), signature))
}

/// Refuses ASCII control characters other than newline (the note's UTF-8 is checked by `&str`).
fn check_characters(text: &str) -> Result<(), ProofError> {
    for (i, line) in text.split('\n').enumerate() {
        if line.chars().any(|c| c < ' ') {
            let reason = "a control character other than newline";
            return Err(ProofError::MalformedNote { line: i + 1, reason });
        }
    }
    Ok(())
}
