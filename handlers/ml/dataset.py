"""The training table: named columns of plain Python values, each with a declared kind.

Why not a DataFrame: the rows come from JSON events, the checks are a handful of passes over each column,
and the training function turns the columns into whatever its library wants. A frozen mapping of tuples is
enough, keeps the dependency list short and makes a dataset a value that a test can build in one line.
Missing values are ``None`` in every kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Sequence

KINDS = ("text", "categorical", "numeric", "boolean")


@dataclass(frozen=True)
class Dataset:
    """Columns of equal length; ``kinds[name]`` is one of :data:`KINDS`."""

    columns: Mapping[str, tuple[Any, ...]]
    kinds: Mapping[str, str]

    def __post_init__(self) -> None:
        lengths = {len(values) for values in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        missing = set(self.columns) ^ set(self.kinds)
        if missing:
            raise ValueError(f"columns and kinds disagree on {sorted(missing)}")
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))
        object.__setattr__(self, "kinds", MappingProxyType(dict(self.kinds)))

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], kinds: Mapping[str, str]) -> "Dataset":
        rows = list(rows)
        return cls({name: tuple(row.get(name) for row in rows) for name in kinds}, kinds)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def column(self, name: str) -> tuple[Any, ...]:
        return self.columns[name]

    def rows(self) -> Iterator[dict[str, Any]]:
        names = list(self.columns)
        for values in zip(*(self.columns[n] for n in names)):
            yield dict(zip(names, values))

    def take(self, indices: Sequence[int]) -> "Dataset":
        return Dataset({name: tuple(values[i] for i in indices) for name, values in self.columns.items()},
                       self.kinds)

    def where_present(self, name: str) -> "Dataset":
        """The rows whose ``name`` is not missing (training drops rows without a label)."""
        return self.take([i for i, value in enumerate(self.columns[name]) if value is not None])
