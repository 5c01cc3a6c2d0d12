//! `custos verify-proof`: checks a proof offline, with no ledger: an inclusion or consistency
//! proof (`custos prove`), a liabilities proof (one line of `proofs.jsonl`) or a signed
//! checkpoint (`custos digest --sign`). The checks are `custos-proof`'s; this module reads the
//! files strictly (an unknown or repeated field, or a file of two kinds, is refused: the
//! reader of a file and this check must see the same proof) and says what was proved.
//!
//! Exit codes: 0 verified; 1 read, and does not verify; 2 could not be read or options that
//! do not apply to it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use custos_proof::note::{self, Checkpoint, VerifierKey};
use custos_proof::sum::SumNode;
use custos_proof::{tree, verify, Hash, ProofError};
use serde::Deserialize;

use crate::Exit;

/// Proof files are small: a path of at most 64 hashes and one event, or a liabilities proof
/// of some thousands of bytes.
const PROOF_BYTES_MAX: u64 = 1 << 20;

/// What `verify-proof` is given beside the file.
pub struct Given<'a> {
    /// A public key: NAME+ID+KEY, or a file holding one.
    pub key: Option<&'a str>,
    /// Signed checkpoints (by `key`) a proof's tree sizes and roots must match.
    pub checkpoints: &'a [std::path::PathBuf],
    /// A published liabilities root.json.
    pub root: Option<&'a Path>,
}

