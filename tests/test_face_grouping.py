"""Grouping faces into people from their similarity matrix (``faceid compare`` with many photos)."""

from __future__ import annotations

import numpy as np
import pytest

from faceid_cli.faces.grouping import group_by_person, least_alike_pair, similarity_matrix


def test_similarity_matrix_is_the_cosine_of_every_pair():
    embeddings = [np.array([1.0, 0.0]), np.array([3.0, 3.0]), np.array([0.0, -2.0])]
    matrix = similarity_matrix(embeddings)
    assert matrix == pytest.approx(np.array([[1, 2 ** -0.5, 0], [2 ** -0.5, 1, -(2 ** -0.5)], [0, -(2 ** -0.5), 1]]))


def test_average_linkage_does_not_chain_two_people_through_a_look_alike():
    # A~B and B~C, but A and C are far apart: single linkage would make one person of all three
    matrix = np.array([[1.0, 0.96, 0.50],
                       [0.96, 1.0, 0.95],
                       [0.50, 0.95, 1.0]])
    assert group_by_person(matrix, 0.9) == [[0, 1], [2]]
    # ... and with C close to both, the three are one person
    matrix[0, 2] = matrix[2, 0] = 0.93
    assert group_by_person(matrix, 0.9) == [[0, 1, 2]]


def test_groups_are_ordered_by_their_first_face_and_the_threshold_is_inclusive():
    matrix = np.array([[1.0, 0.2, 0.9, 0.1],
                       [0.2, 1.0, 0.3, 0.9],
                       [0.9, 0.3, 1.0, 0.2],
                       [0.1, 0.9, 0.2, 1.0]])
    assert group_by_person(matrix, 0.9) == [[0, 2], [1, 3]]
    assert group_by_person(matrix, 0.91) == [[0], [1], [2], [3]]
    assert group_by_person(np.ones((1, 1)), 0.9) == [[0]]


def test_least_alike_pair_names_the_pair_within_the_members():
    matrix = np.array([[1.0, 0.95, 0.92, 0.1],
                       [0.95, 1.0, 0.97, 0.2],
                       [0.92, 0.97, 1.0, 0.3],
                       [0.1, 0.2, 0.3, 1.0]])
    assert least_alike_pair(matrix, [0, 1, 2]) == (0, 2, 0.92)
    assert least_alike_pair(matrix, [3]) is None
