"""Pieces of self-contained HTML pages (report.html, audit.html): embedded pictures, sections, tables."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image


def data_uri(png: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(png).decode()}"


def thumbnail(picture: Image.Image | np.ndarray, size: int = 160) -> str:
    image = Image.fromarray(picture) if isinstance(picture, np.ndarray) else picture.copy()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "jpeg")


def img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{content}\n</section>'


def table(header: list[str] | None, rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header or [])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: .6rem 0; }}
td, th {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; font-size: .9rem; }}
section {{ margin-bottom: 2.2rem; }}
img {{ max-width: 100%; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: .8rem; }}
figure {{ margin: 0; width: 210px; font-size: .8rem; }}
</style></head>
<body><h1>{title}</h1>
{body}
<script>
// Self-check for people and tests: how many pictures decoded (shown as data-images="ok/total").
window.addEventListener("load", () => {{
  const images = [...document.images];
  document.body.dataset.images = images.filter(i => i.complete && i.naturalWidth > 0).length + "/" + images.length;
}});
</script>
</body></html>
"""
