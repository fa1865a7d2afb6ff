"""Benchmark: our RidgeCV against scikit-learn and himalaya, side by side, one run.

    python bench/ridge.py                          # NSD shape: 8859 x 15724, 257 x 768 targets
    python bench/ridge.py --scale 0.15 --threads 1 --repeat 2  # 5 minutes on 2 CPU cores
    python bench/ridge.py --device cuda            # ours and himalaya on the GPU

The input is simulated here (seeded) and written once to a temporary folder: ``--n`` training
rows (default 8,859, NSD's training images) and ``--n-test`` test rows (982) of ``--p`` voxels
(15,724) that carry a 64-dimensional latent signal with voxel-specific gains, offsets and
scales plus noise; ``--tokens`` x ``--targets`` targets (257 x 768, CLIP token states) that are
a linear map of the same latent plus noise of a per-target level, so the best alpha differs
between targets. ``--scale`` multiplies n, n-test, p and targets per token together, which
keeps the proportions of the problem and so the cost ratios between implementations (every
dominant term of every implementation is cubic in the scale per token; tokens are not scaled).

Each implementation runs in its own child process on the same data, with the same alpha grid
(``--alphas`` values log-spaced over ``--alpha-range``) and, where the peer takes a CV splitter,
the same 5 folds as ours; the child measures its wall time (fit and test prediction), its
peak resident memory, the resident memory right after loading the data (so that peak - base
is the working memory) and, on CUDA, the peak GPU memory allocated by torch:

1. ours: ``fmridecode.mappers.ridge.RidgeCV`` (torch, float32, alpha per target, 5-fold CV,
   standardisation inside each fold);
2. sklearn-loop: scikit-learn ``Ridge`` fitted once per token with one fixed alpha, as
   Brain-Diffuser does (``--fixed-alpha``, default its 60,000 scaled to p and rounded to the
   grid); only the first ``--loop-tokens`` tokens are timed, and the time is extrapolated
   linearly to all tokens with the median time per token (robust to the other jobs of a shared
   machine; said so in the table);
3. sklearn-RidgeCV: scikit-learn ``RidgeCV(alpha_per_target=True)``, its efficient
   leave-one-out CV (float64, its own choice);
4. himalaya-RidgeCV and himalaya-KernelRidgeCV (``fit_intercept=True``, our folds, target batches
   of ``--himalaya-batch``) on the torch backend (``torch_cuda`` on a GPU), when himalaya is
   importable (``pip install -e '.[bench]'``).

Peers get X standardised with the training statistics (inside their timed region); ours
standardises itself, per fold. Reported per implementation: wall time, peak memory, their
ratios to ours, the largest absolute difference of its test predictions from ours (and the
share of targets where it chose the same alpha), and from scikit-learn ``Ridge`` (float64)
fitted at the alphas it chose, on the first ``--ref-columns`` targets (the exactness line).
The last line printed is a one-line summary.

Cost (kernel form, n rows, p voxels, d = tokens x targets, L alphas, 5 folds): ours
O(n^2 p + n^3) per eigendecomposition (6 of them) and O(L n^2 d) for the CV predictions plus
O((n^2 + p n) d) for the weights; the per-token loop O(tokens (n^2 p + n^3 + p n targets))
with no CV at all. At NSD proportions the two are of the same order (L x targets ~ 0.5 p), so
on a CPU ours does 5-fold CV over L alphas per target in about the time the loop takes to fit
one alpha; the GPU is where ours gains. The full NSD shape needs about 4e14 flops for ours
and 5e14 for the loop (and 7 GB for Y alone): most of an hour or more per implementation on 2
CPU cores, so use ``--scale`` there (``--scale 0.15 --threads 1 --repeat 2``: 5 minutes in all;
measured figures in bench/README.md). ``--threads 1`` is for a machine shared with other jobs,
where multi-threaded BLAS stalls in bursts and the timings stop meaning anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NSD = {"n": 8859, "n_test": 982, "p": 15724, "targets": 768, "tokens": 257}
LATENT = 64
FOLDS = 5
IMPLS = ("ours", "sklearn-loop", "sklearn-RidgeCV", "himalaya-RidgeCV", "himalaya-KernelRidgeCV")


def simulate(n: int, n_test: int, p: int, d: int, seed: int, out: Path) -> None:
    """Write X_train, X_test (raw voxel units), Y_train, Y_test (float32 .npy) to ``out``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n + n_test, LATENT), dtype=np.float32)
    gain = rng.uniform(0.0, 1.0, p).astype(np.float32)  # many voxels barely informative
    mix = rng.standard_normal((LATENT, p), dtype=np.float32) * (gain / np.float32(LATENT**0.5))
    X = z @ mix + rng.standard_normal((n + n_test, p), dtype=np.float32)
    X = X * rng.uniform(0.5, 2.0, p).astype(np.float32) + rng.normal(0, 3, p).astype(np.float32)
    assert X.dtype == np.float32  # numpy scalars are not weakly typed: keep everything float32
    np.save(out / "X_train.npy", X[:n])
    np.save(out / "X_test.npy", X[n:])
    del X
    B = rng.standard_normal((LATENT, d), dtype=np.float32) / np.float32(np.sqrt(LATENT))
    noise = np.exp(rng.uniform(np.log(0.3), np.log(3.0), d)).astype(np.float32)
    for name, rows in (("Y_train", slice(0, n)), ("Y_test", slice(n, n + n_test))):
        Y = z[rows] @ B
        assert Y.dtype == np.float32
        for a in range(0, Y.shape[0], 1024):  # noise in row chunks: no second full-size array
            Y[a : a + 1024] += rng.standard_normal((len(Y[a : a + 1024]), d), np.float32) * noise
        np.save(out / f"{name}.npy", Y)
        del Y


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory of this process (MB): current (VmRSS) or peak (VmHWM).

    VmHWM, not ``getrusage``: Linux keeps ``ru_maxrss`` across exec, so a child would report
    the parent's peak (the simulated data) when that is higher than its own.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def standardised(X: np.ndarray, Xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X and Xt standardised with X's statistics, in X's dtype (StandardScaler returns float64
    for float32 input, which would silently run the float32 peers in float64)."""
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(X)
    return sc.transform(X).astype(X.dtype), sc.transform(Xt).astype(X.dtype)


def worker(which: str, folder: Path) -> None:
    """Child process: fit and predict, save predictions and alphas, print stats as JSON."""
    meta = json.loads((folder / "meta.json").read_text())
    X = np.load(folder / "X_train.npy")
    Y = np.load(folder / "Y_train.npy")
    Xt = np.load(folder / "X_test.npy")
    alphas = np.asarray(meta["alphas"])
    device = meta["device"]
    cuda = device == "cuda"
    if cuda or which.startswith("himalaya") or which == "ours":
        import torch  # imported before the clock and the memory baseline, like the data
    base = rss_mb()
    info: dict = {}
    t0 = time.perf_counter()
    if which == "ours":
        from fmridecode.mappers.ridge import RidgeCV

        m = RidgeCV(alphas, cv=FOLDS, alpha_per_target=True, seed=0, device=device).fit(X, Y)
        pred, chosen = m.predict(Xt), m.alpha_
    elif which == "sklearn-loop":
        from sklearn.linear_model import Ridge

        Xs, Xts = standardised(X, Xt)
        t_setup = time.perf_counter() - t0
        t, k = meta["targets"], meta["loop_tokens"]
        preds, coefs, per_token = [], [], []
        for i in range(k):
            t1 = time.perf_counter()
            r = Ridge(alpha=meta["fixed_alpha"]).fit(Xs, Y[:, i * t : (i + 1) * t])
            coefs.append(r.coef_)
            preds.append(r.predict(Xts))
            per_token.append(time.perf_counter() - t1)
        pred = np.concatenate(preds, axis=1)
        chosen = np.full(pred.shape[1], meta["fixed_alpha"])
        info = {"timed_tokens": k, "measured_s": time.perf_counter() - t0}
        info["per_token_s"] = [round(v, 3) for v in per_token]
        info["extrapolated_s"] = t_setup + float(np.median(per_token)) * meta["tokens"]
        # the coefficients of the untimed tokens, which a full run keeps (Brain-Diffuser's reg_w)
        info["untimed_coef_mb"] = (meta["tokens"] - k) * t * X.shape[1] * 4 / 2**20
    elif which == "sklearn-RidgeCV":
        from sklearn.linear_model import RidgeCV as SkRidgeCV

        Xs, Xts = standardised(X, Xt)
        m = SkRidgeCV(alphas=alphas, alpha_per_target=True).fit(Xs, Y)
        pred, chosen = m.predict(Xts), m.alpha_
    else:
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV
        from himalaya.ridge import RidgeCV as HmRidgeCV
        from sklearn.model_selection import PredefinedSplit

        backend = set_backend("torch_cuda" if cuda else "torch")
        Xs, Xts = standardised(X, Xt)
        cv = PredefinedSplit(np.load(folder / "folds.npy"))
        batch = {"n_targets_batch": meta["himalaya_batch"]}
        batch["n_targets_batch_refit"] = meta["himalaya_batch"]
        if which == "himalaya-RidgeCV":
            m = HmRidgeCV(alphas=alphas, fit_intercept=True, cv=cv, solver_params=batch)
        else:
            batch["n_alphas_batch"] = len(alphas)
            m = KernelRidgeCV(alphas=alphas, fit_intercept=True, cv=cv, solver_params=batch)
        m.fit(Xs, Y)
        pred = backend.to_numpy(m.predict(Xts))
        chosen = backend.to_numpy(m.best_alphas_)
    wall = time.perf_counter() - t0
    np.save(folder / f"pred_{which}.npy", np.asarray(pred, np.float32))
    np.save(folder / f"alpha_{which}.npy", np.asarray(chosen, np.float64) * np.ones(pred.shape[1]))
    peak = rss_mb("VmHWM")
    stats = {"wall_s": wall, "peak_mb": peak, "base_mb": base, **info}
    if cuda:
        stats["gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(stats))


def run_child(
    which: str, folder: Path, repeat: int, threads: int, limit: float | None = None
) -> dict:
    """Run ``which`` in a fresh interpreter ``repeat`` times with ``threads`` BLAS/OpenMP
    threads, each run stopped after ``limit`` seconds; the stats of the fastest run (with
    every wall time), or why it did not run."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    runs = []
    for _ in range(repeat):
        cmd = [sys.executable, __file__, "--worker", which, "--folder", str(folder)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit)
        except subprocess.TimeoutExpired:
            return {"error": f"stopped after --child-timeout {limit:g} s (data loading included)"}
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        r["wall_s"] = r.get("extrapolated_s", r["wall_s"])
        r["peak_mb"] += r.get("untimed_coef_mb", 0.0)
    best = min(runs, key=lambda r: r["wall_s"])
    return {**best, "walls": [round(r["wall_s"], 1) for r in runs]}


