//! The figures of the README and its pages under docs/ that the code determines, checked against
//! the code and a real Envoy so they cannot drift: the shipped module's size (README, docs/cost.md),
//! the metric table, the number of `stats_tags`, the series per rollout and the rejection reasons
//! (docs/metrics.md, counted on `/stats/prometheus`), and the README's minimal configuration.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rollout_cli::demo_envoy;
use rollout_e2e::{parse_prometheus, read_workspace_file, wasm_path, workspace_root};

/// How far "about N KB shipped" may be from the built module.
const SIZE_TOLERANCE: f64 = 0.03;

/// The page of the docs that holds the metrics' figures.
const METRICS: &str = "docs/metrics.md";

/// `text` with every run of whitespace one space: a phrase may wrap anywhere.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The word just before each `marker` (brackets, backticks and `*` trimmed).
fn before(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .map(|(i, _)| {
            let head = &text[..i];
            let word = head.split_whitespace().last().unwrap_or("");
            word.trim_matches(|c: char| "(`*:".contains(c)).to_string()
        })
        .collect()
}

/// The word just after each `marker`.
fn after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .map(|(i, _)| {
            let tail = &text[i + marker.len()..];
            let word = tail.split_whitespace().next().unwrap_or("");
            word.trim_matches(|c: char| "()`*:;,.".contains(c)).to_string()
        })
        .collect()
}

/// "42", or a number word ("Six").
fn number(word: &str) -> u64 {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    word.parse().ok().unwrap_or_else(|| {
        let w = word.to_lowercase();
        WORDS
            .iter()
            .position(|x| *x == w)
            .unwrap_or_else(|| panic!("not a number: {word:?}")) as u64
    })
}

/// The one figure before `marker` in `text`.
fn figure(text: &str, marker: &str) -> u64 {
    let words = before(text, marker);
    assert_eq!(
        words.len(),
        1,
        "{METRICS}: `{marker}` once, found {}",
        words.len()
    );
    number(&words[0])
}

#[test]
fn module_size_is_what_the_docs_say() {
    let size = std::fs::metadata(wasm_path()).expect("make build").len() as f64;
    // The README's first paragraphs and the cost page's module size each name it.
    for doc in ["README.md", "docs/cost.md"] {
        let figures = before(&flat(&read_workspace_file(doc)), " KB shipped");
        assert!(!figures.is_empty(), "{doc}: the module size: {figures:?}");
        for kb in figures {
            let said = number(&kb) as f64 * 1000.0;
            println!(
                "{doc}: about {kb} KB shipped; {} is {size} bytes",
                wasm_path().display()
            );
            assert!(
                (said - size).abs() <= size * SIZE_TOLERANCE,
                "{doc} says about {kb} KB shipped, the module is {size} bytes: write about {:.0} KB",
                size / 1000.0
            );
        }
    }
}

/// Every ```json block of the README is a whole configuration the filter accepts, with no warning.
#[test]
fn the_readme_configuration_is_one_the_filter_accepts() {
    let readme = read_workspace_file("README.md");
    let blocks: Vec<&str> = readme
        .split("```json\n")
        .skip(1)
        .map(|b| &b[..b.find("```").expect("the block's end")])
        .collect();
    assert!(!blocks.is_empty(), "README: a json configuration");
    for block in blocks {
        let verdict = rollout_cli::check::verdict("", block.as_bytes());
        assert_eq!(verdict, Ok(vec![]), "README's configuration:\n{block}");
    }
}

/// Every `"rollout_…"` string literal in the filter's sources: the metric names it defines.
fn metric_names_in(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("filter/src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            metric_names_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            for (i, _) in text.match_indices("\"rollout_") {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }
}

#[test]
fn every_metric_the_filter_defines_is_in_the_metrics_table() {
    let mut defined = BTreeSet::new();
    metric_names_in(&workspace_root().join("filter/src"), &mut defined);
    let doc = read_workspace_file(METRICS);
    let table = &doc[doc
        .find("| metric (on `/stats/prometheus`)")
        .expect("metrics table")..];
    let table: BTreeSet<String> = table
        .lines()
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.strip_prefix("| `rollout_"))
        .map(|l| format!("rollout_{}", l.split('`').next().unwrap_or("")))
        .collect();
    println!("filter defines {} metrics: {defined:?}", defined.len());
    assert_eq!(
        table, defined,
        "{METRICS}'s metrics table against the filter's metric names"
    );
}

