//! How long the bundled model's text preparation takes on the longest text an embedder is given
//! (32 KiB): phrases joined, then every word looked up in the thesaurus.
//! Run: `cargo run --release -p mc-overlap --example canonical_bench`.

fn main() {
    let unit = "We need to roll out the new sign up flow and clean up the drop down on the settings page; log in fails when the feature flag is turned off. ";
    let mut text = String::new();
    while text.len() < 32 * 1024 {
        text.push_str(unit);
    }
    let t = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..50 {
        n += mc_overlap::thesaurus::join_phrases(&text).len();
    }
    println!("join_phrases 32 KiB: {:.3} ms ({n})", t.elapsed().as_secs_f64() * 1000.0 / 50.0);
    let t = std::time::Instant::now();
    for _ in 0..50 {
        n += mc_overlap::thesaurus::canonical(&text).len();
    }
    println!("canonical 32 KiB: {:.3} ms ({n})", t.elapsed().as_secs_f64() * 1000.0 / 50.0);
}
