//! Loss totals over unauthorized withdrawals, per asset and group (DESIGN.md, "Semantics"):
//! attempted, prevented, completed = attempted - prevented, reimbursed,
//! outstanding = completed - reimbursed, each in units and USD, and accounts affected.

use std::collections::BTreeMap;

use custos_domain::money::{add_exact, USD_SCALE};
use custos_domain::{AccountId, Amount, Asset, AssetGroup, Envelope, Event, FastSet, Seq, Timestamp, Usd};
use rust_decimal::Decimal;

use crate::codec::{config, dec, undec, AsSeq, Packed};
use crate::{counted, FoldError, Projection};

/// The name of the row that sums every group.
pub const GROUP_TOTAL: &str = "total";

/// The loss columns that are summed; completed and outstanding are derived. Units are summed
/// per asset only (a group of several assets keeps its units at zero: they are not shown).
/// The derived columns subtract quantities of one scale that are each non-negative and within
/// the limit, which cannot overflow or round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossCols {
    pub attempted: Decimal,
    pub prevented: Decimal,
    pub reimbursed: Decimal,
    pub attempted_usd: Decimal,
    pub prevented_usd: Decimal,
    pub reimbursed_usd: Decimal,
    /// How many of the attempted withdrawals have no USD value: every USD column then sums
    /// the priced ones only (an unknown value is never counted as zero without saying so).
    pub unpriced: u64,
}

// Each a subtraction of two non-negative sums of one scale within its limit (see the type's
// doc): cannot overflow or round.
#[allow(clippy::arithmetic_side_effects)]
impl LossCols {
    pub fn completed(&self) -> Decimal {
        self.attempted - self.prevented
    }
    pub fn outstanding(&self) -> Decimal {
        self.completed() - self.reimbursed
    }
    pub fn completed_usd(&self) -> Decimal {
        self.attempted_usd - self.prevented_usd
    }
    pub fn outstanding_usd(&self) -> Decimal {
        self.completed_usd() - self.reimbursed_usd
    }
    /// Adds `o` exactly: units at `scale` (`None`: a group of assets, USD only), USD in cents.
    /// `None` (and nothing changed) when a sum would pass its limit.
    fn add(&mut self, o: &LossCols, scale: Option<u32>) -> Option<()> {
        let usd = |a: Decimal, b: Decimal| add_exact(a, b, USD_SCALE);
        let mut next = LossCols {
            attempted_usd: usd(self.attempted_usd, o.attempted_usd)?,
            prevented_usd: usd(self.prevented_usd, o.prevented_usd)?,
            reimbursed_usd: usd(self.reimbursed_usd, o.reimbursed_usd)?,
            unpriced: self.unpriced.checked_add(o.unpriced)?,
            ..*self
        };
        if let Some(s) = scale {
            next.attempted = add_exact(self.attempted, o.attempted, s)?;
            next.prevented = add_exact(self.prevented, o.prevented, s)?;
            next.reimbursed = add_exact(self.reimbursed, o.reimbursed, s)?;
        }
        *self = next;
        Some(())
    }
    fn to_bytes(self) -> [Packed; 6] {
        [
            dec(self.attempted),
            dec(self.prevented),
            dec(self.reimbursed),
            dec(self.attempted_usd),
            dec(self.prevented_usd),
            dec(self.reimbursed_usd),
        ]
    }
    fn from_bytes(b: [Packed; 6], unpriced: u64) -> Option<Self> {
        Some(LossCols {
            unpriced,
            attempted: undec(b[0])?,
            prevented: undec(b[1])?,
            reimbursed: undec(b[2])?,
            attempted_usd: undec(b[3])?,
            prevented_usd: undec(b[4])?,
            reimbursed_usd: undec(b[5])?,
        })
    }
}

/// One row of a loss report: a group (`ETH`, `BTC`, `misc`, `total`), or in detail a symbol or
/// an account. Units are absent where they would add different assets together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossRow {
    pub group: String,
    pub asset: Option<Asset>,
    pub account: Option<AccountId>,
    pub cols: LossCols,
    pub units: bool,
    pub accounts_affected: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Losses {
    last_seq: Seq,
    by_asset: BTreeMap<Asset, LossCols>,
    by_account: BTreeMap<(AccountId, Asset), LossCols>,
    /// Withdrawals (by seq) flagged unauthorized by the events folded so far.
    flagged: FastSet<Seq>,
    /// Per group (ETH, BTC, misc, then the total of all three): the sums and the accounts with
    /// an attempted loss, kept as events are folded so that a report (and each row of a replay)
    /// costs O(1), not O(accounts).
    groups: [LossCols; 4],
    affected: [FastSet<AccountId>; 3],
    affected_total: FastSet<AccountId>,
}

#[derive(Clone, Copy)]
enum Col {
    Attempted,
    Prevented,
    Reimbursed,
}

