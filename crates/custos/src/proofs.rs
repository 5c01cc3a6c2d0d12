//! Proofs on the command line: their offline check (`custos verify-proof`, which needs no
//! ledger: only `custos-proof`, and the envelope codec to say what a proved leaf records),
//! signing keys (`custos keygen`) and signed tree heads (`custos digest --sign`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use custos_ledger::TreeHead;
use custos_proof::note::{self, Checkpoint, SignerKey, VerifierKey};
use custos_proof::{tree, verify, Hash};
use serde_json::Value;

use crate::Exit;

/// Proof files are small: a path of at most 64 hashes and one event.
const PROOF_BYTES_MAX: u64 = 1 << 20;

/// A small file (a proof, a key, a checkpoint), `-` for standard input.
fn read_small(file: &Path) -> Result<String> {
    let mut text = String::new();
    let read = if file == Path::new("-") {
        std::io::stdin().take(PROOF_BYTES_MAX).read_to_string(&mut text)
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("cannot open {}", file.display()))?
            .take(PROOF_BYTES_MAX)
            .read_to_string(&mut text)
    };
    read.with_context(|| format!("cannot read {}", file.display()))?;
    Ok(text)
}

/// Checks the proof or signed checkpoint in `file` (`-`: standard input), against a signed
/// checkpoint when one is given; exit 1 when it does not verify.
pub fn verify_file(file: &Path, key: Option<&str>, checkpoint: Option<&Path>, out: &mut impl Write) -> Result<Exit> {
    let key = key.map(verifier_key).transpose()?;
    let text = read_small(file)?;
    let signed = match (checkpoint, &key) {
        (Some(c), Some(k)) => match note::open(&read_small(c)?, k) {
            Ok(cp) => Some(cp),
            Err(e) => return refused(out, &format!("the checkpoint {}: {e}", c.display())),
        },
        _ => None,
    };
    let outcome = if !text.trim_start().starts_with('{') {
        let Some(k) = &key else {
            bail!("{} is not a JSON proof; a signed checkpoint needs --key (the signer's public key)", file.display())
        };
        check_checkpoint(&text, k, out)?
    } else {
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
        if v.get("audit_path").is_some() {
            check_inclusion(&v, out)?.and_then(|()| matches_checkpoint(&v, "tree_size", "root_hash", signed.as_ref()))
        } else if v.get("first_size").is_some() {
            check_consistency(&v, out)?
                .and_then(|()| matches_checkpoint(&v, "second_size", "second_root", signed.as_ref()))
        } else {
            bail!("{} is neither an inclusion proof (audit_path) nor a consistency proof (first_size)", file.display())
        }
    };
    match outcome {
        Ok(()) => {
            if let Some(cp) = &signed {
                writeln!(out, "and the signed checkpoint of {} agrees: tree size {}", cp.origin(), cp.tree_size())?;
            }
            Ok(Exit::Ok)
        }
        Err(why) => refused(out, &why),
    }
}

fn refused(out: &mut impl Write, why: &str) -> Result<Exit> {
    writeln!(out, "the proof does NOT verify: {why}")?;
    Ok(Exit::Refused)
}

/// A proof is of the tree a checkpoint signs only if both its size and its root are the
/// checkpoint's (RFC 9162 paths bind a root to a tree shape, not to a size).
fn matches_checkpoint(v: &Value, size_field: &str, root_field: &str, cp: Option<&Checkpoint>) -> Result<(), String> {
    let Some(cp) = cp else { return Ok(()) };
    let size = v[size_field].as_u64();
    let root = v[root_field].as_str().map(str::to_string);
    if size != Some(cp.tree_size()) || root.as_deref() != Some(&hex::encode(cp.root_hash())) {
        return Err(format!(
            "the proof is for tree size {} with root {}, the signed checkpoint for size {} with root {}",
            size.map_or("?".into(), |s| s.to_string()),
            root.unwrap_or_default(),
            cp.tree_size(),
            hex::encode(cp.root_hash())
        ));
    }
    Ok(())
}

/// A verifier key given as the key string or as a file holding it.
fn verifier_key(given: &str) -> Result<VerifierKey> {
    let text = if Path::new(given).is_file() { read_small(Path::new(given))? } else { given.to_string() };
    text.trim().parse().map_err(|e| anyhow::anyhow!("--key: not a public key (NAME+ID+BASE64): {e}"))
}

fn check_checkpoint(text: &str, key: &VerifierKey, out: &mut impl Write) -> Result<Result<(), String>> {
    Ok(match note::open(text, key) {
        Ok(cp) => {
            writeln!(
                out,
                "verified: checkpoint signed by {}+{:08x}: {}, tree size {}, root {}",
                key.name(),
                key.id(),
                cp.origin(),
                cp.tree_size(),
                hex::encode(cp.root_hash())
            )?;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    })
}

/// Makes a signing key: 32 bytes from the operating system's generator as its seed.
pub fn keygen(name: &str, file: &Path, out: &mut impl Write) -> Result<Exit> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("cannot read random bytes from /dev/urandom")?;
    let key = SignerKey::from_seed(name, seed).map_err(|e| anyhow::anyhow!("--name {name:?}: {e}"))?;
    let public = file.with_extension(match file.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".into(),
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot create {} (an existing key is never overwritten)", file.display()))?;
    writeln!(f, "{}", key.encode())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))?;
    std::fs::write(&public, format!("{}\n", key.verifier()))
        .with_context(|| format!("cannot write {}", public.display()))?;
    writeln!(out, "wrote the secret key to {} and the public key to {}:", file.display(), public.display())?;
    writeln!(out, "{}", key.verifier())?;
    Ok(Exit::Ok)
}

