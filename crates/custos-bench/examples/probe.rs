fn main() {
    let store = custos_store::Store::open(std::path::Path::new(&std::env::args().nth(1).unwrap()), "probe").unwrap();
    for n in ["max_occurred", "tail_min_occurred"] {
        println!("{n}: {:?}", store.get_meta(n).unwrap());
    }
    println!("{:?}", store.list_meta("m").unwrap());
}
