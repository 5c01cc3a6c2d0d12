//! Proof of liabilities at any moment: a Merkle sum tree (`custos_proof::sum`) over every
//! account's balances at a bound, so that each customer can check, with their own proof alone,
//! that their balances are counted in the published per-asset totals, and learn nothing of any
//! other account.
//!
//! - Assets: every asset of the balances at the bound, by symbol (byte order), each with its
//!   decimal places; a balance is its count of the asset's smallest units (u128).
//! - Leaves: every account the balances hold at the bound (zero balances included). Each
//!   leaf's salt is `SHA-256("custos liabilities v1" || secret || account)`, where `secret` is
//!   32 random bytes drawn for this snapshot and never written: a proof reveals its own salt,
//!   and no other leaf's hash can be opened by guessing. Leaves are in the order of their
//!   salts, so the order says nothing either.
//! - What a proof shows of others: no account id; the sums of each sibling subtree, so the
//!   balances of one other, unnamed account (the leaf's sibling) and of groups of accounts.
//!   Hiding those too needs padding or commitments (Summa's, OKX's designs); not done.
//! - The root carries the per-asset totals; they equal the sum of the balances at the bound.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use custos_domain::Asset;
use custos_ledger::{Bound, Ledger, LedgerError};
use custos_proof::sum::{self, SumNode, SumTree};
use custos_proof::Hash;

/// The format name every root and proof carries.
pub const ENCODING: &str = "custos-liabilities-v1";

/// A snapshot: the bound, the assets, the root, each account's leaf, and the tree its proofs
/// are read from.
pub struct Liabilities {
    pub bound: Bound,
    pub assets: Vec<Asset>,
    pub root: SumNode,
    pub accounts: Vec<Leaf>,
    pub tree: SumTree,
}

/// One account's leaf: its salt and its balance in each asset, in units.
pub struct Leaf {
    pub account: String,
    pub salt: Hash,
    pub units: Vec<u128>,
}

fn units_of(balance: Decimal, asset: &Asset, account: &str) -> Result<u128, LedgerError> {
    let bad = || LedgerError::BadRequest(format!("the {asset} balance {balance} of {account} is not a count of units"));
    let (m, s) = (balance.mantissa(), balance.scale());
    let scaled = match asset.scale().checked_sub(s) {
        Some(up) => 10i128.checked_pow(up).and_then(|p| m.checked_mul(p)),
        None => {
            let p = 10i128.checked_pow(s - asset.scale()).ok_or_else(bad)?;
            (m % p == 0).then(|| m / p)
        }
    };
    scaled.and_then(|u| u128::try_from(u).ok()).ok_or_else(bad)
}

/// The total of `units` of `asset` as a decimal, exactly.
pub fn decimal_of(units: u128, asset: &Asset) -> Option<Decimal> {
    Decimal::try_from_i128_with_scale(i128::try_from(units).ok()?, asset.scale()).ok()
}

fn salt(secret: &Hash, account: &str) -> Hash {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"custos liabilities v1");
    h.update(secret);
    h.update(account.as_bytes());
    h.finalize().into()
}

/// The snapshot of the balances at `bound`, salted with `secret`.
pub fn snapshot(ledger: &Ledger, bound: &Bound, secret: &Hash) -> Result<Liabilities, LedgerError> {
    let balances = ledger.balances_at(bound)?;
    let rows = balances.rows(None, None, true);
    let mut assets: Vec<Asset> = rows.iter().map(|r| r.asset).collect();
    assets.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assets.dedup();
    let mut accounts: Vec<Leaf> = Vec::new();
    let mut rows: Vec<_> = rows.into_iter().map(|r| (r.account.as_str().to_string(), r.asset, r.balance)).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (account, asset, balance) in rows {
        if accounts.last().is_none_or(|l| l.account != account) {
            let s = salt(secret, &account);
            accounts.push(Leaf { account: account.clone(), salt: s, units: vec![0; assets.len()] });
        }
        let i = assets.iter().position(|a| *a == asset).expect("every row's asset is listed");
        let leaf = accounts.last_mut().expect("pushed above");
        leaf.units[i] = units_of(balance, &asset, &account)?;
    }
    // In the order of their salts, which only the snapshot's secret determines: a proof's
    // sibling leaf (whose balances it shows) is then an account it does not name.
    accounts.sort_by_key(|a| a.salt);
    let leaves: Vec<SumNode> = accounts.iter().map(|l| sum::leaf(&l.salt, &l.account, &l.units)).collect();
    let tree = SumTree::new(assets.len(), leaves)?;
    Ok(Liabilities { bound: *bound, assets, root: tree.root(), accounts, tree })
}

