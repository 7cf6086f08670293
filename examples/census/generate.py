"""A seeded, census-like data generator with per-span knobs for drift.

Rows look like the UCI Adult ("census income") data: the same columns, categories and
roughly the same marginals, with the dependencies that make the data realistic — education
sets ``education_num`` and steers the occupation; age steers marital status and
relationship; a married man is a ``Husband`` and a married woman a ``Wife``; hours and
capital gains follow occupation and education; the ``income`` label comes from a logistic
model of education, age, hours, capital gain and loss, marital status, occupation and sex,
with about 24% ``">50K"``.

Three knobs move a span away from that world, each 0.0 by default (1.0 is a strong change):

- ``covariate_shift``: the inputs move (ages older, shorter weeks, more degrees) while
  P(income | inputs) stays the same.
- ``label_shift``: the label prior moves (log-odds of ``">50K"`` + the knob) while
  P(inputs | income) stays the same; done by resampling rows by class.
- ``concept_drift``: P(income | inputs) moves (the logistic weights slide towards a world
  where hours matter more and degrees and marriage less) while the inputs stay *identical*:
  inputs and labels draw from separate random streams.

Output is deterministic for ``(span, seed, knobs)``; 50k rows take well under a second.

Usage::

    python examples/census/generate.py OUT --spans 4 --rows 5000 --drift 3:covariate=1.0

or, from Python, ``generate_span(2, 1000, seed=7)`` and ``write_spans(folder, ...)``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "KNOBS",
    "LABEL",
    "generate_span",
    "label_probability",
    "main",
    "parse_drift",
    "write_spans",
]

LABEL = "income"
POSITIVE, NEGATIVE = ">50K", "<=50K"
COLUMNS = [
    "age", "workclass", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week",
    "native_country", LABEL,
]  # fmt: skip
KNOBS = ("covariate_shift", "label_shift", "concept_drift")
Format = Literal["csv", "parquet"]

# name, education_num, share (Adult marginals)
EDUCATION = [
    ("Preschool", 1, 0.002), ("1st-4th", 2, 0.005), ("5th-6th", 3, 0.010),
    ("7th-8th", 4, 0.020), ("9th", 5, 0.016), ("10th", 6, 0.029), ("11th", 7, 0.036),
    ("12th", 8, 0.013), ("HS-grad", 9, 0.323), ("Some-college", 10, 0.224),
    ("Assoc-voc", 11, 0.042), ("Assoc-acdm", 12, 0.033), ("Bachelors", 13, 0.164),
    ("Masters", 14, 0.053), ("Prof-school", 15, 0.018), ("Doctorate", 16, 0.013),
]  # fmt: skip
EDU_NUM = np.array([num for _, num, _ in EDUCATION])

MARITAL = [
    "Married-civ-spouse", "Never-married", "Divorced", "Separated", "Widowed",
    "Married-spouse-absent", "Married-AF-spouse",
]  # fmt: skip
AGE_BANDS = np.array([25, 35, 50, 65])  # upper bounds of the bands 17-24, 25-34, ... 65+
# P(marital | sex, age band): rows are the five age bands.
MARITAL_MALE = np.array([
    [0.10, 0.87, 0.015, 0.010, 0.000, 0.005, 0.000],
    [0.52, 0.36, 0.080, 0.025, 0.002, 0.012, 0.001],
    [0.70, 0.12, 0.130, 0.030, 0.005, 0.014, 0.001],
    [0.74, 0.06, 0.140, 0.025, 0.020, 0.014, 0.001],
    [0.72, 0.04, 0.090, 0.010, 0.130, 0.010, 0.000],
])  # fmt: skip
MARITAL_FEMALE = np.array([
    [0.05, 0.91, 0.020, 0.015, 0.000, 0.005, 0.000],
    [0.20, 0.52, 0.180, 0.070, 0.005, 0.024, 0.001],
    [0.20, 0.22, 0.420, 0.100, 0.030, 0.029, 0.001],
    [0.18, 0.10, 0.440, 0.070, 0.180, 0.030, 0.000],
    [0.10, 0.06, 0.200, 0.020, 0.600, 0.020, 0.000],
])  # fmt: skip

RELATIONSHIP = ["Husband", "Not-in-family", "Own-child", "Unmarried", "Wife", "Other-relative"]
# P(relationship | group); groups: married man, married woman, formerly married man,
# formerly married woman, never married under 25, never married 25+.
RELATIONSHIP_BY_GROUP = np.array([
    [1.00, 0.00, 0.00, 0.00, 0.00, 0.00],
    [0.00, 0.00, 0.00, 0.00, 1.00, 0.00],
    [0.00, 0.70, 0.05, 0.20, 0.00, 0.05],
    [0.00, 0.45, 0.05, 0.45, 0.00, 0.05],
    [0.00, 0.28, 0.62, 0.04, 0.00, 0.06],
    [0.00, 0.60, 0.15, 0.15, 0.00, 0.10],
])  # fmt: skip

# name, base weight (raked so that the marginal shares match Adult's), log-odds per year of
# education above 10, log-odds if female, if under 23, hours per week above 40, label log-odds
OCCUPATION = [
    ("Prof-specialty", 0.0768, 0.55, 0.3, -0.7, 3, 0.6),
    ("Craft-repair", 0.2062, -0.15, -2.0, 0.0, 2, 0.0),
    ("Exec-managerial", 0.1346, 0.30, 0.0, -1.0, 5, 0.8),
    ("Adm-clerical", 0.0797, 0.00, 1.2, 0.2, -2, -0.2),
    ("Sales", 0.1350, 0.05, 0.0, 0.4, 1, 0.2),
    ("Other-service", 0.0693, -0.25, 0.8, 0.7, -5, -1.2),
    ("Machine-op-inspct", 0.0634, -0.30, -0.2, 0.0, 1, -0.4),
    ("Transport-moving", 0.0782, -0.20, -1.8, -0.2, 4, -0.1),
    ("Handlers-cleaners", 0.0501, -0.30, -1.0, 0.6, -3, -0.8),
    ("Farming-fishing", 0.0390, -0.30, -1.3, 0.0, 8, -0.8),
    ("Tech-support", 0.0324, 0.15, 0.1, 0.0, 0, 0.4),
    ("Protective-serv", 0.0324, 0.00, -1.0, -0.5, 3, 0.4),
    ("Priv-house-serv", 0.0013, -0.40, 1.8, 0.0, -8, -2.0),
    ("Armed-Forces", 0.0016, 0.00, -1.0, 0.0, 2, 0.0),
]  # fmt: skip
OCC_NAMES = [row[0] for row in OCCUPATION]
OCC_TABLE = np.array([row[1:] for row in OCCUPATION], dtype=float)
OCC_LABEL_MISSING = -0.8  # label log-odds when the occupation is unknown

WORKCLASS = [
    "Private", "Self-emp-not-inc", "Local-gov", "State-gov", "Self-emp-inc", "Federal-gov",
    "Without-pay",
]  # fmt: skip
# base weights, raked so that the marginal shares (after the tilts below) match Adult's
WORKCLASS_SHARE = np.array([0.7869, 0.072, 0.0514, 0.0342, 0.0293, 0.0258, 0.0004])
# log-odds added to a workclass for an occupation (the rest get 0)
WORKCLASS_TILT = {
    "Farming-fishing": {"Self-emp-not-inc": 2.0, "Without-pay": 2.5},
    "Craft-repair": {"Self-emp-not-inc": 0.5},
    "Exec-managerial": {"Self-emp-inc": 1.2, "Federal-gov": 0.3},
    "Prof-specialty": {"Local-gov": 1.0, "State-gov": 1.0, "Federal-gov": 0.3},
    "Protective-serv": {"Local-gov": 2.5, "State-gov": 1.0, "Federal-gov": 1.0},
    "Adm-clerical": {"Federal-gov": 0.6, "State-gov": 0.5, "Local-gov": 0.4},
    "Armed-Forces": {"Federal-gov": 9.0},
}

RACE = ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"]
RACE_SHARE = np.array([0.854, 0.096, 0.032, 0.010, 0.008])
COUNTRY_BY_RACE: dict[str, dict[str, float]] = {
    "White": {
        "United-States": 0.93, "Mexico": 0.03, "Germany": 0.005, "Canada": 0.005,
        "El-Salvador": 0.004, "England": 0.003, "Italy": 0.003, "Cuba": 0.003,
        "Puerto-Rico": 0.003, "Poland": 0.002, "Columbia": 0.002, "Guatemala": 0.002,
        "Dominican-Republic": 0.002, "Portugal": 0.002, "Ireland": 0.001, "France": 0.001,
        "Greece": 0.001,
    },
    "Black": {
        "United-States": 0.92, "Jamaica": 0.025, "Haiti": 0.015, "Puerto-Rico": 0.005,
        "Dominican-Republic": 0.005, "Cuba": 0.005, "Trinadad&Tobago": 0.005,
    },
    "Asian-Pac-Islander": {
        "United-States": 0.38, "Philippines": 0.19, "India": 0.09, "China": 0.07,
        "Vietnam": 0.06, "South": 0.06, "Japan": 0.04, "Taiwan": 0.04, "Cambodia": 0.02,
        "Laos": 0.02, "Thailand": 0.02, "Hong": 0.02,
    },
    "Amer-Indian-Eskimo": {"United-States": 0.97, "Mexico": 0.02, "Canada": 0.01},
    "Other": {
        "United-States": 0.60, "Mexico": 0.15, "Puerto-Rico": 0.08, "Dominican-Republic": 0.05,
        "Columbia": 0.04, "El-Salvador": 0.04, "Guatemala": 0.04,
    },
}  # fmt: skip
COUNTRIES = sorted({c for table in COUNTRY_BY_RACE.values() for c in table})
COUNTRY_TABLE = np.array([[COUNTRY_BY_RACE[r].get(c, 0.0) for c in COUNTRIES] for r in RACE])

# Label model: log-odds = intercept + sum(weight * term). "base" is the world of span 0;
# concept_drift = 1 moves every weight to "drifted" (interpolated / extrapolated linearly).
# Terms are centred so that the positive rate stays close to 24% as weights move.
LABEL_WEIGHTS = {
    #                 base    drifted
    "intercept": (-2.13, -1.78),  # calibrated to 24% positives in both worlds
    "education": (0.35, 0.12),  # per year of education_num above 10
    "age": (0.50, 0.50),  # per decade above 38
    "age_squared": (-0.25, -0.25),  # per squared decade away from 45
    "hours": (0.40, 1.00),  # per 10 hours above 40
    "capital_gain": (2.50, 2.50),  # per 5,000 above 5,000 (capped at 1.5)
    "capital_loss": (0.80, 0.80),  # when the loss is 1,800 or more
    "married": (2.00, 0.80),  # married-civ-spouse or married-AF-spouse, minus 0.45
    "occupation": (1.00, 0.50),  # scales OCCUPATION's label log-odds
    "female": (-0.30, 0.00),
}

# Covariate shift per unit of the knob.
AGE_SHIFT_YEARS = 6.0
HOURS_BASE = 43.0  # before the occupation, age, sex and self-employment offsets
HOURS_SHIFT = -4.0
EDUCATION_TILT = 0.15  # log-odds per year of education_num


def generate_span(
    span: int,
    rows: int,
    *,
    seed: int = 0,
    covariate_shift: float = 0.0,
    label_shift: float = 0.0,
    concept_drift: float = 0.0,
) -> pd.DataFrame:
    """Generate one span of census-like rows.

    Args:
        span: span number (>= 0); part of the random seed, so spans are different samples.
        rows: number of rows (>= 0).
        seed: base seed (>= 0).
        covariate_shift: moves the inputs (older, shorter weeks, more degrees), keeps
            P(income | inputs).
        label_shift: added to the log-odds of ``">50K"``; keeps P(inputs | income).
        concept_drift: moves P(income | inputs) (0 = base world, 1 = drifted world); the
            inputs are exactly those generated with ``concept_drift=0``.

    Returns:
        A DataFrame with :data:`COLUMNS`; integers as int64, text as strings, missing
        workclass/occupation/native_country as NaN.

    Example:
        >>> frame = generate_span(1, 100, seed=3)
        >>> list(frame.columns) == COLUMNS and len(frame) == 100
        True
    """
    _check_arguments(span, rows, seed, covariate_shift, label_shift, concept_drift)
    inputs_seed, labels_seed, pool_seed = np.random.SeedSequence([seed, span]).spawn(3)
    inputs = _inputs(np.random.default_rng(inputs_seed), rows, covariate_shift)
    u = np.random.default_rng(labels_seed).random(rows)
    positive = u < _probability(inputs, concept_drift)
    if label_shift != 0.0 and rows > 0:
        inputs, positive = _shift_labels(
            np.random.default_rng(pool_seed), rows, float(positive.mean()), label_shift,
            covariate_shift, concept_drift,
        )  # fmt: skip
    return _frame(inputs, positive)


def _check_arguments(span: int, rows: int, seed: int, *knobs: float) -> None:
    for name, value in (("span", span), ("rows", rows), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    for name, knob in zip(KNOBS, knobs, strict=True):
        if not math.isfinite(knob):
            raise ValueError(f"{name} must be a finite number, got {knob!r}")


def _choose(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One index per row of ``probabilities`` (rows need not be normalised)."""
    cumulative = probabilities.cumsum(axis=1)
    u = rng.random(len(probabilities)) * cumulative[:, -1]
    return np.minimum((cumulative <= u[:, None]).sum(axis=1), probabilities.shape[1] - 1)


