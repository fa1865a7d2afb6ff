"""fmridecode: the library behind the fMRI image-decoding Snakemake workflow.

Sub-packages mirror the workflow's stages: ``datasets`` (BIDS reader, synthetic simulator),
``glm`` (single-trial betas), ``roi`` (voxel matrices), ``embeddings`` (CLIP caches),
``mappers`` (voxels -> embeddings), ``generators`` (diffusion reconstruction), ``metrics``
and ``report``. Everything here is testable without Snakemake.
"""

__version__ = "0.1.0"
