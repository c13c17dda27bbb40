//! Config loading and validation: the shipped `config.toml`, and one fixture per kind of mistake
//! in `tests/fixtures/config/`, each asserting the exact lines an operator would see.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use otlp_gateway::config::{self, Config};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/config").join(name)
}

/// The error lines `name` produces, with no environment variables set.
fn errors(name: &str) -> Vec<String> {
    errors_with(name, &[])
}

fn errors_with(name: &str, env: &[(&str, &str)]) -> Vec<String> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match config::load_and_validate_str_with(&text, name, |k| env.get(k).cloned()) {
        Ok((_, warnings)) => panic!("{name} is valid (warnings: {warnings:?})"),
        Err(errors) => errors.lines(),
    }
}

fn shipped_text() -> String {
    std::fs::read_to_string(root().join("config.toml")).unwrap()
}

#[test]
fn shipped_config_is_valid_without_warnings() {
    let (config, warnings) = config::load_and_validate(&root().join("config.toml")).unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(config.exporter_ids(), ["debug/console"]);
    for signal in otlp_gateway::model::Signal::ALL {
        assert_eq!(
            config.pipelines.get(signal).unwrap().exporters,
            ["debug/console"]
        );
    }
}

#[test]
fn shipped_config_values_are_the_defaults() {
    // The reference spells out every key with its default, so it must load to exactly what the
    // same exporters and pipelines give with every other key left out.
    let shipped = config::load_str(&shipped_text(), "config.toml").unwrap();
    let minimal = config::load_str(
        "[exporters.debug.console]\n\
         [pipelines.traces]\nexporters = [\"debug/console\"]\n\
         [pipelines.metrics]\nexporters = [\"debug/console\"]\n\
         [pipelines.logs]\nexporters = [\"debug/console\"]\n\
         [processors.redaction]\n\
         [[processors.redaction.rules]]\nname = \"card_numbers\"\nkeys = ['card[._-]?(number|num|no)$', '(^|[._-])pan$']\naction = \"mask_last4\"\n\
         [processors.tail_sampling]\ndecision = \"first_match\"\n\
         [[processors.tail_sampling.policies]]\nname = \"errors\"\ntype = \"status_code\"\nstatus_code = { status_codes = [\"ERROR\"] }\n\
         [[processors.tail_sampling.policies]]\nname = \"vip-users\"\ntype = \"boolean_attribute\"\nboolean_attribute = { key = \"user.vip\", value = true }\n\
         [[processors.tail_sampling.policies]]\nname = \"high-value-orders\"\ntype = \"numeric_attribute\"\n\
         numeric_attribute = { key = \"order.amount\", min_value = 1000, min_inclusive = false }\n\
         [[processors.tail_sampling.policies]]\nname = \"baseline\"\ntype = \"probabilistic\"\nprobabilistic = { sampling_percentage = 10 }\n",
        "minimal",
    )
    .unwrap();
    assert_eq!(format!("{shipped:#?}"), format!("{minimal:#?}"));
}

#[test]
fn shipped_config_is_described_with_every_resolved_value() {
    let (config, _) = config::load_and_validate(&root().join("config.toml")).unwrap();
    let redaction = "redaction(card numbers, 12 blocked keys -> redact, 1 rules, 0 ignored)";
    let batch = "batch(send_batch_size=8192, send_batch_max_size=0 (no limit), timeout=200ms)";
    let sampling = "tail_sampling(decision_wait=10s, decision_wait_after_root=2s, decision=first_match, \
                    num_traces=50000, max_buffered_bytes=256.0 MiB, shards=1, policies=[errors (status_code), \
                    vip-users (boolean_attribute), high-value-orders (numeric_attribute), baseline (probabilistic)])";
    assert_eq!(
        config::describe(&config),
        format!(
            "service: shutdown_timeout 30s, logs \"info\" as text\n\
             receivers: otlp/grpc 127.0.0.1:4317 (max 8.0 MiB, 64.0 MiB decompressed, 100 streams per connection, 1000 connections, header timeout 10s, body timeout 30s, idle timeout 1m, h2 ping every 30s (timeout 10s), tcp keepalive 1m), \
             otlp/http 127.0.0.1:4318 (max 8.0 MiB, 64.0 MiB decompressed, 100 streams per connection, 1000 connections, header timeout 10s, body timeout 30s, idle timeout 1m, h2 ping every 30s (timeout 10s), tcp keepalive 1m), retry_after 1s, max_inflight_bytes 256.0 MiB\n\
             admin: 127.0.0.1:8888 (/ready fails while a queue is over 90% full)\n\
             exporter debug/console: basic, queue 200000 items, 4 consumers, \
             breaker after 5 failures or 10% of 20+ in 30s, open 1s..1m\n\
             pipeline traces: receivers [otlp] -> {redaction} -> {sampling} -> {batch} -> exporters [debug/console]\n\
             pipeline metrics: receivers [otlp] -> {redaction} -> {batch} -> exporters [debug/console]\n\
             pipeline logs: receivers [otlp] -> {redaction} -> {batch} -> exporters [debug/console]\n"
        )
    );
}

