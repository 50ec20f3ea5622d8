"""Model implementations behind the builtin model plugins (registered in :mod:`cifarbudget.builtin.models`).

Every model takes a normalised ``(N, 3, 32, 32)`` float batch and returns ``(N, num_classes)``
logits. Parameter counts are pinned by tests (tests/test_models.py).
"""
