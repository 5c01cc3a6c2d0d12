//! Balances per (account, asset): deposits - withdrawals + reversals + reimbursements.

use std::collections::BTreeMap;

use custos_domain::money::{add_exact, negate, sub_exact};
use custos_domain::{AccountId, Asset, Envelope, Event, FastMap, Seq, Timestamp};
use rust_decimal::Decimal;

use crate::codec::{config, dec, undec, AsSeq, Packed};
use crate::{counted, FoldError, Projection};

/// Per-asset flow totals, kept to assert conservation after folding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flows {
    pub deposited: Decimal,
    pub withdrawn: Decimal,
    pub reversed: Decimal,
    pub reimbursed: Decimal,
}

impl Flows {
    /// deposited - withdrawn + reversed + reimbursed, exactly (`None` past the asset's limit).
    pub fn net(&self, asset: &Asset) -> Option<Decimal> {
        let s = asset.scale();
        let inflow = add_exact(add_exact(self.deposited, self.reversed, s)?, self.reimbursed, s)?;
        sub_exact(inflow, self.withdrawn, s)
    }
}

/// One account's balance per asset it has held. The first two are inline (most accounts hold
/// one or two), so a lookup of the account brings its balances with it; cloning costs no
/// allocation unless the account holds more. Equality ignores the order assets arrived in.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    inline: [Option<(Asset, Decimal)>; 2],
    more: Vec<(Asset, Decimal)>,
}

impl Holdings {
    pub fn get(&self, asset: &Asset) -> Option<Decimal> {
        self.iter().find(|(a, _)| a == asset).map(|(_, b)| b)
    }

    /// Every (asset, balance), in the order the assets arrived.
    pub fn iter(&self) -> impl Iterator<Item = (Asset, Decimal)> + '_ {
        self.inline.iter().flatten().chain(self.more.iter()).copied()
    }

    pub fn len(&self) -> usize {
        self.inline.iter().flatten().count() + self.more.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `delta` to the balance of `asset` exactly (a new asset starts at zero); returns the
    /// new balance and whether the asset is new to the account, or `None` (and changes nothing)
    /// when the balance would pass the asset's limit.
    pub fn credit(&mut self, asset: &Asset, delta: Decimal) -> Option<(Decimal, bool)> {
        // One scan for the asset (this runs once per event of every fold).
        let held = match self.inline.iter().position(|e| e.is_some_and(|(a, _)| a == *asset)) {
            Some(i) => Some(&mut self.inline[i].as_mut().expect("found").1),
            None => self.more.iter_mut().find(|(a, _)| a == asset).map(|(_, b)| b),
        };
        if let Some(slot) = held {
            *slot = add_exact(*slot, delta, asset.scale())?;
            return Some((*slot, false));
        }
        // A new asset: nothing is inserted unless the credit is exact.
        let after = add_exact(Decimal::ZERO, delta, asset.scale())?;
        match self.inline.iter().position(Option::is_none) {
            Some(i) => self.inline[i] = Some((*asset, after)),
            None => self.more.push((*asset, after)),
        }
        Some((after, true))
    }
}

impl PartialEq for Holdings {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(a, b)| other.get(&a) == Some(b))
    }
}

impl Eq for Holdings {}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balances {
    last_seq: Seq,
    /// Per account, its holdings: one lookup per event, and account ids shared by the log's
    /// events compare by pointer. Cloning (which the point-in-time path does on every answer
    /// from the head) is one allocation plus reference counts.
    balances: FastMap<AccountId, Holdings>,
    /// The number of (account, asset) rows.
    rows: usize,
    flows: BTreeMap<Asset, Flows>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub account: AccountId,
    pub asset: Asset,
    pub balance: Decimal,
}

impl Balances {
    pub fn balance(&self, account: &AccountId, asset: &Asset) -> Decimal {
        self.balances.get(account).and_then(|h| h.get(asset)).unwrap_or_default()
    }

    pub fn flows(&self) -> &BTreeMap<Asset, Flows> {
        &self.flows
    }

    /// Rows sorted by account then asset; zero balances only when `all`.
    pub fn rows(&self, account: Option<&AccountId>, asset: Option<&Asset>, all: bool) -> Vec<BalanceRow> {
        let mut rows: Vec<BalanceRow> = self
            .balances
            .iter()
            .filter(|(a, _)| account.is_none_or(|want| want == *a))
            .flat_map(|(a, h)| h.iter().map(move |(s, b)| BalanceRow { account: a.clone(), asset: s, balance: b }))
            .filter(|r| asset.is_none_or(|want| *want == r.asset) && (all || !r.balance.is_zero()))
            .collect();
        rows.sort_unstable_by(|x, y| (x.account.as_str(), x.asset).cmp(&(y.account.as_str(), y.asset)));
        rows
    }

    /// Checks conservation: per asset, the sum of balances equals the net of the flows, and no
    /// balance is negative. A failure is a bug in the fold or a log that verify would reject
    /// (a checkpoint or events edited on disk), reported at the seq folded to.
    pub fn check_conserved(&self) -> Result<(), FoldError> {
        let broken = |what: String| FoldError::new(self.last_seq, what);
        let mut sums: BTreeMap<Asset, Decimal> = BTreeMap::new();
        for (asset, b) in self.balances.values().flat_map(Holdings::iter) {
            if b < Decimal::ZERO {
                return Err(broken(format!("a balance of {asset} is negative ({b})")));
            }
            let sum = sums.entry(asset).or_default();
            *sum = add_exact(*sum, b, asset.scale())
                .ok_or_else(|| broken(format!("the balances of {asset} add up past its limit")))?;
        }
        for (asset, flows) in &self.flows {
            let sum = sums.get(asset).copied().unwrap_or_default();
            let net = flows.net(asset).ok_or_else(|| broken(format!("the flows of {asset} pass its limit")))?;
            if sum != net {
                return Err(broken(format!("the balances of {asset} add up to {sum}, its flows to {net}")));
            }
        }
        Ok(())
    }

