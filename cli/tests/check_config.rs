//! `rollout-check-config` as a user runs it: files as arguments, stdin with `-` or without
//! arguments (the form scripts use), `--help`, one line per configuration, exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

use rollout_cli::check::{self, Outcome};
use rollout_cli::workspace_root;

/// Runs the binary from the workspace root with `args` and `stdin`: (exit code, stdout).
fn run(args: &[&str], stdin: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollout-check-config"))
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rollout-check-config");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const GOOD: &str =
    r#"{"rolloutId":"r","versions":[{"name":"stable","weight":90},{"name":"canary","weight":10}]}"#;
const BAD: &str =
    r#"{"rolloutId":"r","versions":[{"name":"stable","weight":90},{"name":"canary","weight":-1}]}"#;

#[test]
fn no_arguments_reads_one_json_config_from_stdin_and_prints_ok_alone() {
    assert_eq!(run(&[], GOOD), (0, "ok\n".into()));
    assert_eq!(
        run(&[], BAD),
        (
            1,
            "invalid configuration: versions[1].weight: must be an integer >= 0\n".into()
        )
    );
}

#[test]
fn files_as_arguments_one_line_each_with_the_field_path() {
    let (code, out) = run(
        &[
            "istio/wasmplugin.yaml",
            "istio/lanes.yaml",
            "tools/testdata/invalid/wasmplugin-bad-pluginconfig.yaml",
        ],
        "",
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        "istio/wasmplugin.yaml: ok\n\
         istio/lanes.yaml#0: ok\n\
         istio/lanes.yaml#1: ok\n\
         tools/testdata/invalid/wasmplugin-bad-pluginconfig.yaml: invalid: \
         spec.pluginConfig.versions[1].weight: must be an integer >= 0\n"
    );
}

#[test]
fn envoy_configs_name_each_wasm_filter_and_follow_ecds_files() {
    let (code, out) = run(&["envoy-config/envoy.yaml", "envoy-config/istio-ecds.yaml"], "");
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "envoy-config/envoy.yaml#rollout-filter: ok",
            "envoy-config/envoy.yaml#rollout-filter-mtls: ok",
            "envoy-config/istio-ecds.yaml#extensions.istio.io/wasmplugin/istio-system.rollout-filter \
             -> envoy-config/ecds/rollout-filter.yaml#istio-system.rollout-filter: ok",
        ]
    );
}

#[test]
fn dash_is_stdin_in_any_form() {
    let plugin = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nspec:\n  pluginConfig:\n    \
                  rolloutId: r\n    versions: [{name: a, weight: 1}]\n";
    assert_eq!(run(&["-"], plugin), (0, "<stdin>: ok\n".into()));
    assert_eq!(run(&["-"], GOOD), (0, "<stdin>: ok\n".into()));
    // `kubectl get wasmplugins -o yaml` is a List.
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}",
        plugin.replace('\n', "\n  ")
    );
    assert_eq!(run(&["-"], &list), (0, "<stdin>#items[0]: ok\n".into()));
    let (code, out) = run(&["-"], "{");
    assert_eq!(code, 1);
    assert!(out.starts_with("<stdin>: invalid: EOF while parsing"), "{out}");
}

#[test]
fn help_unreadable_files_and_files_without_a_config() {
    let (code, out) = run(&["--help"], "");
    assert_eq!(code, 0);
    for want in [
        "WasmPlugin",
        "EnvoyExtensionPolicy",
        "Envoy config",
        "ECDS",
        "FILE#N",
        "Exit code",
        "--flagd",
    ] {
        assert!(out.contains(want), "--help lacks {want}:\n{out}");
    }
    let (code, out) = run(&["no/such.yaml", "istio/wasmplugin.yaml"], "");
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("no/such.yaml: cannot read: "), "{out}");
    assert!(out.ends_with("istio/wasmplugin.yaml: ok\n"), "{out}");
    let (code, out) = run(&["istio/routing.yaml"], "");
    assert_eq!(code, 1);
    assert!(
        out.contains("no filter configuration") && out.contains("a VirtualService"),
        "{out}"
    );
}

#[test]
fn the_library_finds_configs_in_every_shape() {
    let none = |_: &str| -> std::io::Result<Vec<u8>> { Err(std::io::ErrorKind::NotFound.into()) };
    // A filter config in YAML, its positions left out (they would be the re-encoded JSON's).
    let got = check::check(
        "f",
        b"rolloutId: r\nversions: [{name: a, weight: 1}]\nstickyKey: []\n",
        &none,
    );
    assert_eq!(got.len(), 1);
    let Outcome::Invalid(e) = &got[0].1 else {
        panic!("{got:?}")
    };
    assert!(
        e.starts_with("stickyKey: unknown field") && !e.contains(" at line "),
        "{e}"
    );
    // An ECDS file that cannot be read is reported, not counted as an error.
    let envoy = r#"static_resources: {listeners: [{name: l, filter_chains: [{filters: [{typed_config:
      {http_filters: [{name: rf, config_discovery: {config_source: {path_config_source: {path: /x.yaml}}}}]}}]}]}]}"#;
    let got = check::check("e", envoy.as_bytes(), &none);
    assert!(
        matches!(&got[..], [(n, Outcome::Unchecked(_))] if n == "e#rf"),
        "{got:?}"
    );
    // A configuration that is not a StringValue is an error naming the field.
    let wasm = r#"{"resources": [{"name": "x", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      "config": {"configuration": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {}}}}}]}"#;
    let got = check::check("j", wasm.as_bytes(), &none);
    assert!(
        matches!(&got[..], [(n, Outcome::Invalid(e))] if n == "j#x" && e.starts_with("config.configuration:")),
        "{got:?}"
    );
}

#[test]
fn a_flagd_flag_file_on_its_own() {
    let (code, out) = run(&["--flagd", "tests/flagd/flags.json", "--flag-key", "search"], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: flag \"search\""), "{out}");
    let args = [
        "--flagd",
        "tests/flagd/flags.json",
        "--flag-key",
        "legacy-clients",
        "--fractional",
        "v3",
    ];
    let (code, out) = run(&args, "");
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("invalid flag: "), "{out}");
    // --flag-key is required with --flagd; files do not mix with it.
    assert_eq!(run(&["--flagd", "tests/flagd/flags.json"], "").0, 2);
}
