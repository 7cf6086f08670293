"""The policy file: parsing, every validation error with its line, durations and line lookup."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.config import load_settings
from conveyor.ct import (
    AlertTrigger,
    CronTrigger,
    ManualTrigger,
    NewDataTrigger,
    Policy,
    PolicyError,
    format_duration,
    load_policy,
    parse_duration,
)
from conveyor.ct.durations import MAX_DURATION
from conveyor.ct.toml_lines import TomlLines
from conveyor.exceptions import ConfigError, ConveyorError
from ct_support import POLICY, make_project, policy_text


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # messages name files relative to the current folder


def _load(tmp_path: Path, changes: dict[int, str] | None = None) -> Policy:
    return load_policy(make_project(tmp_path, policy_text(changes)))


# -- a good policy ---------------------------------------------------------------------------
def test_the_example_policy_loads_whole(tmp_path: Path) -> None:
    policy = load_policy(make_project(tmp_path))
    assert policy.source == tmp_path / "conveyor.toml"
    assert policy.monitoring.window == 500
    assert policy.monitoring.slices == ("sex",)
    target = policy.pipelines["census"]
    assert target.file == tmp_path / "train.py"
    assert (target.function, target.model, dict(target.params)) == (
        "census_training",
        "census",
        {"n_trials": 2},
    )
    drift, accuracy = policy.alerts
    assert (drift.name, drift.metric, drift.feature, drift.threshold) == (
        "age-drift",
        "drift",
        "age",
        0.1,
    )
    assert (drift.windows, drift.cooldown, drift.line) == (2, dt.timedelta(minutes=30), 13)
    assert (accuracy.feature, accuracy.windows, accuracy.cooldown, accuracy.line) == (
        None,
        1,
        dt.timedelta(0),
        22,
    )
    alert, cron, new_data = policy.triggers
    assert isinstance(alert, AlertTrigger) and alert.alerts == ("age-drift", "accuracy-drop")
    assert isinstance(cron, CronTrigger) and cron.schedule.expression == "*/15 * * * *"
    assert isinstance(new_data, NewDataTrigger)
    assert new_data.watch.location == str(tmp_path / "data" / "census")
    assert (new_data.span_param, new_data.source_param, new_data.line) == (
        "until_span",
        "source",
        40,
    )
    assert dict(alert.params) == {"n_trials": 2}  # the pipeline's defaults reach every trigger
    assert policy.controller.canary_percent == 10.0
    assert policy.controller.min_interval == dt.timedelta(minutes=10)


def test_every_pipeline_gets_an_implicit_manual_trigger(tmp_path: Path) -> None:
    policy = load_policy(make_project(tmp_path))
    manual = policy.all_triggers()[-1]
    assert isinstance(manual, ManualTrigger) and manual.implicit
    assert (manual.name, manual.pipeline, dict(manual.params)) == (
        "manual:census",
        "census",
        {"n_trials": 2},
    )
    assert policy.trigger("manual:census") == manual


def test_a_declared_manual_trigger_replaces_the_implicit_one(tmp_path: Path) -> None:
    text = policy_text(
        {33: '[[triggers]]\nname = "by-hand"\npipeline = "census"\non = "manual"\n'
             "params = { seed = 7 }\n"}
    )  # fmt: skip
    policy = load_policy(make_project(tmp_path, text))
    manual = policy.manual_trigger("census")
    assert (manual.name, manual.implicit, dict(manual.params)) == (
        "by-hand",
        False,
        {"n_trials": 2, "seed": 7},
    )
    assert [t.name for t in policy.all_triggers()].count("by-hand") == 1
    assert "manual:census" not in [t.name for t in policy.all_triggers()]


def test_time_windows_timezones_and_nicknames(tmp_path: Path) -> None:
    policy = _load(
        tmp_path,
        {2: 'window = "10m"', 38: 'cron = "@daily"\ntimezone = "Europe/Berlin"'},
    )
    assert policy.monitoring.window == dt.timedelta(minutes=10)
    cron = policy.triggers[1]
    assert (cron.schedule.fields, cron.schedule.timezone) == ("0 0 * * *", "Europe/Berlin")


def test_sections_may_be_left_out_and_get_defaults(tmp_path: Path) -> None:
    path = make_project(
        tmp_path, '[pipelines.census]\nfile = "train.py"\nfunction = "needs_source"'
    )
    policy = load_policy(path)
    assert policy.pipelines["census"].function == "needs_source"
    assert policy.alerts == () and policy.triggers == ()
    assert policy.controller.poll == dt.timedelta(seconds=5)
    assert policy.monitoring.min_feedback_coverage == 0.5


def test_function_may_be_left_out_when_the_file_has_one_pipeline(tmp_path: Path) -> None:
    path = make_project(tmp_path, '[pipelines.census]\nfile = "train.py"\n')
    with pytest.raises(
        PolicyError,
        match=r"conveyor.toml:2: \[pipelines.census\]: .*train.py "
        r"defines several pipelines \(census_training, needs_source\); set function",
    ):
        load_policy(path)
    (tmp_path / "train.py").write_text(
        "from conveyor import pipeline\n\n@pipeline\ndef only(n: int = 1) -> None:\n    pass\n"
    )
    assert load_policy(path).pipelines["census"].function == "only"


def test_load_from_settings_reads_the_nearest_conveyor_toml(tmp_path: Path) -> None:
    make_project(tmp_path)
    nested = tmp_path / "sub"
    nested.mkdir()
    policy = load_policy(load_settings(cwd=nested))
    assert policy.source == tmp_path / "conveyor.toml"
    assert list(policy.pipelines) == ["census"]


def test_no_conveyor_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no conveyor.toml in the current folder .*--policy"):
        load_policy(load_settings(cwd=tmp_path))


def test_policy_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _load(tmp_path, {16: 'metric = "acuracy"'})
    assert issubclass(PolicyError, ConveyorError)


# -- every problem, with its line --------------------------------------------------------------
CASES: list[tuple[dict[int, str], str]] = [
    (
        {16: 'metric = "acuracy"'},
        r"conveyor.toml:16: \[\[alerts\]\] #1 \"age-drift\": metric 'acuracy' is not a metric "
        r"\(did you mean 'accuracy'\?\)",
    ),
    (
        {38: 'cron = "61 * * * *"'},
        r"conveyor.toml:38: \[\[triggers\]\] #2 \"nightly\": cron '61 \* \* \* \*' does not parse: "
        r"bad minute",
    ),
    ({38: 'cron = "* * * * * *"'}, r"conveyor.toml:38: .*has 6 fields; write 5 \(minute hour"),
    ({38: 'cron = "@sometimes"'}, r"conveyor.toml:38: .*has 1 field; write 5"),
    (
        {39: 'timezone = "Mars/Olympus"'},
        r"conveyor.toml:39: \[\[triggers\]\] #2 \"nightly\": time zone 'Mars/Olympus' is unknown",
    ),
    (
        {18: 'threshold = "0.1"'},
        r"conveyor.toml:18: \[\[alerts\]\] #1 \"age-drift\": threshold must be a number, "
        r"not a string \('0.1'\)",
    ),
    (
        {26: "threshold = 1.5"},
        r"conveyor.toml:26: .*threshold must be a number in \[0, 1\], not 1.5",
    ),
    ({18: "threshold = -1"}, r"conveyor.toml:18: .*threshold must be a number >= 0, not -1"),
    (
        {26: ""},
        r"conveyor.toml:22: \[\[alerts\]\] #2 \"accuracy-drop\": threshold is required for metric "
        r"'accuracy'",
    ),
    (
        {30: 'pipeline = "censu"'},
        r"conveyor.toml:30: \[\[triggers\]\] #1 \"retrain-on-drift\": pipeline 'censu' is not "
        r"declared as \[pipelines.censu\] \(did you mean 'census'\?\)",
    ),
    (
        {17: ""},
        r"conveyor.toml:13: \[\[alerts\]\] #1 \"age-drift\": metric 'drift' is per feature: set "
        r"feature",
    ),
    (
        {27: 'feature = "age"'},
        r"conveyor.toml:27: \[\[alerts\]\] #2 \"accuracy-drop\": metric 'accuracy' is not per "
        r"feature; remove feature = 'age'",
    ),
    ({2: "window = 0"}, r"conveyor.toml:2: \[monitoring\]: window must be >= 1, not 0"),
    ({2: 'window = "0s"'}, r"conveyor.toml:2: \[monitoring\]: window must be longer than 0s"),
    ({2: "window = 1.5"}, r"conveyor.toml:2: .*window must be a number of predictions"),
    (
        {3: 'label_delay = "10 minutes"'},
        r"conveyor.toml:3: .*label_delay: '10 minutes' is not a dur",
    ),
    (
        {4: "min_feedback_coverage = 1.5"},
        r"conveyor.toml:4: .*min_feedback_coverage must be a number in \[0, 1\], not 1.5",
    ),
    (
        {5: 'slices = ["sex", 3]'},
        r"conveyor.toml:5: .*slices\[1\] must be a non-empty string, not an integer",
    ),
    (
        {8: 'file = "missing.py"'},
        r"conveyor.toml:8: \[pipelines.census\]: pipeline file 'missing.py' does not exist",
    ),
    (
        {9: 'function = "census_trainin"'},
        r"conveyor.toml:9: \[pipelines.census\]: .*has no pipeline 'census_trainin' "
        r"\(did you mean 'census_training'\?\)",
    ),
    (
        {11: "params = { n_trial = 2 }"},
        r"conveyor.toml:11: \[pipelines.census\]: pipeline 'census_training' has no parameter "
        r"'n_trial' \(did you mean 'n_trials'\?\)",
    ),
    (
        {11: 'params = { n_trials = "many" }'},
        r"conveyor.toml:11: .*parameter 'n_trials' expects int, got 'many'",
    ),
    ({11: "params = 3"}, r"conveyor.toml:11: .*params must be a table, not an integer"),
    ({19: "windows = 0"}, r"conveyor.toml:19: .*windows must be >= 1, not 0"),
    ({19: "windows = 1.5"}, r"conveyor.toml:19: .*windows must be an integer, not a float \(1.5\)"),
    ({19: "windows = true"}, r"conveyor.toml:19: .*windows must be an integer, not a boolean"),
    (
        {20: "cooldown = 30"},
        r"conveyor.toml:20: .*cooldown must be a duration string such as \"30s\".*not an integer "
        r"\(30\)",
    ),
    (
        {32: 'alerts = ["age-drift", "acuracy-drop"]'},
        r"conveyor.toml:32: \[\[triggers\]\] #1 \"retrain-on-drift\": alert 'acuracy-drop' is not "
        r"declared in \[\[alerts\]\] \(did you mean 'accuracy-drop'\?\)",
    ),
    ({32: "alerts = []"}, r"conveyor.toml:32: .*alerts must name at least one alert"),
    (
        {31: 'on = "alarm"'},
        r"conveyor.toml:31: .*on = 'alarm' is not a trigger kind \(did you mean 'alert'\?\)",
    ),
    (
        {35: 'name = "retrain-on-drift"'},
        r"conveyor.toml:35: .*trigger name 'retrain-on-drift' is already used on line 29",
    ),
    ({35: 'name = "manual:x"'}, r"conveyor.toml:35: .*names starting with 'manual:' are kept"),
    ({39: 'watch = "data"'}, r"conveyor.toml:39: .*key 'watch' is only for on = \"new_data\" trig"),
    ({39: 'pipline = "x"'}, r"conveyor.toml:39: .*unknown key 'pipline' \(did you mean 'pipeline'"),
    ({44: 'watch = "data/nowhere"'}, r"conveyor.toml:44: .*watched folder 'data/nowhere' does not"),
    ({44: 'watch = "data/nowhere/*.csv"'}, r"conveyor.toml:44: .*watched folder 'data/nowhere/\*"),
    (
        {45: 'span_param = "until"'},
        r"conveyor.toml:45: .*has no parameter 'until' \(did you mean 'until_span'\?\)",
    ),
    ({47: 'layout = "single"'}, r"conveyor.toml:47: .*layout 'single' cannot show new spans"),
    ({47: 'table = "orders"'}, r"conveyor.toml:47: .*table is for database watches"),
    (
        {47: "params = { until_span = 2 }"},
        r"conveyor.toml:45: .*'until_span' is set by span_param; remove it from params",
    ),
    (
        {44: 'watch = "sqlite:///x.db"\nspan_column = "day"'},
        r"conveyor.toml:40: .*watching a database needs table",
    ),
    (
        {44: 'watch = "sqlite:///x.db"\ntable = "orders; drop"\nspan_column = "day"'},
        r"conveyor.toml:45: .*table 'orders; drop' must be a plain SQL name",
    ),
    ({49: 'poll = "0s"'}, r"conveyor.toml:49: \[controller\]: poll must be longer than 0s"),
    (
        {49: 'pol = "5s"'},
        r"conveyor.toml:49: \[controller\]: unknown key 'pol' \(did you mean 'poll'",
    ),
    ({50: 'debounce = "soon"'}, r"conveyor.toml:50: .*debounce: 'soon' is not a duration"),
    (
        {52: "canary_percent = 100"},
        r"conveyor.toml:52: .*canary_percent must be a number in \(0, 1",
    ),
    (
        {52: "canary_percent = 0"},
        r"conveyor.toml:52: .*canary_percent must be a number in \(0, 100",
    ),
    (
        {52: 'canary_percent = "10%"'},
        r"conveyor.toml:52: .*canary_percent must be a number, not a s",
    ),
    ({53: "promote_after = 0"}, r"conveyor.toml:53: .*promote_after must be >= 1, not 0"),
    (
        {54: 'metric = "latency_p99"'},
        r"conveyor.toml:54: .*it is a traffic metric; valid: accuracy",
    ),
    ({54: 'metric = "acc"'}, r"conveyor.toml:54: .*metric 'acc' cannot compare canary and product"),
    ({55: "tolerance = -0.1"}, r"conveyor.toml:55: .*tolerance must be a number >= 0, not -0.1"),
    ({55: 'canary_timeout = "0s"'}, r"conveyor.toml:55: .*canary_timeout must be longer than 0s"),
    ({55: "canary_timeout = 24"}, r"conveyor.toml:55: .*canary_timeout must be a duration string"),
    (
        {48: "[controler]"},
        r"conveyor.toml:48: \[controler\]: unknown section \(did you mean \[contr",
    ),
    (
        {7: "[pipelines]", 8: "census = 3", 9: "", 10: "", 11: ""},
        r"conveyor.toml:8: \[pipelines.census\]: \[pipelines.census\] must be a table, not an int",
    ),
]


@pytest.mark.parametrize(("changes", "message"), CASES, ids=[m[:48] for _, m in CASES])
def test_each_problem_is_reported_with_its_line(
    tmp_path: Path, changes: dict[int, str], message: str
) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        _load(tmp_path, changes)
    assert len(caught.value.problems) == 1, str(caught.value)


def test_the_lookback_defaults_to_a_day_past_the_label_delay_and_covers_the_alert_runs(
    tmp_path: Path,
) -> None:
    counted = load_policy(make_project(tmp_path))
    assert counted.lookback() == dt.timedelta(days=1) and counted.needed_lookback() is None
    delayed = _load(tmp_path / "delayed", {3: 'label_delay = "6h"'})
    assert delayed.lookback() == dt.timedelta(hours=30)
    hourly = _load(tmp_path / "hourly", {2: 'window = "12h"'})  # drift alert: 2 windows
    assert hourly.needed_lookback() == dt.timedelta(hours=36)
    assert hourly.lookback() == dt.timedelta(hours=36)
    explicit = _load(tmp_path / "explicit", {2: 'window = "30m"', 6: 'lookback = "2h"'})
    assert explicit.lookback() == dt.timedelta(hours=2)


def test_a_lookback_too_short_for_an_alert_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        PolicyError,
        match=r"conveyor.toml:6: \[monitoring\]: lookback 1h is "
        r"shorter than the label delay \(0s\) plus 3 windows of 30m \(1h30m\)",
    ):
        _load(tmp_path, {2: 'window = "30m"', 6: 'lookback = "1h"'})
    with pytest.raises(PolicyError, match=r"conveyor.toml:6: .*lookback must be longer than 0s"):
        _load(tmp_path / "zero", {6: 'lookback = "0s"'})


def test_the_canary_timeout_defaults_to_a_day_and_can_be_set(tmp_path: Path) -> None:
    assert load_policy(make_project(tmp_path)).controller.canary_timeout == dt.timedelta(days=1)
    policy = _load(tmp_path / "set", {55: 'canary_timeout = "6h"'})
    assert policy.controller.canary_timeout == dt.timedelta(hours=6)


def test_all_problems_come_at_once_in_line_order(tmp_path: Path) -> None:
    changes = {53: "promote_after = 0", 16: 'metric = "acuracy"', 38: 'cron = "61 * * * *"'}
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, changes)
    error = caught.value
    assert [p.line for p in error.problems] == [16, 38, 53]
    lines = str(error).splitlines()
    assert lines[0] == "conveyor.toml has 3 problems; fix them before the controller starts:"
    assert lines[1].startswith("  conveyor.toml:16: [[alerts]] #1 \"age-drift\": metric 'acuracy'")


def test_broken_sections_do_not_make_references_to_them_unknown(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, {8: 'file = "gone.py"', 25: 'metric = "acuracy"'})
    lines = [p.line for p in caught.value.problems]
    assert lines == [8, 25], str(caught.value)  # nothing about triggers naming them


def test_duplicate_alert_names(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"conveyor.toml:23: .*alert name 'age-drift' is already "
                       r"used on line 14"):  # fmt: skip
        _load(tmp_path, {23: 'name = "age-drift"', 32: 'alerts = ["age-drift"]'})


def test_sections_of_the_wrong_shape(tmp_path: Path) -> None:
    text = 'alerts = 3\ntriggers = [1]\nmonitoring = "x"\n'
    with pytest.raises(PolicyError) as caught:
        load_policy(make_project(tmp_path, text))
    assert [str(p) for p in caught.value.problems] == [
        "conveyor.toml:1: [[alerts]]: alerts must be an array of tables ([[alerts]]), not an "
        "integer",
        "conveyor.toml:2: [[triggers]] #1: [[triggers]] entry must be a table, not an integer",
        "conveyor.toml:3: [monitoring]: [monitoring] must be a table, not a string",
    ]


def test_required_pipeline_parameters_must_be_covered(tmp_path: Path) -> None:
    text = policy_text({9: 'function = "needs_source"', 11: "", 45: "", 46: ""})
    with pytest.raises(PolicyError) as caught:
        load_policy(make_project(tmp_path, text))
    lines = {(p.line, p.message) for p in caught.value.problems}
    needs = "pipeline 'needs_source' needs parameter 'source', which has no default"
    assert {line for line, message in lines if message.startswith(needs)} == {28, 34, 40}


def test_a_pipeline_file_that_fails_to_import_names_the_file(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    (tmp_path / "train.py").write_text("def broken(:\n")
    with pytest.raises(PolicyError, match=r"conveyor.toml:8: \[pipelines.census\]: .*syntax error"):
        load_policy(path)


def test_toml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^conveyor.toml has 1 problem.*\n  conveyor.toml:18: "
                       r"invalid TOML: Invalid value$"):  # fmt: skip
        _load(tmp_path, {18: "threshold = "})


def test_a_separate_policy_file_refuses_foreign_sections(tmp_path: Path) -> None:
    path = make_project(tmp_path, policy_text({56: "[serving]\nport = 1"}), name="ct.toml")
    with pytest.raises(PolicyError, match=r"ct.toml:56: \[serving\]: unknown section \(a policy"):
        load_policy(path)
    # ... while conveyor.toml holds other parts' sections too
    load_policy(make_project(tmp_path, policy_text({56: "[serving]\nport = 1"})))


def test_an_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"cannot read the policy: No such file"):
        load_policy(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match=r"bin.toml: cannot read the policy: not UTF-8 text"):
        load_policy(tmp_path / "bin.toml")


def test_table_watches_are_checked_without_connecting(tmp_path: Path) -> None:
    text = policy_text({44: 'watch = "sqlite:///nowhere.db"\ntable = "shop.orders"', 45: "",
                        46: 'span_column = "day"'})  # fmt: skip
    trigger = load_policy(make_project(tmp_path, text)).triggers[2]
    assert isinstance(trigger, NewDataTrigger)
    assert (trigger.watch.table, trigger.watch.span_column) == ("shop.orders", "day")
    assert trigger.watch.describe() == "shop.orders.day at sqlite:///nowhere.db"


# -- durations ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400),
     ("0s", 0), (" 5s ", 5)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "1.5h", "-1s", "5ms", "1h 30m", "PT5M"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; write a number and a unit"):
        parse_duration(text)


def test_parse_duration_refuses_centuries() -> None:
    with pytest.raises(ValueError, match=r"longer than 36500 days"):
        parse_duration("99999999d")


@given(st.integers(min_value=0, max_value=36500 * 86400))
def test_durations_round_trip(seconds: int) -> None:
    value = dt.timedelta(seconds=seconds)
    text = format_duration(value)
    assert parse_duration(text) == value


@given(st.text(alphabet="0123456789smhdw .-", max_size=12))
def test_parse_duration_answers_or_refuses(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        assert "duration" in str(exc)
    else:
        assert dt.timedelta(0) <= value <= MAX_DURATION


# -- line lookup --------------------------------------------------------------------------------
def test_lines_of_the_example_policy() -> None:
    lines = TomlLines(POLICY)
    assert lines.line_of("alerts", 1, "metric") == 25
    assert lines.line_of("alerts", 1, "feature") == 22  # missing: the entry's header
    assert lines.line_of("pipelines", "census", "params", "n_trials") == 11
    assert lines.line_of("triggers", 0, "alerts", 1) == 32
    assert lines.line_of("controller") == 48
    assert lines.line_of("nowhere") is None


def test_lines_of_tricky_toml() -> None:
    text = (
        '# [not] a table\n'                       # 1
        'title = "a # b [c]"\n'                   # 2
        'text = """\n'                            # 3
        '[fake]\n'                                # 4
        'x = \\""" [y] = 2 """\n'                # 5: an escaped quote, then two
        "lit = '''\\no\"pe'''\n"                  # 6
        '[t]\n'                                   # 7
        'list = [\n'                              # 8
        '  1,  # one\n'                           # 9
        '  [2, 3],\n'                             # 10
        ']\n'                                     # 11
        '"quoted key".inner = { a = 1, "b c" = { d = 2 } }\n'  # 12
        'dotted . key = true\n'                   # 13
        '[[t.arr]]\n'                             # 14
        'v = 1\n'                                 # 15
        '[[t.arr]]\n'                             # 16
        '[t.arr.sub]\n'                           # 17
        'w = 2\n'                                 # 18
    )  # fmt: skip
    assert tomllib.loads(text)["t"]["arr"][1]["sub"] == {"w": 2}
    lines = TomlLines(text)
    assert "fake" not in {p[0] for p in lines.paths}
    assert lines.line_of("text") == 3 and lines.line_of("lit") == 6
    assert lines.line_of("t", "list", 1, 0) == 10
    assert lines.line_of("t", "quoted key", "inner", "b c", "d") == 12
    assert lines.line_of("t", "dotted", "key") == 13
    assert lines.line_of("t", "arr", 0, "v") == 15
    assert lines.line_of("t", "arr", 1) == 16
    assert lines.line_of("t", "arr", 1, "sub", "w") == 18


