"""``bayesgrad score POOL --model MODEL.npz``: acquisition scores of an unlabelled pool.

POOL is a CSV file (header row), a Parquet file or folder, or a Zarr array
(``.zarr``; ``--component`` names an array inside a group); its feature
columns (``--features``, default all) are the inputs of the saved posterior
(any ``save`` of this package: MC dropout, MFVI, ensembles, SWAG, SG-MCMC,
Laplace over all weights). The picks (rank, pool row, score) are printed or
written with ``--picks``; ``--out`` writes one row per pool point with every
single-point uncertainty column (bald, max_entropy, variation_ratios,
mean_std, margin, in nats where they are entropies) and ``picked`` (the rank,
0 when not picked), as CSV or Parquet by its extension.

Without ``--scheduler`` the pool is scored in process (Parquet and Zarr pools
through Dask's synchronous scheduler, block by block; CSV in memory); with
``--scheduler tcp://HOST:PORT`` the blocks run on that ``distributed``
cluster. The picks are the same either way (``bg.pools``).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ._files import replacing
from .cli import _positive_int, _seed_arg  # the shared argument parsers

FORMATS = ("csv", "parquet", "zarr")
#: ``bg.pools.ACQUISITIONS``, spelled out so that building the parser imports neither pools nor
#: SciPy (``bayesgrad info`` stays quick); a test checks that the two agree.
ACQUISITIONS = ("bald", "max_entropy", "variation_ratios", "mean_std", "margin", "batchbald", "random", "power",
                "softmax", "softrank")


def _format(path):
    p = os.fspath(path).rstrip("/\\").lower()
    if p.endswith(".csv"):
        return "csv"
    if p.endswith((".parquet", ".pq")):
        return "parquet"
    if p.endswith(".zarr"):
        return "zarr"
    return None


def add_score_parser(sub):
    """Register ``score`` on the subparsers ``sub`` of the ``bayesgrad`` parser."""
    s = sub.add_parser("score", help="acquisition scores and picks for an unlabelled pool (CSV, Parquet, Zarr)")
    s.add_argument("pool", metavar="POOL", help="pool file: .csv, .parquet (file or folder) or .zarr")
    s.add_argument("--model", required=True, metavar="MODEL.npz", help="a posterior saved by bayesgrad")
    s.add_argument("--acquisition", choices=ACQUISITIONS, default="batchbald")
    s.add_argument("--batch-size", type=_positive_int, default=10, help="points to pick (default 10)")
    s.add_argument("--format", choices=FORMATS, help="pool format (default: from the extension)")
    s.add_argument("--features", metavar="A,B,...", help="input columns of a CSV / Parquet pool (default all)")
    s.add_argument("--component", metavar="NAME", help="the array inside a Zarr group")
    s.add_argument("--samples", type=_positive_int, default=100, help="predictive samples (default 100)")
    s.add_argument("--n-configs", type=_positive_int, default=1000,
                   help="BatchBALD label configurations per step (default 1000)")
    s.add_argument("--max-candidates", type=_positive_int,
                   help="BatchBALD's M, the BALD top M it chooses among (default max(1000, 20 x batch size))")
    s.add_argument("--beta", type=float, default=1.0, help="temperature of power / softmax / softrank")
    s.add_argument("--chunk-size", type=_positive_int, default=16384, help="pool points per block (default 16384)")
    s.add_argument("--seed", type=_seed_arg, default=0, help="Philox seed (default 0)")
    s.add_argument("--scheduler", metavar="ADDRESS", help="a dask.distributed scheduler, e.g. tcp://10.0.0.1:8786")
    s.add_argument("--picks", metavar="PICKS.csv", help="write the picks here (default: print them)")
    s.add_argument("--out", metavar="SCORES.csv|.parquet", help="write the per-point uncertainty columns here")
    s.set_defaults(func=cmd_score)
    return s


def _read_pool(args, fmt, features, UsageError):
    """The pool as a NumPy array (CSV) or a Dask array chunked along rows."""
    from . import pools

    if args.component is not None and fmt != "zarr":  # it was ignored
        raise UsageError(f"--component names an array inside a Zarr group; {args.pool} is a {fmt} pool")
    if fmt == "csv":
        if args.scheduler:
            return pools.from_csv(args.pool, features, chunk_size=args.chunk_size)
        from ._table import read_csv

        table = read_csv(args.pool)
        return table.numeric(features or table.columns)
    try:
        if fmt == "parquet":
            return pools.from_parquet(args.pool, features, chunk_size=args.chunk_size)
        if features:
            raise UsageError("--features is for CSV and Parquet pools; a Zarr pool is one array")
        X = pools.from_zarr(args.pool, args.component, chunk_size=args.chunk_size)
    except ImportError as exc:
        raise UsageError(f"{fmt} pools: {exc}") from exc
    except (KeyError, ValueError, TypeError) as exc:  # missing columns / arrays, wrong component
        raise UsageError(f"{args.pool}: cannot read the {fmt} pool ({type(exc).__name__}: {exc})") from exc
    return X


def _write_table(path, names, cols, UsageError):
    fmt = _format(path)
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise UsageError(f"--out {path}: Parquet output needs pyarrow (pip install \"bayesgrad[dask]\")") from exc
        with replacing(path) as tmp:
            pq.write_table(pa.table(dict(zip(names, cols))), tmp)
        return
    if fmt != "csv":
        raise UsageError(f"--out {path}: give a .csv or .parquet file")
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    fmts = ["%d" if c.dtype.kind in "iu" else "%.9g" for c in cols]
    # atomically: a failure half-way (or Ctrl-C) left an earlier run's output truncated
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(",".join(names) + "\n")
        np.savetxt(fh, np.column_stack([c.astype(np.float64) for c in cols]), fmt=fmts, delimiter=",")


def cmd_score(args):
    from . import acquisition as A
    from . import pools
    from .cli import UsageError, _user_files

    fmt = args.format or _format(args.pool)
    if fmt is None:
        raise UsageError(f"{args.pool}: unknown pool format (give .csv, .parquet or .zarr, or --format)")
    if not os.path.exists(args.pool):
        raise UsageError(f"{args.pool}: no such file or directory")
    if args.out and _format(args.out) not in ("csv", "parquet"):
        raise UsageError(f"--out {args.out}: give a .csv or .parquet file")
    with _user_files():
        try:
            model = pools.load_posterior(args.model)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    net = pools.networks(model, args.samples, args.seed)
    if net.likelihood not in ("categorical", "bernoulli"):
        raise UsageError(f"{args.model}: acquisition needs a classifier; this model's likelihood is {net.likelihood!r}")
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    client = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as exc:
            raise UsageError(f"--scheduler needs dask.distributed: pip install \"bayesgrad[dask]\" ({exc})") from exc
        try:
            client = Client(args.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--scheduler {args.scheduler}: cannot connect ({exc})") from exc
    try:
        with _user_files():
            X = _read_pool(args, fmt, features, UsageError)
        if len(X.shape) != 2 or X.shape[1] != net.n_inputs:
            raise UsageError(f"{args.pool}: the pool has shape {tuple(X.shape)}; the model takes {net.n_inputs} inputs "
                             "per row (choose them with --features)")
        if args.batch_size > X.shape[0]:
            raise UsageError(f"--batch-size {args.batch_size} exceeds the pool's {X.shape[0]} rows")
        lazy = pools.is_dask_array(X)
        scheduler = None if client is not None or not lazy else "synchronous"
        try:
            res = pools.score_pool(X, args.acquisition, args.batch_size, model=net, seed=args.seed,
                                   n_configs=args.n_configs, max_candidates=args.max_candidates, beta=args.beta,
                                   columns=A.METHODS if args.out else (), chunk_size=args.chunk_size,
                                   scheduler=scheduler)
        except ValueError as exc:  # non-finite inputs, options out of range
            raise UsageError(str(exc)) from exc
    finally:
        if client is not None:
            client.close()
    where = f"on {args.scheduler}" if client is not None else "in process"
    extra = f", M = {res.info['n_candidates']} candidates" if "n_candidates" in res.info else ""
    print(f"{args.acquisition}: {len(res.indices)} of {X.shape[0]} points picked {where} "
          f"({res.info['n_blocks']} blocks{extra})", file=sys.stderr)
    with _user_files():
        rows = [(r + 1, int(i), float(s)) for r, (i, s) in enumerate(zip(res.indices, res.scores))]
        if args.picks:
            from ._table import write_csv

            write_csv(args.picks, ["rank", "row", "score"], rows)
        else:
            print("rank,row,score")
            for r in rows:
                print(f"{r[0]},{r[1]},{r[2]:.6g}")
        if args.out:
            picked = np.zeros(X.shape[0], dtype=np.int64)
            picked[res.indices] = np.arange(1, len(res.indices) + 1)
            names = ["row", *A.METHODS, "picked"]
            cols = [np.arange(X.shape[0], dtype=np.int64), *(res.columns[m] for m in A.METHODS), picked]
            _write_table(args.out, names, cols, UsageError)
    return 0
