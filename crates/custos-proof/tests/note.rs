//! Signed notes and checkpoints against Go's reference: the keys, texts and signatures are
//! copied from golang/mod, `sumdb/note/note_test.go` (commit
//! 02c991387e35f9e4c0a9b7ce137717055f8d716d), TestSign, TestOpen and TestNewVerifier. The
//! checkpoint body is the example in C2SP/C2SP, `tlog-checkpoint.md`.

use custos_proof::note::{open, open_text, sign, sign_text, Checkpoint, SignerKey, VerifierKey, SIGNATURES_MAX};
use custos_proof::tree::leaf_hash;
use custos_proof::ProofError;

const PETER_SIGNER: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VERIFIER: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str =
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str =
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> (SignerKey, VerifierKey) {
    (PETER_SIGNER.parse().unwrap(), PETER_VERIFIER.parse().unwrap())
}

#[test]
fn go_keys_parse_and_print_back() {
    let (signer, verifier) = peter();
    assert_eq!((signer.name(), signer.id()), ("PeterNeumann", 0xc74f20a3));
    assert_eq!(signer.encode(), PETER_SIGNER);
    assert_eq!(signer.verifier(), verifier);
    assert_eq!(verifier.to_string(), PETER_VERIFIER);
    assert_eq!(ENOCH_VERIFIER.parse::<VerifierKey>().unwrap().to_string(), ENOCH_VERIFIER);
    assert_eq!(format!("{signer:?}"), "SignerKey(PeterNeumann+c74f20a3)");
}

#[test]
fn signing_go_text_gives_go_signature_bytes() {
    let (signer, _) = peter();
    assert_eq!(sign_text(TEXT, &signer).unwrap(), format!("{TEXT}\n{PETER_SIG}"));
    let refused = sign_text("abc", &signer);
    assert!(matches!(refused, Err(ProofError::MalformedNote { line: 1, .. })), "{refused:?}");
}

#[test]
fn go_notes_open_with_the_matching_key_only() {
    let (_, peter) = peter();
    let enoch: VerifierKey = ENOCH_VERIFIER.parse().unwrap();
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(open_text(&both, &peter), Ok(TEXT));
    assert_eq!(open_text(&both, &enoch), Ok(TEXT));
    let only_enoch = format!("{TEXT}\n{ENOCH_SIG}");
    assert_eq!(
        open_text(&only_enoch, &peter),
        Err(ProofError::NoSignatureByKey { name: "PeterNeumann".into(), id: 0xc74f20a3 })
    );
    // Go's "Invalid signature" case: four characters inserted into Peter's signature.
    let corrupt = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    let refused = open_text(&corrupt, &peter);
    assert_eq!(refused, Err(ProofError::BadSignature { name: "PeterNeumann".into(), id: 0xc74f20a3, line: 4 }));
    // Go's misnamed and wrong-hash cases: not Peter's key, so ignored, so no signature by it.
    for other in [PETER_SIG.replace("PeterNeumann", "CarmenSandiego"), PETER_SIG.replace("x08g", "xxxx")] {
        assert!(matches!(open_text(&format!("{TEXT}\n{other}"), &peter), Err(ProofError::NoSignatureByKey { .. })));
    }
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(SIGNATURES_MAX + 1));
    assert_eq!(open_text(&many, &peter), Err(ProofError::TooManySignatures { max: SIGNATURES_MAX }));
    assert_eq!(open_text(&format!("{TEXT}\n{}", PETER_SIG.repeat(SIGNATURES_MAX)), &peter), Ok(TEXT));
}

/// Go's "Invalid encoded message syntax" list, less the invalid UTF-8 one, which a `&str`
/// cannot hold.
#[test]
fn go_malformed_notes_are_refused() {
    let (_, peter) = peter();
    let malformed = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{TEXT}\n{PETER_SIG}"),
        format!("{TEXT}\n{}", PETER_SIG.replace("PeterNeumann", "Bad Name").trim_end()), // as in Go
        format!("{TEXT}\n{}", PETER_SIG.replace("PeterNeumann", "Bad Name")),            // with its newline
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
    ];
    for note in malformed {
        let refused = open_text(&note, &peter);
        assert!(matches!(refused, Err(ProofError::MalformedNote { .. })), "{note:?}: {refused:?}");
    }
}