#[test]
fn stats_tags_count_is_what_the_docs_say() {
    let tags = |text: &str| {
        text.lines()
            .filter(|l| l.trim_start().starts_with("- { tag_name:"))
            .count()
    };
    let shipped = tags(&read_workspace_file("envoy-config/envoy.yaml")) as u64;
    let doc = read_workspace_file(METRICS);
    let block = &doc[doc
        .find("stats_config:\n  stats_tags:")
        .expect("the stats_tags block")..];
    let shown = tags(&block[..block.find("```").unwrap_or(block.len())]) as u64;
    assert_eq!(
        shown, shipped,
        "{METRICS}'s stats_tags block against envoy-config/envoy.yaml"
    );
    for marker in [" `stats_config.stats_tags`", " regexes above"] {
        assert_eq!(figure(&flat(&doc), marker), shipped, "{METRICS}: `…{marker}`");
    }
    println!("{shipped} stats_tags in envoy-config/envoy.yaml, as {METRICS} says");
}

/// The metrics page's series figures: (per-version series, rejection reasons, series for two
/// versions, what route-weights mode adds, the count with a guard).
fn documented_series() -> (u64, u64, u64, u64, u64) {
    let doc = flat(&read_workspace_file(METRICS));
    let head = "Series per rollout with V versions:";
    let start = doc.find(head).expect("the series paragraph") + head.len();
    let formula = &doc[start..start + doc[start..].find("+ one per rejection").expect("formula")];
    // "8V requests … + V local replies + 22V histogram": each `nV` term.
    let per_version: u64 = formula
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('V'))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .map(|n| if n.is_empty() { 1 } else { number(n) })
        .sum();
    let reasons = figure(&doc, " today)");
    let two = figure(&doc, " for two versions");
    let unknown = figure(&doc, " more; a `guard`");
    let guard = after(&doc, "2V more:");
    assert_eq!(guard.len(), 1, "{METRICS}: `2V more:` once");
    (per_version, reasons, two, unknown, number(&guard[0]))
}

#[test]
fn series_and_rejection_reasons_are_what_envoy_shows() {
    let (per_version, reasons, two, unknown, guard) = documented_series();
    assert_eq!(
        two,
        2 * per_version + reasons,
        "{METRICS}: {two} for two versions"
    );
    assert_eq!(
        unknown, per_version,
        "{METRICS}: route-weights mode adds one version"
    );
    assert_eq!(guard, two + 4, "{METRICS}: a guard adds 2V");

    let (series, seen_reasons) = measure("guard.yaml", 18040, 18940);
    println!("envoy-config/guard.yaml: {series} series, {seen_reasons} rejection reasons");
    assert_eq!(seen_reasons, reasons, "rejection reasons on /stats/prometheus");
    assert_eq!(series, guard, "series of a rollout with two versions and a guard");
    let (series, _) = measure("route-weights.yaml", 18020, 18920);
    println!("envoy-config/route-weights.yaml: {series} series");
    assert_eq!(series, two + unknown, "series in route-weights mode");
}

/// Series of rollout checkout-2026-11 (without the memory gauge) and distinct rejection reasons
/// on `/stats/prometheus` of the shipped `config`, once the count holds still.
fn measure(config: &str, front: u16, admin_port: u16) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = workspace_root().join("envoy-config").join(config);
    let _envoy = demo_envoy::start(
        &yaml,
        &dir.path().join("envoy.log"),
        &format!("http://127.0.0.1:{front}"),
        &format!("http://127.0.0.1:{admin_port}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://127.0.0.1:{admin_port}/stats/prometheus");
    let count = || {
        let text = ureq::get(&url)
            .call()
            .expect("admin")
            .into_string()
            .expect("text");
        let samples = parse_prometheus(&text);
        let ours: Vec<_> = samples
            .iter()
            .filter(|s| s.labels.get("rollout").map(String::as_str) == Some("checkout-2026-11"))
            .filter(|s| s.name != "rollout_vm_memory_bytes")
            .collect();
        let reasons: BTreeSet<&String> = ours.iter().filter_map(|s| s.labels.get("reason")).collect();
        (ours.len() as u64, reasons.len() as u64)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = count();
        if (now == last && now.0 > 0) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// docs/troubleshooting.md's table of each shipped config's ports.
#[test]
fn troubleshooting_port_table_is_the_configs() {
    let doc = read_workspace_file("docs/troubleshooting.md");
    let rows: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| `envoy-config/"))
        .collect();
    let shipped = std::fs::read_dir(workspace_root().join("envoy-config"))
        .expect("envoy-config/")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert_eq!(rows.len(), shipped, "a row per shipped config");
    for row in rows {
        let config = row.split('`').nth(1).expect("config");
        let cells = row.rsplit('|').nth(1).expect("ports cell");
        let mut listed: Vec<u16> = cells
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        listed.sort_unstable();
        assert_eq!(
            listed,
            demo_envoy::ports_of(&read_workspace_file(config)),
            "{config}"
        );
    }
}