def on_grid(chosen: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each chosen alpha as the nearest grid value (peers report theirs in float32)."""
    return grid[np.abs(np.log(chosen)[:, None] - np.log(grid)[None, :]).argmin(axis=1)]


def reference(folder: Path, alphas: np.ndarray, cols: int) -> dict[float, np.ndarray]:
    """scikit-learn's ridge in float64 on standardised X: test predictions of the first
    ``cols`` targets at every alpha of the grid (and the fixed one), the exactness reference.

    ``KernelRidge`` on the precomputed linear kernel of the standardised (so centred) X, with
    Y centred and its mean added back: the same solution as ``Ridge(alpha,
    fit_intercept=True)``, with the Gram matrix computed once instead of once per alpha.
    """
    from sklearn.kernel_ridge import KernelRidge

    X = np.load(folder / "X_train.npy").astype(np.float64)
    Xt = np.load(folder / "X_test.npy").astype(np.float64)
    Y = np.load(folder / "Y_train.npy", mmap_mode="r")[:, :cols].astype(np.float64)
    Xs, Xts = standardised(X, Xt)
    K, Kt, mean = Xs @ Xs.T, Xts @ Xs.T, Y.mean(axis=0)
    fit = {a: KernelRidge(alpha=a, kernel="precomputed").fit(K, Y - mean) for a in alphas}
    return {float(a): m.predict(Kt) + mean for a, m in fit.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=NSD["n"], help="training rows (images)")
    ap.add_argument("--n-test", type=int, default=NSD["n_test"], help="test rows")
    ap.add_argument("--p", type=int, default=NSD["p"], help="voxels")
    ap.add_argument("--targets", type=int, default=NSD["targets"], help="targets per token")
    ap.add_argument("--tokens", type=int, default=NSD["tokens"])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies n, n-test, p, targets")
    ap.add_argument("--alphas", type=int, default=10, help="number of alphas in the grid")
    ap.add_argument("--alpha-range", type=float, nargs=2, default=[1.0, 6.0], metavar=("LO", "HI"))
    ap.add_argument("--fixed-alpha", type=float, help="sklearn-loop alpha (default: see doc)")
    ap.add_argument("--loop-tokens", type=int, default=16, help="tokens timed in sklearn-loop")
    ap.add_argument("--repeat", type=int, default=1, help="runs per implementation (fastest)")
    ap.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="BLAS/OpenMP threads per child"
    )
    ap.add_argument("--himalaya-batch", type=int, default=4096, help="himalaya target batch")
    ap.add_argument("--ref-columns", type=int, default=512, help="targets in the exactness line")
    ap.add_argument(
        "--child-timeout", type=float, help="seconds after which an implementation is stopped"
    )
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--only", nargs="+", choices=IMPLS, default=list(IMPLS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, Path(args.folder))
        return

    import torch

    from fmridecode.devices import resolve_device
    from fmridecode.mappers.ridge import _fold_ids

    device = resolve_device(args.device)
    n, n_test, p, t = (
        max(8, round(v * args.scale)) for v in (args.n, args.n_test, args.p, args.targets)
    )
    T = args.tokens
    d = T * t
    alphas = np.logspace(*args.alpha_range, args.alphas)
    fixed = args.fixed_alpha or float(
        alphas[np.argmin(np.abs(np.log(alphas / (6e4 * p / NSD["p"]))))]
    )
    k = min(args.loop_tokens, T)
    ref_cols = min(d, max(args.ref_columns, k * t))
    names = list(args.only)
    reasons: dict[str, str] = {}
    try:
        import himalaya

        hm_version = himalaya.__version__
    except ImportError as e:
        hm_version = None
        for name in names:
            if name.startswith("himalaya"):
                reasons[name] = f"not run: himalaya not importable ({e}); pip install -e '.[bench]'"
    cores = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none"
    print(
        f"machine: {cores} CPU cores ({args.threads} threads per implementation), GPU {gpu}; "
        f"torch {torch.__version__}, himalaya {hm_version}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        simulate(n, n_test, p, d, args.seed, folder)
        np.save(folder / "folds.npy", _fold_ids(n, FOLDS, True, 0))  # ours: seed 0, shuffled
        meta = {
            "alphas": alphas.tolist(),
            "device": device,
            "targets": t,
            "tokens": T,
            "loop_tokens": k,
            "fixed_alpha": fixed,
            "himalaya_batch": args.himalaya_batch,
        }
        (folder / "meta.json").write_text(json.dumps(meta))
        print(
            f"simulated n={n} train + {n_test} test rows, p={p} voxels, d={T}x{t}={d} targets "
            f"(scale {args.scale}) in {time.perf_counter() - t0:.0f} s; {len(alphas)} alphas "
            f"{alphas[0]:g}..{alphas[-1]:g}, {FOLDS}-fold CV, sklearn-loop alpha {fixed:g}, "
            f"ours on {device}"
        )
        stats: dict[str, dict] = {}
        for name in names:
            if name in reasons:
                print(f"{name}: {reasons[name]}")
                continue
            stats[name] = run_child(name, folder, args.repeat, args.threads, args.child_timeout)
            s = stats[name]
            if "error" in s:
                reasons[name] = f"failed: {s['error']}"
                print(f"{name}: {reasons[name]}")
                del stats[name]
                continue
            runs = f" (runs: {', '.join(map(str, s['walls']))} s)" if args.repeat > 1 else ""
            print(f"{name}: {s['wall_s']:.1f} s{runs}, peak {s['peak_mb']:.0f} MB", flush=True)
            if "per_token_s" in s:
                print(f"  per token (s): {s['per_token_s']}")

        grid = np.unique(np.r_[alphas, fixed])
        ref = reference(folder, grid, ref_cols)
        ours_pred = np.load(folder / "pred_ours.npy") if "ours" in stats else None
        ours_alpha = on_grid(np.load(folder / "alpha_ours.npy"), grid) if "ours" in stats else None
        for name, s in stats.items():
            pred = np.load(folder / f"pred_{name}.npy")
            alpha = on_grid(np.load(folder / f"alpha_{name}.npy"), grid)
            cols = pred.shape[1]
            exact = np.stack([ref[float(a)][:, j] for j, a in enumerate(alpha[:ref_cols])], 1)
            s["vs_ref"] = float(np.abs(pred[:, :ref_cols] - exact[:, : min(cols, ref_cols)]).max())
            if ours_pred is not None:
                s["vs_ours"] = float(np.abs(pred - ours_pred[:, :cols]).max())
                same = alpha == ours_alpha[:cols]
                s["same_alpha"] = float(same.mean())
                s["vs_ours_same_alpha"] = (
                    float(np.abs(pred - ours_pred[:, :cols])[:, same].max()) if same.any() else None
                )
        scale_pred = float(np.abs(next(iter(ref.values()))).max())
        print_table(stats, reasons, scale_pred, ref_cols, k, T)
        print(f"load average at end {os.getloadavg()[0]:.1f}")
        print(summary(stats, reasons, n, p, T, t, len(alphas), device, k, args.threads))


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_table(stats: dict, reasons: dict, scale: float, ref_cols: int, k: int, T: int) -> None:
    """Markdown table: one row per implementation."""
    o = stats.get("ours")
    t_ratio = {k: s["wall_s"] / o["wall_s"] if o else None for k, s in stats.items()}
    m_ratio = {k: s["peak_mb"] / o["peak_mb"] if o else None for k, s in stats.items()}
    head = (
        "| implementation | wall s | vs ours (time) | peak MB | working MB | vs ours (peak) "
        "| GPU MB | max abs diff vs ours | same alpha as ours | ... on those targets "
        "| max abs diff vs sklearn Ridge at its alphas |"
    )
    print(f"\npredictions up to |{scale:.2f}|; exactness on the first {ref_cols} targets\n")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, s in stats.items():
        label = name
        if "extrapolated_s" in s:
            label += f" (timed {k} of {T} tokens, median x {T}; memory + untimed coefs)"
        print(
            f"| {label} | {s['wall_s']:.1f} | {_f(t_ratio[name], '.2f')} | {s['peak_mb']:.0f} "
            f"| {s['peak_mb'] - s['base_mb']:.0f} | {_f(m_ratio[name], '.2f')} "
            f"| {_f(s.get('gpu_mb'), '.0f')} | {_f(s.get('vs_ours'), '.2e')} "
            f"| {_f(s.get('same_alpha'), '.1%')} | {_f(s.get('vs_ours_same_alpha'), '.2e')} "
            f"| {s['vs_ref']:.2e} |"
        )
    for name, why in reasons.items():
        print(f"| {name} | {why} |" + " |" * 9)
    print()


def summary(
    stats: dict,
    reasons: dict,
    n: int,
    p: int,
    T: int,
    t: int,
    L: int,
    device: str,
    k: int,
    threads: int,
) -> str:
    """The one-line summary of the figures, printed last."""
    o = stats.get("ours")
    if o is None:
        return "ridge bench: ours did not run"

    def mem(s: dict) -> str:
        work = (s["peak_mb"] - s["base_mb"]) / (o["peak_mb"] - o["base_mb"])
        return f"x{s['peak_mb'] / o['peak_mb']:.2f} peak, x{work:.2f} working"

    parts = [
        f"ridge bench: n={n} p={p} d={T}x{t} L={L} {FOLDS}-fold, {os.cpu_count()} cores "
        f"({threads} threads), {device}"
        f" | ours {o['wall_s']:.1f} s {o['peak_mb']:.0f} MB, exact to {o['vs_ref']:.1e}"
    ]
    goals = []
    loop = stats.get("sklearn-loop")
    if loop:
        x = loop["wall_s"] / o["wall_s"]
        parts.append(
            f"sklearn per-token loop (1 alpha, no CV; {k}/{T} tokens timed, median x {T}) "
            f"{loop['wall_s']:.1f} s: x{x:.1f} speed-up, memory {mem(loop)}"
        )
        goals.append(f">=10x vs loop {'met' if x >= 10 else 'NOT met'} (x{x:.1f})")
    hm = [v for v in ("himalaya-KernelRidgeCV", "himalaya-RidgeCV") if v in stats]
    for name in hm:
        h = stats[name]
        x = h["wall_s"] / o["wall_s"]
        parts.append(
            f"{name} {h['wall_s']:.1f} s: x{x:.2f}, memory {mem(h)}, "
            f"max diff {h['vs_ours']:.1e} (same alpha {h['same_alpha']:.1%}, "
            f"{_f(h['vs_ours_same_alpha'], '.1e')} there)"
        )
    if hm:
        best = min(stats[v]["wall_s"] for v in hm)
        goals.append(f"no slower than himalaya {'met' if o['wall_s'] <= best else 'NOT met'}")
    else:
        why = "; ".join(r for v, r in reasons.items() if "himalaya" in v) or "not requested"
        goals.append(f"himalaya {why}")
    sk = stats.get("sklearn-RidgeCV")
    if sk:
        parts.append(
            f"sklearn RidgeCV (LOO, float64) {sk['wall_s']:.1f} s: "
            f"x{sk['wall_s'] / o['wall_s']:.1f}, memory {mem(sk)}"
        )
    return " | ".join(parts + ["goals: " + "; ".join(goals)])


if __name__ == "__main__":
    main()