/// The signed note of `head` (origin: `origin`, else the key's name) with the key in `key_file`.
pub fn signed_checkpoint(head: &TreeHead, key_file: &Path, origin: Option<&str>) -> Result<String> {
    let text = read_small(key_file)?;
    let key: SignerKey =
        text.trim().parse().map_err(|e| anyhow::anyhow!("{} is not a signing key: {e}", key_file.display()))?;
    let origin = origin.unwrap_or(key.name());
    let cp = Checkpoint::new(origin, head.tree_size, head.root_hash).map_err(|e| anyhow::anyhow!("--origin: {e}"))?;
    Ok(note::sign(&cp, &key))
}

/// A tree head as `/v1/digest` answers it.
pub fn tree_head_of(v: &Value) -> Result<TreeHead> {
    Ok(TreeHead {
        tree_size: size(v, "tree_size")?,
        chain_hash: hash_of(field(v, "chain_hash")?, "chain_hash")?,
        root_hash: hash_of(field(v, "root_hash")?, "root_hash")?,
    })
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value> {
    v.get(name).with_context(|| format!("the proof has no field {name:?}"))
}

fn size(v: &Value, name: &str) -> Result<u64> {
    field(v, name)?.as_u64().with_context(|| format!("field {name:?} is not a whole number"))
}

fn bytes(v: &Value, name: &str) -> Result<Vec<u8>> {
    let text = field(v, name)?.as_str().with_context(|| format!("field {name:?} is not a string"))?;
    hex::decode(text).with_context(|| format!("field {name:?} is not hexadecimal"))
}

fn hash_of(text: &Value, what: &str) -> Result<Hash> {
    let s = text.as_str().with_context(|| format!("{what} is not a string"))?;
    let b = hex::decode(s).with_context(|| format!("{what} is not hexadecimal"))?;
    b.try_into().map_err(|_| anyhow::anyhow!("{what} is not 32 bytes"))
}

fn hashes(v: &Value, name: &str) -> Result<Vec<Hash>> {
    let items = field(v, name)?.as_array().with_context(|| format!("field {name:?} is not a list"))?;
    items.iter().enumerate().map(|(i, h)| hash_of(h, &format!("{name}[{i}]"))).collect()
}

/// `Ok(Err(why))`: read, and does not verify.
fn check_inclusion(v: &Value, out: &mut impl Write) -> Result<Result<(), String>> {
    let (tree_size, index) = (size(v, "tree_size")?, size(v, "leaf_index")?);
    let leaf = bytes(v, "leaf")?;
    let (claimed, root) =
        (hash_of(field(v, "leaf_hash")?, "leaf_hash")?, hash_of(field(v, "root_hash")?, "root_hash")?);
    let path = hashes(v, "audit_path")?;
    let leaf_hash = tree::leaf_hash(&leaf);
    if leaf_hash != claimed {
        return Ok(Err(format!("SHA-256(0x00 || leaf) is {}, not the leaf_hash given", hex::encode(leaf_hash))));
    }
    if let Err(e) = verify::verify_inclusion(&leaf_hash, index, tree_size, &path, &root) {
        return Ok(Err(e.to_string()));
    }
    writeln!(out, "verified: leaf {index} is in the log of {tree_size} events with root {}", hex::encode(root))?;
    match custos_domain::Envelope::decode(&leaf) {
        Ok(env) if env.seq == index + 1 => {
            writeln!(
                out,
                "the leaf is seq {}: {} {} on {} (stream version {}), occurred_at {}, recorded_at {}",
                env.seq,
                env.event.kind().event_name(),
                env.event_id,
                env.stream,
                env.stream_version,
                env.occurred_at,
                env.recorded_at
            )?;
            if let Some((asset, amount)) = env.event.asset_amount() {
                writeln!(out, "amount: {amount} {asset}")?;
            }
        }
        Ok(env) => {
            return Ok(Err(format!("the leaf decodes as seq {}, but leaf {index} is seq {}", env.seq, index + 1)))
        }
        Err(e) => writeln!(out, "the leaf does not decode as a Custos event ({e}); its hash is proved all the same")?,
    }
    Ok(Ok(()))
}

fn check_consistency(v: &Value, out: &mut impl Write) -> Result<Result<(), String>> {
    let (first, second) = (size(v, "first_size")?, size(v, "second_size")?);
    let first_root = hash_of(field(v, "first_root")?, "first_root")?;
    let second_root = hash_of(field(v, "second_root")?, "second_root")?;
    let path = hashes(v, "path")?;
    if let Err(e) = verify::verify_consistency(first, second, &first_root, &second_root, &path) {
        return Ok(Err(e.to_string()));
    }
    writeln!(
        out,
        "verified: the log of {second} events (root {}) extends the log of {first} events (root {}) unchanged",
        hex::encode(second_root),
        hex::encode(first_root)
    )?;
    Ok(Ok(()))
}
