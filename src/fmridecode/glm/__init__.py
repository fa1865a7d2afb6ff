"""glm stage: single-trial betas by the GLMsingle method (types A-D).

Modules: ``hrf`` (GLMsingle's HRF tables, double gammas), ``design`` (single-trial design
matrices, onset modes), ``single`` (the method: on-off, library HRF, GLMdenoise, fractional
ridge), ``denoise`` (noise pool, PCs, thresholds), ``ridge`` (fractional ridge), ``xval``
(leave-one-run-out cross-validation of betas), ``fit`` (entry points for arrays and BIDS runs),
``outputs`` (files and figures), ``official`` (the official package, when installed).
"""

from fmridecode.glm.fit import SessionFit, fit_runs, fit_session
from fmridecode.glm.hrf import HRF, SampledHRF, canonical, library
from fmridecode.glm.single import GLMOptions, GLMSingleResult

__all__ = [
    "GLMOptions",
    "GLMSingleResult",
    "HRF",
    "SampledHRF",
    "SessionFit",
    "canonical",
    "fit_runs",
    "fit_session",
    "library",
]