/// `config.toml` with the commented-out `[exporters.otlp.jaeger]` example switched on and used
/// by the traces pipeline.
fn shipped_with_jaeger() -> String {
    let text = shipped_text();
    let mut out = Vec::new();
    let mut in_example = false;
    for line in text.lines() {
        if line == "# [exporters.otlp.jaeger]" {
            in_example = true;
        } else if line.starts_with("# ---") {
            in_example = false;
        }
        if !in_example {
            out.push(line.to_owned());
        } else if line.starts_with("# #") || line == "#" {
            out.push(String::new()); // Keep line numbers.
        } else {
            out.push(line.strip_prefix("# ").unwrap_or(line).to_owned());
        }
    }
    let text = out.join("\n");
    let traces = "[pipelines.traces]\n# Exporter ids, \"<kind>/<name>\". Required.\nexporters = [\"debug/console\"]";
    assert!(text.contains(traces));
    text.replace(
        traces,
        "[pipelines.traces]\n# Exporter ids, \"<kind>/<name>\". Required.\nexporters = [\"debug/console\", \"otlp/jaeger\"]",
    )
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.starts_with(needle)).unwrap() + 1
}

#[test]
fn shipped_otlp_example_is_valid_once_uncommented() {
    let text = shipped_with_jaeger();
    let env = |name: &str| (name == "JAEGER_API_KEY").then(|| "k".to_owned());

    // The example's CA file does not exist here; that is its only error.
    let errors = config::load_and_validate_str_with(&text, "config.toml", env).unwrap_err();
    assert_eq!(
        errors.lines(),
        [format!(
            "exporters.otlp.jaeger.tls.ca_file (line {}): file not found: \"/etc/otlp-gateway/ca.pem\"",
            line_of(&text, "ca_file = ")
        )]
    );

    let ca = root().join("Cargo.toml");
    let text = text.replace("/etc/otlp-gateway/ca.pem", &ca.display().to_string());
    let (config, warnings) = config::load_and_validate_str_with(&text, "config.toml", env).unwrap();
    assert_eq!(
        warnings,
        [format!(
            "exporters.otlp.jaeger.tls (line {}): ignored: the endpoint is http:// (plain text)",
            line_of(&text, "[exporters.otlp.jaeger.tls]")
        )]
    );

    // Every value written in the example is the default.
    let Some(jaeger) = config.exporters.otlp.get("jaeger") else {
        panic!("otlp/jaeger missing");
    };
    let defaults = config::load_str(
        "[exporters.otlp.jaeger]\nendpoint = \"http://127.0.0.1:14317\"\nheaders = { \"x-api-key\" = \"k\" }\ntenant_header = \"X-Scope-OrgID\"\ntls = { ca_file = \"CA\" }\n",
        "defaults",
    )
    .unwrap();
    let Some(default) = defaults.exporters.otlp.get("jaeger") else {
        panic!("otlp/jaeger missing");
    };
    assert_eq!(
        format!("{jaeger:?}").replace(&ca.display().to_string(), "CA"),
        format!("{default:?}")
    );
}

#[test]
fn bad_unknown_key_names_the_typo_and_its_line() {
    assert_eq!(
        errors("bad_unknown_key.toml"),
        ["exporters.otlp.jaeger.timout (line 4): unknown field `timout`, expected one of `endpoint`, \
          `protocol`, `compression`, `headers`, `tenant_header`, `timeout`, `tls`, `retry_on_failure`, `sending_queue`, `circuit_breaker`"]
    );
}

#[test]
fn bad_duration_names_the_value() {
    assert_eq!(
        errors("bad_duration.toml"),
        ["exporters.otlp.jaeger.timeout (line 5): invalid duration \"5 minuts\""]
    );
}

