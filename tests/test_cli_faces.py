"""`faceid detect` and `faceid compare` through the CLI: outputs, schemas, exit codes, errors."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

from .helpers import assert_one_line_error, parse_json, run_cli
from .onnx_models import build_pack

SAME = [("obama.jpg", "obama2.jpg"), ("obama3.jpg", "32bit.png"), ("biden.jpg", "biden2.jpg"),
        ("alex-lacamoire.png", "alex_lacamoire1.jpg"), ("rose_leslie1.jpg", "rose_leslie2.jpg"),
        ("kit_harington1.jpeg", "kit_harington2.jpeg")]
DIFFERENT = [("obama.jpg", "biden.jpg"), ("biden2.jpg", "alex_lacamoire2.jpg"),
             ("rose_leslie1.jpg", "kit_harington1.jpeg"), ("obama2.jpg", "rose_leslie2.jpg"),
             ("alex_lacamoire1.jpg", "kit_harington2.jpeg")]


def _check_detect_schema(document):
    assert set(document) >= {"images", "backend"}
    assert isinstance(document["backend"], str)
    for image in document["images"]:
        assert isinstance(image["path"], str)
        for face in image["faces"]:
            assert len(face["bbox"]) == 4 and all(isinstance(v, float) for v in face["bbox"])
            assert isinstance(face["score"], float)
            assert len(face["landmarks"]) == 5
            assert all(len(point) == 2 for point in face["landmarks"])


def test_detect_json(faces_dir):
    result = run_cli("detect", faces_dir / "two_people.jpg", faces_dir / "obama.jpg", "--json")
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    _check_detect_schema(document)
    assert document["backend"] == "dlib"
    counts = [len(image["faces"]) for image in document["images"]]
    assert counts == [2, 1]
    assert [face["index"] for face in document["images"][0]["faces"]] == [0, 1]
    assert document["images"][0]["width"] == 800
    assert result.stderr == ""


def test_detect_table_names_the_backend_on_stderr(faces_dir):
    result = run_cli("detect", faces_dir / "kit_with_rose.jpg")
    assert result.exit_code == 0
    assert "kit_with_rose.jpg" in result.stdout and "score" in result.stdout
    assert "face backend: dlib" in result.stderr


def test_detect_saves_aligned_crops(faces_dir, tmp_path):
    out = tmp_path / "crops"
    result = run_cli("detect", faces_dir / "two_people.jpg", faces_dir / "obama.jpg",
                     "--save-crops", out, "--crop-size", "224", "--json")
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["obama_face0.png", "two_people_face0.png", "two_people_face1.png"]
    for path in out.iterdir():
        with Image.open(path) as crop:
            assert crop.size == (224, 224)
    crop_paths = [face["crop"] for image in parse_json(result)["images"] for face in image["faces"]]
    assert sorted(crop_paths) == sorted(str(out / name) for name in names)


def test_detect_same_stem_in_two_folders_does_not_overwrite(faces_dir, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(faces_dir / "obama.jpg", tmp_path / "a" / "face.jpg")
    shutil.copy(faces_dir / "biden.jpg", tmp_path / "b" / "face.jpg")
    out = tmp_path / "crops"
    result = run_cli("detect", tmp_path / "a" / "face.jpg", tmp_path / "b" / "face.jpg", "--save-crops", out)
    assert result.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["face-2_face0.png", "face_face0.png"]


def test_detect_no_face_exits_1_but_reports(tmp_path, faces_dir):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    result = run_cli("detect", faces_dir / "obama.jpg", blank, "--json")
    line = assert_one_line_error(result, 1, "no face found", str(blank))
    assert line
    document = parse_json(result)
    assert [len(image["faces"]) for image in document["images"]] == [1, 0]


def test_detect_reports_a_corrupt_image_and_goes_on(tmp_path, faces_dir):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((faces_dir / "obama.jpg").read_bytes()[:3000])
    result = run_cli("detect", broken, faces_dir / "biden.jpg", "--json")
    assert_one_line_error(result, 1, str(broken), "truncated or corrupt")
    first, second = parse_json(result)["images"]
    assert "truncated" in first["error"] and first["faces"] == []
    assert len(second["faces"]) == 1


@pytest.mark.parametrize("a,b", SAME)
def test_compare_same_person(faces_dir, a, b):
    result = run_cli("compare", faces_dir / a, faces_dir / b, "--json")
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    assert document["same_person"] is True
    assert document["similarity"] >= document["threshold"]
    assert document["backend"] == "dlib"


@pytest.mark.parametrize("a,b", DIFFERENT)
def test_compare_different_people(faces_dir, a, b):
    result = run_cli("compare", faces_dir / a, faces_dir / b, "--json")
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    assert document["same_person"] is False
    assert isinstance(document["similarity"], float) and isinstance(document["threshold"], float)


def test_compare_picks_a_face_with_face_index(faces_dir):
    def verdict(*args):
        result = run_cli("compare", faces_dir / "two_people.jpg", faces_dir / "biden.jpg", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return parse_json(result)["same_person"]

    # two_people.jpg: Biden's face is the larger one (index 0), Obama's index 1
    assert verdict() is True
    assert verdict("--face-index-a", "1") is False
    assert verdict("--face-index", "0") is True


def test_compare_human_output(faces_dir):
    result = run_cli("compare", faces_dir / "obama.jpg", faces_dir / "obama2.jpg")
    assert result.exit_code == 0
    assert "same person" in result.stdout and "similarity" in result.stdout


def test_compare_threshold_override(faces_dir):
    result = run_cli("compare", faces_dir / "obama.jpg", faces_dir / "obama2.jpg", "--threshold", "0.999", "--json")
    document = parse_json(result)
    assert document["threshold"] == 0.999 and document["same_person"] is False


def test_compare_face_index_out_of_range(faces_dir):
    result = run_cli("compare", faces_dir / "obama.jpg", faces_dir / "biden.jpg", "--face-index-b", "3")
    assert_one_line_error(result, 1, "--face-index 3", "has 1 face", "biden.jpg")


def test_compare_no_face(faces_dir, tmp_path):
    blank = tmp_path / "sky.jpg"
    Image.new("RGB", (300, 200), (100, 150, 250)).save(blank)
    result = run_cli("compare", faces_dir / "obama.jpg", blank)
    assert_one_line_error(result, 1, "no face found", str(blank))


def test_compare_many_photos_gives_the_matrix_and_groups_people(faces_dir):
    names = ["obama.jpg", "biden.jpg", "obama2.jpg", "rose_leslie1.jpg", "biden2.jpg", "rose_leslie2.jpg"]
    result = run_cli("compare", *(faces_dir / name for name in names), "--json")
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    assert [face["path"] for face in document["faces"]] == [str(faces_dir / name) for name in names]
    matrix = document["matrix"]
    assert len(matrix) == 6 and all(len(row) == 6 for row in matrix)
    assert all(matrix[i][i] == 1.0 and matrix[i][j] == matrix[j][i] for i in range(6) for j in range(6))
    assert document["groups"] == [[0, 2], [1, 4], [3, 5]]
    assert document["failed"] == [] and "similarity" not in document
    # each entry is what comparing that pair alone says
    pair = parse_json(run_cli("compare", faces_dir / "biden.jpg", faces_dir / "biden2.jpg", "--json"))
    assert matrix[1][4] == pytest.approx(pair["similarity"], abs=1e-6)
    assert pair["matrix"][0][1] == pair["similarity"] and pair["groups"] == [[0, 1]]


def test_compare_a_folder_names_every_photo_and_its_person(faces_dir, tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        shutil.copy(faces_dir / name, folder / name)
    result = run_cli("compare", folder, faces_dir / "obama3.jpg")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "2 people in 4 photos" in lines
    # the folder's photos come sorted: biden.jpg first, so person 1 is Biden alone
    assert any(line.strip() == f"person 1: {folder / 'biden.jpg'}" for line in lines)
    person_2 = next(line for line in lines if line.strip().startswith("person 2:"))
    assert str(folder / "obama.jpg") in person_2 and str(faces_dir / "obama3.jpg") in person_2
    assert "least alike" in person_2 and "biden" not in person_2


def test_compare_goes_on_past_a_bad_photo_and_exits_1(faces_dir, tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a photo")
    blank = tmp_path / "sky.jpg"
    Image.new("RGB", (300, 200), (100, 150, 250)).save(blank)
    result = run_cli("compare", faces_dir / "obama.jpg", fake, faces_dir / "obama2.jpg", blank, "--json")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 2 and str(fake) in errors[0] and "no face found" in errors[1]
    document = parse_json(result)
    assert [face["path"] for face in document["faces"]] == [str(faces_dir / "obama.jpg"), str(faces_dir / "obama2.jpg")]
    assert document["groups"] == [[0, 1]]
    assert [failure["path"] for failure in document["failed"]] == [str(fake), str(blank)]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["{obama}"], "two photos or more"),
        (["{obama}", "{obama}", "{biden}", "--face-index-a", "1"], "--face-index-a/-b"),
        (["{obama}", "{empty}"], "holds no photo"),
        (["{obama}", "{empty}/*.jpg"], "holds no photo"),
    ],
)
def test_compare_refuses_what_it_cannot_compare(faces_dir, tmp_path, args, fragment):
    (tmp_path / "empty").mkdir()
    args = [a.format(obama=faces_dir / "obama.jpg", biden=faces_dir / "biden.jpg", empty=tmp_path / "empty")
            for a in args]
    result = run_cli("compare", *args)
    assert_one_line_error(result, 2, fragment)
    assert result.stdout == ""


# ---- bad input: every case gives one line, the spec's exit code, no traceback -------------

def _empty(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    return path, 1, "empty"


def _truncated(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400), (200, 10, 10)).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[:200])
    return path, 1, "truncated or corrupt"


def _fake(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n")
    return path, 1, "not an image"


def _directory(tmp_path):
    return tmp_path, 2, "directory"


def _missing(tmp_path):
    return tmp_path / "nope.jpg", 2, "does not exist"


def _huge(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (10000, 6000)).save(path)
    return path, 1, "over the limit of 50 megapixels"


@pytest.mark.parametrize("command", ["detect", "compare"])
@pytest.mark.parametrize("bad", [_empty, _truncated, _fake, _directory, _missing, _huge])
def test_bad_images(tmp_path, faces_dir, command, bad):
    path, code, fragment = bad(tmp_path)
    if command == "compare" and bad is _directory:  # compare reads folders: this one is empty
        fragment = "holds no photo"
    args = [command, path] if command == "detect" else [command, faces_dir / "obama.jpg", path]
    result = run_cli(*args)
    assert_one_line_error(result, code, fragment, path.name)
    assert result.stdout == "" or command == "detect"


def test_max_pixels_option(faces_dir):
    result = run_cli("detect", faces_dir / "obama.jpg", "--max-pixels", "1000")
    assert_one_line_error(result, 1, "over the limit", "--max-pixels")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["detect"], "Missing argument"),
        (["detect", "--frobnicate", "x.jpg"], "No such option"),
        (["detect", "{obama}", "--backend", "deepface"], "deepface"),
        (["detect", "{obama}", "--crop-size", "0"], "--crop-size"),
        (["compare"], "Missing argument"),
        (["compare", "{obama}", "{obama}", "--face-index", "-1"], "--face-index"),
        (["sing"], "No such command"),
    ],
)
def test_usage_errors_exit_2(faces_dir, args, fragment):
    args = [a.replace("{obama}", str(faces_dir / "obama.jpg")) for a in args]
    result = run_cli(*args)
    line = assert_one_line_error(result, 2, fragment)
    assert "--help" in line


def test_insightface_without_pack_says_where_to_put_it(faces_dir, tmp_path):
    result = run_cli("detect", faces_dir / "obama.jpg", "--backend", "insightface",
                     "--insightface-root", tmp_path)
    assert_one_line_error(result, 1, "det_10g.onnx", str(tmp_path / "buffalo_l"))


def test_insightface_backend_through_the_cli(faces_dir, tmp_path):
    build_pack(tmp_path, "buffalo_l")
    result = run_cli("compare", faces_dir / "obama.jpg", faces_dir / "obama.jpg", "--json",
                     "--insightface-root", tmp_path)
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    assert document["backend"] == "insightface"
    assert document["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert document["threshold"] == 0.32


def test_debug_shows_the_traceback(tmp_path, faces_dir):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    result = run_cli("--debug", "compare", faces_dir / "obama.jpg", path)
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "Error: " in result.stderr


def test_version():
    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("faceid ")
