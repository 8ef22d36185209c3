"""The inclusion predicates' vocabulary (docs/CONTRACT.md §5). No dependencies beyond
the error types, so the kernel can check a predicate without loading pyarrow."""

from __future__ import annotations

from tileindex.errors import InclusionRuleError

__all__ = ["PREDICATES", "check_predicate"]

PREDICATES = ("center", "any_overlap", "within")


def check_predicate(predicate: str) -> str:
    """``predicate`` if it is one of :data:`PREDICATES`, else E008_INCLUSION_RULE."""
    if predicate not in PREDICATES:
        raise InclusionRuleError(
            f"unknown predicate {predicate!r}; valid predicates are {', '.join(PREDICATES)}"
        )
    return predicate
