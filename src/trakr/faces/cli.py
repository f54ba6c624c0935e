"""``trakr faces``: enrol, list, remove and check faces (registered by :mod:`trakr.cli`).

::

    trakr faces add "Asha Rao" photos/asha/*.jpg -c site.json   # enrol: one face per photo
    trakr faces list -c site.json                               # names, samples, enrolled when
    trakr faces remove "Asha Rao" -c site.json
    trakr faces identify some.jpg -c site.json                  # boxes, best name, similarity

The gallery and the models come from the config's ``trakr.faces`` section (docs/faces.md); the
bundled models need ``trakr.faces.accept_noncommercial_models: true`` there.

Example:
    >>> from typer.testing import CliRunner
    >>> r = CliRunner().invoke(faces_app, ["list", "--gallery", "/nonexistent/dir/x.db", "--help"])
    >>> r.exit_code
    0
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from trakr.config import SysConfig
    from trakr.faces.gallery import Gallery
    from trakr.faces.models import FaceDetector, FaceEmbedder

faces_app = typer.Typer(no_args_is_help=True, help="Face gallery: enrol, list, remove, identify (docs/faces.md).")
out = Console(emoji=False)
err = Console(stderr=True, emoji=False, soft_wrap=True)

CONFIG = typer.Option(None, "--config", "-c", help="Site config (its trakr.faces section); default: defaults.")
GALLERY = typer.Option(None, "--gallery", help="Gallery file (overrides trakr.faces.gallery_path).")


def _config(path: Optional[Path]) -> SysConfig:
    from trakr.config import load_config, parse_config

    report = load_config(path) if path is not None else parse_config({"common": {}, "cameras": []})
    if report.config is None:
        for p in report.errors:
            err.print(f"[red]error[/]: {escape(str(p))}")
        raise typer.Exit(2)
    return report.config


def _open(
    path: Optional[Path], gallery: Optional[Path], models: bool = True
) -> tuple[SysConfig, Gallery, FaceDetector | None, FaceEmbedder | None]:
    from trakr.faces.gallery import Gallery
    from trakr.faces.models import BUNDLED_EMBEDDER, FaceModelError, bundled_model, file_id
    from trakr.faces.scrfd import ScrfdDetector
    from trakr.faces.stage import gallery_path, open_models

    cfg = _config(path)
    o = cfg.trakr.faces
    where = gallery or gallery_path(cfg)
    try:
        if models:
            det, emb = open_models(o)
            if isinstance(det, ScrfdDetector):  # whole photos, not person crops: a larger input
                det.input_size = max(det.input_size, 640)
            return cfg, Gallery(where, emb.model_id), det, emb
        model_id = file_id(o.embedder_model or bundled_model(BUNDLED_EMBEDDER))
    except (FaceModelError, OSError) as e:
        err.print(f"[red]refusing[/]: {escape(str(e))}")
        raise typer.Exit(2) from None
    return cfg, Gallery(where, model_id), None, None


@faces_app.command("add")
def add(
    name: str = typer.Argument(..., help="The person's name (as used in 'face:<name>' triggers)."),
    photos: list[Path] = typer.Argument(..., help="Photos with exactly one clear face each."),
    config: Optional[Path] = CONFIG,
    gallery: Optional[Path] = GALLERY,
) -> None:
    """Enrol NAME from PHOTOS (each must show exactly one face of at least min_face_px)."""
    from trakr.faces.gallery import EnrolError, enrol

    cfg, g, det, emb = _open(config, gallery)
    assert det is not None and emb is not None
    o = cfg.trakr.faces
    try:
        n = enrol(g, name, photos, det, emb, o.min_face_px, o.keep_photos)
    except EnrolError as e:
        err.print(f"[red]not enrolled[/]: {escape(str(e))}")
        raise typer.Exit(1) from None
    out.print(f"enrolled {escape(name)}: {n} sample(s) in {escape(str(g.path))}")


@faces_app.command("list")
def list_(config: Optional[Path] = CONFIG, gallery: Optional[Path] = GALLERY) -> None:
    """Everyone enrolled: name, samples, when."""
    _, g, _, _ = _open(config, gallery, models=False)
    table = Table("name", "samples", "enrolled", "last added")
    for e in g.entries():
        stale = f" (+{e.other_model} of another model: re-enrol)" if e.other_model else ""
        table.add_row(
            escape(e.name),
            f"{e.samples}{stale}",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.first_enrolled)),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_enrolled)),
        )
    out.print(table)


@faces_app.command("remove")
def remove(
    name: str = typer.Argument(..., help="Name to remove (all its samples)."),
    config: Optional[Path] = CONFIG,
    gallery: Optional[Path] = GALLERY,
) -> None:
    """Delete every sample of NAME."""
    _, g, _, _ = _open(config, gallery, models=False)
    n = g.remove(name)
    if not n:
        err.print(f"[red]no such name[/]: {escape(name)}")
        raise typer.Exit(1)
    out.print(f"removed {escape(name)}: {n} sample(s)")


@faces_app.command("identify")
def identify(
    image: Path = typer.Argument(..., help="A photo or frame to check."),
    config: Optional[Path] = CONFIG,
    gallery: Optional[Path] = GALLERY,
) -> None:
    """Every face in IMAGE: box, size, best name (or unknown) and similarity."""
    from trakr.faces.gallery import EnrolError, read_photo

    cfg, g, det, emb = _open(config, gallery)
    assert det is not None and emb is not None
    o = cfg.trakr.faces
    try:
        img = read_photo(image)
    except EnrolError as e:
        err.print(f"[red]error[/]: {escape(str(e))}")
        raise typer.Exit(1) from None
    faces = det.detect(img)
    table = Table("x0", "y0", "x1", "y1", "px", "name", "similarity")
    big = [i for i, b in enumerate(faces.xyxy) if min(b[2] - b[0], b[3] - b[1]) >= o.min_face_px]
    embs, _ = emb.embed(img, np.asarray(faces.data["keypoints"])[big])
    verdicts = dict(zip(big, g.match(embs, o.threshold))) if big else {}
    for i, b in enumerate(faces.xyxy):
        px = int(min(b[2] - b[0], b[3] - b[1]))
        if i in verdicts:
            who, sim = verdicts[i]
            name, shown = escape(who or "unknown"), f"{sim:.3f}"
        else:
            name, shown = f"(under {o.min_face_px} px: skipped)", "-"
        table.add_row(*(str(int(v)) for v in b), str(px), name, shown)
    out.print(table)
