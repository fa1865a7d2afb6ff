"""Mappers: voxels (n, p) -> embedding targets (n, d).

``ridge.RidgeCV`` is the closed-form baseline (``fit(X, Y)``, ``predict(X)``, ``save``,
``load``; alpha chosen on the training rows only). The seed papers' networks
(``nets``) are trained by ``zoo`` through ``training`` (phases, early stopping on a
validation split of the training images, resumable checkpoints); ``fusion`` combines
several mappers. Kept free of torch imports: the Snakefile reads ``TRAINABLE`` at parse time.
"""

#: the mappers trained by rule fit (ridge, fusion and truth have rules of their own)
TRAINABLE = ("brainclip_linear", "brainclip_vae", "mindreader_cnn", "brain2word_ae", "gru")
