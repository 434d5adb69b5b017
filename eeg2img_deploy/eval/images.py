"""Reading the two image sets and pairing them: reconstruction i with truth i.

Order: a folder written by ``infer``/``reference`` is read in its ``result.json``'s ``images`` order
(trial order, also past image_999); any other folder in sorted order of the files' paths relative to
it, subfolders included (THINGS' ``test_images/00001_aircraft_carrier/...`` sorts into the paper's
order). ``grid.png`` (infer's mosaic) is never an image of the set. Counts must match; within a set
every image must have one square size (the protocol resizes to squares: anything else would be
stretched). The two sets may differ in size (THINGS is 500 px, the reconstructions 512).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import OptionError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
RESULT_NAME = "result.json"  # runtime.images.RESULT_NAME (not imported: that module is the runtime's)
SKIP = {"grid.png"}


def list_images(folder: str | Path, option: str) -> tuple[list[Path], str]:
    """The set's files in pairing order, and how the order was decided."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OptionError(f"{option} {folder} is not a folder")
    result = folder / RESULT_NAME
    if result.is_file():
        try:
            names = json.loads(result.read_text(encoding="utf-8"))["images"]
        except (ValueError, KeyError, TypeError):
            raise OptionError(f"{option} {folder}: {RESULT_NAME} has no 'images' list (not written by infer/reference?): "
                              f"move it away to pair by sorted file names") from None
        files = [folder / n for n in names if n not in SKIP]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise OptionError(f"{option} {folder}: {RESULT_NAME} lists images that are not there ({', '.join(absent[:3])})")
        return files, f"{RESULT_NAME} order"
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not (p.parent == folder and p.name in SKIP)), key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise OptionError(f"{option} {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files, "sorted file names"


def read_set(files: list[Path], option: str) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB; one size for the whole set, square."""
    from PIL import Image

    arrays, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise OptionError(f"{option}: {f} is not a readable image ({e})") from None
        if arr.shape[0] != arr.shape[1]:
            raise OptionError(f"{option}: {f} is {arr.shape[1]}x{arr.shape[0]}, not square: the metrics resize to squares "
                              "(crop the images first)")
        if first is None:
            first = arr.shape
        elif arr.shape != first:
            raise OptionError(f"{option}: {f} is {arr.shape[1]}x{arr.shape[0]}, the set's first image {first[1]}x{first[0]}: "
                              "one size per set")
        arrays.append(arr)
    return np.stack(arrays)


def read_pairs(images: str | Path, truth: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Both sets as uint8 arrays, paired by index, and a record of what was paired."""
    rec_files, rec_order = list_images(images, "--images")
    gt_files, gt_order = list_images(truth, "--truth")
    if len(rec_files) != len(gt_files):
        raise OptionError(f"--images has {len(rec_files)} image(s) ({rec_order}), --truth {len(gt_files)}: reconstruction i "
                          f"is scored against truth i, so the counts must match")
    if len(rec_files) < 2:
        raise OptionError("--images and --truth hold 1 pair: two-way identification needs at least 2")
    recons, gt = read_set(rec_files, "--images"), read_set(gt_files, "--truth")
    pairing = {"n": len(rec_files), "images_order": rec_order, "truth_order": gt_order,
               "images_size": int(recons.shape[1]), "truth_size": int(gt.shape[1]),
               "first_pair": [rec_files[0].name, gt_files[0].relative_to(Path(truth)).as_posix()]}
    return recons, gt, pairing