_KEY = st.from_regex(r"[a-z][a-z0-9_-]{0,5}", fullmatch=True)
_STRING = st.text(alphabet="ab #[]{}=,.\"'\\\t", max_size=8)


def _value() -> st.SearchStrategy[tuple[str, list[tuple[tuple[str | int, ...], int]]]]:
    """A TOML value as text (one or more lines) and the sub-paths it defines, at line offsets."""
    scalar = st.one_of(
        st.integers(-5, 5).map(str),
        _STRING.map(lambda s: json.dumps(s)),
        st.booleans().map(lambda b: str(b).lower()),
        _STRING.filter(lambda s: "'" not in s).map(lambda s: f"'{s}'"),
    )
    multiline_string = st.lists(
        _STRING.filter(lambda s: '"' not in s and "\\" not in s), max_size=3
    )
    inline = st.dictionaries(_KEY, scalar, max_size=3)
    array = st.lists(scalar, max_size=4)

    def as_inline(table: dict[str, str]) -> tuple[str, list[tuple[tuple[str | int, ...], int]]]:
        body = ", ".join(f"{k} = {v}" for k, v in table.items())
        return "{ " + body + " }", [((k,), 0) for k in table]

    def as_array(items: list[str]) -> tuple[str, list[tuple[tuple[str | int, ...], int]]]:
        text = "[\n" + "".join(f"  {v},  # item\n" for v in items) + "]"
        return text, [((i,), i + 1) for i in range(len(items))]

    return st.one_of(
        scalar.map(lambda s: (s, [])),
        multiline_string.map(lambda ls: ('"""\n' + "\n".join(ls) + '"""', [])),
        inline.map(as_inline),
        array.map(as_array),
    )


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, dict[tuple[str | int, ...], int]]:
    lines: list[str] = []
    expected: dict[tuple[str | int, ...], int] = {}

    def add_pairs(base: tuple[str | int, ...]) -> None:
        for key in draw(st.lists(_KEY, max_size=4, unique=True)):
            text, subpaths = draw(_value())
            line = len(lines) + 1
            expected[(*base, key)] = line
            for sub, offset in subpaths:
                expected[(*base, key, *sub)] = line + offset
            lines.extend(f"{key} = {text}".split("\n"))
            if draw(st.booleans()):
                lines.append("")

    add_pairs(())
    arrays: dict[str, int] = {}
    for index in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(["a_one", "a_two"]))
            position = arrays.get(name, 0)
            arrays[name] = position + 1
            lines.append(f"[[{name}]]")
            expected[(name, position)] = len(lines)
            add_pairs((name, position))
        else:
            lines.append(f"[t_{index}]  # a table")
            expected[(f"t_{index}",)] = len(lines)
            add_pairs((f"t_{index}",))
    return "\n".join(lines) + "\n", expected


@settings(max_examples=150, deadline=None)
@given(_documents())
def test_the_line_of_every_generated_key_is_found(
    document: tuple[str, dict[tuple[str | int, ...], int]],
) -> None:
    text, expected = document
    tomllib.loads(text)  # the generator writes valid TOML
    lines = TomlLines(text)
    for path, line in expected.items():
        assert lines.line_of(*path) == line, (path, text)
