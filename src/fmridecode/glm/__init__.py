"""glm stage: single-trial betas (per-voxel HRF from a library + Legendre drift per run).

Modules: ``hrf`` (canonical HRF and library), ``design`` (single-trial design matrices),
``fit`` (least-squares fit, HRF choice, % signal change; ``fit_session`` for BIDS runs).
"""

from fmridecode.glm.fit import GLMResult, fit_session, fit_single_trial
from fmridecode.glm.hrf import HRF, canonical, library

__all__ = ["GLMResult", "HRF", "canonical", "fit_session", "fit_single_trial", "library"]