fn node_json(n: &SumNode) -> Value {
    json!({"hash": hex::encode(n.hash), "sums": n.sums.iter().map(u128::to_string).collect::<Vec<_>>()})
}

impl Liabilities {
    fn assets_json(&self) -> Value {
        self.assets.iter().map(|a| json!({"symbol": a.as_str(), "decimal_places": a.scale()})).collect()
    }

    /// The published root: the bound, the assets with their totals, the root node, and the
    /// log's tree head at the bound's seq.
    pub fn root_json(&self, log: &custos_ledger::TreeHead) -> Value {
        let totals: serde_json::Map<String, Value> = self
            .assets
            .iter()
            .zip(&self.root.sums)
            .map(|(a, u)| {
                (a.as_str().to_string(), decimal_of(*u, a).map_or(Value::Null, |d| d.normalize().to_string().into()))
            })
            .collect();
        json!({
            "encoding": ENCODING,
            "as_of": self.bound.as_of.to_string(),
            // A bound given as a seq has no transaction time of its own before the first event.
            "known_at": (self.bound.known_seq > 0 || self.bound.at_seq.is_none()).then(|| self.bound.known_at.to_string()),
            "known_seq": self.bound.known_seq,
            "accounts": self.accounts.len(),
            "assets": self.assets_json(),
            "totals": totals,
            "root": node_json(&self.root),
            "log": crate::proofs::tree_head_json(log),
        })
    }

    /// Account `i`'s proof as JSON: everything needed to check it against the root, nothing of
    /// any other account but its siblings' hashes and sums.
    pub fn proof_json(&self, i: usize) -> Value {
        let mut text = Vec::new();
        self.write_proof(&mut text, i).expect("writing to memory");
        serde_json::from_slice(&text).expect("the proof writer writes JSON")
    }

    /// Writes account `i`'s proof as one line of compact JSON (the fields of
    /// [`Liabilities::proof_json`]), without building a JSON value: a snapshot of every account
    /// writes hundreds of megabytes.
    pub fn write_proof(&self, w: &mut impl std::io::Write, i: usize) -> std::io::Result<()> {
        let (leaf, proof) = (&self.accounts[i], self.tree.proof(i as u64));
        let quoted = |s: &str| serde_json::to_string(s).expect("a string encodes");
        write!(
            w,
            "{{\"encoding\":\"{ENCODING}\",\"as_of\":{},\"known_seq\":{},\"account\":{},\"salt\":\"{}\",\"assets\":{},\"balances\":{{",
            quoted(&self.bound.as_of.to_string()),
            self.bound.known_seq,
            quoted(&leaf.account),
            hex::encode(leaf.salt),
            self.assets_json()
        )?;
        for (n, (a, u)) in self.assets.iter().zip(&leaf.units).enumerate() {
            let shown = decimal_of(*u, a).map_or("null".into(), |d| quoted(&d.normalize().to_string()));
            write!(w, "{}{}:{shown}", if n > 0 { "," } else { "" }, quoted(a.as_str()))?;
        }
        write!(w, "}},\"units\":")?;
        write_units(w, &leaf.units)?;
        write!(w, ",\"leaf_index\":{},\"leaf_count\":{},\"siblings\":[", proof.leaf_index, proof.leaf_count)?;
        for (n, s) in proof.siblings.iter().enumerate() {
            if n > 0 {
                w.write_all(b",")?;
            }
            write_node(w, s)?;
        }
        write!(w, "],\"root\":")?;
        write_node(w, &self.root)?;
        w.write_all(b"}")
    }
}

fn write_units(w: &mut impl std::io::Write, units: &[u128]) -> std::io::Result<()> {
    w.write_all(b"[")?;
    for (n, u) in units.iter().enumerate() {
        write!(w, "{}\"{u}\"", if n > 0 { "," } else { "" })?;
    }
    w.write_all(b"]")
}

fn write_node(w: &mut impl std::io::Write, n: &SumNode) -> std::io::Result<()> {
    write!(w, "{{\"hash\":\"{}\",\"sums\":", hex::encode(n.hash))?;
    write_units(w, &n.sums)?;
    w.write_all(b"}")
}