/// Where the totals of every group are kept in `Losses::groups`.
const TOTAL: usize = 3;

/// Units of the group's only asset (ETH, BTC); a group of many assets sums USD only.
fn group_scale(group: AssetGroup, asset: &Asset) -> Option<u32> {
    (group != AssetGroup::Misc).then(|| asset.scale())
}

impl Losses {
    fn add(
        &mut self,
        env: &Envelope,
        asset: &Asset,
        col: Col,
        amount: Amount,
        usd: Option<Usd>,
    ) -> Result<(), FoldError> {
        let account =
            env.stream.account().ok_or_else(|| FoldError::new(env.seq, "a loss event on the ledger stream"))?;
        let mut delta =
            LossCols { unpriced: u64::from(matches!(col, Col::Attempted) && usd.is_none()), ..Default::default() };
        let usd = usd.map(Usd::value).unwrap_or_default();
        match col {
            Col::Attempted => (delta.attempted, delta.attempted_usd) = (amount.value(), usd),
            Col::Prevented => (delta.prevented, delta.prevented_usd) = (amount.value(), usd),
            Col::Reimbursed => (delta.reimbursed, delta.reimbursed_usd) = (amount.value(), usd),
        }
        let group = asset.group();
        let g = group.index();
        let past = || FoldError::new(env.seq, format!("a loss total of {asset} would pass its limit"));
        self.groups[g].add(&delta, group_scale(group, asset)).ok_or_else(past)?;
        self.groups[TOTAL].add(&delta, None).ok_or_else(past)?;
        self.by_asset.entry(*asset).or_default().add(&delta, Some(asset.scale())).ok_or_else(past)?;
        self.by_account
            .entry((account.clone(), *asset))
            .or_default()
            .add(&delta, Some(asset.scale()))
            .ok_or_else(past)?;
        if matches!(col, Col::Attempted) && !self.affected[g].contains(account) {
            self.affected[g].insert(account.clone());
            self.affected_total.insert(account.clone());
        }
        Ok(())
    }

    /// Records that the withdrawal at `withdrawal_seq` is flagged, by a flag that adds nothing
    /// to the totals at this state's `as_of` (its withdrawal occurred after it): what folding
    /// that flag would have done.
    pub fn mark_flagged(&mut self, withdrawal_seq: Seq) {
        self.flagged.insert(withdrawal_seq);
    }

    /// Whether the withdrawal at `seq` has been flagged by the events folded so far.
    pub fn is_flagged(&self, withdrawal_seq: Seq) -> bool {
        self.flagged.contains(&withdrawal_seq)
    }

    /// Folds one event of a valid-time replay window into a state that was folded (with
    /// [`Projection::apply`]) at the window's start with every flag known at `known_at`. Events
    /// come in valid-time order, so a flagged withdrawal counts when the withdrawal itself comes
    /// by, and flags add nothing here: the running totals after each event are the totals
    /// `as_of` that event's `occurred_at`.
    pub fn apply_in_window(&mut self, env: &Envelope) -> Result<(), FoldError> {
        self.last_seq = self.last_seq.max(env.seq);
        match &env.event {
            Event::Withdrawn { asset, amount, usd_value, unauthorized, .. } => {
                if *unauthorized || self.flagged.contains(&env.seq) {
                    self.add(env, asset, Col::Attempted, *amount, *usd_value)?;
                }
                Ok(())
            }
            Event::Reversed { .. } | Event::Reimbursed { .. } => self.apply(env, Timestamp::MAX),
            Event::WithdrawalFlagged(_)
            | Event::Deposited { .. }
            | Event::WithdrawalsSuspended { .. }
            | Event::WithdrawalsResumed => Ok(()),
        }
    }

    pub fn by_asset(&self) -> &BTreeMap<Asset, LossCols> {
        &self.by_asset
    }

    /// The report: ETH, BTC, misc and total rows; with `detail`, then one row per misc symbol and
    /// one per (account, asset).
    pub fn rows(&self, detail: bool) -> Vec<LossRow> {
        let (groups, affected, affected_total) = (&self.groups, &self.affected, &self.affected_total);
        let mut rows = Vec::new();
        for group in AssetGroup::ALL {
            let g = group.index();
            rows.push(LossRow {
                group: group.name().to_string(),
                asset: None,
                account: None,
                cols: groups[g],
                units: group != AssetGroup::Misc,
                accounts_affected: affected[g].len() as u64,
            });
        }
        rows.push(LossRow {
            group: GROUP_TOTAL.to_string(),
            asset: None,
            account: None,
            cols: groups[TOTAL],
            units: false,
            accounts_affected: affected_total.len() as u64,
        });
        if detail {
            for (asset, cols) in self.by_asset.iter().filter(|(a, _)| a.group() == AssetGroup::Misc) {
                let accounts =
                    self.by_account.iter().filter(|((_, s), c)| s == asset && !c.attempted.is_zero()).count();
                rows.push(LossRow {
                    group: "misc".into(),
                    asset: Some(*asset),
                    account: None,
                    cols: *cols,
                    units: true,
                    accounts_affected: accounts as u64,
                });
            }
            for ((account, asset), cols) in &self.by_account {
                rows.push(LossRow {
                    group: asset.group().name().to_string(),
                    asset: Some(*asset),
                    account: Some(account.clone()),
                    cols: *cols,
                    units: true,
                    accounts_affected: u64::from(!cols.attempted.is_zero()),
                });
            }
        }
        rows
    }
}

