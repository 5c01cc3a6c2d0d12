//! The log's Merkle tree (RFC 9162), checked against an implementation written here from the
//! RFC's text, not the crates': roots of every size, every inclusion proof, consistency proofs,
//! across a restart (a partial block reloaded) and after tampering (verify names the node,
//! rebuild rewrites it, verify-proof refuses a flipped byte).

use custos_domain::{Envelope, GENESIS_HASH};
use custos_ledger::{Ledger, LedgerConfig};
use custos_tests::{code, custos, deposit, raw_sled, stdout};
use sha2::{Digest, Sha256};

type Hash = [u8; 32];

fn sha(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RFC 9162 2.1.1: MTH over `leaves` (the entries, not their hashes).
fn mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => sha(&[]),
        1 => sha(&[&[0], &leaves[0]]),
        n => {
            let k = 1 << (n - 1).ilog2();
            sha(&[&[1], &mth(&leaves[..k]), &mth(&leaves[k..])])
        }
    }
}

/// RFC 9162 2.1.3.2, step by step.
fn inclusion_ok(leaf: &[u8], index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = sha(&[&[0], leaf]);
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = sha(&[&[1], p, &r]);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = sha(&[&[1], &r, p]);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == root
}

/// RFC 9162 2.1.4.2, step by step.
fn consistency_ok(first: u64, second: u64, first_root: &Hash, second_root: &Hash, path: &[Hash]) -> bool {
    if first == second {
        return path.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second || path.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = path.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = sha(&[&[1], c, &fr]);
            sr = sha(&[&[1], c, &sr]);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = sha(&[&[1], &sr, c]);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    &fr == first_root && &sr == second_root && s_n == 0
}

fn config() -> LedgerConfig {
    LedgerConfig { holder: "proofs test".into(), ..LedgerConfig::default() }
}

fn append(dir: &std::path::Path, from: usize, to: usize) {
    let l = Ledger::open(dir, config()).unwrap();
    // Batches of uneven sizes, so blocks of 256 are completed inside and across batches.
    let mut i = from;
    while i < to {
        let n = (i % 97 + 1).min(to - i);
        let batch = (i..i + n)
            .map(|j| {
                let at = format!("2022-01-{:02}T{:02}:{:02}:00Z", 1 + j / 1440, j / 60 % 24, j % 60);
                deposit(&format!("d{j}"), &at, &format!("acct-{:03}", j % 50), "ETH", "1.5")
            })
            .collect();
        let outcomes = custos_tests::runtime().block_on(l.submit_batch(batch)).unwrap();
        assert!(outcomes.iter().all(|o| o.is_ok()));
        i += n;
    }
    l.close().unwrap();
}

/// The stored records, each checked against the chain (so the leaves are the log's own).
fn leaves(l: &Ledger) -> Vec<Vec<u8>> {
    let head = l.head().seq;
    let mut prev = GENESIS_HASH;
    (1..=head)
        .map(|seq| {
            let leaf = l.inclusion_proof(seq, None).unwrap().leaf;
            assert!(Envelope::link_ok(&leaf, &prev), "seq {seq}'s leaf is its chained record");
            assert_eq!(Envelope::decode(&leaf).unwrap().seq, seq);
            prev = Envelope::record_hash(&leaf).unwrap();
            leaf
        })
        .collect()
}

fn check_tree(l: &Ledger, leaves: &[Vec<u8>]) {
    let n = leaves.len() as u64;
    for size in (0..=n).filter(|s| s % 37 == 0 || *s < 20 || s.is_power_of_two() || n - s < 3) {
        let head = l.tree_head(Some(size)).unwrap();
        assert_eq!(head.root_hash, mth(&leaves[..size as usize]), "root of size {size}");
    }
    for size in [1, 255, 256, 257, 511, 512, 513, n] {
        let root = mth(&leaves[..size as usize]);
        for seq in 1..=size {
            let p = l.inclusion_proof(seq, Some(size)).unwrap();
            assert_eq!(p.root_hash, root);
            assert!(inclusion_ok(&p.leaf, p.leaf_index, size, &p.audit_path, &root), "seq {seq} in {size}");
        }
    }
    for (m, k) in [(1, 2), (1, n), (255, 256), (256, 257), (300, 512), (513, n), (n - 1, n), (n, n), (7, 700)] {
        let p = l.consistency_proof(m, k).unwrap();
        let (a, b) = (mth(&leaves[..m as usize]), mth(&leaves[..k as usize]));
        assert_eq!((p.first_root, p.second_root), (a, b));
        assert!(consistency_ok(m, k, &a, &b, &p.path), "consistency {m} -> {k}");
    }
}

#[test]
fn roots_and_proofs_match_an_independent_rfc_9162_implementation_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 700);
    // Reopened with a partial block (700 = 2 x 256 + 188): the writer reloads its frontier.
    append(dir.path(), 700, 1300);
    let l = Ledger::open(dir.path(), config()).unwrap();
    let all = leaves(&l);
    assert_eq!(all.len(), 1300);
    check_tree(&l, &all);
    assert!(l.inclusion_proof(1301, None).is_err() && l.consistency_proof(0, 5).is_err());
    assert!(l.tree_head(Some(1301)).is_err());
    let report = l.verify(None, &mut |_, _| {}).unwrap();
    assert!(report.clean(), "{:?}", report.discrepancies);
}

