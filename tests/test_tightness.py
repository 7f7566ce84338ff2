"""The tightness report: it runs quickly, writes honest numbers, and never hides a violation."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pandas as pd
import pytest

from hybridconv.theory import hybrid_bound
from hybridconv.theory.terms import bound_terms, term_shares
from hybridconv.validate.falsify import family_bound
from hybridconv.validate.floors import isotropic_noise_floor
from hybridconv.validate.pepit import PEPIT_MISSING, pepit_gd_comparison
from hybridconv.validate.searches import REGIMES, regime_space
from hybridconv.validate.tightness import AIM, BEST_AIM, COLUMNS, FAMILIES, tightness_report

HAS_PEPIT = importlib.util.find_spec("PEPit") is not None

# the default suite runs a subset (a Theta > 0 family, the noise floor, the Delta regime and the
# caps); the whole quick report is the slow test
FEW_FAMILIES = ("hetero",)
FEW_REGIMES = ("noise floor", "deterministic-like")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("tightness")
    df = tightness_report(out, quick=True, seed=0, families=FEW_FAMILIES, regimes=FEW_REGIMES)
    return out, df


@pytest.mark.slow
def test_the_whole_quick_report(tmp_path):
    df = tightness_report(tmp_path, quick=True, seed=0)
    assert sorted(zip(df["family"], df["regime"], strict=True)) == sorted(
        (f, r) for f in FAMILIES for r in REGIMES)
    found = df[df["recheck_verdict"] != "none"]
    assert len(found) >= len(df) - 2
    assert (df["recheck_verdict"] != "violated").all()
    assert ((found["max_ratio"] > 0) & (found["max_ratio"] <= 1)).all()
    assert (found["ci_lower"] <= 1).all()


def test_quick_report_writes_both_files_with_a_row_per_family_and_regime(report):
    out, df = report
    md, csv = out / "docs" / "tightness.md", out / "docs" / "tightness.csv"
    assert md.is_file() and csv.is_file()
    assert not [p for p in (out / "docs").iterdir() if p.name.endswith(".tmp")]
    assert tuple(df.columns) == COLUMNS
    assert sorted(zip(df["family"], df["regime"], strict=True)) == sorted(
        (f, r) for f in FEW_FAMILIES for r in FEW_REGIMES)
    written = pd.read_csv(csv)
    assert tuple(written.columns) == COLUMNS and len(written) == len(df)
    text = md.read_text()
    assert "hybridconv check --report" in text and "--force" in text  # the regenerating command
    assert "a subset of the rows" in text
    assert f"{AIM}" in text and f"{BEST_AIM}" in text
    for family in FEW_FAMILIES:
        assert f"| {family} | noise floor | 10 |" in text
    assert "stationary noise floor of an isotropic quadratic" in text


def test_the_real_bound_is_never_exceeded(report):
    _, df = report
    found = df[df["recheck_verdict"] != "none"]
    assert len(found) == len(df)
    assert (df["recheck_verdict"] != "violated").all()
    for col in ("max_ratio", "search_ratio"):
        values = found[col].astype(float)
        assert ((values > 0) & (values <= 1)).all(), (col, values.tolist())
    assert (found["ci_lower"] <= found["max_ratio"]).all()
    assert (found["max_ratio"] <= found["ci_upper"]).all()
    assert (found["empirical"] <= found["bound"]).all()
    assert set(found["measure"]) == {"weighted"}  # epoch 0 cannot decide a row
    # the Delta regime is tight within 2x (the best ratio per family, BEST_AIM)
    # (the quick search is tiny: the full report's aim is BEST_AIM, here a margin below it)
    det = found[found["regime"] == "deterministic-like"]
    assert (det["max_ratio"] >= 0.8 * BEST_AIM).all(), det["max_ratio"].tolist()


def test_instances_are_compact_json_inside_the_regime(report):
    _, df = report
    for r in df[df["recheck_verdict"] != "none"].itertuples():
        inst = json.loads(r.instance)
        assert inst["eta_x"] > 0 and inst["eta_y"] > 0
        if r.regime == "boundary steps":
            assert inst["frac_x"] == inst["frac_y"] == 1
        if r.regime == "noise floor":
            assert inst["start"] == "stationary"


def test_the_dominating_term_is_a_real_term(report):
    _, df = report
    names = {f: {t.name for t in bound_terms(family_bound(f)) if t.part == "main"}
             for f in FEW_FAMILIES}
    for r in df[df["recheck_verdict"] != "none"].itertuples():
        assert r.dominant_term in names[r.family]
        assert r.second_term in names[r.family] and r.second_term != r.dominant_term
        assert 0 <= r.second_share <= r.dominant_share <= 1


def test_terms_partition_the_numerator(values):
    b = hybrid_bound()
    terms = [t for t in bound_terms(b) if t.part == "main"]
    assert terms[0].name == "Delta (initial gap)"
    assert "sigma_x^2 (ZO variance and the x drift it causes)" in {t.name for t in terms}
    total = sum(t.expr for t in terms)
    assert (total - b.numerator).expand() == 0
    shares = term_shares(b, values)
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-12)
    assert all(v >= 0 for v in shares.values())


def test_regime_spaces_restrict_the_falsifier_space():
    assert regime_space("quadratic", "n = 1")["n"] == (1, 1, "logint")
    assert "hetero_rel" in regime_space("hetero", "any")
    assert "start_scale" not in regime_space("nonconvex", "noise floor")
    assert regime_space("quadratic", "deterministic-like")["sigma_x"][1] <= 1e-4
    with pytest.raises(ValueError, match="regime must be one of"):
        regime_space("quadratic", "tiny mu")
    with pytest.raises(ValueError, match="family must be one of"):
        regime_space("convex", "any")


def test_the_isotropic_noise_floor_is_within_10x(report):
    """The stationary floor of the isotropic quadratic (q = 1, Gaussian) against the bound as
    T -> infinity: the issue's aim measured/bound >= 0.1 at small steps."""
    _, df = report
    floor = df.attrs["floor"]
    assert list(floor["fraction"]) == [0.05, 1.0]
    assert (floor["ratio"] <= 1).all()
    assert floor.loc[floor["fraction"] == 0.05, "ratio"].iloc[0] >= 0.1
    with pytest.raises(ValueError, match="closed-form floor"):
        isotropic_noise_floor(directions="rademacher")


