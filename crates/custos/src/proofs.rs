//! Proofs on the command line: their offline check (`custos verify-proof`, which needs no
//! ledger: only `custos-proof`, and the envelope codec to say what a proved leaf records),
//! signing keys (`custos keygen`) and signed tree heads (`custos digest --sign`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use custos_ledger::TreeHead;
use custos_proof::note::{self, Checkpoint, SignerKey};
use serde_json::Value;

use crate::Exit;

/// 32 bytes from the operating system's generator.
fn random_32() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("cannot read random bytes from /dev/urandom")?;
    Ok(seed)
}

/// Writes a liabilities snapshot at `bound` to `folder` (root.json, proofs.jsonl) and prints
/// a summary; with `account`, prints only that account's proof on standard output (so it can
/// be redirected to a file) and the summary on standard error. An account the snapshot does
/// not hold is said, nothing is written, exit 1 (as for a query naming it).
pub fn liabilities(
    ledger: &custos_ledger::Ledger,
    bound: &custos_ledger::Bound,
    folder: &Path,
    account: Option<&str>,
    out: &mut impl Write,
) -> Result<Exit> {
    let files = [folder.join("root.json"), folder.join("proofs.jsonl")];
    if let Some(f) = files.iter().find(|f| f.exists() || f.is_symlink()) {
        bail!("{} exists: a snapshot is never overwritten (choose another --out)", f.display());
    }
    let snap = custos_report::liabilities::snapshot(ledger, bound, &random_32()?)?;
    let wanted = match account {
        Some(a) => match snap.accounts.iter().position(|l| l.account == a) {
            Some(i) => Some(i),
            None => {
                eprintln!(
                    "account {a} has no balance at this bound (seq {}): nothing of it to prove; nothing written",
                    bound.known_seq
                );
                return Ok(Exit::Refused);
            }
        },
        None => None,
    };
    std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let head = ledger.tree_head(Some(bound.known_seq))?;
    let proofs_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&files[1])
        .with_context(|| format!("cannot create {}", files[1].display()))?;
    let mut proofs = std::io::BufWriter::new(proofs_file);
    for i in 0..snap.accounts.len() {
        snap.write_proof(&mut proofs, i)?;
        proofs.write_all(b"\n")?;
    }
    proofs.flush()?;
    let root = snap.root_json(&head);
    // Created, never opened: a file or link put there meanwhile is refused, not written through.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&files[0])
        .and_then(|mut f| writeln!(f, "{}", serde_json::to_string_pretty(&root).expect("a JSON value prints")))
        .with_context(|| format!("cannot create {}", files[0].display()))?;
    let mut summary = format!(
        "wrote the liabilities of {} account{} at seq {} to {} (root.json, proofs.jsonl): root {}\n",
        snap.accounts.len(),
        if snap.accounts.len() == 1 { "" } else { "s" },
        bound.known_seq,
        folder.display(),
        hex::encode(snap.root.hash)
    );
    for (a, total) in snap.assets.iter().zip(&snap.root.sums) {
        let shown = custos_report::liabilities::decimal_of(*total, a).map_or("?".into(), |d| d.normalize().to_string());
        summary.push_str(&format!("  {a}: {shown}\n"));
    }
    match wanted {
        Some(i) => {
            eprint!("{summary}");
            writeln!(out, "{}", serde_json::to_string_pretty(&snap.proof_json(i))?)?;
        }
        None => write!(out, "{summary}")?,
    }
    Ok(Exit::Ok)
}

/// Makes a signing key: 32 bytes from the operating system's generator as its seed.
pub fn keygen(name: &str, file: &Path, out: &mut impl Write) -> Result<Exit> {
    use std::os::unix::fs::OpenOptionsExt;
    let seed = random_32()?;
    let key = SignerKey::from_seed(name, seed).map_err(|e| anyhow::anyhow!("--name {name:?}: {e}"))?;
    let public = file.with_extension(match file.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".into(),
    });
    if let Some(f) = [file, public.as_path()].into_iter().find(|f| f.exists() || f.is_symlink()) {
        bail!("{} exists: an existing key is never overwritten", f.display());
    }
    let create = |path: &Path, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))
    };
    let mut f = create(file, 0o600)?;
    writeln!(f, "{}", key.encode())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))?;
    let mut p = create(&public, 0o644)?;
    writeln!(p, "{}", key.verifier()).with_context(|| format!("cannot write {}", public.display()))?;
    writeln!(out, "wrote the secret key to {} and the public key to {}:", file.display(), public.display())?;
    writeln!(out, "{}", key.verifier())?;
    Ok(Exit::Ok)
}

/// The signed note of `head` (origin: `origin`, else the key's name) with the key in `key_file`.
pub fn signed_checkpoint(head: &TreeHead, key_file: &Path, origin: Option<&str>) -> Result<String> {
    let text = crate::verify_proof::read_small(key_file)?;
    let key: SignerKey =
        text.trim().parse().map_err(|e| anyhow::anyhow!("{} is not a signing key: {e}", key_file.display()))?;
    let origin = origin.unwrap_or(key.name());
    let cp = Checkpoint::new(origin, head.tree_size, head.root_hash).map_err(|e| anyhow::anyhow!("--origin: {e}"))?;
    Ok(note::sign(&cp, &key))
}

/// A tree head as `/v1/digest` answers it.
pub fn tree_head_of(v: &Value) -> Result<TreeHead> {
    let text = |k: &str| v[k].as_str().with_context(|| format!("the server's tree head has no {k}"));
    Ok(TreeHead {
        tree_size: v["tree_size"].as_u64().context("the server's tree head has no tree_size")?,
        chain_hash: crate::verify_proof::hash(text("chain_hash")?, "chain_hash")?,
        root_hash: crate::verify_proof::hash(text("root_hash")?, "root_hash")?,
    })
}
