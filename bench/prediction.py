"""Prediction throughput (issue 14, item 4): MFVI and MC dropout ``predict`` with S
samples against PyTorch CPU (eager and torch.compile) doing the same work.

PyTorch side, written as a PyTorch user would for speed: the weights of all S
samples drawn at once per layer (MFVI: mu + sigma * randn; MC dropout: one
Bernoulli mask per sample over the hidden units, as ``MCDropout`` draws them),
the S forward passes batched with ``baddbmm`` over row chunks, and the same
reduction to the predictive (classification: the mean of the S softmaxes;
regression: the mean and the variance of the S means plus the noise). Times are
medians of ``--repeats`` calls, each side at its default thread count, in the
same run; the load average is recorded.

Usage: python bench/prediction.py [--repeats 3] [--small-n 100000] [--big-n 2000] [--samples 100]
Writes bench/results/prediction.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time  # noqa: E402

ROW_CHUNK = 4096


def configs(args):
    return [
        {"name": "13-50-1 regression", "sizes": [13, 50, 1], "lik": "gaussian", "N": args.small_n},
        {"name": "784-400-400-10 classification", "sizes": [784, 400, 400, 10], "lik": "categorical",
         "N": args.big_n},
    ]


def make_data(cfg, rng):
    X = rng.normal(size=(cfg["N"], cfg["sizes"][0])).astype(np.float32)
    y = (X[:, :1] if cfg["lik"] == "gaussian" else rng.integers(0, cfg["sizes"][-1], cfg["N"]))
    return X, y


def fitted(cfg, X, y):
    """An MFVI and an MC-dropout model of the configuration (one short epoch: the
    throughput of predict does not depend on the values of the parameters)."""
    m = bg.nn.MLP(cfg["sizes"], "relu")
    q = bg.vi.MFVI(m, cfg["lik"], dtype=np.float32).fit(X[:256], y[:256], 1, verbose=0)
    d = bg.dropout.MCDropout(m, p=0.1, likelihood=cfg["lik"], dtype=np.float32).fit(X[:256], y[:256], 1,
                                                                                       verbose=0)
    return q, d


def layers(mlp, theta):
    """[(W (out, in), b (out,))] of a flat parameter vector (bg.nn.MLP's layout)."""
    out, i = [], 0
    for a, b in zip(mlp.sizes[:-1], mlp.sizes[1:]):
        W = theta[i:i + a * b].reshape(b, a)
        i += a * b
        out.append((W, theta[i:i + b]))
        i += b
    return out


def torch_predictors(torch, cfg, q, d, S):
    regression = cfg["lik"] == "gaussian"
    mu = [(torch.from_numpy(np.ascontiguousarray(W)), torch.from_numpy(np.ascontiguousarray(b)))
          for W, b in layers(q.mlp, q.mu_)]
    sg = [(torch.from_numpy(np.ascontiguousarray(W)), torch.from_numpy(np.ascontiguousarray(b)))
          for W, b in layers(q.mlp, q.sigma_)]
    th = [(torch.from_numpy(np.ascontiguousarray(W)), torch.from_numpy(np.ascontiguousarray(b)))
          for W, b in layers(d.mlp, d.theta_)]
    p = d.p
    noise_var = float(np.asarray(q.noise_).reshape(-1)[0]) ** 2 if regression else 0.0

    def forward(x, Ws, bs, masks):
        # x (R, D) shared by the S samples; Ws[l] (S, out, in), bs[l] (S, 1, out)
        h = x.unsqueeze(0).expand(S, -1, -1)
        for li in range(len(Ws)):
            h = torch.baddbmm(bs[li], h, Ws[li].transpose(1, 2))
            if li < len(Ws) - 1:
                h = torch.relu(h)
                if masks is not None:
                    h = h * masks[li]
        return h  # (S, R, K)

    def reduce(F):
        if regression:
            m = F.mean(0)
            return m, F.var(0, unbiased=False) + noise_var
        return torch.softmax(F, -1).mean(0)

    def chunk_fn(x, Ws, bs, masks):
        return reduce(forward(x, Ws, bs, masks))

    def mfvi(X, fn):
        Ws = [W + s * torch.randn((S,) + tuple(W.shape)) for (W, _), (s, _) in zip(mu, sg)]
        bs = [(b + s * torch.randn((S,) + tuple(b.shape))).unsqueeze(1) for (_, b), (_, s) in zip(mu, sg)]
        return [fn(X[i:i + ROW_CHUNK], Ws, bs, None) for i in range(0, X.shape[0], ROW_CHUNK)]

    def dropout(X, fn):
        Ws = [W.unsqueeze(0).expand(S, -1, -1) for W, _ in th]
        bs = [b.view(1, 1, -1).expand(S, 1, -1) for _, b in th]
        masks = [(torch.rand(S, 1, W.shape[0]) >= p).float() / (1 - p) for W, _ in th[:-1]]
        return [fn(X[i:i + ROW_CHUNK], Ws, bs, masks) for i in range(0, X.shape[0], ROW_CHUNK)]

    compiled = torch.compile(chunk_fn, dynamic=False)
    return {"mfvi": (mfvi, chunk_fn, compiled), "mc_dropout": (dropout, chunk_fn, compiled)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--small-n", type=int, default=100_000)
    ap.add_argument("--big-n", type=int, default=2_000)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "prediction.json"))
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is needed for this comparison (pip install torch)")
    S, rng = args.samples, np.random.default_rng(0)
    load0 = load_average()
    rows = []
    for cfg in configs(args):
        X, y = make_data(cfg, rng)
        q, d = fitted(cfg, X, y)
        Xt = torch.from_numpy(X)
        tp = torch_predictors(torch, cfg, q, d, S)
        ours = {"mfvi": lambda: q.predict(X, n_samples=S, seed=1), "mc_dropout": lambda: d.predict(X, n_samples=S, seed=1)}
        for kind in ("mfvi", "mc_dropout"):
            run, eager_fn, compiled_fn = tp[kind]
            with torch.no_grad():
                t_ours = median_time(ours[kind], args.repeats)
                t_eager = median_time(lambda: run(Xt, eager_fn), args.repeats)
                run(Xt, compiled_fn)  # compile outside the timing
                t_comp = median_time(lambda: run(Xt, compiled_fn), args.repeats)
            row = {"config": cfg["name"], "method": kind, "N": cfg["N"], "S": S, "bayesgrad_s": t_ours,
                   "torch_eager_s": t_eager, "torch_compile_s": t_comp, "torch_eager_over_ours": t_eager / t_ours,
                   "torch_compile_over_ours": t_comp / t_ours,
                   "best_torch_over_ours": min(t_eager, t_comp) / t_ours,
                   "points_per_s": cfg["N"] / t_ours}
            rows.append(row)
            print(f"{cfg['name']:32s} {kind:10s} N={cfg['N']:<7d} ours {t_ours:8.3f}s  torch {t_eager:8.3f}s  "
                  f"compiled {t_comp:8.3f}s  best torch/ours {row['best_torch_over_ours']:.2f}x", flush=True)
    res = {"benchmark": "prediction throughput vs PyTorch", "repeats": args.repeats, "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(), "load_average_start": load0, "load_average_end": load_average(),
           "machine": machine_info(), "results": rows}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
