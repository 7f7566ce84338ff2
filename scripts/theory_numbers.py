"""Print the numbers docs/theory.md quotes for the sharp theorem's special cases and
smoothing bias (issue 16's "Done when"): rerun with ``python scripts/theory_numbers.py``.

1. beta (the smoothing bias) against L mu sqrt(d_x) and against the first version's
   (L mu / 2)(d_x + 3)^{3/2}, for each direction law, at d_x = 1, 1e3, 1e6.
2. The step caps of the one-block special cases against the classical ones: d_x = 0 against
   Mishchenko-Khaled-Richtarik's 1/(2 L n); n = 1 (ZO only) against Nesterov-Spokoiny's
   1/(4 (d + 4) L).
3. The stationary noise floor of the isotropic quadratic (q = 1, Gaussian, n = 8, d_x = 16,
   d_y = 4, sigma_x = 1), simulated from the minimizer (64 trials, the second half of the run
   averaged) beside the closed form, against the bound as T -> infinity
   (``hybridconv.validate.floors``).
4. The mutation pool's edge instances (``hybridconv.validate.mutate.instance_pool``, seed 0,
   the pool of ``hybridconv check --mutations``): where each term carries the bound, and the
   best a survivor's mutant is approached (``python scripts/theory_numbers.py --pool`` runs
   this part alone, about a minute).
5. LoRA's tightness against its certified region (``--lora`` runs this part alone): the
   deterministic-like regime's worst instance of the tightness report (before the region
   was searched) at region_scale 2 (the default) down to 1 (the smallest region holding the
   start and the planted solution), with the search's step fractions and on the caps, and
   over longer runs.
"""

from __future__ import annotations

import math

import sympy as sp

from hybridconv.theory.bound import hybrid_bound
from hybridconv.theory.symbols import sym


def beta_rows() -> None:
    print("smoothing bias beta / (L mu sqrt(d_x)), and v1's beta^2 / ours (mu = 1e-3, L = 1):")
    for directions in ("gaussian", "sphere", "rademacher"):
        th = hybrid_bound(directions=directions).theorem
        beta = [e for a, e in th.aux.items() if str(a) == r"\beta"][0]
        v1 = hybrid_bound(directions=directions, version="v1").theorem
        beta1 = [e for a, e in v1.aux.items() if str(a) == r"\beta"][0]
        for d in (1, 10**3, 10**6):
            at = {sym("L_x"): 1, sym("L_xy"): 0, sym("mu"): sp.Rational(1, 1000), sym("d_x"): d}
            b = float(beta.subs(at))
            b1 = float(beta1.subs(at))
            print(f"  {directions:10s} d_x = {d:>7d}: beta / (L mu sqrt(d)) = "
                  f"{b / (1e-3 * math.sqrt(d)):.4g}; v1 beta^2 / ours = {(b1 / b) ** 2:.3g}")


def cap_rows() -> None:
    b = hybrid_bound()
    y = b.special_case("no_zo_block")
    print("d_x = 0 (random reshuffling): our cap on eta_y against MKR's 1/(2 L n):")
    for n, L in ((1, 1.0), (10, 0.5), (100, 2.0)):
        cap = y.admissible_steps(1.0, 1.0, L_y=L, sigma_y=1.0, Theta_y=0.0, Delta=1.0, n=n,
                                 T=10)[1]
        print(f"  n = {n:>3d}, L = {L:g}: ours {cap:.6g}, MKR {1 / (2 * L * n):.6g}, "
              f"ratio {cap * 2 * L * n:.4g}")
    x = b.special_case("zo_only")
    print("n = 1, ZO only: our cap on eta_x (q = 1) against Nesterov-Spokoiny's 1/(4 (d + 4) L):")
    for d in (1, 100, 10**6):
        L = 2.0
        cap = x.admissible_steps(1.0, 1.0, L_x=L, Delta=1.0, mu=1e-3, q=1, T=10, d_x=d)[0]
        ns = 1 / (4 * (d + 4) * L)
        print(f"  d_x = {d:>7d}: ours {cap:.6g}, NS17 {ns:.6g}, ratio {cap / ns:.4g}")


