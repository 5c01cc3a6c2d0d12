//! The Merkle tree's answers as JSON (`custos digest --format json`, `custos prove`) and their
//! offline check (`custos verify-proof`), which needs no ledger: only `custos-proof` and the
//! envelope codec to say what a proved leaf records.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use custos_proof::{tree, verify, Hash};
use serde_json::Value;

use crate::Exit;

/// Proof files are small: a path of at most 64 hashes and one event.
const PROOF_BYTES_MAX: u64 = 1 << 20;

/// Checks the proof in `file` (`-`: standard input); exit 1 when it does not verify.
pub fn verify_file(file: &Path, out: &mut impl Write) -> Result<Exit> {
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
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let outcome = if v.get("audit_path").is_some() {
        check_inclusion(&v, out)?
    } else if v.get("first_size").is_some() {
        check_consistency(&v, out)?
    } else {
        bail!("{} is neither an inclusion proof (audit_path) nor a consistency proof (first_size)", file.display())
    };
    Ok(match outcome {
        Ok(()) => Exit::Ok,
        Err(why) => {
            writeln!(out, "the proof does NOT verify: {why}")?;
            Exit::Refused
        }
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
