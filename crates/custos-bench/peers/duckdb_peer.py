"""DuckDB as a second peer for custos-bench: the same workload CSV, the same four questions.

Usage: python3 duckdb_peer.py WORKLOAD.csv MOMENTS.json  ->  JSON on stdout.
MOMENTS.json is a list of [t_nanos, account] pairs chosen by custos-bench. Amounts are exact
DECIMAL(38, 6) (the workload's assets have at most 6 decimals); times are nanoseconds. Each
timing is the wall time of execute + fetchall (DuckDB's engine plus handing rows to Python).
"""
import json
import sys
import time

import duckdb

csv_path, moments_path = sys.argv[1], sys.argv[2]
moments = json.load(open(moments_path))
con = duckdb.connect()
started = time.perf_counter()
con.execute(f"""
CREATE TABLE raw AS SELECT * FROM read_csv('{csv_path}', all_varchar = true, header = true);
CREATE TABLE w AS SELECT id, asset, CAST(amount AS DECIMAL(38, 6)) AS amount,
    CAST(COALESCE(NULLIF(usd_value, ''), '0') AS DECIMAL(38, 2)) AS usd
  FROM raw WHERE kind = 'withdrawal';
CREATE TABLE events AS SELECT
    r.id, epoch_ns(CAST(r.occurred_at AS TIMESTAMPTZ)) AS occurred_at,
    epoch_ns(CAST(r.recorded_at AS TIMESTAMPTZ)) AS recorded_at, r.account,
    CASE r.kind WHEN 'deposit' THEN 0 WHEN 'withdrawal' THEN 1 WHEN 'reversal' THEN 2
                WHEN 'reimbursement' THEN 3 ELSE 4 END AS kind,
    COALESCE(NULLIF(r.asset, ''), w.asset) AS asset,
    COALESCE(CAST(NULLIF(r.amount, '') AS DECIMAL(38, 6)), w.amount) AS amount,
    COALESCE(CAST(NULLIF(r.usd_value, '') AS DECIMAL(38, 2)), w.usd, 0) AS usd,
    NULLIF(r.ref, '') AS ref, r.unauthorized = 'true' AS unauthorized
  FROM raw r LEFT JOIN w ON w.id = r.ref;
""")
load_seconds = time.perf_counter() - started

Q_ONE = """SELECT asset, SUM(CASE kind WHEN 1 THEN -amount ELSE amount END) FROM events
  WHERE account = ? AND occurred_at <= ? AND kind IN (0, 1, 2, 3) GROUP BY asset"""
Q_ALL = """SELECT account, asset, SUM(CASE kind WHEN 1 THEN -amount ELSE amount END) AS b FROM events
  WHERE occurred_at <= ? AND kind IN (0, 1, 2, 3) GROUP BY account, asset HAVING b <> 0 ORDER BY account, asset"""
Q_LOSSES = """WITH flagged AS (SELECT ref FROM events WHERE kind = 4),
  unauth AS (SELECT id FROM events WHERE kind = 1 AND (unauthorized OR id IN (SELECT ref FROM flagged)))
  SELECT asset, kind, SUM(amount), SUM(usd) FROM events
  WHERE occurred_at <= ? AND ((kind = 1 AND id IN (SELECT id FROM unauth))
     OR (kind IN (2, 3) AND ref IN (SELECT id FROM unauth)))
  GROUP BY asset, kind"""
Q_REPLAY = """SELECT id, occurred_at, recorded_at, account, kind, asset, amount, usd, ref FROM events
  WHERE occurred_at BETWEEN ? AND ? ORDER BY occurred_at"""

def timed(query, params):
    s = time.perf_counter()
    rows = con.execute(query, params).fetchall()
    return time.perf_counter() - s, len(rows)

out = {"load_seconds": load_seconds, "one": [], "all": [], "losses": [], "replay": []}
for t, account in moments:
    out["one"].append(timed(Q_ONE, [account, t])[0])
    out["all"].append(timed(Q_ALL, [t])[0])
    out["losses"].append(timed(Q_LOSSES, [t])[0])
    out["replay"].append(timed(Q_REPLAY, [t - 14 * 3600 * 10**9, t])[0])
print(json.dumps(out))
