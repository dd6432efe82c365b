"""Stage 1, everything about a transformation.

- :mod:`.spec` — set specs (data in :mod:`.specs`, one TOML table per set): op, suite, severities.
- :mod:`.reference` — the reference ops (numpy / imgaug semantics), ``op(image, *, seed, **params)``.
- :mod:`.batched` — their batched torch twins, for corrupting on the fly on the scoring device.
- :mod:`.stage` — :func:`~robusteval.corrupt.stage.run_corrupt`: images → the corrupted tree.
- :mod:`.trees` — reading our trees (via their manifests) and released ImageNet-C trees.
"""
