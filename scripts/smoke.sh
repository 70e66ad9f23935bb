#!/usr/bin/env bash
# Every faceid command once on the built-in tiny model, offline. Usage: scripts/smoke.sh [FACEID]
set -euo pipefail
faceid=${1:-faceid}
here=$(cd "$(dirname "$0")/.." && pwd)
faces="$here/tests/data/faces"
out=${SMOKE_OUT:-smoke-out}
mkdir -p "$out" && out=$(cd "$out" && pwd)
rm -rf "${out:?}"/* 
start=$(date +%s)
"$faceid" detect "$faces/two_people.jpg" --json > "$out/detect.json"
"$faceid" compare "$faces/obama.jpg" "$faces/obama2.jpg" --json > "$out/compare.json"
"$faceid" encode "$faces/obama.jpg" -o "$out/obama.safetensors" --json > "$out/encode.json"
"$faceid" generate "$out/obama.safetensors" "S* as a chef" -n 2 --steps 5 --seed 1 -o "$out/generate" --json > "$out/generate.json"
cat > "$out/jobs.jsonl" <<JOBS
{"face": "$faces/obama.jpg", "prompt": "S* as a chef", "name": "obama-chef", "num_images": 2}
{"face": "$out/obama.safetensors", "prompt": ["S* as a nurse", "oil painting of S*"], "name": "obama-more"}
{"face": "$faces/biden.jpg", "prompt": "S* wearing a hat", "name": "biden-hat", "model": "tiny-xl"}
JOBS
"$faceid" batch "$out/jobs.jsonl" --steps 5 -o "$out/batch" --quiet
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
assert len(json.loads((out / "detect.json").read_text())["images"][0]["faces"]) == 2
assert json.loads((out / "compare.json").read_text())["same_person"] is True
assert len(json.loads((out / "generate.json").read_text())["images"]) == 2
records = [json.loads(l) for l in (out / "batch" / "manifest.jsonl").read_text().splitlines()]
assert len(records) == 5 and all(r["status"] == "ok" for r in records), records
PY
echo "smoke OK in $(( $(date +%s) - start )) s: detect, compare, encode, generate, batch ($out/)"
