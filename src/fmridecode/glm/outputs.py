"""Files of the glm stage: betas per type, voxel maps, a summary and diagnostic figures.

Per subject and session (see README, "Outputs"):
``betas_type-{B,C,D}.nii.gz`` (X, Y, Z, trials) % BOLD, 0 outside the mask;
``maps.nii.gz`` (X, Y, Z, k), its volumes named in ``summary.json`` (``maps``): mean volume,
on-off beta, R2 of each type, HRF index, ridge fraction, noise pool, PC voxels, scale, offset;
``summary.json``: PC count, cross-validation curve, thresholds, HRF peaks, options;
``figures/``: R2 maps, HRF index map, PC cross-validation curve, ridge fraction map.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from fmridecode.glm.fit import SessionFit  # noqa: E402
from fmridecode.glm.single import GLMOptions  # noqa: E402
from fmridecode.io import DataError, atomic_dir, read_json, save_nifti, write_json  # noqa: E402


def volume(fit: SessionFit, values: np.ndarray) -> np.ndarray:
    """(V, ...) voxel values -> (X, Y, Z, ...) float32, 0 outside the mask."""
    values = np.asarray(values, dtype=np.float32)
    out = np.zeros((*fit.mask.shape, *values.shape[1:]), np.float32)
    out[fit.mask] = values
    return out


def image(fit: SessionFit, values: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(volume(fit, values), fit.affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(fit.affine, code=1)
    img.set_sform(fit.affine, code=1)
    return img


def maps(fit: SessionFit) -> dict[str, np.ndarray]:
    """Named per-voxel maps (V,) of everything the fit produced."""
    res = fit.result
    out = {"meanvol": res.mean}
    if res.onoff_beta is not None:
        out["onoff_beta"] = res.onoff_beta
    out |= {f"R2_{t}": r for t, r in sorted(res.r2.items())}
    optional = {
        "hrf_index": res.hrf_index,
        "frac": res.frac,
        "noise_pool": res.noise_pool,
        "pc_voxels": res.pc_voxels,
    }
    out |= {k: v for k, v in optional.items() if v is not None}
    if res.scale_offset is not None:
        out["scale"], out["offset"] = res.scale_offset[:, 0], res.scale_offset[:, 1]
    return out


def summary(fit: SessionFit, opts: GLMOptions, names: list[str]) -> dict[str, Any]:
    res = fit.result
    return {
        "maps": names,
        "types": sorted(res.betas),
        "n_trials": len(fit.trials),
        "n_voxels": int(fit.mask.sum()),
        "pcnum": res.pcnum,
        "xvaltrend": None if res.xvaltrend is None else [float(v) for v in res.xvaltrend],
        "brainR2": res.brain_r2,
        "pcR2cutoff": res.pc_r2_cutoff,
        "noise_pool_size": None if res.noise_pool is None else int(res.noise_pool.sum()),
        "hrf_peaks_s": [float(h.peak_s) for h in res.hrfs],
        "poly_degrees": res.poly_degrees,
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k != "hrfs"},
    }


def _mosaic(vol: np.ndarray) -> np.ndarray:
    """Axial slices of a 3D volume side by side (rows of up to 8)."""
    nz = vol.shape[2]
    cols = min(8, nz)
    rows = -(-nz // cols)
    tile = np.full((rows * vol.shape[1], cols * vol.shape[0]), np.nan, np.float32)
    for z in range(nz):
        r, c = divmod(z, cols)
        tile[
            r * vol.shape[1] : (r + 1) * vol.shape[1], c * vol.shape[0] : (c + 1) * vol.shape[0]
        ] = vol[:, ::-1, z].T
    return tile


def save_mosaic(
    vol: np.ndarray, path: str | Path, title: str, cmap: str, vmin=None, vmax=None
) -> None:
    """A PNG of a 3D map's axial slices side by side, with a colour bar (NaN: not drawn)."""
    fig, ax = plt.subplots(figsize=(8, 3))
    im = ax.imshow(_mosaic(vol), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_axis_off()
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def figures(fit: SessionFit, out_dir: Path) -> list[str]:
    """Diagnostic PNGs; returns their file names."""
    res = fit.result
    written = []
    nan_out = np.where(fit.mask, 1.0, np.nan)

    def show(name: str, vol: np.ndarray, title: str, cmap: str, vmin=None, vmax=None) -> None:
        save_mosaic(vol * nan_out, out_dir / name, title, cmap, vmin, vmax)
        written.append(name)

    for t, r2 in sorted(res.r2.items()):
        show(f"R2_type-{t}.png", volume(fit, r2), f"R2 (%), type {t}", "hot", 0, None)
    if res.hrf_index is not None and len(res.hrfs) > 1:
        show(
            "hrf_index.png",
            volume(fit, res.hrf_index),
            "HRF index (library)",
            "jet",
            0,
            len(res.hrfs) - 1,
        )
    if res.frac is not None:
        show("frac.png", volume(fit, res.frac), "ridge fraction (type D)", "copper", 0, 1)
    if res.xvaltrend is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(range(len(res.xvaltrend)), res.xvaltrend, "o-")
        ax.scatter(
            [res.pcnum], [res.xvaltrend[res.pcnum]], s=120, facecolors="none", edgecolors="r"
        )
        ax.set_xlabel("number of GLMdenoise PCs")
        ax.set_ylabel("cross-validated performance (higher is better)")
        ax.set_title(f"chosen: {res.pcnum} PCs")
        fig.savefig(out_dir / "xvaltrend.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append("xvaltrend.png")
    return written


def write_outputs(
    fit: SessionFit,
    opts: GLMOptions,
    betas: dict[str, str],
    maps_path: str,
    summary_path: str,
    figures_dir: str,
) -> None:
    """Write the requested types' betas, the maps, the summary and the figures."""
    res = fit.result
    for t, path in betas.items():
        save_nifti(image(fit, res.betas[t].T), path)
    named = maps(fit)
    save_nifti(image(fit, np.stack(list(named.values()), axis=1)), maps_path)
    write_json(summary(fit, opts, list(named)), summary_path)
    with atomic_dir(figures_dir) as tmp:
        figures(fit, Path(tmp))


def read_map(maps_path: str | Path, summary_path: str | Path, name: str) -> np.ndarray:
    """One named volume (X, Y, Z) of a session's ``maps.nii.gz``; the names are in its
    ``summary.json`` (``maps``), e.g. ``R2_C`` or ``hrf_index``."""
    names = read_json(summary_path).get("maps", [])
    if name not in names:
        raise DataError(f"{summary_path}: no map named {name!r} (maps: {names})")
    img = nib.load(maps_path)
    if img.ndim != 4 or img.shape[3] != len(names):
        raise DataError(f"{maps_path}: {img.shape} does not hold the {len(names)} maps named")
    return np.asarray(img.dataobj[..., names.index(name)], dtype=np.float32)


def r2_per_roi(
    sessions: list[tuple[str | Path, str | Path]], masks: dict[str, nib.Nifti1Image]
) -> list[dict[str, Any]]:
    """GLM quality per ROI: for every type's R2 map (``R2_A`` ... ``R2_D``), the per-voxel R2
    averaged over the sessions (``(maps, summary)`` paths), and its median over the voxels of
    each mask; rows ``roi, glm_type, value, n`` (n = voxels)."""
    names = read_json(sessions[0][1]).get("maps", [])
    types = [n.removeprefix("R2_") for n in names if n.startswith("R2_")]
    rows = []
    for t in types:
        mean = np.mean([read_map(m, s, f"R2_{t}") for m, s in sessions], axis=0)
        for roi, mask in masks.items():
            inside = np.asarray(mask.dataobj) > 0
            if inside.shape != mean.shape:
                raise DataError(
                    f"ROI {roi}: grid {inside.shape} differs from the maps' {mean.shape}"
                )
            vals = mean[inside]
            rows.append(
                {"roi": roi, "glm_type": t, "value": float(np.median(vals)), "n": int(vals.size)}
            )
    return rows
