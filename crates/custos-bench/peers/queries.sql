-- The peers' SQL, one text for both (sqlite_peer.rs includes it, duckdb_peer.py reads it):
-- DESIGN.md's semantics over a table `events(seq, id, occurred_at, recorded_at, account,
-- kind, asset, amount, usd, ref, unauthorized)` with kind 0 deposit, 1 withdrawal, 2 reversal,
-- 3 reimbursement, 4 flag, amounts and USD resolved at load (a flag, reversal or reimbursement
-- carries its withdrawal's asset, amount and USD), `unauthorized` 0 or 1. Parameters are
-- written :name (DuckDB's peer turns them into $name); {change} and {unauth} are replaced by
-- the sections of those names.

-- name: change
CASE kind WHEN 1 THEN -amount WHEN 4 THEN 0 ELSE amount END

-- name: unauth
unauth AS (SELECT id FROM events WHERE kind = 1 AND recorded_at <= :k AND (unauthorized = 1
  OR id IN (SELECT ref FROM events WHERE kind = 4 AND recorded_at <= :k)))

-- name: one
SELECT asset, SUM({change}) AS b FROM events
WHERE account = :account AND occurred_at <= :t AND recorded_at <= :k
GROUP BY asset HAVING b <> 0 ORDER BY asset

-- name: all
SELECT account, asset, SUM({change}) AS b FROM events
WHERE occurred_at <= :t AND recorded_at <= :k
GROUP BY account, asset HAVING b <> 0 ORDER BY account, asset

-- name: losses
WITH {unauth}
SELECT asset, kind, SUM(amount), SUM(usd) FROM events
WHERE occurred_at <= :t AND recorded_at <= :k AND (
      (kind = 1 AND id IN (SELECT id FROM unauth))
   OR (kind = 2 AND ref IN (SELECT id FROM unauth))
   OR kind = 3)
GROUP BY asset, kind ORDER BY asset, kind

-- name: replay
WITH {unauth},
win AS (SELECT seq, occurred_at, account, asset, kind, amount, usd, {change} AS change,
          (kind = 1 AND id IN (SELECT id FROM unauth)) AS att,
          (kind = 2 AND ref IN (SELECT id FROM unauth)) AS prev,
          (kind = 3) AS reimb
        FROM events WHERE occurred_at BETWEEN :lo AND :hi AND recorded_at <= :k),
before AS (SELECT account, asset, SUM({change}) AS b FROM events
           WHERE account IN (SELECT account FROM win) AND occurred_at < :lo AND recorded_at <= :k
           GROUP BY account, asset)
SELECT w.seq,
  COALESCE(b.b, 0) + SUM(w.change) OVER (PARTITION BY w.account, w.asset ORDER BY w.occurred_at, w.seq
                                         ROWS UNBOUNDED PRECEDING),
  SUM(CASE WHEN w.asset = 'ETH' AND att THEN w.amount ELSE 0 END) OVER o,
  SUM(CASE WHEN w.asset = 'ETH' AND prev THEN w.amount ELSE 0 END) OVER o,
  SUM(CASE WHEN w.asset = 'ETH' AND reimb THEN w.amount ELSE 0 END) OVER o,
  SUM(CASE WHEN w.asset = 'BTC' AND att THEN w.amount ELSE 0 END) OVER o,
  SUM(CASE WHEN w.asset = 'BTC' AND prev THEN w.amount ELSE 0 END) OVER o,
  SUM(CASE WHEN w.asset = 'BTC' AND reimb THEN w.amount ELSE 0 END) OVER o,
  SUM(CASE WHEN att THEN w.usd ELSE 0 END) OVER o,
  SUM(CASE WHEN prev THEN w.usd ELSE 0 END) OVER o,
  SUM(CASE WHEN reimb THEN w.usd ELSE 0 END) OVER o
FROM win w LEFT JOIN before b ON b.account = w.account AND b.asset = w.asset
WINDOW o AS (ORDER BY w.occurred_at, w.seq ROWS UNBOUNDED PRECEDING)
ORDER BY w.occurred_at, w.seq

-- name: replay_rows
SELECT seq FROM events WHERE occurred_at BETWEEN :lo AND :hi AND recorded_at <= :k ORDER BY occurred_at, seq
