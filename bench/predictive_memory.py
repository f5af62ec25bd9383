"""Peak memory of the Laplace GLM predictive at many test points (issue 12: <= 2 GiB for
10^5 points on 784-400-400-10): fit on 2000 points, then one predict() call on N points,
each structure in its own subprocess; the peak RSS (VmHWM) covers the whole process
(interpreter, data, fit, predictive).

    PYTHONPATH=python python bench/predictive_memory.py [--n 100000] [--threads 2]

Writes bench/results/predictive_memory.json.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def worker(structure, n, threads):
    import numpy as np

    import bayesgrad as bg
    from bayesgrad.laplace import Laplace

    bg.set_num_threads(threads)
    rng = np.random.default_rng(0)
    mlp = bg.nn.MLP([784, 400, 400, 10], "relu")
    theta = mlp.init(seed=0, dtype=np.float32)
    X = rng.normal(size=(2000, 784)).astype(np.float32)
    y = rng.integers(0, 10, 2000)
    subset = "last_layer" if structure == "full" else "all"
    la = Laplace(mlp, theta, "categorical", structure=structure, subset=subset).fit(X, y)
    Xt = rng.normal(size=(n, 784)).astype(np.float32)
    before = status("VmHWM:")
    t = time.perf_counter()
    p = la.predict(Xt).probs
    dt = time.perf_counter() - t
    return {"structure": structure, "subset": subset, "n_test": n, "seconds": dt, "peak_rss_before_predict_bytes": before,
            "peak_rss_bytes": status("VmHWM:"), "test_inputs_bytes": Xt.nbytes, "probs_finite": bool(np.isfinite(p).all())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.n, a.threads)))
        return
    rows = []
    load_before = os.getloadavg()
    for s in ("diag", "kron", "full"):
        r = subprocess.run([sys.executable, __file__, "--worker", s, "--n", str(a.n), "--threads", str(a.threads)],
                           capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads)))
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"structure": s,
                                                                                               "error": r.stderr[-500:]})
        print(json.dumps(rows[-1]), flush=True)
    out = {"sizes": [784, 400, 400, 10], "dtype": "float32", "threads": a.threads, "rows": rows,
           "load_average_before": load_before, "load_average_after": os.getloadavg()}
    with open(os.path.join(HERE, "results", "predictive_memory.json"), "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
