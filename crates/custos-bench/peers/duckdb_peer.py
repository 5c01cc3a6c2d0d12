"""DuckDB as a second peer for custos-bench: the same workload CSV, the same five questions.

Usage: python3 duckdb_peer.py WORKLOAD.csv MOMENTS.json  ->  JSON on stdout.
MOMENTS.json is a list of [t_nanos, account] pairs chosen by custos-bench (known now). Amounts
are exact DECIMAL(38, 6) (the workload's assets have at most 6 decimals), USD DECIMAL(38, 2),
times nanoseconds, seq the CSV line order. Each question is timed in its own loop over the
moments with its statement prepared once (PREPARE / EXECUTE); a timing is the wall time of
EXECUTE + fetchall (DuckDB's engine plus handing the rows to Python). Every answer is then
reduced to the canonical text of custos-bench's answers.rs and hashed with SHA-256, so that
custos-bench compares it value by value with Custos's.
"""
import hashlib
import json
import os
import re
import sys
import time

import duckdb

csv_path, moments_path = sys.argv[1], sys.argv[2]
moments = json.load(open(moments_path))
con = duckdb.connect()
con.execute("SET preserve_insertion_order = true")
started = time.perf_counter()
con.execute(f"""
CREATE TABLE raw AS SELECT * FROM read_csv('{csv_path}', all_varchar = true, header = true);
CREATE TABLE w AS SELECT id, asset, CAST(amount AS DECIMAL(38, 6)) AS amount,
    CAST(COALESCE(NULLIF(usd_value, ''), '0') AS DECIMAL(38, 2)) AS usd
  FROM raw WHERE kind = 'withdrawal';
CREATE TABLE events AS SELECT
    r.rowid + 1 AS seq, r.id, epoch_ns(CAST(r.occurred_at AS TIMESTAMPTZ)) AS occurred_at,
    epoch_ns(CAST(r.recorded_at AS TIMESTAMPTZ)) AS recorded_at, r.account,
    CASE r.kind WHEN 'deposit' THEN 0 WHEN 'withdrawal' THEN 1 WHEN 'reversal' THEN 2
                WHEN 'reimbursement' THEN 3 ELSE 4 END AS kind,
    COALESCE(NULLIF(r.asset, ''), w.asset) AS asset,
    COALESCE(CAST(NULLIF(r.amount, '') AS DECIMAL(38, 6)), w.amount) AS amount,
    COALESCE(CAST(NULLIF(r.usd_value, '') AS DECIMAL(38, 2)), w.usd, 0) AS usd,
    NULLIF(r.ref, '') AS ref, CAST(r.unauthorized = 'true' AS INTEGER) AS unauthorized
  FROM raw r LEFT JOIN w ON w.id = r.ref ORDER BY seq;
CREATE INDEX events_account ON events(account);
""")
load_seconds = time.perf_counter() - started

def sections(path):
    """peers/queries.sql by section name, {change} and {unauth} filled in, :name as $name."""
    out, name = {}, None
    for line in open(path):
        if line.startswith("-- name: "):
            name = line[len("-- name: "):].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line
    out = {k: v.strip() for k, v in out.items()}
    for k in out:
        out[k] = out[k].replace("{change}", out["change"]).replace("{unauth}", out["unauth"])
    return {k: re.sub(r":([a-z]+)", r"$\1", v) for k, v in out.items()}


SQL = sections(os.path.join(os.path.dirname(os.path.abspath(__file__)), "queries.sql"))
QUERIES = {name: SQL[name] for name in ["one", "all", "losses", "replay", "replay_rows"]}
KNOWN = 2**63 - 1
WINDOW = 14 * 3600 * 10**9


def micro(x):
    return str(int(x * 1000000))


def cents(x):
    return str(int(x * 100))


def digest(lines):
    h = hashlib.sha256()
    for cells in lines:
        h.update(("|".join(cells) + "\n").encode())
    return h.hexdigest()


def loss_lines(rows):
    per = {}
    for asset, kind, units, usd in rows:
        col = 0 if kind == 1 else 1 if kind == 2 else 2
        v = per.setdefault(asset, [0, 0, 0, 0, 0, 0])
        v[col] += units
        v[col + 3] += usd
    return [[a] + [micro(x) for x in v[:3]] + [cents(x) for x in v[3:]]
            for a, v in sorted(per.items()) if any(x != 0 for x in v)]


def loss_sums(rows):
    out = [0] * 9
    for asset, kind, units, usd in rows:
        col = 0 if kind == 1 else 1 if kind == 2 else 2
        if asset == "ETH":
            out[col] += units
        elif asset == "BTC":
            out[3 + col] += units
        out[6 + col] += usd
    return out


for name, sql in QUERIES.items():
    con.execute(f"PREPARE q_{name} AS {sql}")


def execute(name, **params):
    args = ", ".join(f"{k} := {v!r}" if isinstance(v, str) else f"{k} := {v}" for k, v in params.items())
    return con.execute(f"EXECUTE q_{name}({args})").fetchall()


out = {"load_seconds": load_seconds}
for name in QUERIES:
    times, digests = [], []
    for t, account in moments:
        if name == "one":
            s = time.perf_counter()
            rows = execute("one", account=account, t=t, k=KNOWN)
            times.append(time.perf_counter() - s)
            digests.append(digest([[a, micro(b)] for a, b in rows]))
        elif name == "all":
            s = time.perf_counter()
            rows = execute("all", t=t, k=KNOWN)
            times.append(time.perf_counter() - s)
            digests.append(digest([[a, s_, micro(b)] for a, s_, b in rows]))
        elif name == "losses":
            s = time.perf_counter()
            rows = execute("losses", t=t, k=KNOWN)
            times.append(time.perf_counter() - s)
            digests.append(digest(loss_lines(rows)))
        elif name == "replay":
            s = time.perf_counter()
            start = loss_sums(execute("losses", t=t - WINDOW - 1, k=KNOWN))
            rows = execute("replay", lo=t - WINDOW, hi=t, k=KNOWN)
            times.append(time.perf_counter() - s)
            lines = [["start"] + [micro(x) for x in start[:6]] + [cents(x) for x in start[6:]]]
            for r in rows:
                totals = [base + x for base, x in zip(start, r[2:])]
                lines.append([str(r[0]), micro(r[1])] + [micro(x) for x in totals[:6]] + [cents(x) for x in totals[6:]])
            digests.append(digest(lines))
        else:
            s = time.perf_counter()
            rows = execute("replay_rows", lo=t - WINDOW, hi=t, k=KNOWN)
            times.append(time.perf_counter() - s)
            digests.append(digest([[str(r[0])] for r in rows]))
    out[name] = {"times": times, "digests": digests}
print(json.dumps(out))