impl Projection for Losses {
    const NAME: &'static str = "losses";
    /// 2: decimals packed (1 stored them in 16 bytes). 3: the count of attempted withdrawals
    /// without a USD value.
    const SCHEMA_VERSION: u32 = 3;

    fn apply(&mut self, env: &Envelope, as_of: Timestamp) -> Result<(), FoldError> {
        self.last_seq = env.seq;
        match &env.event {
            // A flag counts from its recorded_at alone (the caller feeds only events known at
            // known_at), whatever its own occurred_at; it classifies the withdrawal from the
            // withdrawal's occurred_at, and a reversal that came before it from the reversal's.
            Event::WithdrawalFlagged(f) => {
                self.flagged.insert(f.withdrawal_seq);
                if f.withdrawal_occurred_at <= as_of {
                    self.add(env, &f.asset, Col::Attempted, f.amount, f.usd_value)?;
                    if f.reversed_by.as_ref().is_some_and(|r| r.occurred_at <= as_of) {
                        self.add(env, &f.asset, Col::Prevented, f.amount, f.usd_value)?;
                    }
                }
                Ok(())
            }
            _ if !counted(env, as_of) => Ok(()),
            Event::Withdrawn { asset, amount, usd_value, unauthorized: true, .. } => {
                self.add(env, asset, Col::Attempted, *amount, *usd_value)
            }
            Event::Reversed { withdrawal_seq, asset, amount, usd_value, withdrawal_unauthorized, .. } => {
                if *withdrawal_unauthorized || self.flagged.contains(withdrawal_seq) {
                    self.add(env, asset, Col::Prevented, *amount, *usd_value)?;
                }
                Ok(())
            }
            Event::Reimbursed { asset, amount, usd_value, .. } => {
                self.add(env, asset, Col::Reimbursed, *amount, *usd_value)
            }
            Event::Deposited { .. }
            | Event::Withdrawn { .. }
            | Event::WithdrawalsSuspended { .. }
            | Event::WithdrawalsResumed => Ok(()),
        }
    }

    fn last_seq(&self) -> Seq {
        self.last_seq
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let by_account = AsSeq(self.by_account.len(), || {
            self.by_account.iter().map(|((a, s), c)| -> (&str, &str, [Packed; 6], u64) {
                (a.as_str(), s.as_str(), c.to_bytes(), c.unpriced)
            })
        });
        let mut flagged: Vec<u64> = self.flagged.iter().copied().collect();
        flagged.sort_unstable();
        bincode::encode_into_std_write((self.last_seq, by_account, flagged), out, config())
            .expect("encoding to a Vec cannot fail");
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        // Borrowed: the strings are read in place, one allocation per row (the account's Arc).
        type Stored<'a> = (u64, Vec<(&'a str, &'a str, [Packed; 6], u64)>, Vec<u64>);
        let ((last_seq, rows, flagged), used): (Stored<'_>, usize) =
            bincode::borrow_decode_from_slice(bytes, config()).ok()?;
        if used != bytes.len() {
            return None;
        }
        let mut out = Losses { last_seq, flagged: flagged.into_iter().collect(), ..Default::default() };
        let mut by_account = Vec::with_capacity(rows.len());
        for (a, s, c, unpriced) in rows {
            let (account, asset, cols) =
                (AccountId::new(a).ok()?, Asset::new(s).ok()?, LossCols::from_bytes(c, unpriced)?);
            out.by_asset.entry(asset).or_default().add(&cols, Some(asset.scale()))?;
            let group = asset.group();
            let g = group.index();
            out.groups[g].add(&cols, group_scale(group, &asset))?;
            out.groups[TOTAL].add(&cols, None)?;
            if !cols.attempted.is_zero() {
                out.affected[g].insert(account.clone());
                out.affected_total.insert(account.clone());
            }
            by_account.push(((account, asset), cols));
        }
        // Written in the map's order, so building it is one pass; a key twice is not a
        // checkpoint this code wrote.
        let n = by_account.len();
        out.by_account = by_account.into_iter().collect();
        (out.by_account.len() == n).then_some(out)
    }
}
