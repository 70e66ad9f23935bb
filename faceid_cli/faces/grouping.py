"""Many faces at once: the matrix of their identity similarities, and who is the same person."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def similarity_matrix(embeddings: Sequence) -> np.ndarray:
    """Cosine similarity of every pair of identity embeddings (float64, ones on the diagonal)."""
    vectors = np.stack([np.asarray(e, dtype=np.float64).ravel() for e in embeddings])
    units = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    matrix = np.clip(units @ units.T, -1.0, 1.0)
    np.fill_diagonal(matrix, 1.0)
    return matrix


def group_by_person(matrix: np.ndarray, threshold: float) -> list[list[int]]:
    """Indices of the faces grouped into people, by average linkage at ``threshold``.

    Two groups join while the mean similarity across them is at least the backend's same-person
    threshold. Average linkage rather than single: one look-alike pair must not chain two people
    into one. Groups are ordered by their first face; each lists its faces in order.
    """
    count = len(matrix)
    if count < 2:
        return [[i] for i in range(count)]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distances = np.clip(1.0 - np.asarray(matrix, dtype=np.float64), 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    distances = (distances + distances.T) / 2
    labels = fcluster(linkage(squareform(distances, checks=False), method="average"),
                      t=1.0 - threshold, criterion="distance")
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    return sorted(groups.values(), key=lambda members: members[0])


def least_alike_pair(matrix: np.ndarray, members: Sequence[int]) -> tuple[int, int, float] | None:
    """The two faces of ``members`` least alike, and their similarity (None for a single face)."""
    if len(members) < 2:
        return None
    members = list(members)
    sub = np.asarray(matrix)[np.ix_(members, members)].copy()
    np.fill_diagonal(sub, np.inf)
    first, second = np.unravel_index(int(np.argmin(sub)), sub.shape)
    first, second = sorted((int(first), int(second)))
    return members[first], members[second], float(sub[first, second])
