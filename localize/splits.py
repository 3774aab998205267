"""Training splits: which generators a model trains on.

Names come from the indexed data, never from code:
- `<g>`: train on generator g alone (the in-domain column of the table);
- `no-<g>`: train on every other generator (g is held out: the generalization column);
- `all`: every generator pooled.
`train.source` is one split name, or `table` for every single and leave-one-out split.
"""

from __future__ import annotations

TABLE = "table"


def training_splits(generators: list[str]) -> dict[str, list[str]]:
    gens = sorted(generators)
    splits = {g: [g] for g in gens}
    if len(gens) > 1:
        splits.update({f"no-{g}": [h for h in gens if h != g] for g in gens})
    splits["all"] = gens
    return splits


def resolve_source(source: str, generators: list[str]) -> dict[str, list[str]]:
    """The splits that `train.source` asks for, in a stable order; a clear error otherwise."""
    splits = training_splits(generators)
    if source == TABLE:
        return {name: gens for name, gens in splits.items() if name != "all"}
    if source not in splits:
        valid = [TABLE, *splits]
        raise ValueError(
            f"unknown train.source {source!r} for this data (generators: {', '.join(sorted(generators))}); "
            f"valid values: {', '.join(valid)}"
        )
    return {source: splits[source]}


def held_out(split: str, generators: list[str]) -> str | None:
    """The generator a leave-one-out split never saw, else None."""
    if split.startswith("no-") and split[3:] in generators:
        return split[3:]
    return None