def floor_rows() -> None:
    import numpy as np

    from hybridconv.problems.quadratic import QuadraticProblem
    from hybridconv.sim import SimConfig, simulate
    from hybridconv.validate.floors import isotropic_noise_floor

    n, dx, dy = 8, 16, 4
    p = QuadraticProblem(n, dx, dy, L_x=1.0, m_x=1.0, L_y=1.0, m_y=1.0, coupling=0.0,
                         sigma_x=1.0, sigma_y=0.0, seed=0)
    z = p.minimizer()
    print("isotropic noise floor (q = 1, Gaussian), simulated / bound (T -> infinity):")
    for _, r in isotropic_noise_floor(fractions=(0.05, 0.5, 1.0)).iterrows():
        T = int(min(3000, 40 / (r.eta_x * n)))
        df = simulate(p, SimConfig(eta_x=r.eta_x, eta_y=r.eta_y, mu=1e-3, q=1, epochs=T,
                                   trials=64, seed=1), x0=z[:dx], y0=z[dx:])
        late = df[df.epoch > T // 2].groupby("trial")["grad_sq"].mean()
        m, se = late.mean(), late.std(ddof=1) / np.sqrt(len(late))
        print(f"  steps {r.fraction:g} x caps, T = {T}: simulated {m:.4g} +- {se:.2g} "
              f"(closed form {r.floor:.4g}), bound {r.bound:.4g}, simulated / bound "
              f"{m / r.bound:.3f}")


def pool_rows() -> None:
    from hybridconv.theory.bound import compile_numeric
    from hybridconv.validate.mutate import instance_pool, mutations

    b = hybrid_bound()
    pool = instance_pool(b, seed=0)
    ok = (pool["ratio"] < 1 - 1e-9) & (pool["w_ratio"] < 1 - 1e-9)
    print(f"mutation pool: {len(pool)} instances; real bound: largest empirical/bound "
          f"{pool['ratio'].max():.4g} (min), {pool['w_ratio'].max():.4g} (weighted); "
          f"{int((~ok).sum())} met with equality (one epoch, isotropic quadratic)")
    args = [sym(k) for k in b.symbols]
    num = compile_numeric(args, b.numerator)
    sx = compile_numeric(args, b.terms["main:sigma_x^2"])
    for _, r in pool[pool["floor_start"]].iterrows():
        a = [r["values"][k] for k in b.symbols]
        print(f"  ZO floor start ({r['epochs']} epochs): weighted empirical/bound "
              f"{r['w_ratio']:.3f}, sigma_x^2 term {float(sx(*a)) / float(num(*a)):.3f} of B")
    for _, r in pool[pool["epochs"] == 2].iterrows():
        print(f"  two epochs of ZO noise ({r['family']}): weighted empirical/bound "
              f"{r['w_ratio']:.3f}")
    fo = pool[(pool["p_sigma_x"] == 0) & (pool["p_sigma_y"] == 5.0)]
    for _, r in fo.iterrows():
        print(f"  FO reshuffling floor ({r['family']}): weighted empirical/bound "
              f"{r['w_ratio']:.4f}")
    mutants = {m.name: m for m in mutations(b)}
    for name, family in (("drop Theta from gamma", "hetero"), ("halve sigma_y^2", None),
                         ("halve nu_0^2", None), ("halve beta^2", None)):
        best = 0.0
        for _, r in pool.iterrows():
            if family and r["family"] != family:
                continue
            for measure, lo, ratio in (("min", "ci_lower", "ratio"),
                                       ("weighted", "w_ci_lower", "w_ratio")):
                value = mutants[name].bound.evaluate(check=False, measure=measure,
                                                     **r["values"])
                if r[ratio] < 1 - 1e-9 and value > 0:
                    best = max(best, r[lo] / value)
        where = f" on the {family} instances" if family else ""
        print(f"  `{name}`: largest lower confidence bound / mutant{where} {best:.3f}")


def lora_rows() -> None:
    from hybridconv.problems import make_problem
    from hybridconv.sim.runner import SimConfig
    from hybridconv.validate.check import check
    from hybridconv.validate.falsify import family_bound

    b = family_bound("lora")
    n, m, p, r, noise, mu, q, fracs = 30, 2, 1, 1, 0.0003777, 4.221e-06, 13, (0.3166, 0.06615)
    print("LoRA, deterministic-like worst instance (n = 30, m = 2, p = 1, r = 1), weighted "
          "empirical / bound against the certified region:")
    for scale, T, (fx, fy) in ((2.0, 20, fracs), (2.0, 20, (1.0, 1.0)), (1.5, 20, (1.0, 1.0)),
                               (1.2, 20, (1.0, 1.0)), (1.0, 20, fracs), (1.0, 20, (1.0, 1.0)),
                               (2.0, 100, (1.0, 1.0)), (1.0, 100, (1.0, 1.0)),
                               (1.0, 400, (1.0, 1.0))):
        prob = make_problem("lora", n, m * p, r * (m + p), seed=0, m=m, p=p, r=r, noise=noise,
                            region_scale=scale)
        c = prob.constants()
        ex, ey = b.admissible_steps(fx, fy, **c, mu=mu, q=q, n=n, T=T)
        cfg = SimConfig(eta_x=ex, eta_y=ey, mu=mu, q=q, difference="forward", epochs=T,
                        trials=32, seed=1)
        v = check(b, prob, cfg, measure="weighted")
        print(f"  region_scale {scale:g}, T = {T}, steps ({fx:g}, {fy:g}) of the caps: "
              f"L_y {c['L_y']:.3g}, L_xy {c['L_xy']:.3g}, sigma_x^2 {c['sigma_x']**2:.3g}: "
              f"ratio {v.ratio:.3f}")


if __name__ == "__main__":
    import sys

    if "--lora" in sys.argv:
        lora_rows()
        sys.exit()
    if "--pool" not in sys.argv:
        beta_rows()
        cap_rows()
        floor_rows()
    pool_rows()
    lora_rows()