/// A small file, `-` for standard input; refused past `PROOF_BYTES_MAX`.
pub fn read_small(file: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    let limit = PROOF_BYTES_MAX + 1;
    let read = if file == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            bail!("{} is a folder, not a file", file.display());
        }
        f.take(limit).read_to_end(&mut bytes)
    };
    read.with_context(|| format!("cannot read {}", file.display()))?;
    if bytes.len() as u64 > PROOF_BYTES_MAX {
        bail!("{} is over {} bytes: not a proof, key or checkpoint", file.display(), PROOF_BYTES_MAX);
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", file.display()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionFile {
    tree_size: u64,
    leaf_index: u64,
    leaf: String,
    leaf_hash: String,
    audit_path: Vec<String>,
    root_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyFile {
    first_size: u64,
    second_size: u64,
    first_root: String,
    second_root: String,
    path: Vec<String>,
}

#[derive(Deserialize, PartialEq, Eq, Clone)]
#[serde(deny_unknown_fields)]
struct AssetEntry {
    symbol: String,
    decimal_places: u32,
}

#[derive(Deserialize, PartialEq, Eq, Clone)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    hash: String,
    sums: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiabilityFile {
    encoding: String,
    as_of: String,
    known_seq: u64,
    account: String,
    salt: String,
    assets: Vec<AssetEntry>,
    balances: BTreeMap<String, String>,
    units: Vec<String>,
    leaf_index: u64,
    leaf_count: u64,
    siblings: Vec<NodeEntry>,
    root: NodeEntry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RootFile {
    encoding: String,
    as_of: String,
    #[allow(dead_code)]
    known_at: Option<String>,
    known_seq: u64,
    accounts: u64,
    assets: Vec<AssetEntry>,
    totals: BTreeMap<String, String>,
    root: NodeEntry,
    log: LogHead,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogHead {
    seq: u64,
    chain_hash: String,
    tree_size: u64,
    root_hash: String,
    digest: String,
}

/// The kinds of file, told apart by a field only that kind has.
enum Kind {
    Inclusion,
    Consistency,
    Liability,
    Checkpoint,
}

fn kind_of(text: &str, file: &Path) -> Result<Kind> {
    if !text.trim_start().starts_with('{') {
        return Ok(Kind::Checkpoint);
    }
    let v: serde_json::Value = serde_json::from_str(text).with_context(|| format!("{} is not JSON", file.display()))?;
    let has = |k: &str| v.get(k).is_some();
    Ok(match (has("siblings"), has("audit_path"), has("first_size")) {
        (true, false, false) => Kind::Liability,
        (false, true, false) => Kind::Inclusion,
        (false, false, true) => Kind::Consistency,
        (false, false, false) if has("totals") => {
            bail!("{} is a liabilities root.json: give one account's proof, with --root {}", file.display(), file.display())
        }
        (false, false, false) => bail!(
            "{} is no proof custos writes (an inclusion proof has audit_path, a consistency proof first_size, a liabilities proof siblings)",
            file.display()
        ),
        _ => bail!("{} has the fields of two kinds of proof: refused, as a reader could take it for either", file.display()),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, file: &Path) -> Result<T> {
    serde_json::from_str(text).with_context(|| format!("{} is not a well-formed proof", file.display()))
}

pub fn hash(text: &str, what: &str) -> Result<Hash> {
    let b = hex::decode(text).with_context(|| format!("{what} is not hexadecimal"))?;
    b.try_into().map_err(|_| anyhow::anyhow!("{what} is not 32 bytes"))
}

fn hashes(items: &[String], what: &str) -> Result<Vec<Hash>> {
    items.iter().enumerate().map(|(i, h)| hash(h, &format!("{what}[{i}]"))).collect()
}

fn units(items: &[String], what: &str) -> Result<Vec<u128>> {
    items
        .iter()
        .enumerate()
        .map(|(i, u)| u.parse().with_context(|| format!("{what}[{i}] is not a count of units (0 or more)")))
        .collect()
}

fn sum_node(n: &NodeEntry, what: &str) -> Result<SumNode> {
    Ok(SumNode { hash: hash(&n.hash, &format!("{what}.hash"))?, sums: units(&n.sums, &format!("{what}.sums"))? })
}

/// A verifier key given as the key string or as a file holding it.
fn verifier_key(given: &str) -> Result<VerifierKey> {
    // A key string never has a slash before its first '+' (NAME+ID+BASE64); a path may.
    let looks_like_path = given.split('+').next().is_some_and(|name| name.contains('/')) && !given.contains('+')
        || given.ends_with(".pub");
    if looks_like_path && !Path::new(given).exists() {
        bail!("--key {given}: no such file");
    }
    let text = if Path::new(given).exists() { read_small(Path::new(given))? } else { given.to_string() };
    if text.trim_start().starts_with("PRIVATE+KEY+") {
        bail!("--key: that is a secret signing key; give its public key (the .pub file keygen wrote)");
    }
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("--key: not a public key NAME+ID+BASE64 (nor a file holding one): {e}"))
}

/// Opens a signed checkpoint: malformed is exit 2 (could not read it); a signature that does
/// not verify is a finding.
fn open_checkpoint(text: &str, key: &VerifierKey, what: &str) -> Result<Result<Checkpoint, String>> {
    match note::open(text, key) {
        Ok(cp) => Ok(Ok(cp)),
        Err(e @ (ProofError::BadSignature { .. } | ProofError::NoSignatureByKey { .. })) => {
            Ok(Err(format!("{what}: {e}")))
        }
        Err(e) => bail!("{what} is not a signed checkpoint: {e}"),
    }
}

/// Checks `file` with what is `given`; prints what it proves when it verifies, else why not.
pub fn verify_file(file: &Path, given: Given, out: &mut impl Write) -> Result<Exit> {
    let text = read_small(file)?;
    let kind = kind_of(&text, file)?;
    let key = given.key.map(verifier_key).transpose()?;
    match (&kind, &key, given.checkpoints.is_empty(), given.root.is_some()) {
        (Kind::Checkpoint, None, _, _) => {
            bail!("{} is not JSON; as a signed checkpoint it needs --key (the signer's public key)", file.display())
        }
        (Kind::Checkpoint, Some(_), false, _) | (Kind::Checkpoint, Some(_), _, true) => {
            bail!("--checkpoint and --root apply to proofs; {} is itself a checkpoint", file.display())
        }
        (Kind::Inclusion | Kind::Consistency, _, _, true) => bail!("--root applies to a liabilities proof"),
        (Kind::Liability, _, false, false) => {
            bail!("a liabilities proof is tied to a signed checkpoint through its root.json: give --root too")
        }
        (_, None, false, _) => bail!("--checkpoint needs --key (the public key it is signed by)"),
        (Kind::Inclusion | Kind::Consistency | Kind::Liability, Some(_), true, _) => {
            bail!("--key is used to check a --checkpoint; give the checkpoint too")
        }
        _ => {}
    }
    let mut signed = Vec::new();
    for c in given.checkpoints {
        match open_checkpoint(&read_small(c)?, key.as_ref().expect("checked above"), &c.display().to_string())? {
            Ok(cp) => signed.push(cp),
            Err(why) => return refused(out, &why),
        }
    }
    if let Some(other) = signed.iter().find(|cp| cp.origin() != signed[0].origin()) {
        bail!(
            "the checkpoints given are of two logs ({} and {}): give those of one",
            signed[0].origin(),
            other.origin()
        );
    }
    let mut said = Vec::new();
    let outcome = match kind {
        Kind::Checkpoint => {
            let key = key.as_ref().expect("checked above");
            open_checkpoint(&text, key, &file.display().to_string())?.map(|cp| {
                said.push(format!(
                    "verified: a checkpoint signed by {}+{:08x}: {}, tree size {}, root {}",
                    key.name(),
                    key.id(),
                    cp.origin(),
                    cp.tree_size(),
                    hex::encode(cp.root_hash())
                ))
            })
        }
        Kind::Inclusion => check_inclusion(&parse(&text, file)?, &signed, &mut said)?,
        Kind::Consistency => check_consistency(&parse(&text, file)?, &signed, &mut said)?,
        Kind::Liability => {
            let root = given
                .root
                .map(|r| {
                    read_small(r).and_then(|t| {
                        serde_json::from_str::<RootFile>(&t)
                            .with_context(|| format!("{} is not a well-formed liabilities root.json", r.display()))
                    })
                })
                .transpose()?;
            check_liability(&parse(&text, file)?, root.as_ref(), &signed, &mut said)?
        }
    };
    match outcome {
        Ok(()) => {
            for line in said {
                writeln!(out, "{line}")?;
            }
            Ok(Exit::Ok)
        }
        Err(why) => refused(out, &why),
    }
}

fn refused(out: &mut impl Write, why: &str) -> Result<Exit> {
    writeln!(out, "does NOT verify: {why}")?;
    Ok(Exit::Refused)
}

/// The note for a proof checked only against the root written in it.
const ONLY_ITS_OWN_ROOT: &str = "note: this checks the proof against the root written in it; compare that root with a digest or signed checkpoint you trust (--key K --checkpoint C does)";

/// Every signed checkpoint given must be of the tree (size, root): all of them are checked,
/// so the answer does not depend on their order.
fn against_checkpoints(size: u64, root: &Hash, signed: &[Checkpoint]) -> Result<(), String> {
    for cp in signed {
        if cp.tree_size() != size {
            return Err(format!(
                "a signed checkpoint of {} is of tree size {}, the tree of size {size}",
                cp.origin(),
                cp.tree_size()
            ));
        }
        if cp.root_hash() != root {
            return Err(format!(
                "the tree of size {size} has root {}, a signed checkpoint of {} signs root {}",
                hex::encode(root),
                cp.origin(),
                hex::encode(cp.root_hash())
            ));
        }
    }
    Ok(())
}

fn check_inclusion(p: &InclusionFile, signed: &[Checkpoint], said: &mut Vec<String>) -> Result<Result<(), String>> {
    let leaf = hex::decode(&p.leaf).context("leaf is not hexadecimal")?;
    let (claimed, root) = (hash(&p.leaf_hash, "leaf_hash")?, hash(&p.root_hash, "root_hash")?);
    let path = hashes(&p.audit_path, "audit_path")?;
    let leaf_hash = tree::leaf_hash(&leaf);
    if leaf_hash != claimed {
        return Ok(Err(format!("SHA-256(0x00 || leaf) is {}, not the leaf_hash given", hex::encode(leaf_hash))));
    }
    if let Err(e) = verify::verify_inclusion(&leaf_hash, p.leaf_index, p.tree_size, &path, &root) {
        return Ok(Err(e.to_string()));
    }
    if !signed.is_empty() {
        if let Err(why) = against_checkpoints(p.tree_size, &root, signed) {
            return Ok(Err(why));
        }
    }
    said.push(format!(
        "verified: leaf {} (seq {}) is in the log of {} events with root {}",
        p.leaf_index,
        p.leaf_index + 1,
        p.tree_size,
        hex::encode(root)
    ));
    match custos_domain::Envelope::decode(&leaf) {
        Ok(env) if env.seq == p.leaf_index + 1 => {
            said.push(format!(
                "the leaf is seq {}: {} {} on {} (stream version {}), occurred_at {}, recorded_at {}",
                env.seq,
                env.event.kind().event_name(),
                env.event_id,
                env.stream,
                env.stream_version,
                env.occurred_at,
                env.recorded_at
            ));
            if let Some((asset, amount)) = env.event.asset_amount() {
                said.push(format!("amount: {amount} {asset}"));
            }
        }
        Ok(env) => {
            return Ok(Err(format!(
                "the leaf decodes as seq {}, but leaf {} is seq {}",
                env.seq,
                p.leaf_index,
                p.leaf_index + 1
            )))
        }
        Err(e) => return Ok(Err(format!("the leaf is not a Custos event record ({e})"))),
    }
    said.push(match signed.first() {
        Some(cp) => format!("and it is the tree the checkpoint of {} signs at size {}", cp.origin(), cp.tree_size()),
        None => ONLY_ITS_OWN_ROOT.to_string(),
    });
    Ok(Ok(()))
}

fn check_consistency(p: &ConsistencyFile, signed: &[Checkpoint], said: &mut Vec<String>) -> Result<Result<(), String>> {
    let (first_root, second_root) = (hash(&p.first_root, "first_root")?, hash(&p.second_root, "second_root")?);
    let path = hashes(&p.path, "path")?;
    if let Err(e) = verify::verify_consistency(p.first_size, p.second_size, &first_root, &second_root, &path) {
        return Ok(Err(e.to_string()));
    }
    // Each checkpoint given must sign one end of the proof (the one held before, or the new one).
    for cp in signed {
        let end = [(p.first_size, &first_root), (p.second_size, &second_root)]
            .into_iter()
            .find(|(s, _)| *s == cp.tree_size());
        match end {
            Some((_, root)) if cp.root_hash() == root => {}
            Some((size, root)) => {
                return Ok(Err(format!(
                    "the proof's tree of size {size} has root {}, the checkpoint of {} signs root {}",
                    hex::encode(root),
                    cp.origin(),
                    hex::encode(cp.root_hash())
                )))
            }
            None => {
                return Ok(Err(format!(
                    "the checkpoint of {} is of tree size {}, neither end of the proof ({} and {})",
                    cp.origin(),
                    cp.tree_size(),
                    p.first_size,
                    p.second_size
                )))
            }
        }
    }
    said.push(format!(
        "verified: the log of {} events (root {}) extends the log of {} events (root {}) unchanged",
        p.second_size,
        hex::encode(second_root),
        p.first_size,
        hex::encode(first_root)
    ));
    let anchored = |size: u64| signed.iter().find(|cp| cp.tree_size() == size);
    for (end, size) in [("earlier", p.first_size), ("later", p.second_size)] {
        said.push(match anchored(size) {
            Some(cp) => format!("its {end} tree (size {size}) is the one the checkpoint of {} signs", cp.origin()),
            None => format!("its {end} tree (size {size}) is not checked against a signed checkpoint"),
        });
    }
    if signed.is_empty() {
        said.push(ONLY_ITS_OWN_ROOT.to_string());
    }
    Ok(Ok(()))
}

fn decimal(units: u128, places: u32) -> Option<rust_decimal::Decimal> {
    let d = rust_decimal::Decimal::try_from_i128_with_scale(i128::try_from(units).ok()?, places).ok()?;
    Some(d.normalize())
}

/// A liabilities proof: the leaf from the account, salt and units; the path to the root with
/// every sum checked; the balances shown equal to the units proved; with `root.json`, the
/// proof's root, assets, moment and leaf count equal to the published ones and the published
/// totals equal to its root's sums; with checkpoints, root.json's log head signed.
fn check_liability(
    p: &LiabilityFile,
    published: Option<&RootFile>,
    signed: &[Checkpoint],
    said: &mut Vec<String>,
) -> Result<Result<(), String>> {
    let salt = hash(&p.salt, "salt")?;
    let proved = units(&p.units, "units")?;
    let siblings: Vec<SumNode> =
        p.siblings.iter().enumerate().map(|(i, s)| sum_node(s, &format!("siblings[{i}]"))).collect::<Result<_>>()?;
    let root = sum_node(&p.root, "root")?;
    if p.encoding != custos_report::liabilities::ENCODING {
        bail!(
            "encoding {:?} is not {:?}, the one this verifier reads",
            p.encoding,
            custos_report::liabilities::ENCODING
        );
    }
    if p.assets.len() != proved.len() || p.balances.len() != proved.len() {
        return Ok(Err(format!(
            "{} assets and {} balances are listed for {} units",
            p.assets.len(),
            p.balances.len(),
            proved.len()
        )));
    }
    if let Err(e) =
        custos_proof::sum::verify_liability(&salt, &p.account, &proved, p.leaf_index, p.leaf_count, &siblings, &root)
    {
        let e = e.to_string();
        // The crate names an asset by its position; the reader knows it by its symbol.
        let named = p
            .assets
            .iter()
            .enumerate()
            .fold(e, |e, (i, a)| e.replace(&format!("asset {i}"), &format!("asset {}", a.symbol)));
        return Ok(Err(named));
    }
    let mut lines = Vec::new();
    for ((a, u), total) in p.assets.iter().zip(&proved).zip(&root.sums) {
        let (mine, all) = (decimal(*u, a.decimal_places), decimal(*total, a.decimal_places));
        if p.balances.get(&a.symbol).map(String::as_str) != mine.map(|d| d.to_string()).as_deref() {
            return Ok(Err(format!("the {} balance shown is not the {u} units proved", a.symbol)));
        }
        lines.push(format!("  {}: {} of the {} in all", a.symbol, mine.unwrap_or_default(), all.unwrap_or_default()));
    }
    if let Some(r) = published {
        if let Err(why) = same_snapshot(p, &root, r) {
            return Ok(Err(why));
        }
        if !signed.is_empty() {
            if let Err(why) =
                against_checkpoints(r.log.tree_size, &hash(&r.log.root_hash, "root.json log.root_hash")?, signed)
            {
                return Ok(Err(format!(
                    "root.json's log head: {}",
                    why.replace("the tree of size", "root.json's tree of size")
                )));
            }
        }
    }
    said.push(format!(
        "verified: {}'s balances as of {} (seq {}) are counted in the liabilities with root {}",
        p.account,
        p.as_of,
        p.known_seq,
        hex::encode(root.hash)
    ));
    said.extend(lines);
    said.push(match (published, signed.first()) {
        (Some(r), None) => format!(
            "and that root is the published one ({} accounts); note: root.json's log head (size {}) is not checked against a signed checkpoint (--key K --checkpoint C does)",
            r.accounts, r.log.tree_size
        ),
        (Some(r), Some(cp)) => format!(
            "and that root is the published one ({} accounts), computed from the log of {} events the checkpoint of {} signs",
            r.accounts,
            r.log.tree_size,
            cp.origin()
        ),
        (None, _) => "note: compare that root with the published root.json (--root does)".to_string(),
    });
    Ok(Ok(()))
}

/// The proof and root.json are of one snapshot, and root.json's totals are its root's sums.
fn same_snapshot(p: &LiabilityFile, root: &SumNode, r: &RootFile) -> Result<(), String> {
    let published = sum_node(&r.root, "root.json root").map_err(|e| e.to_string())?;
    if r.encoding != p.encoding {
        return Err(format!("the proof's encoding is {:?}, root.json's {:?}", p.encoding, r.encoding));
    }
    if r.assets != p.assets {
        return Err("the proof's asset list is not root.json's".into());
    }
    if published != *root {
        return Err(format!(
            "the proof reaches root {}, root.json publishes root {}",
            hex::encode(root.hash),
            hex::encode(published.hash)
        ));
    }
    if r.as_of != p.as_of || r.known_seq != p.known_seq {
        return Err(format!(
            "the proof is of as_of {} at seq {}, root.json of as_of {} at seq {}",
            p.as_of, p.known_seq, r.as_of, r.known_seq
        ));
    }
    let digest = format!("{}:{}", r.log.seq, r.log.chain_hash);
    if r.log.seq != r.known_seq || r.log.tree_size != r.known_seq || r.log.digest != digest {
        return Err(format!(
            "root.json's log head (seq {}, tree size {}, digest {}) is not the log at its known_seq {}",
            r.log.seq, r.log.tree_size, r.log.digest, r.known_seq
        ));
    }
    if r.accounts != p.leaf_count {
        return Err(format!("the proof is one of {} leaves, root.json counts {} accounts", p.leaf_count, r.accounts));
    }
    if r.totals.len() != r.assets.len() {
        return Err("root.json's totals do not list each asset once".into());
    }
    for (a, total) in r.assets.iter().zip(&published.sums) {
        if r.totals.get(&a.symbol).map(String::as_str)
            != decimal(*total, a.decimal_places).map(|d| d.to_string()).as_deref()
        {
            return Err(format!("root.json's {} total is not the {total} units its root sums", a.symbol));
        }
    }
    Ok(())
}