#[test]
fn bad_size_names_the_value() {
    assert_eq!(
        errors("bad_size.toml"),
        ["receivers.otlp.grpc.max_request_bytes (line 4): invalid size \"8 MiBs\""]
    );
}

#[test]
fn bad_missing_exporter_lists_the_defined_ones() {
    assert_eq!(
        errors("bad_missing_exporter.toml"),
        ["pipelines.traces.exporters[1] (line 8): unknown exporter \"otlp/jaegr\"; defined: debug/console, otlp/jaeger"]
    );
}

#[test]
fn bad_same_port_reports_each_clash() {
    assert_eq!(
        errors("bad_same_port.toml"),
        [
            "admin.endpoint (line 3): address 0.0.0.0:4317 is already used by receivers.otlp.grpc.endpoint",
            "receivers.otlp.http.endpoint (line 9): address 127.0.0.1:4317 is already used by receivers.otlp.grpc.endpoint",
        ]
    );
}

#[test]
fn bad_batch_max_below_batch_size() {
    assert_eq!(
        errors("bad_batch_max.toml"),
        ["processors.batch.send_batch_max_size (line 4): must be 0 (no limit) or at least send_batch_size (8192)"]
    );
}

#[test]
fn bad_endpoint_urls_are_each_explained() {
    assert_eq!(
        errors("bad_endpoint.toml"),
        [
            "exporters.otlp.no_scheme.endpoint (line 3): invalid endpoint \"127.0.0.1:14317\": must start with http:// or https://",
            "exporters.otlp.no_port.endpoint (line 6): invalid endpoint \"https://jaeger.example.com\": no port (e.g. http://collector:4317)",
            "exporters.otlp.grpc_path.endpoint (line 9): invalid endpoint \"http://127.0.0.1:14317/v1/traces\": a gRPC endpoint takes no path",
        ]
    );
}

#[test]
fn bad_many_reports_every_problem_in_file_order() {
    assert_eq!(
        errors("bad_many.toml"),
        [
            "admin.endpoint (line 6): invalid listen address \"localhost:8888\": expected IP:port, e.g. \"0.0.0.0:4317\"",
            "admin.ready_queue_high_water (line 7): must be greater than 0 and at most 1, got 1.5",
            "receivers.otlp.grpc.max_decompressed_bytes (line 12): must be at least max_request_bytes (16.0 MiB)",
            "receivers.otlp.grpc.max_concurrent_streams (line 13): must be greater than 0",
            "receivers.otlp.http.endpoint (line 16): address 127.0.0.1:4317 is already used by receivers.otlp.grpc.endpoint",
            "processors.batch.send_batch_size (line 19): must be greater than 0",
            "processors.batch.timeout (line 20): must be greater than 0",
            "exporters.otlp.jaeger.headers.x api key (line 24): invalid header name \"x api key\"",
            "exporters.otlp.jaeger.tls.ca_file (line 27): file not found: \"tests/fixtures/config/no-such-ca.pem\"",
            "exporters.otlp.jaeger.retry_on_failure.max_interval (line 31): must be at least initial_interval (10s)",
            "exporters.otlp.jaeger.retry_on_failure.multiplier (line 32): must be at least 1, got 0.5",
            "exporters.otlp.jaeger.retry_on_failure.randomization_factor (line 33): must be at least 0 and less than 1, got -0.1",
            "exporters.otlp.jaeger.sending_queue.num_consumers (line 36): must be greater than 0",
            "exporters.otlp.jaeger.sending_queue.queue_size (line 37): must be greater than 0",
            "pipelines.traces.exporters[2] (line 42): exporter \"otlp/jaeger\" is listed twice",
            "pipelines.logs.exporters (line 45): must name at least one exporter",
        ]
    );
}

