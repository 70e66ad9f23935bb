"""``faceid models``: which models faceid knows, where it looks for them, what it finds."""

from __future__ import annotations

from ._common import InsightfaceRootOption, JsonOption, new_app, print_json, stdout_console

app = new_app()


@app.command()
def models(
    json_output: JsonOption = False,
    insightface_root: InsightfaceRootOption = None,
) -> None:
    """List the known models, where each is looked for, and whether it is there.

    Nothing is downloaded: repos are looked up in the Hugging Face cache (HF_HOME, HF_HUB_CACHE);
    face model packs in the insightface folder.
    """
    import importlib.util
    from pathlib import Path

    from ..faces.backend_insightface import PACKS, default_insightface_root, find_pack
    from ..models.registry import ALIASES, find_in_cache, hub_cache_dir

    from ..names import TINY_MODELS, WORLD_MODELS
    from ..world import component_path

    rows = [{"name": name, "kind": "built-in", "location": "built in code (random weights)", "found": True}
            for name in TINY_MODELS]
    for name in WORLD_MODELS:
        folder = component_path(name, check=False)
        rows.append({"name": name, "kind": "world", "location": str(folder),
                     "found": (folder / "model_index.json").is_file(), "path": str(folder)})
    for name, label in (("clip", "world-clip"), ("recogniser", "world (face backend)")):
        folder = component_path(name, check=False)
        rows.append({"name": label, "kind": "world", "location": str(folder), "found": folder.is_dir(),
                     "path": str(folder)})
    for alias, repo in ALIASES.items():
        snapshot = find_in_cache(repo)
        rows.append({"name": alias, "kind": "diffusion", "location": repo,
                     "found": snapshot is not None, "path": str(snapshot) if snapshot else None})
    from huggingface_hub import try_to_load_from_cache

    from ..names import FACECLIP_RELEASE

    found = try_to_load_from_cache(FACECLIP_RELEASE["repo"], FACECLIP_RELEASE["encoder"], cache_dir=str(hub_cache_dir()))
    rows.append({"name": "faceclip", "kind": "encoder (--method faceclip)",
                 "location": f"{FACECLIP_RELEASE['repo']} (or --encoder FOLDER)", "found": isinstance(found, str),
                 "path": str(Path(found).parent) if isinstance(found, str) else None,
                 "license": FACECLIP_RELEASE["license"]})
    root = insightface_root or default_insightface_root()
    dlib_ok = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec(
        "face_recognition_models") is not None
    rows.append({"name": "dlib", "kind": "face", "location": "face_recognition_models (PyPI)", "found": dlib_ok})
    for pack in PACKS:
        found = find_pack(root, pack)
        rows.append({"name": f"insightface/{pack}", "kind": "face", "location": str(root / pack),
                     "found": found is not None, "path": str(found.folder) if found else None})
    if json_output:
        print_json({"models": rows, "hf_cache": str(hub_cache_dir()), "insightface_root": str(root)})
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "looked for in", "found"):
        table.add_column(column)
    table.add_column("licence")
    for row in rows:
        table.add_row(row["name"], row["kind"], row["location"], "yes" if row["found"] else "no", row.get("license", ""))
    console = stdout_console()
    console.print(table)
    console.print(f"Hugging Face cache: {hub_cache_dir()}   insightface packs: {root}")
