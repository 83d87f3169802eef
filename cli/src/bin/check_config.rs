//! Validate a filter configuration offline with the filter's own parser:
//! `rollout-check-config < config.json` prints `ok` or the error Envoy would log. Both forms:
//! the single rollout and `rollouts[]`, parsed as `on_configure` parses them.

use std::io::Read;

fn main() {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read stdin: {e}");
        std::process::exit(2);
    }
    match rollout_filter::rollouts::FilterConfig::from_json(&input) {
        Ok(_) => println!("ok"),
        Err(e) => {
            println!("invalid configuration: {e}");
            std::process::exit(1);
        }
    }
}
