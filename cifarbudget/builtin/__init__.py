"""The builtin plugins: models, augmentations, schedulers, TTA policies, datasets and recipes.

Each module implements the same ``cifarbudget_register_*`` hooks a third-party plugin would.
"""
