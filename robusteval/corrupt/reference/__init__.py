"""Image transformations (ops) and the set specs that ladder them into severities.

An *op* is a pure function registered in :data:`OPS`: ``op(image, *, seed, **params) -> image``
on uint8 HWC RGB. A *set spec* (data in the top-level ``transforms/`` folder) names an op and
its parameters per severity level; :func:`robusteval.corrupt.spec.load_specs` reads them.
"""

from robusteval.registry import Registry

OPS: Registry = Registry("transform op", list_command="robusteval list transforms")


def load_ops() -> None:
    """Import every op module so its ``@OPS.register`` decorators run (imgaug is heavy: lazily)."""
    import importlib

    for mod in _OP_MODULES:
        importlib.import_module(mod)


# One line per op module; each module registers its ops when imported.
_OP_MODULES: list[str] = [
    "robusteval.corrupt.reference.study",
    "robusteval.corrupt.reference.parametric",
    "robusteval.corrupt.reference.imagenet_c",
]
