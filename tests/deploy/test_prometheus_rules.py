"""deploy/prometheus: `promtool check rules` and `promtool test rules` (Debian's prometheus package)."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.conftest import DEPLOY, require_tool

RULES = DEPLOY / "prometheus" / "calsurr-rules.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "calsurr-rules.test.yaml"


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules():
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass():
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120, cwd=RULES.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in (r["alert"] for r in rules() if "alert" in r):
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"no test fires {alert}"
        assert any(not c["exp_alerts"] for c in mine), f"no test keeps {alert} silent"


def test_the_rules_use_only_metrics_the_server_exports():
    from tests.deploy.metric_names import exported_series, metric_names

    for rule in rules():
        for name in metric_names(rule["expr"]):
            assert name in exported_series() or name.startswith("calsurr:"), f"{rule}: no series {name}"


def test_recording_rule_names_follow_the_level_metric_operations_convention():
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"calsurr:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]