def _softmax_choose(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return _choose(rng, weights)


def _inputs(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    """Every input column as codes or numbers; categories are indices into the tables."""
    female = rng.random(n) < 0.331
    age = 17 + rng.gamma(2.52, 8.56, n) + AGE_SHIFT_YEARS * shift
    age = np.clip(np.round(age), 17, 90).astype(np.int64)
    education = _education(rng, age, shift)
    marital = _marital(rng, age, female)
    relationship = _relationship(rng, age, female, marital)
    race = _choose(rng, np.broadcast_to(RACE_SHARE, (n, len(RACE))))
    country = _choose(rng, COUNTRY_TABLE[race])
    country[rng.random(n) < 0.018] = -1
    occupation = _occupation(rng, age, female, EDU_NUM[education])
    workclass = _workclass(rng, occupation)
    values = {"age": age, "female": female, "education": education, "marital": marital}
    values |= {"relationship": relationship, "race": race, "country": country}
    values |= {"occupation": occupation, "workclass": workclass}
    values["hours"] = _hours(rng, values, shift)
    values["capital_gain"], values["capital_loss"] = _capital(rng, values)
    return values


def _education(rng: np.random.Generator, age: np.ndarray, shift: float) -> np.ndarray:
    centred = EDU_NUM - 10.0
    logits = np.log([share for *_, share in EDUCATION]) + EDUCATION_TILT * shift * centred
    logits = np.broadcast_to(logits, (len(age), len(EDUCATION))).copy()
    # The young have not finished degrees yet; older generations studied less.
    logits -= np.where(age < 23, 3.0, 0.0)[:, None] * np.maximum(EDU_NUM - 12, 0)
    logits -= np.where(age >= 60, 0.1, 0.0)[:, None] * centred
    return _softmax_choose(rng, logits)


def _marital(rng: np.random.Generator, age: np.ndarray, female: np.ndarray) -> np.ndarray:
    band = np.searchsorted(AGE_BANDS, age, side="right")
    return _choose(rng, np.where(female[:, None], MARITAL_FEMALE[band], MARITAL_MALE[band]))


def _relationship(
    rng: np.random.Generator, age: np.ndarray, female: np.ndarray, marital: np.ndarray
) -> np.ndarray:
    married = _is_married(marital)
    never = marital == MARITAL.index("Never-married")
    group = np.where(married, 0, np.where(never, np.where(age < 25, 4, 5), 2))
    group = group + (female & ~never)  # married / formerly married women: next row
    return _choose(rng, RELATIONSHIP_BY_GROUP[group])


def _is_married(marital: np.ndarray) -> np.ndarray:
    spouse = (MARITAL.index("Married-civ-spouse"), MARITAL.index("Married-AF-spouse"))
    return np.isin(marital, spouse)


def _occupation(
    rng: np.random.Generator, age: np.ndarray, female: np.ndarray, edu_num: np.ndarray
) -> np.ndarray:
    share, per_year, if_female, if_young = OCC_TABLE[:, 0], *OCC_TABLE[:, 1:4].T
    logits = np.log(share) + np.outer(edu_num - 10.0, per_year)
    logits += np.outer(female, if_female) + np.outer(age < 23, if_young)
    occupation = _softmax_choose(rng, logits)
    # Unknown occupation ("?" in Adult): mostly students and the retired.
    p_missing = 0.035 + 0.10 * (age < 22) + 0.20 * (age >= 65)
    occupation[rng.random(len(age)) < p_missing] = -1
    return occupation


def _workclass(rng: np.random.Generator, occupation: np.ndarray) -> np.ndarray:
    tilt = np.zeros((len(OCC_NAMES), len(WORKCLASS)))
    for occ, row in WORKCLASS_TILT.items():
        for name, value in row.items():
            tilt[OCC_NAMES.index(occ), WORKCLASS.index(name)] = value
    known = np.maximum(occupation, 0)
    workclass = _softmax_choose(rng, np.log(WORKCLASS_SHARE) + tilt[known])
    workclass[occupation < 0] = -1
    return workclass


def _hours(rng: np.random.Generator, v: dict[str, np.ndarray], shift: float) -> np.ndarray:
    occupation, age = v["occupation"], v["age"]
    mean = HOURS_BASE + np.where(occupation >= 0, OCC_TABLE[occupation, 4], -10.0)
    mean += np.select([age < 23, age < 26, age >= 65, age >= 60], [-12.0, -4.0, -12.0, -3.0], 0)
    mean += -4.0 * v["female"]
    mean += 4.0 * np.isin(v["workclass"], [1, 4])  # self-employed
    hours = mean + rng.normal(0.0, 9.0, len(age))
    rounded = rng.random(len(age))
    hours = np.where(rounded < 0.3, np.round(hours / 5) * 5, hours)  # people say "45", "50"
    full_time = (rounded >= 0.3) & (rounded < 0.8) & (np.abs(mean - 40) <= 7)
    hours = np.where(full_time, 40.0, hours) + HOURS_SHIFT * shift
    return np.clip(np.round(hours), 1, 99).astype(np.int64)


def _capital(rng: np.random.Generator, v: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    n, edu = len(v["age"]), EDU_NUM[v["education"]] - 10.0
    occupation, age = v["occupation"], (v["age"] - 38.0)
    white_collar = np.isin(occupation, [0, 2])  # Prof-specialty, Exec-managerial
    z = -2.95 + 0.3 * edu + 0.03 * age + 0.6 * np.isin(v["workclass"], [1, 4]) + 0.5 * white_collar
    has_gain = rng.random(n) < _sigmoid(z)
    amount = np.exp(rng.normal(8.4 + 0.1 * edu, 0.9, n))
    amount = np.where(rng.random(n) < 0.05, 99999.0, np.minimum(amount, 99999.0))
    gain = np.where(has_gain, np.round(amount), 0).astype(np.int64)
    has_loss = ~has_gain & (rng.random(n) < _sigmoid(-3.1 + 0.15 * edu + 0.02 * age))
    loss_amount = np.clip(np.round(rng.normal(1870.0, 380.0, n)), 155, 4356)
    return gain, np.where(has_loss, loss_amount, 0).astype(np.int64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _probability(v: Mapping[str, np.ndarray], concept_drift: float) -> np.ndarray:
    """P(income > 50K | inputs) under the label model moved by ``concept_drift``."""
    w = {key: a + concept_drift * (b - a) for key, (a, b) in LABEL_WEIGHTS.items()}
    age, hours = np.asarray(v["age"], dtype=float), np.clip(v["hours"], 10, 80)
    occupation = np.asarray(v["occupation"])
    occ_effect = np.where(occupation >= 0, OCC_TABLE[occupation, 5], OCC_LABEL_MISSING)
    z = (
        w["intercept"]
        + w["education"] * (EDU_NUM[v["education"]] - 10.0)
        + w["age"] * (age - 38.0) / 10.0
        + w["age_squared"] * (((age - 45.0) / 10.0) ** 2 - 1.9)
        + w["hours"] * (hours - 40.0) / 10.0
        + w["capital_gain"] * np.clip((v["capital_gain"] - 5000.0) / 5000.0, 0.0, 1.5)
        + w["capital_loss"] * (v["capital_loss"] >= 1800)
        + w["married"] * (_is_married(v["marital"]) - 0.45)
        + w["occupation"] * (occ_effect + 0.1)
        + w["female"] * (np.asarray(v["female"]) - 0.33)
    )
    return _sigmoid(z)


def _shift_labels(
    rng: np.random.Generator,
    rows: int,
    natural_rate: float,
    label_shift: float,
    covariate_shift: float,
    concept_drift: float,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Resample rows by class so that logit(rate) moves by ``label_shift``.

    Rows are drawn from a larger pool generated the same way; keeping the first positives
    and the first negatives of the pool leaves P(inputs | label) unchanged.
    """
    natural_rate = min(max(natural_rate, 1e-3), 1 - 1e-3)
    target = 1.0 / (1.0 + math.exp(-(math.log(natural_rate / (1 - natural_rate)) + label_shift)))
    n_pos = round(rows * target)
    n_neg = rows - n_pos
    size = int(1.3 * max(n_pos / natural_rate, n_neg / (1 - natural_rate))) + 200
    while True:
        pool = _inputs(rng, size, covariate_shift)
        positive = rng.random(size) < _probability(pool, concept_drift)
        pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
        if len(pos) >= n_pos and len(neg) >= n_neg:
            keep = np.sort(np.concatenate([pos[:n_pos], neg[:n_neg]]))
            return {key: value[keep] for key, value in pool.items()}, positive[keep]
        size *= 2


def _labels(codes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Category names for codes; code -1 is missing (None)."""
    table = np.array([*names, None], dtype=object)
    return table[codes]


def label_probability(frame: pd.DataFrame, *, concept_drift: float = 0.0) -> np.ndarray:
    """P(income = ">50K" | the row's inputs) under the label model of ``concept_drift``.

    Lets tests and notebooks check that covariate shift keeps P(label | x) and that concept
    drift changes it.
    """
    occupation = frame["occupation"].map({name: i for i, name in enumerate(OCC_NAMES)})
    inputs = {
        "age": frame["age"].to_numpy(),
        "hours": frame["hours_per_week"].to_numpy(),
        "education": np.searchsorted(EDU_NUM, frame["education_num"].to_numpy()),
        "capital_gain": frame["capital_gain"].to_numpy(),
        "capital_loss": frame["capital_loss"].to_numpy(),
        "marital": frame["marital_status"].map(MARITAL.index).to_numpy(),
        "occupation": occupation.fillna(-1).to_numpy(dtype=np.int64),
        "female": (frame["sex"] == "Female").to_numpy(),
    }
    return _probability(inputs, concept_drift)


def _frame(v: dict[str, np.ndarray], positive: np.ndarray) -> pd.DataFrame:
    columns = {
        "age": v["age"],
        "workclass": _labels(v["workclass"], WORKCLASS),
        "education": _labels(v["education"], [name for name, *_ in EDUCATION]),
        "education_num": EDU_NUM[v["education"]].astype(np.int64),
        "marital_status": _labels(v["marital"], MARITAL),
        "occupation": _labels(v["occupation"], OCC_NAMES),
        "relationship": _labels(v["relationship"], RELATIONSHIP),
        "race": _labels(v["race"], RACE),
        "sex": np.where(v["female"], "Female", "Male"),
        "capital_gain": v["capital_gain"],
        "capital_loss": v["capital_loss"],
        "hours_per_week": v["hours"],
        "native_country": _labels(v["country"], COUNTRIES),
        LABEL: np.where(positive, POSITIVE, NEGATIVE),
    }
    frame = pd.DataFrame(columns)
    text = [name for name in COLUMNS if frame[name].dtype == object or name in ("sex", LABEL)]
    return frame.astype(dict.fromkeys(text, "str"))


def write_spans(
    folder: str | os.PathLike[str],
    spans: int = 4,
    rows: int = 5000,
    drift_at: Mapping[int, Mapping[str, float]] | None = None,
    fmt: Format = "csv",
    *,
    seed: int = 0,
    first_span: int = 1,
) -> list[Path]:
    """Write ``folder/span=N/data.csv`` (or ``.parquet``) for ``spans`` spans.

    Args:
        folder: output folder (created if needed).
        spans: number of spans, numbered ``first_span``, ``first_span + 1``, ...
        rows: rows per span.
        drift_at: knobs per span number, e.g. ``{3: {"covariate_shift": 1.0}}``; short
            names ``covariate``, ``label`` and ``concept`` work too. A knob applies to the
            span it is given for only.
        fmt: ``"csv"`` or ``"parquet"``.
        seed: base seed; each span's seed is derived from it and the span number.
        first_span: number of the first span.

    Returns:
        The written files, in span order. Each is written under a temporary name and then
        renamed, so a reader never sees half a file.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    knobs_by_span = {span: _knob_names(knobs) for span, knobs in (drift_at or {}).items()}
    numbers = range(first_span, first_span + spans)
    if outside := sorted(set(knobs_by_span) - set(numbers)):
        raise ValueError(
            f"drift_at names spans {outside}, outside spans {numbers.start}..{numbers.stop - 1}"
        )
    paths = []
    for span in numbers:
        frame = generate_span(span, rows, seed=seed, **knobs_by_span.get(span, {}))
        path = Path(folder) / f"span={span}" / f"data.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if fmt == "csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
        paths.append(path)
    return paths


def _knob_names(knobs: Mapping[str, float]) -> dict[str, float]:
    """Accept ``covariate``/``label``/``concept`` as well as the full knob names."""
    named = {}
    for key, value in knobs.items():
        full = next((k for k in KNOBS if k == key or k.split("_")[0] == key), None)
        if full is None:
            raise ValueError(f"unknown knob {key!r}; knobs: {', '.join(KNOBS)}")
        named[full] = float(value)
    return named


def parse_drift(items: Sequence[str]) -> dict[int, dict[str, float]]:
    """``["3:covariate=1.0,label=0.5"]`` -> ``{3: {"covariate_shift": 1.0, ...}}``."""
    drift: dict[int, dict[str, float]] = {}
    for item in items:
        span_text, _, knobs_text = item.partition(":")
        try:
            knobs = dict(pair.split("=", 1) for pair in knobs_text.split(","))
            drift.setdefault(int(span_text), {}).update(
                _knob_names({key.strip(): float(value) for key, value in knobs.items()})
            )
        except ValueError as exc:
            raise ValueError(f"bad --drift {item!r} (want SPAN:KNOB=VALUE[,...]): {exc}") from exc
    return drift


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write spans and print one line per span."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--spans", type=int, default=4, help="number of spans (default 4)")
    parser.add_argument("--rows", type=int, default=5000, help="rows per span (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--first-span", type=int, default=1, help="first span number")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument(
        "--drift",
        action="append",
        default=[],
        metavar="SPAN:KNOB=VALUE[,...]",
        help="knobs for one span: covariate, label, concept (e.g. 3:covariate=1.0)",
    )
    args = parser.parse_args(argv)
    try:
        drift = parse_drift(args.drift)
        paths = write_spans(
            args.out, args.spans, args.rows, drift, args.format,
            seed=args.seed, first_span=args.first_span,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    for span, path in zip(range(args.first_span, args.first_span + args.spans), paths, strict=True):
        knobs = ", ".join(f"{k}={v:g}" for k, v in drift.get(span, {}).items()) or "no drift"
        print(f"span {span}: {path} ({args.rows} rows, {knobs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
