//! Balances per (account, asset): deposits - withdrawals + reversals + reimbursements.

use std::collections::{BTreeMap, HashMap};

use custos_domain::{AccountId, Asset, Envelope, Event, Seq, Timestamp};
use rust_decimal::Decimal;

use crate::codec::{config, dec, undec};
use crate::{counted, Projection};

/// Per-asset flow totals, kept to assert conservation after folding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flows {
    pub deposited: Decimal,
    pub withdrawn: Decimal,
    pub reversed: Decimal,
    pub reimbursed: Decimal,
}

impl Flows {
    pub fn net(&self) -> Decimal {
        self.deposited - self.withdrawn + self.reversed + self.reimbursed
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balances {
    last_seq: Seq,
    balances: HashMap<AccountId, HashMap<Asset, Decimal>>,
    flows: BTreeMap<Asset, Flows>,
}

/// An account's balances as a checkpoint stores them: account, then (asset, exact decimal).
type StoredAccount = (String, Vec<(String, [u8; 16])>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub account: AccountId,
    pub asset: Asset,
    pub balance: Decimal,
}

impl Balances {
    pub fn balance(&self, account: &AccountId, asset: &Asset) -> Decimal {
        self.balances
            .get(account)
            .and_then(|m| m.get(asset))
            .copied()
            .unwrap_or_default()
    }

    pub fn flows(&self) -> &BTreeMap<Asset, Flows> {
        &self.flows
    }

    /// Rows sorted by account then asset; zero balances only when `all`.
    pub fn rows(
        &self,
        account: Option<&AccountId>,
        asset: Option<&Asset>,
        all: bool,
    ) -> Vec<BalanceRow> {
        let mut rows: Vec<BalanceRow> = Vec::new();
        let mut push = |a: &AccountId, m: &HashMap<Asset, Decimal>| {
            for (s, b) in m {
                if asset.is_some_and(|want| want != s) || (!all && b.is_zero()) {
                    continue;
                }
                rows.push(BalanceRow {
                    account: a.clone(),
                    asset: s.clone(),
                    balance: *b,
                });
            }
        };
        match account {
            Some(a) => {
                if let Some(m) = self.balances.get(a) {
                    push(a, m)
                }
            }
            None => self.balances.iter().for_each(|(a, m)| push(a, m)),
        }
        rows.sort_unstable_by(|x, y| (&x.account, &x.asset).cmp(&(&y.account, &y.asset)));
        rows
    }

    /// Asserts conservation: per asset, the sum of balances equals the net of the flows, and no
    /// balance is negative. A failure is a bug in the fold or a log that verify would reject.
    pub fn assert_conserved(&self) {
        let mut sums: BTreeMap<&Asset, Decimal> = BTreeMap::new();
        for m in self.balances.values() {
            for (asset, b) in m {
                assert!(
                    *b >= Decimal::ZERO,
                    "negative balance of {asset} after folding to seq {}",
                    self.last_seq
                );
                *sums.entry(asset).or_default() += *b;
            }
        }
        for (asset, flows) in &self.flows {
            let sum = sums.get(asset).copied().unwrap_or_default();
            assert_eq!(
                sum,
                flows.net(),
                "balances of {asset} do not add up to its flows at seq {}",
                self.last_seq
            );
        }
    }

    fn credit(&mut self, env: &Envelope, asset: &Asset, delta: Decimal) {
        let account = env
            .stream
            .account()
            .expect("balance events are on account streams");
        let by_asset = match self.balances.get_mut(account) {
            Some(m) => m,
            None => self.balances.entry(account.clone()).or_default(),
        };
        match by_asset.get_mut(asset) {
            Some(b) => *b += delta,
            None => {
                by_asset.insert(asset.clone(), delta);
            }
        }
    }

    fn flows_mut(&mut self, asset: &Asset) -> &mut Flows {
        if !self.flows.contains_key(asset) {
            self.flows.insert(asset.clone(), Flows::default());
        }
        self.flows.get_mut(asset).expect("just inserted")
    }
}

impl Projection for Balances {
    const NAME: &'static str = "balances";
    const SCHEMA_VERSION: u32 = 1;

    fn apply(&mut self, env: &Envelope, as_of: Timestamp) {
        self.last_seq = env.seq;
        if !counted(env, as_of) {
            return;
        }
        match &env.event {
            Event::Deposited { asset, amount, .. } => {
                self.credit(env, asset, amount.value());
                self.flows_mut(asset).deposited += amount.value();
            }
            Event::Withdrawn { asset, amount, .. } => {
                self.credit(env, asset, -amount.value());
                self.flows_mut(asset).withdrawn += amount.value();
            }
            Event::Reversed { asset, amount, .. } => {
                self.credit(env, asset, amount.value());
                self.flows_mut(asset).reversed += amount.value();
            }
            Event::Reimbursed { asset, amount, .. } => {
                self.credit(env, asset, amount.value());
                self.flows_mut(asset).reimbursed += amount.value();
            }
            Event::WithdrawalFlagged(_)
            | Event::WithdrawalsSuspended { .. }
            | Event::WithdrawalsResumed => {}
        }
    }

    fn last_seq(&self) -> Seq {
        self.last_seq
    }

    fn encode(&self) -> Vec<u8> {
        let rows: Vec<StoredAccount> = self
            .balances
            .iter()
            .map(|(a, m)| {
                (
                    a.as_str().to_string(),
                    m.iter()
                        .map(|(s, b)| (s.as_str().to_string(), dec(*b)))
                        .collect(),
                )
            })
            .collect();
        let flows: Vec<(String, [[u8; 16]; 4])> = self
            .flows
            .iter()
            .map(|(s, f)| {
                (
                    s.as_str().to_string(),
                    [
                        dec(f.deposited),
                        dec(f.withdrawn),
                        dec(f.reversed),
                        dec(f.reimbursed),
                    ],
                )
            })
            .collect();
        bincode::encode_to_vec((self.last_seq, rows, flows), config())
            .expect("encoding to a Vec cannot fail")
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        type Stored = (
            u64,
            Vec<(String, Vec<(String, [u8; 16])>)>,
            Vec<(String, [[u8; 16]; 4])>,
        );
        let ((last_seq, rows, flows), used): (Stored, usize) =
            bincode::decode_from_slice(bytes, config()).ok()?;
        if used != bytes.len() {
            return None;
        }
        let mut out = Balances {
            last_seq,
            ..Default::default()
        };
        for (a, m) in rows {
            let account = AccountId::new(&a).ok()?;
            let mut by_asset = HashMap::with_capacity(m.len());
            for (s, b) in m {
                by_asset.insert(Asset::new(&s).ok()?, undec(b)?);
            }
            out.balances.insert(account, by_asset);
        }
        for (s, [d, w, rv, rb]) in flows {
            out.flows.insert(
                Asset::new(&s).ok()?,
                Flows {
                    deposited: undec(d)?,
                    withdrawn: undec(w)?,
                    reversed: undec(rv)?,
                    reimbursed: undec(rb)?,
                },
            );
        }
        Some(out)
    }
}
