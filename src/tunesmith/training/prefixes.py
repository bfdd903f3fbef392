"""Records that begin with the same tokens: which share a prefix, and how much of the data that is.

Chat data repeats itself at the front: every record of a dataset usually starts with the
same template header and system prompt. Training computes such a prefix once per group of
records (``shared_loss.py``); this module decides the groups and measures the share.

Pure Python over token ids, no torch: ``tunesmith validate --tokens`` uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_SHARED_TOKENS = 8
"""A shorter common prefix is not worth a separate forward pass."""


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass(frozen=True)
class PrefixGroup:
    """Records (indices) whose first ``shared`` tokens are identical and computed once.

    ``shared`` is 0 for a record computed on its own. It is always shorter than the
    shortest record of the group, so every record keeps at least one token of its own.
    """

    indices: list[int]
    shared: int

    @property
    def saved_tokens(self) -> int:
        """Token positions not recomputed: every record but one skips the shared prefix."""
        return self.shared * (len(self.indices) - 1)


def prefix_groups(token_ids: Sequence[Sequence[int]], indices: Sequence[int], minimum: int = MIN_SHARED_TOKENS) -> list[PrefixGroup]:
    """Split ``indices`` (records of ``token_ids``) into groups sharing a prefix of at least
    ``minimum`` tokens; the rest are singletons with ``shared`` 0. Greedy over the records in
    token order, where records with a common prefix sit next to each other; the order of the
    indices inside a group follows the order given (so batches stay deterministic)."""
    position = {index: n for n, index in enumerate(indices)}
    ordered = sorted(indices, key=lambda i: (list(token_ids[i]), position[i]))
    groups: list[PrefixGroup] = []
    members: list[int] = []
    shared = 0

    def close() -> None:
        if members:
            kept = sorted(members, key=position.__getitem__)
            groups.append(PrefixGroup(kept, shared if len(kept) > 1 else 0))

    for index in ordered:
        if members:
            longest = min(len(token_ids[index]), *(len(token_ids[i]) for i in members)) - 1
            candidate = min(shared if len(members) > 1 else 1 << 60, common_prefix_length(token_ids[members[-1]], token_ids[index]), longest)
            if candidate >= minimum:
                members.append(index)
                shared = candidate
                continue
            close()
        members, shared = [index], 0
    close()
    return sorted(groups, key=lambda g: position[g.indices[0]])


def shared_prefix_share(token_ids: Sequence[Sequence[int]], minimum: int = MIN_SHARED_TOKENS) -> float:
    """The share of all tokens that sit in a prefix some other record begins with too (at
    least ``minimum`` tokens long): the most that computing shared prefixes once can save
    when such records train together."""
    total = sum(len(ids) for ids in token_ids)
    if not total:
        return 0.0
    ordered = sorted(token_ids, key=list)
    shared = 0
    for n, ids in enumerate(ordered):
        before = common_prefix_length(ordered[n - 1], ids) if n else 0
        after = common_prefix_length(ids, ordered[n + 1]) if n + 1 < len(ordered) else 0
        longest = min(max(before, after), len(ids) - 1)
        shared += longest if longest >= minimum else 0
    return shared / total
