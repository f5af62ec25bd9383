"""Benchmark: last-layer / MLP curvature and the GLM predictive.

Columns: bayesgrad native core, its NumPy twin, and laplace-torch (PyTorch CPU)
on the same weights when ``torch`` and ``laplace`` import (skipped cleanly
otherwise). Times are medians of repeats, in seconds; ratios are against
laplace-torch measured in the same run. Agreement of the numbers is checked
(max relative difference). Writes bench/results/laplace.json.

    PYTHONPATH=python python bench/laplace.py [--quick]
"""
import argparse
import importlib.util
import json
import os
import platform
import time

import numpy as np

import bayesgrad as bg


def median_time(fn, repeats):
    ts = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    N, Nt, reps = (2000, 500, 2) if args.quick else (10000, 2000, 3)
    sizes = [784, 400, 400, 10]
    rng = np.random.default_rng(0)
    mlp = bg.nn.MLP(sizes, "relu")
    theta = mlp.init(seed=0)
    X = rng.normal(size=(N, sizes[0]))
    y = rng.integers(0, sizes[-1], N).astype(float)
    Xt = X[:Nt]
    have_torch = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("laplace") is not None
    cases = [("diag", "all"), ("kron", "all"), ("full", "last_layer")]
    results = {"N": N, "N_test": Nt, "sizes": sizes, "machine": platform.processor() or platform.machine(),
               "threads": bg.get_num_threads(), "laplace_torch": have_torch, "cases": []}
    for structure, subset in cases:
        row = {"structure": structure, "subset": subset}
        ref = {}
        for be in ("cpu", "numpy"):
            if be == "cpu" and not bg._backend.native_available():
                continue
            with bg.use_backend(be):
                la = bg.laplace.Laplace(mlp, theta, "categorical", structure=structure, subset=subset,
                                        chunk_size=512)
                t_fit, _ = median_time(lambda: la.fit(X, y), reps)
                t_pred, pred = median_time(lambda: la.predict(Xt, link="probit"), reps)
                row[f"{be}_fit_s"], row[f"{be}_predict_s"] = t_fit, t_pred
                ref[be] = (la.log_marginal_likelihood(), pred.probs)
        if have_torch:
            import torch
            from laplace import Laplace as LT

            torch.set_num_threads(bg.get_num_threads())
            layers = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(torch.nn.Linear(a, b))
                if i < len(sizes) - 2:
                    layers.append(torch.nn.ReLU())
            model = torch.nn.Sequential(*layers).double()
            torch.nn.utils.vector_to_parameters(torch.tensor(theta), model.parameters())
            ds = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y).long())
            dl = torch.utils.data.DataLoader(ds, batch_size=512)
            lt = LT(model, "classification", subset_of_weights=subset, hessian_structure=structure)
            t_fit, _ = median_time(lambda: lt.fit(dl), reps)
            Xtt = torch.tensor(Xt)
            t_pred, p_lt = median_time(
                lambda: lt(Xtt, pred_type="glm", link_approx="probit").detach().numpy(), reps)
            row["torch_fit_s"], row["torch_predict_s"] = t_fit, t_pred
            lml_lt = float(lt.log_marginal_likelihood().item())
            be = "cpu" if "cpu" in ref else "numpy"
            row["lml_rel_diff"] = abs(ref[be][0] - lml_lt) / abs(lml_lt)
            row["probs_max_abs_diff"] = float(np.abs(ref[be][1] - p_lt).max())
            for k in ("fit", "predict"):
                if f"cpu_{k}_s" in row:
                    row[f"speedup_{k}_vs_torch"] = row[f"torch_{k}_s"] / row[f"cpu_{k}_s"]
        if "cpu" in ref and "numpy" in ref:
            row["native_numpy_lml_rel_diff"] = abs(ref["cpu"][0] - ref["numpy"][0]) / abs(ref["numpy"][0])
        results["cases"].append(row)
        print(json.dumps(row))
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "laplace.json"), "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