/// Go's TestNewVerifier and TestNewSigner: every proper substring and every one-byte change of
/// the key strings is refused.
#[test]
fn mangled_key_strings_are_refused() {
    for key in [PETER_VERIFIER, PETER_SIGNER] {
        let parses = |text: &str| {
            if key == PETER_VERIFIER {
                text.parse::<VerifierKey>().is_ok()
            } else {
                text.parse::<SignerKey>().is_ok()
            }
        };
        let bytes = key.as_bytes();
        for i in 0..bytes.len() {
            for j in i + 1..=bytes.len() {
                assert!((i == 0 && j == bytes.len()) || !parses(&key[i..j]), "{}", &key[i..j]);
            }
            let mut changed = bytes.to_vec();
            changed[i] += 1;
            assert!(!parses(std::str::from_utf8(&changed).unwrap()), "{changed:?}");
        }
    }
    // Go's wrong-length and unknown-algorithm keys, each with a matching key id.
    let refused = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==".parse::<VerifierKey>();
    assert!(matches!(refused, Err(ProofError::MalformedKey { .. })));
    let refused = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".parse::<VerifierKey>();
    assert!(matches!(refused, Err(ProofError::MalformedKey { .. })));
}

#[test]
fn checkpoints_sign_and_open() {
    let signer = SignerKey::from_seed("custos.example/ledger", [7; 32]).unwrap();
    let checkpoint = Checkpoint::new("custos.example/ledger", 20852163, leaf_hash(b"head")).unwrap();
    let note = sign(&checkpoint, &signer);
    assert!(note.starts_with(&format!("{}\n— custos.example/ledger ", checkpoint.body())));
    assert_eq!(open(&note, &signer.verifier()), Ok(checkpoint.clone()));
    let key: VerifierKey = signer.verifier().to_string().parse().unwrap();
    assert_eq!(open(&note, &key), Ok(checkpoint));
    let other = SignerKey::from_seed("custos.example/ledger", [8; 32]).unwrap();
    assert!(matches!(open(&note, &other.verifier()), Err(ProofError::NoSignatureByKey { .. })));
    let tampered = note.replacen("20852163", "20852164", 1);
    assert!(matches!(open(&tampered, &signer.verifier()), Err(ProofError::BadSignature { line: 5, .. })));
    assert!(matches!(SignerKey::from_seed("two words", [7; 32]), Err(ProofError::InvalidKeyName { .. })));
    assert_eq!(Checkpoint::new("a\nb", 1, [0; 32]), Err(ProofError::InvalidOrigin));
}

#[test]
fn checkpoint_bodies_parse_strictly() {
    let c2sp = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let checkpoint = Checkpoint::parse_body(c2sp).unwrap();
    assert_eq!((checkpoint.origin(), checkpoint.tree_size()), ("example.com/behind-the-sofa", 20852163));
    assert_eq!(checkpoint.body(), c2sp);
    let line_of = |body: &str| match Checkpoint::parse_body(body) {
        Err(ProofError::MalformedCheckpoint { line, .. }) => line,
        other => panic!("{body:?} gave {other:?}"),
    };
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    assert_eq!(line_of(&format!("log\n20852163\n{root}")), 3); // no final newline
    assert_eq!(line_of(&format!("log\n020852163\n{root}\n")), 2); // leading zero
    assert_eq!(line_of(&format!("log\n+20852163\n{root}\n")), 2);
    assert_eq!(line_of(&format!("log\n18446744073709551616\n{root}\n")), 2); // past u64
    assert_eq!(line_of("log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n"), 3); // unpadded
    assert_eq!(line_of("log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n"), 3); // 30 bytes
    assert_eq!(line_of(&format!("log\n1\n{root}\nextension\n")), 4);
    assert_eq!(line_of(&format!("\n1\n{root}\n")), 1);
    assert_eq!(line_of("log\n1\n"), 3);
    assert_eq!(Checkpoint::parse_body(&format!("log\n0\n{root}\n")).unwrap().tree_size(), 0);
}