def test_refuses_to_overwrite_without_force(report):
    out, _ = report
    before = (out / "docs" / "tightness.md").read_text()
    with pytest.raises(ValueError, match="tightness.md exists"):
        tightness_report(out, quick=True)
    assert (out / "docs" / "tightness.md").read_text() == before
    with pytest.raises(ValueError, match="families must be"):
        tightness_report(out, quick=True, force=True, families=("convex",))
    with pytest.raises(ValueError, match="budget must be an integer"):
        tightness_report(out, budget=3, force=True)


def test_refuses_an_existing_csv_alone(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tightness.csv").write_text("keep me\n")
    with pytest.raises(ValueError, match="tightness.csv exists"):
        tightness_report(tmp_path, quick=True)
    assert (tmp_path / "docs" / "tightness.csv").read_text() == "keep me\n"


def test_pepit_import_failure_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "PEPit", None)  # makes ``import PEPit`` fail
    with pytest.raises(ImportError, match=r"pip install 'hybridconv\[pepit\]'"):
        pepit_gd_comparison(T_values=(2,))


if HAS_PEPIT:
    def test_pepit_worst_case_is_below_our_bound():
        df = pepit_gd_comparison(L=2.0, Delta=3.0, etas=(1 / 32, 1 / 128), T_values=(1, 4))
        assert len(df) == 4
        # the exact worst case lies in [witness, pepit], and a valid bound is above it
        assert (df["witness"] <= df["pepit"] * (1 + 1e-5)).all()
        assert ((df["ratio"] > 0) & (df["ratio"] <= 1 + 1e-4)).all()
        assert df["pepit"].tolist() == pytest.approx((df["ratio"] * df["ours"]).tolist())
        # at T = 1 the worst case is 2 L Delta (||grad f||^2 <= 2 L (f - f*)), and so is ours
        # (the small-T bound): exact there
        first = df[df["T"] == 1]
        assert first["pepit"].tolist() == pytest.approx([12.0, 12.0], rel=1e-4)
        assert first["ours"].tolist() == pytest.approx([12.0, 12.0])

    def test_pepit_table_in_the_report(report):
        out, df = report
        assert isinstance(df.attrs["pepit"], pd.DataFrame)
        assert (df.attrs["pepit"]["ratio"] <= 1 + 1e-4).all()
        assert "| L | Delta | eta | T | PEPit | witness | ours | PEPit / ours |" in (
            out / "docs" / "tightness.md").read_text()

    def test_pepit_refuses_steps_outside_c2():
        with pytest.raises(ValueError, match="C2"):
            pepit_gd_comparison(L=1.0, etas=(0.6,), T_values=(2,))
else:
    def test_pepit_missing_is_reported(report):
        out, df = report
        assert df.attrs["pepit"] == PEPIT_MISSING
        assert PEPIT_MISSING in (out / "docs" / "tightness.md").read_text()
        with pytest.raises(ImportError, match="PEPit not installed"):
            pepit_gd_comparison(T_values=(2,))
