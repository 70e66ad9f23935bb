"""Face detection on a 4000x2700 photo: downscaled detection (the default) against detection at
full size, side by side, plus the image loading that precedes it.

    python benchmarks/detect_large_photo.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, report  # noqa: E402

from PIL import Image  # noqa: E402

from faceid_cli.faces.backend_dlib import DlibAnalyzer  # noqa: E402
from faceid_cli.images import load_image  # noqa: E402

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "faces" / "obama.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    face = load_image(PHOTO)
    large = Image.new("RGB", (4000, 2700), (128, 128, 128))
    portrait = face.resize((int(face.width * 2700 / face.height), 2700), Image.Resampling.BICUBIC)
    large.paste(portrait, (1200, 0))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "large.jpg"
        large.save(path, quality=92)
        default = DlibAnalyzer()
        full = DlibAnalyzer(detection_size=4000)
        found = default.detect(large)
        assert len(found) == 1, f"expected one face, found {len(found)}"
        full.detect(large)  # load models before timing
        medians = interleaved(
            {
                "load_image (4000x2700 JPEG)": lambda: load_image(path),
                "detect, downscaled to 1024 (default)": lambda: default.detect(large),
                "detect at full size": lambda: full.detect(large),
            },
            repeats,
        )
    report(f"dlib detection on a 4000x2700 photo, median of {repeats}", medians,
           "detect, downscaled to 1024 (default)")
    speedup = medians["detect at full size"] / medians["detect, downscaled to 1024 (default)"]
    print(f"downscaled detection is {speedup:.1f}x faster than full size; "
          f"face box {[round(v) for v in found[0].bbox]}")


if __name__ == "__main__":
    main()