/// Logs of random sizes from 1 to 2,000 (the seed printed; CUSTOS_SEED repeats it): every
/// leaf's inclusion proof and a sample of consistency pairs, checked by the RFC 9162
/// verifiers written here, and the root by MTH over the leaves.
#[test]
fn every_leaf_of_random_log_sizes_is_proved_to_an_independent_verifier() {
    let seed: u64 = std::env::var("CUSTOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("random log sizes: CUSTOS_SEED={seed}");
    let mut state = seed;
    let mut next = move |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for n in [1, 2, 3 + next(254), 257 + next(1744)] {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), 0, n as usize);
        let l = Ledger::open(dir.path(), config()).unwrap();
        let all = leaves(&l);
        let root = mth(&all);
        assert_eq!(l.tree_head(None).unwrap().root_hash, root, "root of {n} (seed {seed})");
        for seq in 1..=n {
            let p = l.inclusion_proof(seq, None).unwrap();
            assert!(inclusion_ok(&p.leaf, p.leaf_index, n, &p.audit_path, &root), "seq {seq} of {n} (seed {seed})");
        }
        for _ in 0..200 {
            let (a, b) = (1 + next(n), 1 + next(n));
            let (m, k) = (a.min(b), a.max(b));
            let p = l.consistency_proof(m, k).unwrap();
            let (ra, rb) = (mth(&all[..m as usize]), mth(&all[..k as usize]));
            assert!(consistency_ok(m, k, &ra, &rb, &p.path), "{m} -> {k} of {n} (seed {seed})");
        }
    }
}