#[test]
fn bad_redaction_names_each_key_path() {
    // The hash key is read from the process environment (not `${VAR}` expansion), so this
    // test sets the variable itself; no other test uses it.
    const VAR: &str = "OTLP_GATEWAY_FIXTURE_HMAC_KEY";
    std::env::remove_var(VAR);
    let patterns_and_name = [
        "processors.redaction.blocked_keys[1] (line 9): invalid regular expression: error: unclosed group",
        "processors.redaction.rules[0].keys[0] (line 12): invalid regular expression: error: unclosed character class",
        "processors.redaction.rules[1].name (line 16): \"card_numbers\" is used by another rule",
    ];
    let mut expected = vec![
        "processors.redaction.hash_key_env (line 6): environment variable OTLP_GATEWAY_FIXTURE_HMAC_KEY is not set",
    ];
    expected.extend(patterns_and_name);
    assert_eq!(errors("bad_redaction.toml"), expected);

    std::env::set_var(VAR, "short");
    assert_eq!(
        errors("bad_redaction.toml")[0],
        "processors.redaction.hash_key_env (line 6): environment variable \
         OTLP_GATEWAY_FIXTURE_HMAC_KEY must hold at least 16 bytes"
    );
    // With a key of 16 bytes or more, only the patterns and the name remain.
    std::env::set_var(VAR, "0123456789abcdef0123");
    assert_eq!(errors("bad_redaction.toml"), patterns_and_name);
    std::env::remove_var(VAR);
}

#[test]
fn bad_missing_endpoint_names_the_table() {
    assert_eq!(
        errors("bad_missing_endpoint.toml"),
        ["exporters.otlp.jaeger (line 2): missing field `endpoint`"]
    );
}

#[test]
fn bad_enum_lists_the_choices() {
    assert_eq!(
        errors("bad_enum.toml"),
        ["exporters.debug.console.verbosity (line 3): unknown variant `loud`, expected one of `basic`, `normal`, `detailed`"]
    );
}

#[test]
fn bad_type_names_the_expected_type() {
    assert_eq!(
        errors("bad_type.toml"),
        ["pipelines.traces.exporters (line 5): invalid type: string \"debug/console\", expected a sequence"]
    );
}

#[test]
fn bad_syntax_names_the_file_and_line() {
    assert_eq!(
        errors("bad_syntax.toml"),
        ["bad_syntax.toml (line 4): invalid table header; expected `.`, `]`"]
    );
}

#[test]
fn bad_env_names_each_unset_variable() {
    assert_eq!(
        errors("bad_env.toml"),
        [
            "bad_env.toml (line 4): environment variable \"API_KEY\" is not set and has no default",
            "bad_env.toml (line 4): environment variable \"TENANT\" is not set and has no default",
        ]
    );
    assert_eq!(
        errors_with("bad_env.toml", &[("API_KEY", "k")]),
        ["bad_env.toml (line 4): environment variable \"TENANT\" is not set and has no default"]
    );
}

#[test]
fn env_values_fill_the_config_verbatim() {
    let text = std::fs::read_to_string(fixture("bad_env.toml")).unwrap();
    let env: HashMap<&str, &str> = [
        ("API_KEY", "a\"b\\c"),
        ("TENANT", "acme"),
        ("JAEGER_ENDPOINT", "https://jaeger:4317"),
    ]
    .into();
    let (config, warnings) = config::load_and_validate_str_with(&text, "bad_env.toml", |k| {
        env.get(k).map(|v| v.to_string())
    })
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let Some(jaeger) = config.exporters.otlp.get("jaeger") else {
        panic!("otlp/jaeger missing");
    };
    assert_eq!(jaeger.endpoint, "https://jaeger:4317");
    assert_eq!(jaeger.headers["x-api-key"], "a\"b\\c");
    assert_eq!(jaeger.headers["x-tenant"], "acme");
}

#[test]
fn warnings_are_returned_apart_from_errors() {
    let (_, warnings) = config::load_and_validate(&fixture("warn_unused.toml")).unwrap();
    assert_eq!(
        warnings,
        [
            "exporters.otlp.jaeger (line 4): not used by any pipeline",
            "exporters.otlp.jaeger.tls (line 7): ignored: the endpoint is http:// (plain text)",
        ]
    );
}

#[test]
fn file_and_text_loading_report_the_same_key_errors() {
    let from_file = config::load_and_validate(&fixture("bad_many.toml")).unwrap_err();
    assert_eq!(from_file.lines(), errors("bad_many.toml"));
}

#[test]
fn load_alone_parses_but_does_not_validate() {
    let config: Config = config::load_file(&fixture("bad_batch_max.toml")).unwrap();
    assert_eq!(config.processors.batch.send_batch_max_size, 1000);
}

#[test]
fn unreadable_file_is_one_error_naming_it() {
    let path = fixture("no_such_file.toml");
    let errors = config::load_and_validate(&path).unwrap_err();
    assert_eq!(
        errors.lines(),
        [format!(
            "{}: cannot read file: No such file or directory (os error 2)",
            path.display()
        )]
    );
}
