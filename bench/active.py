"""Active learning at pool scale (issue 17): pool-scoring throughput in process and on a
dask.distributed LocalCluster, the loop's overhead per round, and digits learning curves.

1. Throughput: a pool of N = 10^6 points with 64 inputs, an MC-dropout MLP 64-32-10
   (float32, S = 50 consistent masks), BatchBALD (batch 10, two stages, M = 1000),
   blocks of 16384 points. Timed: in process (the NumPy pool scored block by block;
   the default thread budget and 1 thread) and on LocalCluster(processes, 1 thread per
   worker) with 1 and 2 workers. The cluster's pool is generated on the workers block
   by block from the same Philox words as the in-process array (element-addressed
   normals), so no 256 MB transfer is timed, and the picks of every configuration are
   compared with the in-process ones. Reported: points per second, the 2-worker /
   1-worker speedup, the per-core ratio against in process, the overhead of the 1-worker
   cluster against in process on 1 thread, and each worker's peak RSS during the run
   (VmHWM reset before it) less its idle RSS, against the bytes of one block's
   log-probabilities (S n C 4).
2. Loop overhead: ActiveLearner on digits (MC dropout), per round: the step's wall time
   minus the fit callable's time minus the posterior's own predict on the pool.
3. Learning curves on sklearn's digits: 20 random initial labels, 10 acquired per
   round up to 100 labels; random, BALD, BatchBALD and the stochastic power
   acquisition; test accuracy, mean and standard error over seeds.

The machine is shared (2 cores, other jobs): the load average before and after each
part is recorded, and throughput ratios measured under load are noisy.

    PYTHONPATH=python python bench/active.py [--quick] [--part throughput|loop|curves|all]

Writes bench/results/active.json (active_quick.json with --quick).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info  # noqa: E402

D, H, C, S = 64, 32, 10, 50
CHUNK = 16384
POOL_SEED, POOL_STREAM = 17, 3


def pool_block(start, stop, dtype=np.float32):
    """Rows start..stop-1 of the benchmark pool: element-addressed Philox normals."""
    return bg.random.normal((stop - start, D), seed=POOL_SEED, stream=POOL_STREAM, dtype=dtype, offset=start * D)


def _dask_pool(N, chunk):
    import dask.array as da

    chunks = [min(chunk, N - s) for s in range(0, N, chunk)]
    starts = np.concatenate([[0], np.cumsum(chunks)])

    def make(block_info=None):
        i = block_info[None]["chunk-location"][0]
        return pool_block(int(starts[i]), int(starts[i + 1]))

    return da.map_blocks(make, dtype=np.float32, chunks=(tuple(chunks), (D,)))


def model():
    rng = np.random.default_rng(0)
    X = pool_block(0, 4000)
    w = rng.normal(size=(D, C)).astype(np.float32)
    y = np.argmax(X @ w + rng.gumbel(size=(4000, C)), axis=1)
    q = bg.dropout.MCDropout(bg.nn.MLP([D, H, C]), p=0.2, likelihood="categorical", lr=1e-2, dtype=np.float32)
    return q.fit(X, y, epochs=3, verbose=0)


def _status_mb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak():
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_mb("VmHWM")


def _peak_mb():
    return _status_mb("VmHWM")


def _cpu_s():
    return time.process_time()


def _current_rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def throughput(N, repeats, quick):
    from distributed import Client, LocalCluster

    net = bg.pools.networks(model(), S, seed=1)
    kw = dict(model=net, n_configs=1000, max_candidates=1000, seed=5)
    rows, picks = [], {}
    X = np.concatenate([pool_block(s, min(N, s + CHUNK)) for s in range(0, N, CHUNK)])

    def timed(fn):
        ts, cs, res = [], [], None
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            res = fn()
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        return float(np.median(ts)), ts, res, float(np.median(cs))

    threads0 = bg.get_num_threads()
    for threads in sorted({threads0, 1}, reverse=True):
        bg.set_num_threads(threads)
        bg.pools.score_pool(X[:CHUNK], "batchbald", 10, chunk_size=CHUNK, **kw)  # warm-up
        la = load_average()
        t, ts, res, cpu = timed(lambda: bg.pools.score_pool(X, "batchbald", 10, chunk_size=CHUNK, **kw))
        picks[f"in_process_{threads}t"] = res.indices.tolist()
        rows.append({"config": f"in process, {threads} thread(s)", "workers": 0, "threads": threads, "seconds": t,
                     "all_seconds": ts, "points_per_s": N / t, "cpu_s": cpu, "points_per_cpu_s": N / cpu,
                     "load_before": la, "n_candidates": res.info["n_candidates"]})
    bg.set_num_threads(threads0)
    del X
    ref = picks[f"in_process_{threads0}t"]
    for workers in (1, 2):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
        try:
            small = _dask_pool(CHUNK * workers, CHUNK)
            bg.pools.score_pool(small, "batchbald", 10, scheduler=client, **kw)  # warm-up: imports, kernels
            pool = _dask_pool(N, CHUNK)
            la = load_average()
            ts, cs, res = [], [], None
            peaks = []
            for _ in range(repeats):
                idle = client.run(_current_rss_mb)
                client.run(_reset_peak)  # the peak of this run only, not of start-up or warm-up
                w0 = client.run(_cpu_s)
                c0, t0 = time.process_time(), time.perf_counter()
                res = bg.pools.score_pool(pool, "batchbald", 10, scheduler=client, **kw)
                ts.append(time.perf_counter() - t0)
                client_cpu = time.process_time() - c0  # the client and the scheduler (same process)
                w1 = client.run(_cpu_s)
                cs.append(client_cpu + sum(w1[w] - w0[w] for w in w1))
                peaks.append(client.run(_peak_mb))
            t = float(np.median(ts))
            cpu = float(np.median(cs))
            peak = {w: max(p[w] for p in peaks) for w in peaks[0]}
            picks[f"cluster_{workers}w"] = res.indices.tolist()
            growth = {w: peak[w] - idle[w] for w in peak}
            rows.append({"config": f"LocalCluster, {workers} worker(s) x 1 thread", "workers": workers, "threads": 1,
                         "seconds": t, "all_seconds": ts, "points_per_s": N / t, "cpu_s": cpu,
                         "points_per_cpu_s": N / cpu, "load_before": la,
                         "n_candidates": res.info["n_candidates"], "n_blocks": res.info["n_blocks"],
                         "worker_idle_rss_mb": list(idle.values()), "worker_peak_rss_mb": list(peak.values()),
                         "worker_peak_growth_mb": list(growth.values()),
                         "picks_equal_in_process": res.indices.tolist() == ref})
        finally:
            client.close()
            cluster.close()
    by = {r["config"]: r for r in rows}
    inp = by[f"in process, {threads0} thread(s)"]
    inp1 = by["in process, 1 thread(s)"]
    w1 = by["LocalCluster, 1 worker(s) x 1 thread"]
    w2 = by["LocalCluster, 2 worker(s) x 1 thread"]
    block_mb = S * CHUNK * C * 4 / 2 ** 20
    summary = {
        "speedup_2w_vs_1w": w2["points_per_s"] / w1["points_per_s"],
        "target_speedup_2w_vs_1w": 1.6,
        "per_core_2w_vs_in_process": (w2["points_per_s"] / 2) / (inp["points_per_s"] / inp["threads"]),
        "per_core_2w_vs_in_process_1thread": (w2["points_per_s"] / 2) / inp1["points_per_s"],
        "target_per_core": 0.8,
        "overhead_1w_vs_in_process_1thread": w1["seconds"] / inp1["seconds"] - 1,
        "block_log_probs_mb": block_mb,
        "worker_peak_growth_over_block": max(max(w1["worker_peak_growth_mb"]), max(w2["worker_peak_growth_mb"]))
        / block_mb,
        "picks_identical": len({json.dumps(p) for p in picks.values()}) == 1,
        # CPU seconds (all processes of the run: client, scheduler, workers) are far less
        # sensitive to other jobs than wall time: points per CPU second of the 2-worker
        # cluster against 1 worker and against in process (1 thread) say how much work the
        # split adds; with two idle cores the speedup would be about 2 x the first ratio
        # (an estimate, not a measurement), less the client's serial greedy stage.
        "cpu_efficiency_2w_vs_1w": w2["points_per_cpu_s"] / w1["points_per_cpu_s"],
        "cpu_efficiency_1w_vs_in_process_1thread": w1["points_per_cpu_s"] / inp1["points_per_cpu_s"],
        "cpu_efficiency_2w_vs_in_process_1thread": w2["points_per_cpu_s"] / inp1["points_per_cpu_s"],
    }
    return {"N": N, "D": D, "mlp": [D, H, C], "S": S, "chunk": CHUNK, "acquisition": "batchbald, batch 10, M 1000",
            "dtype": "float32", "rows": rows, "summary": summary, "picks": picks}


# ---------------------------------------------------------------- digits
def digits_split(seed):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float64)
    order = np.random.default_rng(1000 + seed).permutation(len(y))
    test, pool = order[:597], order[597:]
    return X[pool], y[pool], X[test], y[test]


def digits_fit(X, y, previous):
    q = previous or bg.dropout.MCDropout(bg.nn.MLP([64, 128, 10]), p=0.25, likelihood="categorical", lr=3e-3,
                                         batch_size=32)
    return q.fit(X, y, epochs=150, verbose=0, theta0=None if previous is None else previous.theta_)


def curves(seeds, methods, rounds):
    out = {}
    for m in methods:
        acc = []
        t0 = time.perf_counter()
        for seed in seeds:
            Xp, yp, Xt, yt = digits_split(seed)
            init = np.random.default_rng(seed).choice(len(yp), 20, replace=False)
            al = bg.active.ActiveLearner(digits_fit, Xp, yp, n_classes=10, initial=init, acquisition=m,
                                         batch_size=10, n_samples=50, n_configs=1000, seed=seed)
            al.run(rounds, test=(Xt, yt))
            acc.append([h["accuracy"] for h in al.history])
            labels = [h["n_labelled"] for h in al.history]
        acc = np.array(acc)
        out[m] = {"n_labelled": labels, "accuracy_mean": acc.mean(0).tolist(),
                  "accuracy_sem": (acc.std(0, ddof=1) / np.sqrt(len(seeds))).tolist() if len(seeds) > 1 else None,
                  "accuracy_per_seed": acc.tolist(), "seconds": time.perf_counter() - t0}
        print(f"  {m:>10}: " + " ".join(f"{a:.3f}" for a in acc.mean(0)), flush=True)
    return out


def loop_overhead(rounds):
    """Per round: the step's time, split into the fit callable, the posterior's own predict
    on the pool, the acquisition's scoring and selection (``bg.pools.score_pool`` on those
    log-probabilities, timed again on its own) and the rest (the loop's bookkeeping: index
    sets, oracle, history). CPU time of the process (all threads) is reported beside wall
    time: on a loaded machine it is the steadier of the two."""
    Xp, yp, Xt, yt = digits_split(0)
    res = {}
    for m in ("bald", "batchbald", "power"):
        fit_cpu = []

        def fit(X, y, previous):
            c0 = time.process_time()
            q = digits_fit(X, y, previous)
            fit_cpu.append(time.process_time() - c0)
            return q

        init = np.random.default_rng(0).choice(len(yp), 20, replace=False)
        al = bg.active.ActiveLearner(fit, Xp, yp, n_classes=10, initial=init, acquisition=m, batch_size=10,
                                     n_samples=50, seed=0)
        recs = []
        for r in range(rounds):
            lab_before = al.labelled.copy()
            c0, t0 = time.process_time(), time.perf_counter()
            al.step()
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            h = al.history[-1]
            st = bg.random.fold_in(bg.random.fold_in(al.stream, r), 2)
            c1, t1 = time.process_time(), time.perf_counter()
            lp = al.posterior.predict(Xp, n_samples=50, seed=al.seed, stream=st).log_probs
            c2, t2 = time.process_time(), time.perf_counter()
            sel = bg.pools.score_pool(lp, m, 10, n_configs=al.n_configs, seed=al.seed, stream=st, exclude=lab_before)
            c3, t3 = time.process_time(), time.perf_counter()
            assert sel.indices.tolist() == h["picked"]  # the same work the step did
            rec = {"wall_s": wall, "fit_s": h["fit_s"], "predict_s": t2 - t1, "select_s": t3 - t2,
                   "cpu_s": cpu, "fit_cpu_s": fit_cpu[-1], "predict_cpu_s": c2 - c1, "select_cpu_s": c3 - c2}
            rec["loop_cpu_s"] = cpu - rec["fit_cpu_s"] - rec["predict_cpu_s"] - rec["select_cpu_s"]
            rec["loop_wall_s"] = wall - rec["fit_s"] - rec["predict_s"] - rec["select_s"]
            recs.append(rec)
        med = {k: float(np.median([r[k] for r in recs])) for k in recs[0]}
        med["loop_cpu_fraction_of_fit_plus_predict"] = med["loop_cpu_s"] / (med["fit_cpu_s"] + med["predict_cpu_s"])
        res[m] = {"median": med, "rounds": recs}
        print(f"  {m:>10}: CPU {med['cpu_s']:.3f} s = fit {med['fit_cpu_s']:.3f} + predict {med['predict_cpu_s']:.3f} "
              f"+ scores/selection {med['select_cpu_s']:.3f} + loop {med['loop_cpu_s']:.4f} s "
              f"(wall {med['wall_s']:.3f} s)", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N = 10^5, 2 seeds, fewer rounds")
    ap.add_argument("--part", choices=("throughput", "loop", "curves", "all"), default="all")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    name = "active_quick.json" if args.quick else "active.json"
    path = os.path.join(os.path.dirname(__file__), "results", name)
    out = {}
    if os.path.exists(path):
        with open(path) as fh:
            out = json.load(fh)
    out["machine"] = machine_info()
    out["backend"] = bg.get_backend()
    if args.part in ("throughput", "all"):
        N = 10 ** 5 if args.quick else 10 ** 6
        print(f"throughput, N = {N}", flush=True)
        la0 = load_average()
        r = throughput(N, args.repeats, args.quick)
        r["load_average_before"], r["load_average_after"] = la0, load_average()
        out["throughput"] = r
        for row in r["rows"]:
            print(f"  {row['config']:<36} {row['points_per_s']:>10.0f} points/s  ({row['seconds']:.1f} s)")
        print("  " + json.dumps(r["summary"]), flush=True)
    if args.part in ("loop", "all"):
        print("loop overhead per round (digits, MC dropout 64-128-10, S = 50)", flush=True)
        la0 = load_average()
        out["loop_overhead"] = {"results": loop_overhead(3 if args.quick else 5), "load_average_before": la0,
                                "load_average_after": load_average()}
    if args.part in ("curves", "all"):
        seeds = list(range(2 if args.quick else args.seeds))
        rounds = 4 if args.quick else 9
        print(f"digits learning curves, seeds {seeds}", flush=True)
        la0 = load_average()
        c = curves(seeds, ["random", "bald", "batchbald", "power"], rounds)
        out["curves"] = {"setup": "sklearn digits (1797 x 64, /16), 597 test points, pool 1200; 20 random initial "
                                  "labels, 10 acquired per round; MC dropout 64-128-10 p=0.25, 150 epochs per round, "
                                  "warm start; S = 50; BatchBALD n_configs 1000 (all pool points as candidates); "
                                  "power: BALD^beta, beta 1",
                         "seeds": seeds, "results": c, "load_average_before": la0, "load_average_after": load_average()}
        last = {m: c[m]["accuracy_mean"][-1] for m in c}
        out["curves"]["final"] = {"n_labelled": c["random"]["n_labelled"][-1], "accuracy_mean": last,
                                  "batchbald_minus_random": last["batchbald"] - last["random"]}
        print("  final: " + json.dumps(out["curves"]["final"]), flush=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
