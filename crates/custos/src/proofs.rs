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

/// What `verify-proof` is given beside the file: a public key, a signed checkpoint, a
/// liabilities root.
pub struct Given<'a> {
    pub key: Option<&'a str>,
    pub checkpoint: Option<&'a Path>,
    pub root: Option<&'a Path>,
}

/// Checks the proof or signed checkpoint in `file` (`-`: standard input), against a signed
/// checkpoint or a published liabilities root when one is given; exit 1 when it does not
/// verify.
pub fn verify_file(file: &Path, given: Given, out: &mut impl Write) -> Result<Exit> {
    let Given { key, checkpoint, root } = given;
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
        if v.get("siblings").is_some() {
            let published =
                root.map(|r| read_small(r).and_then(|t| Ok(serde_json::from_str::<Value>(&t)?))).transpose()?;
            check_liability(&v, published.as_ref(), out)?
        } else if v.get("audit_path").is_some() {
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

fn units(v: &Value, what: &str) -> Result<Vec<u128>> {
    let items = v.as_array().with_context(|| format!("{what} is not a list"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, u)| {
            u.as_str().and_then(|s| s.parse().ok()).with_context(|| format!("{what}[{i}] is not a count of units"))
        })
        .collect()
}

fn sum_node(v: &Value, what: &str) -> Result<custos_proof::sum::SumNode> {
    Ok(custos_proof::sum::SumNode {
        hash: hash_of(v.get("hash").with_context(|| format!("{what} has no hash"))?, &format!("{what}.hash"))?,
        sums: units(v.get("sums").with_context(|| format!("{what} has no sums"))?, &format!("{what}.sums"))?,
    })
}

/// A liabilities proof: the leaf from the account, salt and units; the path to the root with
/// every sum checked; the balances shown equal to the units proved; and, when given, the root
/// and assets equal to the published ones.
fn check_liability(v: &Value, published: Option<&Value>, out: &mut impl Write) -> Result<Result<(), String>> {
    let account = field(v, "account")?.as_str().context("field \"account\" is not a string")?;
    let salt = hash_of(field(v, "salt")?, "salt")?;
    let proved = units(field(v, "units")?, "units")?;
    let (index, count) = (size(v, "leaf_index")?, size(v, "leaf_count")?);
    let siblings = field(v, "siblings")?.as_array().context("field \"siblings\" is not a list")?;
    let siblings: Vec<_> =
        siblings.iter().enumerate().map(|(i, s)| sum_node(s, &format!("siblings[{i}]"))).collect::<Result<_>>()?;
    let root = sum_node(field(v, "root")?, "root")?;
    if let Err(e) = custos_proof::sum::verify_liability(&salt, account, &proved, index, count, &siblings, &root) {
        return Ok(Err(e.to_string()));
    }
    let assets = field(v, "assets")?.as_array().context("field \"assets\" is not a list")?;
    if assets.len() != proved.len() {
        return Ok(Err(format!("{} assets are listed for {} balances", assets.len(), proved.len())));
    }
    let mut lines = Vec::new();
    for ((a, u), total) in assets.iter().zip(&proved).zip(&root.sums) {
        let symbol = a["symbol"].as_str().unwrap_or_default();
        let places = a["decimal_places"].as_u64().and_then(|p| u32::try_from(p).ok()).context("decimal_places")?;
        let shown = |units: u128| {
            i128::try_from(units).ok().and_then(|u| rust_decimal::Decimal::try_from_i128_with_scale(u, places).ok())
        };
        let (mine, all) = (shown(*u), shown(*total));
        if v["balances"][symbol].as_str() != mine.map(|d| d.normalize().to_string()).as_deref() {
            return Ok(Err(format!("the {symbol} balance shown is not the {u} units proved")));
        }
        let (mine, all) = (mine.unwrap_or_default().normalize(), all.unwrap_or_default().normalize());
        lines.push(format!("{symbol}: {mine} of the {all} in all"));
    }
    if let Some(p) = published {
        if p["root"] != v["root"] || p["assets"] != v["assets"] {
            return Ok(Err("the proof's root or asset list is not the published root's".into()));
        }
    }
    writeln!(
        out,
        "verified: {account}'s balances are counted in the liabilities with root {}",
        hex::encode(root.hash)
    )?;
    for l in lines {
        writeln!(out, "  {l}")?;
    }
    if published.is_some() {
        writeln!(out, "and that root is the published one")?;
    }
    Ok(Ok(()))
}

/// 32 bytes from the operating system's generator.
fn random_32() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("cannot read random bytes from /dev/urandom")?;
    Ok(seed)
}

/// Writes a liabilities snapshot at `bound` to `folder` (root.json, proofs.jsonl); prints a
/// summary, and `account`'s proof when asked.
pub fn liabilities(
    ledger: &custos_ledger::Ledger,
    bound: &custos_ledger::Bound,
    folder: &Path,
    account: Option<&str>,
    out: &mut impl Write,
) -> Result<Exit> {
    let root_file = folder.join("root.json");
    if root_file.exists() {
        bail!("{} exists: a published snapshot is never overwritten (choose another --out)", root_file.display());
    }
    let snap = custos_report::liabilities::snapshot(ledger, bound, &random_32()?)?;
    let wanted = match account {
        Some(a) => Some(snap.accounts.iter().position(|l| l.account == a).with_context(|| {
            format!("account {a} has no balance at this bound (seq {}): nothing of it to prove", bound.known_seq)
        })?),
        None => None,
    };
    std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let head = ledger.tree_head(Some(bound.known_seq))?;
    let mut proofs = std::io::BufWriter::new(
        std::fs::File::create(folder.join("proofs.jsonl"))
            .with_context(|| format!("cannot create {}", folder.join("proofs.jsonl").display()))?,
    );
    for i in 0..snap.accounts.len() {
        snap.write_proof(&mut proofs, i)?;
        proofs.write_all(b"\n")?;
    }
    proofs.flush()?;
    let root = snap.root_json(&head);
    std::fs::write(&root_file, format!("{}\n", serde_json::to_string_pretty(&root)?))
        .with_context(|| format!("cannot write {}", root_file.display()))?;
    writeln!(
        out,
        "wrote the liabilities of {} accounts at seq {} to {} (root.json, proofs.jsonl): root {}",
        snap.accounts.len(),
        bound.known_seq,
        folder.display(),
        hex::encode(snap.root.hash)
    )?;
    for (a, total) in snap.assets.iter().zip(&snap.root.sums) {
        let shown = custos_report::liabilities::decimal_of(*total, a).map_or("?".into(), |d| d.normalize().to_string());
        writeln!(out, "  {a}: {shown}")?;
    }
    if let Some(i) = wanted {
        writeln!(out, "{}", serde_json::to_string_pretty(&snap.proof_json(i))?)?;
    }
    Ok(Exit::Ok)
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
    let seed = random_32()?;
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