#[test]
fn a_tampered_tree_node_is_named_by_verify_and_rewritten_by_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    append(d, 0, 600);
    let before = stdout(&custos(d, &["digest", "--format", "json"]));
    {
        let db = raw_sled(d);
        let mut key = b"Mmerkle/09/0000000000000000".to_vec();
        key.push(0);
        key.extend_from_slice(&0u32.to_be_bytes());
        let mut v = db.get(&key).unwrap().expect("the node of leaves 0..512 is stored").to_vec();
        v[0] ^= 1;
        db.insert(&key, v).unwrap();
        db.flush().unwrap();
    }
    assert_ne!(stdout(&custos(d, &["digest", "--format", "json"])), before, "the root is read from stored nodes");
    // A proof through the changed node would not verify: prove refuses to hand it out.
    let out = custos(d, &["prove", "--seq", "2"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(custos_tests::stderr(&out).contains("does not prove this record"), "{}", custos_tests::stderr(&out));
    let out = custos(d, &["rebuild", "--dry-run"]);
    assert!(stdout(&out).contains("merkle/09/0000000000000000"), "the dry run names the node: {}", stdout(&out));
    let out = custos(d, &["verify"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("merkle/09/0000000000000000 differs"), "{}", stdout(&out));
    // With the chain intact, a differing node is a damaged node or a log rewritten with its
    // chain recomputed: a plain rebuild says so and leaves it; --rewrite-tree rewrites it and
    // says the root before and after.
    let text = stdout(&custos(d, &["verify"]));
    assert!(text.contains("rewritten with its chain recomputed") && text.contains("--rewrite-tree"), "{text}");
    let out = custos(d, &["rebuild"]);
    assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
    assert!(custos_tests::stderr(&out).contains("left as they are"), "{}", custos_tests::stderr(&out));
    assert_eq!(code(&custos(d, &["verify"])), 1, "still a finding");
    let out = custos(d, &["rebuild", "--rewrite-tree"]);
    assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
    assert!(stdout(&out).contains("rewrote 1 Merkle tree node") && stdout(&out).contains("was "), "{}", stdout(&out));
    assert_eq!(code(&custos(d, &["verify"])), 0);
    assert_eq!(stdout(&custos(d, &["digest", "--format", "json"])), before);

    // A changed record breaks the chain: the tree is then not recomputed over it (that would
    // hide the change from anyone holding the old root), and verify says to restore.
    custos_tests::rewrite_records(&raw_sled(d), |seq, r| {
        let mut r = r.to_vec();
        if seq == 2 {
            r[20] ^= 1;
        }
        r
    });
    let out = custos(d, &["rebuild", "--rewrite-tree"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(custos_tests::stderr(&out).contains("hash chain is broken"), "{}", custos_tests::stderr(&out));
    // Nor is a proof or root built on the changed record's block.
    let out = custos(d, &["prove", "--seq", "3"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(custos_tests::stderr(&out).contains("breaks the hash chain"), "{}", custos_tests::stderr(&out));
    let text = stdout(&custos(d, &["verify"]));
    assert!(text.contains("restore from a backup") && !text.contains("rewrites the tree"), "{text}");
    assert_eq!(stdout(&custos(d, &["digest", "--format", "json"])), before, "the stored tree is left as it was");
}

#[test]
fn verify_proof_checks_a_proof_offline_and_refuses_any_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    append(d, 0, 300);
    let file = d.join("proof.json");
    let check = |json: &str| {
        std::fs::write(&file, json).unwrap();
        // No ledger: --db names a folder that does not exist.
        custos(&d.join("nothing-here"), &["verify-proof", file.to_str().unwrap()])
    };
    for args in [&["prove", "--seq", "257", "--size", "299"][..], &["prove", "--from", "100", "--to", "300"]] {
        let out = custos(d, args);
        assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
        let json = stdout(&out);
        let ok = check(&json);
        assert_eq!(code(&ok), 0, "{args:?}: {}{}", stdout(&ok), custos_tests::stderr(&ok));
        assert!(stdout(&ok).starts_with("verified: "), "{}", stdout(&ok));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        // One hex digit changed at a time in every hash of the proof and in the leaf, and the
        // leaf index moved: each is refused (exit 1), never accepted, never a crash.
        let mut variants = Vec::new();
        let flip = |s: &str, at: usize| {
            let mut b = s.as_bytes().to_vec();
            b[at] = if b[at] == b'0' { b'1' } else { b'0' };
            String::from_utf8(b).unwrap()
        };
        for (key, value) in v.as_object().unwrap() {
            match value {
                serde_json::Value::String(h) => {
                    for at in [0, h.len() / 2, h.len() - 1] {
                        let mut bad = v.clone();
                        bad[key] = flip(h, at).into();
                        variants.push(bad);
                    }
                }
                serde_json::Value::Array(path) => {
                    for (i, h) in path.iter().enumerate() {
                        let mut bad = v.clone();
                        bad[key][i] = flip(h.as_str().unwrap(), 5).into();
                        variants.push(bad);
                    }
                }
                _ => {}
            }
        }
        if let Some(index) = v.get("leaf_index").and_then(|i| i.as_u64()) {
            let mut bad = v.clone();
            bad["leaf_index"] = (index + 1).into();
            variants.push(bad);
        }
        assert!(variants.len() > 10, "{}", variants.len());
        for bad in variants {
            let out = check(&bad.to_string());
            assert_eq!(code(&out), 1, "not refused: {bad}\n{}{}", stdout(&out), custos_tests::stderr(&out));
        }
        if args[1] == "--seq" {
            assert!(stdout(&ok).contains("the leaf is seq 257: Deposited d256"), "{}", stdout(&ok));
        }
    }
}

/// The Go program that opens a signed note with golang.org/x/mod/sumdb/note (Go's own
/// implementation of the C2SP signed-note format, from Debian's golang-golang-x-mod-dev):
/// prints the note's text, exit 1 when no signature by the key verifies.
const GO_OPEN_NOTE: &str = r#"package main

import (
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	v, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
}
"#;

/// Builds the Go note opener (offline: the package comes from Debian's GOPATH tree).
fn go_note_opener(dir: &std::path::Path) -> std::path::PathBuf {
    const GOPATH: &str = "/usr/share/gocode";
    assert!(
        std::path::Path::new(GOPATH).join("src/golang.org/x/mod/sumdb/note/note.go").exists(),
        "Go's note package is missing: apt-get install golang-go golang-golang-x-mod-dev"
    );
    let src = dir.join("opennote");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("main.go"), GO_OPEN_NOTE).unwrap();
    let bin = dir.join("opennote-bin");
    let out = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .expect("go runs (apt-get install golang-go golang-golang-x-mod-dev)");
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    bin
}

/// `custos keygen` and `custos digest --sign` make a C2SP checkpoint that Go's signed-note
/// verifier accepts (the signature is checked by Go's code, not ours), whose text names the
/// tree head `digest --format json` prints; a changed byte is refused by both; verify-proof
/// ties a proof to a signed checkpoint by size and root.
#[test]
fn a_signed_tree_head_is_accepted_by_gos_note_verifier_and_binds_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    append(d, 0, 300);
    let opener = go_note_opener(d);
    let key = d.join("keys").join("ledger.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let out = custos(d, &["keygen", "--name", "custos.test/ledger", "--out", key.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
    let public = std::fs::read_to_string(d.join("keys").join("ledger.key.pub")).unwrap().trim().to_string();
    assert!(stdout(&out).contains(&public));
    let again = custos(d, &["keygen", "--name", "other", "--out", key.to_str().unwrap()]);
    assert_eq!(code(&again), 2, "an existing key is never overwritten");

    let head: serde_json::Value = serde_json::from_str(&stdout(&custos(d, &["digest", "--format", "json"]))).unwrap();
    let out = custos(d, &["digest", "--sign", key.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
    let note = stdout(&out);
    let cp = d.join("checkpoint");
    std::fs::write(&cp, &note).unwrap();
    let go = std::process::Command::new(&opener).arg(&cp).arg(&public).output().unwrap();
    assert!(go.status.success(), "Go refused the checkpoint: {}", String::from_utf8_lossy(&go.stderr));
    // The signed text is the C2SP checkpoint of the head digest printed.
    let root = hex::decode(head["root_hash"].as_str().unwrap()).unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&go.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "custos.test/ledger");
    assert_eq!(lines[1], "300");
    assert_eq!(base64_decode(&lines[2]), root);
    let ok = custos(d, &["verify-proof", cp.to_str().unwrap(), "--key", &public]);
    assert_eq!(code(&ok), 0, "{}", stdout(&ok));

    // A changed size: refused by Go and by verify-proof.
    let forged = note.replacen("\n300\n", "\n301\n", 1);
    std::fs::write(&cp, &forged).unwrap();
    assert_eq!(std::process::Command::new(&opener).arg(&cp).arg(&public).output().unwrap().status.code(), Some(1));
    assert_eq!(code(&custos(d, &["verify-proof", cp.to_str().unwrap(), "--key", &public])), 1);
    std::fs::write(&cp, &note).unwrap();

    // A proof checked against the checkpoint: of its tree, accepted; of another size, refused.
    let proof = d.join("p.json");
    let check = |size: &str| {
        let out = custos(d, &["prove", "--seq", "9", "--size", size, "--output", proof.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
        let args = ["verify-proof", proof.to_str().unwrap(), "--key", &public, "--checkpoint", cp.to_str().unwrap()];
        code(&custos(d, &args))
    };
    assert_eq!(check("300"), 0);
    assert_eq!(check("299"), 1);
}

/// Standard base64, decoded here (not with the crate's decoder).
fn base64_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | alphabet.iter().position(|a| *a == c).expect("base64") as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// The liabilities leaf and node hashes as ARCHITECTURE.md documents them, written here from
/// that text (not the crate's code): the check a third party would write.
fn liability_leaf(salt: &[u8], account: &str, units: &[u128]) -> Hash {
    let mut b = vec![0x10];
    b.extend_from_slice(salt);
    b.extend_from_slice(&(account.len() as u32).to_be_bytes());
    b.extend_from_slice(account.as_bytes());
    b.extend_from_slice(&(units.len() as u32).to_be_bytes());
    units.iter().for_each(|u| b.extend_from_slice(&u.to_be_bytes()));
    sha(&[&b])
}

fn liability_node(l: &(Hash, Vec<u128>), r: &(Hash, Vec<u128>)) -> (Hash, Vec<u128>) {
    let mut b = vec![0x11];
    for (h, sums) in [l, r] {
        b.extend_from_slice(h);
        sums.iter().for_each(|u| b.extend_from_slice(&u.to_be_bytes()));
    }
    (sha(&[&b]), l.1.iter().zip(&r.1).map(|(a, b)| a.checked_add(*b).expect("no overflow")).collect())
}

/// Walks a liabilities proof up the RFC 9162 shape (as `inclusion_ok` does) and answers the root.
fn liability_root(p: &serde_json::Value) -> (Hash, Vec<u128>) {
    let units = |v: &serde_json::Value| -> Vec<u128> {
        v.as_array().unwrap().iter().map(|u| u.as_str().unwrap().parse().unwrap()).collect()
    };
    let hash = |v: &serde_json::Value| -> Hash { hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap() };
    let salt = hex::decode(p["salt"].as_str().unwrap()).unwrap();
    let mut r = (liability_leaf(&salt, p["account"].as_str().unwrap(), &units(&p["units"])), units(&p["units"]));
    let (mut f_n, mut s_n) = (p["leaf_index"].as_u64().unwrap(), p["leaf_count"].as_u64().unwrap() - 1);
    for s in p["siblings"].as_array().unwrap() {
        let sib = (hash(&s["hash"]), units(&s["sums"]));
        if f_n & 1 == 1 || f_n == s_n {
            r = liability_node(&sib, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = liability_node(&r, &sib);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    assert_eq!(s_n, 0);
    r
}

/// `custos liabilities` at several (as_of, known_at) moments of the incident: the root's totals
/// equal a fold of the log written here (deposits - withdrawals + reversals + reimbursements
/// over the events that count), every account's proof reaches the root under the documented
/// encoding, and a changed balance, sum or sibling is refused by `verify-proof`.
#[test]
fn liabilities_totals_equal_a_fold_and_every_proof_reaches_the_published_root() {
    use custos_domain::{Event, Timestamp};
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = custos_tests::workspace().join("fixtures/incident-2022-01/commands.csv");
    assert_eq!(code(&custos(d, &["import", csv.to_str().unwrap()])), 0);
    let mut moments: Vec<(String, String)> = [
        ("2022-01-10T00:00:00Z", "2030-01-01T00:00:00Z"),
        ("2022-01-18T06:00:00Z", "2022-01-18T04:00:00Z"),
        ("2022-01-18T06:00:00Z", "2030-01-01T00:00:00Z"),
        ("2022-01-31T00:00:00Z", "2022-01-19T12:00:00Z"),
    ]
    .iter()
    .map(|(a, k)| (a.to_string(), k.to_string()))
    .collect();
    // And three at random in the incident's month, the seed printed (CUSTOS_SEED repeats one).
    let seed: u64 = std::env::var("CUSTOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("liabilities moments: CUSTOS_SEED={seed}");
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    for _ in 0..3 {
        let at = |x: u64| {
            let t = Timestamp::parse_rfc3339("2022-01-01T00:00:00Z").unwrap().nanos()
                + (x % (31 * 86_400)) as i64 * 1_000_000_000;
            Timestamp::from_nanos(t).to_string()
        };
        moments.push((at(next()), at(next())));
    }
    let mut folds: Vec<BTreeMap<String, Decimal>> = vec![BTreeMap::new(); moments.len()];
    {
        let l = Ledger::open(d, config()).unwrap();
        l.for_each_envelope(1, |env| {
            let change = match &env.event {
                Event::Deposited { asset, amount, .. }
                | Event::Reversed { asset, amount, .. }
                | Event::Reimbursed { asset, amount, .. } => Some((asset, amount.value())),
                Event::Withdrawn { asset, amount, .. } => Some((asset, -amount.value())),
                _ => None,
            };
            for (i, (as_of, known_at)) in moments.iter().enumerate() {
                let counts = env.occurred_at <= Timestamp::parse_rfc3339(as_of).unwrap()
                    && env.recorded_at <= Timestamp::parse_rfc3339(known_at).unwrap();
                if let (true, Some((asset, x))) = (counts, change) {
                    *folds[i].entry(asset.to_string()).or_default() += x;
                }
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    }
    for (i, (as_of, known_at)) in moments.iter().enumerate() {
        let out_dir = d.join(format!("liabilities-{i}"));
        let args = [
            "liabilities",
            "--as-of",
            as_of.as_str(),
            "--known-at",
            known_at.as_str(),
            "--out",
            out_dir.to_str().unwrap(),
        ];
        let out = custos(d, &args);
        assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
        let root: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("root.json")).unwrap()).unwrap();
        let totals: BTreeMap<String, Decimal> = root["totals"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().parse().unwrap()))
            .collect();
        let want: BTreeMap<String, Decimal> = folds[i].iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(totals, want, "totals at as_of {as_of}, known_at {known_at}");
        let published = (
            hex::decode(root["root"]["hash"].as_str().unwrap()).unwrap(),
            root["root"]["sums"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().parse::<u128>().unwrap())
                .collect::<Vec<_>>(),
        );
        let proofs = std::fs::read_to_string(out_dir.join("proofs.jsonl")).unwrap();
        let mut accounts = 0;
        for line in proofs.lines() {
            let p: serde_json::Value = serde_json::from_str(line).unwrap();
            let (h, sums) = liability_root(&p);
            assert_eq!((h.to_vec(), sums), published, "{}", p["account"]);
            accounts += 1;
        }
        assert_eq!(root["accounts"], accounts);
        assert_eq!(code(&custos(d, &args)), 2, "a published snapshot is never overwritten");
    }

    // Tampering with one proof: each change refused by verify-proof.
    let out_dir = d.join("liabilities-2");
    let line = std::fs::read_to_string(out_dir.join("proofs.jsonl")).unwrap().lines().nth(40).unwrap().to_string();
    let proof: serde_json::Value = serde_json::from_str(&line).unwrap();
    let file = d.join("one.json");
    let check = |p: &serde_json::Value| {
        std::fs::write(&file, p.to_string()).unwrap();
        let root = out_dir.join("root.json");
        code(&custos(&d.join("none"), &["verify-proof", file.to_str().unwrap(), "--root", root.to_str().unwrap()]))
    };
    assert_eq!(check(&proof), 0);
    let asset = proof["assets"][2]["symbol"].as_str().unwrap().to_string();
    let more = |s: &serde_json::Value| (s.as_str().unwrap().parse::<u128>().unwrap() + 1).to_string();
    let mut bad = proof.clone();
    bad["units"][2] = more(&proof["units"][2]).into();
    assert_eq!(check(&bad), 1, "a changed balance");
    let mut bad = proof.clone();
    bad["balances"][&asset] = "1234.5".into();
    assert_eq!(check(&bad), 1, "a balance shown that is not the one proved");
    let mut bad = proof.clone();
    bad["siblings"][0]["sums"][2] = more(&proof["siblings"][0]["sums"][2]).into();
    assert_eq!(check(&bad), 1, "a changed sibling sum");
    let mut bad = proof.clone();
    bad["siblings"][3]["hash"] = hex::encode([7u8; 32]).into();
    assert_eq!(check(&bad), 1, "a changed sibling hash");
    let mut bad = proof.clone();
    bad["root"]["sums"][2] = more(&proof["root"]["sums"][2]).into();
    assert_eq!(check(&bad), 1, "a root with a changed total");
    let mut bad = proof.clone();
    bad["siblings"][0]["sums"][1] = "-5".into();
    assert_ne!(check(&bad), 0, "a negative sum cannot be written");
    // The moment and the leaf count are checked against the published root too.
    for (field, value) in [("as_of", serde_json::json!("2030-01-01T00:00:00Z")), ("known_seq", serde_json::json!(1))] {
        let mut bad = proof.clone();
        bad[field] = value;
        assert_eq!(check(&bad), 1, "a proof re-dated ({field})");
    }
    // A root.json whose totals do not say what its root sums.
    let root_text = std::fs::read_to_string(out_dir.join("root.json")).unwrap();
    let mut root: serde_json::Value = serde_json::from_str(&root_text).unwrap();
    root["totals"][&asset] = "1".into();
    std::fs::write(out_dir.join("root.json"), root.to_string()).unwrap();
    assert_eq!(check(&proof), 1, "published totals that are not the root's sums");
    std::fs::write(out_dir.join("root.json"), root_text).unwrap();

    // Leaves are in a secret order: not that of the account ids (a proof's sibling would
    // otherwise be the next account by id).
    let lines = std::fs::read_to_string(out_dir.join("proofs.jsonl")).unwrap();
    let mut by_id: Vec<(String, u64)> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|p| (p["account"].as_str().unwrap().to_string(), p["leaf_index"].as_u64().unwrap()))
        .collect();
    by_id.sort();
    let in_order = by_id.windows(2).filter(|w| w[0].1 < w[1].1).count();
    assert!(
        in_order < by_id.len() * 3 / 4,
        "{in_order} of {} neighbours by id are neighbours in the tree order",
        by_id.len()
    );

    // --account prints only the proof on stdout (the summary goes to stderr): it can be saved
    // and checked; an account the snapshot does not hold is said, exit 1, nothing written.
    let one = d.join("liabilities-one");
    let args = ["liabilities", "--out", one.to_str().unwrap(), "--account", proof["account"].as_str().unwrap()];
    let out = custos(d, &args);
    assert_eq!(code(&out), 0, "{}", custos_tests::stderr(&out));
    std::fs::write(&file, stdout(&out)).unwrap();
    let root = one.join("root.json");
    assert_eq!(
        code(&custos(&d.join("none"), &["verify-proof", file.to_str().unwrap(), "--root", root.to_str().unwrap()])),
        0
    );
    let none = d.join("liabilities-none");
    let out = custos(d, &["liabilities", "--out", none.to_str().unwrap(), "--account", "acct-999999"]);
    assert_eq!(code(&out), 1, "{}", custos_tests::stderr(&out));
    assert!(!none.exists(), "nothing written");
}

/// verify-proof reads strictly and says one thing: a repeated or unknown field, or the fields
/// of two kinds, are refused (exit 2: a reader could take the file for another proof);
/// options that do not apply are refused, not ignored; a failed check never prints
/// "verified"; a consistency proof may be bound to checkpoints at both ends.
#[test]
fn verify_proof_refuses_ambiguous_files_and_options_that_do_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    append(d, 0, 300);
    let keys = d.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("k");
    assert_eq!(code(&custos(d, &["keygen", "--name", "test", "--out", key.to_str().unwrap()])), 0);
    let public = std::fs::read_to_string(keys.join("k.pub")).unwrap().trim().to_string();
    std::fs::write(keys.join("k.pub"), "mine\n").unwrap();
    assert_eq!(code(&custos(d, &["keygen", "--name", "x", "--out", keys.join("other").to_str().unwrap()])), 0);
    std::fs::write(keys.join("z.pub"), "someone else's\n").unwrap();
    let out = custos(d, &["keygen", "--name", "x", "--out", keys.join("z").to_str().unwrap()]);
    assert_eq!(code(&out), 2, "an existing public key file is not overwritten either");
    assert_eq!(std::fs::read_to_string(keys.join("z.pub")).unwrap(), "someone else's\n");

    let sign = |at: &str, name: &str| {
        let out = custos(d, &["digest", "--sign", key.to_str().unwrap(), "--at-seq", at]);
        assert_eq!(code(&out), 0);
        std::fs::write(d.join(name), stdout(&out)).unwrap();
        d.join(name).to_str().unwrap().to_string()
    };
    let (cp100, cp300) = (sign("100", "cp100"), sign("300", "cp300"));
    let write = |name: &str, text: &str| {
        std::fs::write(d.join(name), text).unwrap();
        d.join(name).to_str().unwrap().to_string()
    };
    let run = |args: &[&str]| {
        let out = custos(&d.join("none"), &[&["verify-proof"], args].concat());
        (code(&out), stdout(&out), custos_tests::stderr(&out))
    };
    let consistency = write("c.json", &stdout(&custos(d, &["prove", "--from", "100", "--to", "300"])));
    let inclusion = write("i.json", &stdout(&custos(d, &["prove", "--seq", "7", "--size", "300"])));

    let (c, o, _) = run(&[&consistency, "--key", &public, "--checkpoint", &cp100, "--checkpoint", &cp300]);
    assert_eq!(c, 0, "both ends signed: {o}");
    let (c, o, _) = run(&[&consistency, "--key", &public, "--checkpoint", &cp100]);
    assert_eq!(c, 0, "the end held before, signed: {o}");
    let cp7 = sign("7", "cp7");
    let (c, o, _) = run(&[&consistency, "--key", &public, "--checkpoint", &cp7]);
    assert_eq!(c, 1, "a checkpoint of neither end: {o}");
    assert!(!o.contains("verified"), "a failed check says only that it failed: {o}");
    let (c, o, _) = run(&[&inclusion, "--key", &public, "--checkpoint", &cp100]);
    assert_eq!(c, 1, "an inclusion proof of another size: {o}");
    assert!(!o.contains("verified"), "{o}");
    // Every checkpoint is checked, whatever their order.
    for order in [[&cp300, &cp100], [&cp100, &cp300]] {
        let (c, o, _) = run(&[&inclusion, "--key", &public, "--checkpoint", order[0], "--checkpoint", order[1]]);
        assert_eq!(c, 1, "one checkpoint is of another tree: {o}");
    }
    // Checkpoints of two logs (origins) together are refused.
    let out = custos(d, &["digest", "--sign", key.to_str().unwrap(), "--origin", "another.log", "--at-seq", "300"]);
    let other = write("cp-other", &stdout(&out));
    let (c, _, e) = run(&[&consistency, "--key", &public, "--checkpoint", &cp100, "--checkpoint", &other]);
    assert_eq!(c, 2, "{e}");

    for (why, args) in [
        ("--key without --checkpoint", vec![inclusion.as_str(), "--key", public.as_str()]),
        ("--root on a log proof", vec![inclusion.as_str(), "--root", inclusion.as_str()]),
        ("--checkpoint without --key", vec![inclusion.as_str(), "--checkpoint", cp300.as_str()]),
        ("a secret key given as --key", vec![cp300.as_str(), "--key", key.to_str().unwrap()]),
        ("a key file that is not there", vec![cp300.as_str(), "--key", "keys/nosuch.pub"]),
    ] {
        let (c, o, e) = run(&args);
        assert_eq!(c, 2, "{why}: {o}{e}");
        if why.contains("not there") {
            assert!(e.contains("keys/nosuch.pub: no such file"), "{e}");
        }
    }
    let text = std::fs::read_to_string(d.join("i.json")).unwrap();
    let body = text.trim().trim_end_matches('}');
    for (why, bad) in [
        ("a repeated field", format!("{body}, \"leaf_index\": 0}}")),
        ("an unknown field", format!("{body}, \"evil\": \"x\"}}")),
        ("two kinds in one", format!("{body}, \"first_size\": 1}}")),
    ] {
        let f = write("bad.json", &bad);
        let (c, o, e) = run(&[&f]);
        assert_eq!(c, 2, "{why}: {o}{e}");
    }
    let note = std::fs::read_to_string(&cp300).unwrap();
    for (why, bad) in [("CRLF lines", note.replace('\n', "\r\n")), ("no blank line", note.replacen("\n\n", "\n", 1))] {
        let f = write("bad.cp", &bad);
        let (c, o, e) = run(&[&f, "--key", &public]);
        assert_eq!(c, 2, "a malformed checkpoint ({why}) cannot be read: {o}{e}");
    }
    let (c, o, _) = run(&[&cp300, "--key", &public]);
    assert_eq!(c, 0, "{o}");
}