    fn credit(&mut self, env: &Envelope, asset: &Asset, delta: Decimal, flow: Flow) -> Result<(), FoldError> {
        let account =
            env.stream.account().ok_or_else(|| FoldError::new(env.seq, "a balance event on the ledger stream"))?;
        let holdings = match self.balances.get_mut(account) {
            Some(h) => h,
            None => self.balances.entry(account.clone()).or_default(),
        };
        let broken = |what: &str| FoldError::new(env.seq, format!("the {what} of {asset} in {account}"));
        let flows = self.flows.entry(*asset).or_default();
        let total = match flow {
            Flow::Deposited => &mut flows.deposited,
            Flow::Withdrawn => &mut flows.withdrawn,
            Flow::Reversed => &mut flows.reversed,
            Flow::Reimbursed => &mut flows.reimbursed,
        };
        let new_total = add_exact(*total, delta.abs(), asset.scale())
            .ok_or_else(|| broken("ledger-wide flow would pass the limit, at the event"))?;
        let (balance, new) = holdings.credit(asset, delta).ok_or_else(|| broken("balance would pass the limit"))?;
        if balance < Decimal::ZERO {
            return Err(broken(&format!("balance would go below zero ({balance})")));
        }
        *total = new_total;
        self.rows += usize::from(new);
        Ok(())
    }
}

/// Which flow an event adds to.
#[derive(Clone, Copy)]
enum Flow {
    Deposited,
    Withdrawn,
    Reversed,
    Reimbursed,
}

impl Projection for Balances {
    const NAME: &'static str = "balances";
    /// 3: decimals packed (2 stored them in 16 bytes); 2: one flat (account, asset) table in
    /// checkpoints (1 grouped balances by account).
    const SCHEMA_VERSION: u32 = 3;

    fn apply(&mut self, env: &Envelope, as_of: Timestamp) -> Result<(), FoldError> {
        self.last_seq = env.seq;
        if !counted(env, as_of) {
            return Ok(());
        }
        match &env.event {
            Event::Deposited { asset, amount, .. } => self.credit(env, asset, amount.value(), Flow::Deposited),
            Event::Withdrawn { asset, amount, .. } => self.credit(env, asset, negate(amount.value()), Flow::Withdrawn),
            Event::Reversed { asset, amount, .. } => self.credit(env, asset, amount.value(), Flow::Reversed),
            Event::Reimbursed { asset, amount, .. } => self.credit(env, asset, amount.value(), Flow::Reimbursed),
            Event::WithdrawalFlagged(_) | Event::WithdrawalsSuspended { .. } | Event::WithdrawalsResumed => Ok(()),
        }
    }

    fn last_seq(&self) -> Seq {
        self.last_seq
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        // Borrowed strings encode exactly like owned ones (length, then bytes).
        let rows = AsSeq(self.rows, || {
            self.balances
                .iter()
                .flat_map(|(a, h)| h.iter().map(move |(s, b)| -> (&str, Asset, Packed) { (a.as_str(), s, dec(b)) }))
        });
        let flows: Vec<(&str, [Packed; 4])> = self
            .flows
            .iter()
            .map(|(s, f)| (s.as_str(), [dec(f.deposited), dec(f.withdrawn), dec(f.reversed), dec(f.reimbursed)]))
            .collect();
        bincode::encode_into_std_write((self.last_seq, rows, flows), out, config())
            .expect("encoding to a Vec cannot fail");
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Self::decode_rows(bytes, None)
    }
}

impl Balances {
    /// Decodes a checkpoint keeping only the balances of accounts `keep` accepts (the flows
    /// stay whole): a partial state, for answers about those accounts only (a replay needs the
    /// accounts its window touches). Rows of other accounts are parsed, never allocated.
    pub fn decode_accounts(bytes: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<Self> {
        Self::decode_rows(bytes, Some(keep))
    }

    fn decode_rows(bytes: &[u8], keep: Option<&dyn Fn(&str) -> bool>) -> Option<Self> {
        // Borrowed: the strings are read in place, one allocation per kept row (the account's Arc).
        type Stored<'a> = (u64, Vec<(&'a str, &'a str, Packed)>, Vec<(&'a str, [Packed; 4])>);
        let ((last_seq, rows, flows), used): (Stored<'_>, usize) =
            bincode::borrow_decode_from_slice(bytes, config()).ok()?;
        if used != bytes.len() {
            return None;
        }
        let mut balances: FastMap<AccountId, Holdings> = FastMap::default();
        let mut count = 0;
        for (a, s, b) in rows {
            if keep.is_none_or(|keep| keep(a)) {
                let holdings = match balances.get_mut(a) {
                    Some(h) => h,
                    None => balances.entry(AccountId::new(a).ok()?).or_default(),
                };
                let (_, new) = holdings.credit(&Asset::new(s).ok()?, undec(b)?)?;
                if !new {
                    return None; // the same (account, asset) twice
                }
                count += 1;
            }
        }
        let mut out = Balances { last_seq, balances, rows: count, flows: BTreeMap::new() };
        for (s, [d, w, rv, rb]) in flows {
            out.flows.insert(
                Asset::new(s).ok()?,
                Flows { deposited: undec(d)?, withdrawn: undec(w)?, reversed: undec(rv)?, reimbursed: undec(rb)? },
            );
        }
        Some(out)
    }
}
