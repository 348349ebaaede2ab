//! The alert rules (`infra/prometheus/alerts.yml`) are valid Prometheus rules and behave as their
//! unit tests (`alerts_test.yml`) say, checked with Prometheus' own `promtool`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn prometheus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prometheus")
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run promtool ({error}): `infra/scripts/stack.sh up prometheus` installs it \
                 (Debian package prometheus)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_names_a_runbook_that_exists() {
    let text = std::fs::read_to_string(prometheus_dir().join("alerts.yml")).unwrap();
    let repo = prometheus_dir().join("../..");
    let mut alerts = 0;
    for line in text.lines() {
        if line.trim_start().starts_with("- alert:") {
            alerts += 1;
        }
        if let Some(path) = line.trim_start().strip_prefix("runbook: ") {
            assert!(repo.join(path).is_file(), "runbook {path} does not exist");
        }
    }
    assert!(alerts >= 9, "{alerts} alerts");
}
