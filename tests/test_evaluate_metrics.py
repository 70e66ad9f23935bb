"""The evaluation metrics on known inputs: real photos with dlib, a faceless picture, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceid_cli.evaluate.metrics import bootstrap_mean, face_similarity, reference_embedding, summarise
from faceid_cli.images import load_image


def test_a_photo_against_itself_scores_one(faces_dir, dlib_analyzer):
    photo = load_image(faces_dir / "obama.jpg")
    reference = reference_embedding(dlib_analyzer, photo)
    assert face_similarity(dlib_analyzer, photo, reference) == pytest.approx(1.0, abs=1e-5)


def test_same_person_pairs_score_above_cross_pairs(faces_dir, dlib_analyzer):
    people = {"obama": ("obama.jpg", "obama2.jpg"), "biden": ("biden.jpg", "biden2.jpg"),
              "kit": ("kit_harington1.jpeg", "kit_harington2.jpeg")}
    refs = {name: reference_embedding(dlib_analyzer, load_image(faces_dir / files[0])) for name, files in people.items()}
    same, cross = [], []
    for name, files in people.items():
        other = load_image(faces_dir / files[1])
        for ref_name, ref in refs.items():
            (same if ref_name == name else cross).append(face_similarity(dlib_analyzer, other, ref))
    assert min(same) > max(cross)


def test_an_image_without_a_face_counts_in_the_no_face_rate(faces_dir, dlib_analyzer):
    reference = reference_embedding(dlib_analyzer, load_image(faces_dir / "obama.jpg"))
    wall = Image.new("RGB", (256, 256), (128, 128, 128))
    assert face_similarity(dlib_analyzer, wall, reference) is None
    rows = [{"method": "m2", "face_similarity": 0.8, "text_alignment": 0.3},
            {"method": "m2", "face_similarity": None, "text_alignment": 0.2},
            {"method": "none", "face_similarity": 0.1, "text_alignment": 0.25}]
    table = {entry["method"]: entry for entry in summarise(rows, "method")}
    assert table["m2"]["no_face_rate"] == 0.5 and table["m2"]["images"] == 2
    assert table["m2"]["face_similarity"]["mean"] == pytest.approx(0.8)
    assert table["m2"]["face_similarity_strict"]["mean"] == pytest.approx(0.4)
    assert table["m2"]["text_alignment"]["mean"] == pytest.approx(0.25)
    assert table["none"]["no_face_rate"] == 0.0


def test_bootstrap_intervals_cover_the_mean_and_shrink_with_more_data():
    rng = np.random.default_rng(0)
    small = rng.normal(0.5, 0.1, 20)
    large = rng.normal(0.5, 0.1, 2000)
    mean, low, high = bootstrap_mean(small)
    assert low < mean < high and mean == pytest.approx(small.mean())
    _, low_l, high_l = bootstrap_mean(large)
    assert high_l - low_l < (high - low) / 5
    assert bootstrap_mean(small, seed=3) == bootstrap_mean(small, seed=3)
    assert np.isnan(bootstrap_mean([])[0]) and bootstrap_mean([0.7]) == (0.7, 0.7, 0.7)


def test_reports_write_the_table_csv_json_scores_and_plot(tmp_path):
    import csv
    import json

    from faceid_cli.evaluate.report import scatter_plot, table_rows, write_reports

    rng = np.random.default_rng(1)
    rows = [{"method": method, "face_similarity": None if i == 0 and method == "m2" else float(rng.uniform(*span)),
             "text_alignment": float(rng.uniform(0.2, 0.3)), "prompt": "S* as a chef", "seed": i}
            for method, span in (("m2", (0.5, 0.8)), ("none", (0.0, 0.2))) for i in range(10)]
    summary = summarise(rows, "method")
    paths = write_reports(tmp_path, rows, {"method": summary}, "method")
    assert len(paths["scores"].read_text().splitlines()) == 20
    table = list(csv.DictReader(paths["csv"].open()))
    assert [r["method"] for r in table] == ["m2", "none"] and float(table[0]["no_face_rate"]) == pytest.approx(0.1)
    assert json.loads(paths["json"].read_text())["method"][1]["images"] == 10
    printed = table_rows(summary, "method")
    assert printed[0][0] == "m2" and "[" in printed[0][2] and printed[0][4] == "0.100"
    plot = scatter_plot(rows, "method", tmp_path / "scatter.png")
    pixels = np.asarray(Image.open(plot))
    red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum()
    blue = ((pixels[..., 2] > 180) & (pixels[..., 0] < 80)).sum()
    assert red > 50 and blue > 50  # both methods' points and means are drawn


def test_the_people_of_faces_with_and_without_fuse_folders(tmp_path):
    """Without --fuse-folders every photo is a person; with it a folder of photos is one person
    (its subfolders' photos too) and a folder of folders a person per folder (hidden ones skipped)."""
    from PIL import Image

    from faceid_cli.errors import InvalidArgumentError
    from faceid_cli.evaluate.run import Reference, references_from

    def photo(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)
        return str(path)

    ann = [photo(tmp_path / "people" / "ann" / "1.png"), photo(tmp_path / "people" / "ann" / "old" / "2.jpg")]
    bo = [photo(tmp_path / "people" / "bo" / "a.png")]
    (tmp_path / "people" / ".thumbnails").mkdir()
    (tmp_path / "people" / "ann" / "notes.txt").write_text("not a photo")
    single = photo(tmp_path / "solo.png")

    assert references_from([tmp_path / "people", single]) == [Reference.of(p) for p in [*ann, *bo, single]]
    fused = references_from([tmp_path / "people", single], fuse_folders=True)
    assert fused == [Reference(tuple(ann), str(tmp_path / "people" / "ann")),
                     Reference(tuple(bo), str(tmp_path / "people" / "bo")), Reference.of(single)]
    assert [person.stem for person in fused] == ["ann", "bo", "solo"]
    # the person's own folder names the same person; a repeat is one person
    assert references_from([tmp_path / "people" / "ann", tmp_path / "people"], fuse_folders=True) == fused[:2]
    (tmp_path / "people" / "cy").mkdir()
    with pytest.raises(InvalidArgumentError, match="cy' holds no photo"):
        references_from([tmp_path / "people"], fuse_folders=True)


def test_a_person_of_several_photos_is_shown_as_a_mosaic():
    from PIL import Image

    from faceid_cli.contact_sheet import mosaic

    red, green, blue = (Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255)))
    assert mosaic([red]) is red
    cell = mosaic([red, green, blue], side=64)
    assert cell.size == (64, 64)
    assert cell.getpixel((16, 16)) == (255, 0, 0) and cell.getpixel((48, 16)) == (0, 255, 0)
    assert cell.getpixel((16, 48)) == (0, 0, 255) and cell.getpixel((48, 48)) == (255, 255, 255)
