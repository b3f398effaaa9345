"""Class names and their order: index 0 is ``ai``, index 1 is ``real``, everywhere."""

from typing import Final

AI: Final = "ai"
REAL: Final = "real"
CLASSES: Final[tuple[str, ...]] = (AI, REAL)


def class_index(name: str, classes: tuple[str, ...] | list[str] = CLASSES) -> int:
    """Index of ``name`` in ``classes``, with an error that lists the valid names."""
    try:
        return list(classes).index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; expected one of {list(classes)}") from None
