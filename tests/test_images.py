"""The one image loader: every mode becomes upright 8-bit RGB, every bad file a clear ImageError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from faceid_cli.errors import ImageError
from faceid_cli.images import atomic_output, load_image, save_image, to_rgb


def _gradient(width=64, height=48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1))


def test_exif_orientation_is_applied(tmp_path):
    upright = _gradient(64, 48)
    # Orientation 6 means "rotate 90° clockwise to display": store the pixels rotated back.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (64, 48)
    diff = np.abs(np.asarray(loaded, np.int16) - np.asarray(upright, np.int16)).mean()
    assert diff < 6


@pytest.mark.parametrize("mode", ["L", "P", "1", "RGB", "YCbCr"])
def test_opaque_modes_become_rgb(tmp_path, mode):
    path = tmp_path / f"{mode}.png" if mode != "YCbCr" else tmp_path / "ycc.jpg"
    _gradient().convert(mode).save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (64, 48)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_flattened_onto_white(tmp_path, mode):
    image = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (10, 0, 20, 10))  # right half fully transparent
    path = tmp_path / "alpha.png"
    image.convert(mode).save(path)
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (10, 20, 3)
    assert (pixels[:, 12:] == 255).all(), "transparent pixels must become white, not black"


def test_palette_with_transparent_index(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.info["transparency"] = 1
    path = tmp_path / "p.gif"
    image.save(path, transparency=1)
    assert (np.asarray(load_image(path)) == 255).all()


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    red, green, blue = np.asarray(load_image(path)).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as stored:
        assert stored.mode in {"I;16", "I"}
    loaded = np.asarray(load_image(path))[0, :, 0]
    assert list(loaded) == [0, 64, 128, 255]


def test_float_image(tmp_path):
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = tmp_path / "float.tiff"
    Image.fromarray(values).save(path)
    assert list(np.asarray(load_image(path))[0, :, 0]) == [0, 128, 255]


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as stored:
        assert stored.n_frames == 2
    red, _, blue = np.asarray(load_image(path))[4, 4]
    assert red > 200 and blue < 50


@pytest.mark.parametrize("suffix", [".webp", ".bmp", ".jpg", ".png", ".tiff"])
def test_common_formats(tmp_path, suffix):
    path = tmp_path / f"photo{suffix}"
    _gradient().save(path)
    assert load_image(path).size == (64, 48)


def _expect(path, *fragments, **kwargs):
    with pytest.raises(ImageError) as caught:
        load_image(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    return caught.value


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.jpg", "does not exist")


def test_directory(tmp_path):
    _expect(tmp_path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _expect(path, "empty")


def test_text_file_posing_as_image(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("this is not a photo\n" * 20)
    _expect(path, "not an image")


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    _gradient(400, 300).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _expect(path, "truncated or corrupt")


def test_truncated_png(tmp_path):
    buffer = io.BytesIO()
    _gradient(400, 300).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _expect(path, "truncated or corrupt")


def test_pixel_limit_refuses_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (9000, 6000)).save(path)  # 54 megapixels in a few kilobytes
    assert path.stat().st_size < 100_000
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    error = _expect(path, "54.0 megapixels", "over the limit of 50 megapixels", "--max-pixels")
    assert error.exit_code == 1
    assert not decoded, "the pixel data must not be decoded"


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    _gradient(100, 100).save(path)
    _expect(path, "over the limit", max_pixels=5000)
    monkeypatch.setenv("FACEID_MAX_PIXELS", "5000")
    _expect(path, "over the limit")
    assert load_image(path, max_pixels=10_000).size == (100, 100)


def test_pillow_bomb_error_becomes_ours(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    _gradient(100, 100).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's hard stop is 2x this
    _expect(path, "over the limit", max_pixels=10**9)


def test_to_rgb_keeps_rgb_untouched():
    image = _gradient()
    assert to_rgb(image) is image


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "crop.png"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_save_image_round_trip(tmp_path):
    path = save_image(_gradient(), tmp_path / "a" / "b.png")
    with Image.open(path) as saved:
        assert np.array_equal(np.asarray(saved), np.asarray(_gradient()))
    assert [p.name for p in path.parent.iterdir()] == ["b.png"]
