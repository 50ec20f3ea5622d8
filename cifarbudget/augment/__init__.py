"""Training-time augmentation: the pipeline machinery (:mod:`.pipeline`) and the builtin batched
augmentations (:mod:`.batch`), registered as plugins in :mod:`cifarbudget.builtin.augmentations`."""
