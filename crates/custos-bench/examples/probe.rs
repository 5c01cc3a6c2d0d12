use custos_domain::{AccountId, StreamId};
use custos_store::{fnv64, IndexKind, Store};
use std::time::Instant;
fn main() {
    let store = Store::open(std::path::Path::new("/tmp/b1/w/ledger"), "probe").unwrap();
    for i in [1u64, 123, 4567, 9999, 15000, 123, 4567] {
        let acct = format!("acct-{i:06}");
        let key = fnv64(StreamId::Account(AccountId::new(&acct).unwrap()).as_str().as_bytes());
        let t = Instant::now();
        let seqs = store.index_get(IndexKind::Stream, key).unwrap();
        let t1 = t.elapsed();
        let t = Instant::now();
        for s in &seqs {
            let _ = store.record(*s).unwrap();
        }
        let t2 = t.elapsed();
        println!("{acct}: {} seqs, index {:?}, records {:?}", seqs.len(), t1, t2);
    }
}
