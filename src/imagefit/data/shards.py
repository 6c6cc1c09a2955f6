"""A dataset as LitData shards: `imagefit shard DATA OUT` writes them, every command reads them as a dataset.

`write_shards` reads any layout imagefit reads (class folders, pre-split folders, a CSV, a zip) and writes
each image's bytes, untouched, with `litdata.optimize` (Lightning's streaming format: chunk files and an
index.json), in the order imagefit lists them, one writer so the order holds. Beside them,
`imagefit-shards.json` keeps what a folder's layout said: the task, and each image's name, label and split
as found (a split the data did not give is carved by `imagefit train` with its seed, as from the folder).

Each image is then named by a locator `OUT::INDEX/NAME` (INDEX zero-padded, so locators sort as the images
did; NAME the image's path in DATA, so messages and prediction ids name the original file), read by index
through `litdata.StreamingDataset`, one per folder and process: the data loader's workers and every DDP
rank read only the images they are given, chunk by chunk. The decode checks, the split, the feature cache
(by content) and the run folder are those of the same data read from its folder.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagefit.data.samples import ZIP_SEPARATOR, Sample, remote_url
from imagefit.errors import UserError

SHARD_FACTS = "imagefit-shards.json"
DIGITS = 8  # zero-padded index: locators sort in the order the images were written
CHUNK_BYTES = "64MB"  # litdata's chunk size: a read fetches at most one chunk more than it needs
CACHE_BYTES = "25GB"  # bound on the local copy of a remote dataset's chunks (litdata warns under 25 GB)


@dataclass(frozen=True)
class Sharded:
    """What `write_shards` wrote: how many images, into how many chunk files, from which data."""

    images: int
    chunks: int
    out: str | Path

    def line(self) -> str:
        where = f"{self.out} (train with `imagefit train {self.out}`)"
        return f"{self.images} images in {self.chunks} LitData chunk files: {where}"


def is_shard_folder(path: str | Path) -> bool:
    """Whether PATH holds imagefit shards: a folder with SHARD_FACTS, or an object-store URL (read as shards)."""
    return remote_url(path) is not None or (Path(path) / SHARD_FACTS).is_file()


def _store(url: str):
    """litdata's client for the object store of URL (S3 or an S3-compatible server at $AWS_ENDPOINT_URL, or GCS)."""
    from litdata.streaming.fs_provider import GCPFsProvider, S3FsProvider

    return S3FsProvider() if url.startswith("s3://") else GCPFsProvider()


def check_out(out: str | Path) -> None:
    """Refuse, in one line, an OUT that exists and is not an empty folder (a URL: that already holds shards)."""
    url = remote_url(out)
    if url is not None:
        if _store(url).exists(f"{url}/index.json"):
            raise UserError(f"{url} already holds shards: give a new prefix for the shards")
        return
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: give a new folder for the shards")


def write_shards(
    samples: list[Sample],
    task: str,
    out: str | Path,
    *,
    source: str,
    read: Callable[[str], bytes],
    chunk_bytes: str = CHUNK_BYTES,
) -> Sharded:
    """Write SAMPLES' bytes (READ of each locator) as LitData shards in OUT (a new or empty folder, or an
    object-store URL with no shards yet), with imagefit's facts beside them."""
    try:
        from litdata import optimize
    except ImportError:
        raise UserError("imagefit shard needs litdata: pip install 'imagefit[shards]'") from None

    check_out(out)
    if not samples:
        raise UserError(f"{source}: no labelled images to shard")
    url = remote_url(out)
    if url is None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    locators = [s.path for s in samples]
    optimize(  # to a URL, litdata uploads each chunk as it is written (its workers start by spawn)
        fn=functools.partial(_item, read, locators),
        inputs=list(range(len(samples))),
        output_dir=url or str(out.resolve()),
        chunk_bytes=chunk_bytes,
        num_workers=1,  # one writer: the images stay in imagefit's order
        reorder_files=False,
        verbose=False,
    )
    root = Path(source).resolve()
    root = str(root if root.is_dir() else root.parent)  # DATA, or a CSV's folder
    rows = [[_name(s.path, root), s.label, s.split] for s in samples]
    facts = {"kind": "imagefit-shards", "source": source, "task": task, "columns": ["name", "label", "split"]}
    text = json.dumps({**facts, "samples": rows})
    if url is None:
        (out / SHARD_FACTS).write_text(text, encoding="utf-8")
        return Sharded(len(samples), len(list(out.glob("*.bin"))), out)
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / SHARD_FACTS
        local.write_text(text, encoding="utf-8")
        _store(url).upload_file(str(local), f"{url}/{SHARD_FACTS}")
    return Sharded(len(samples), len(_remote_json(url, "index.json")["chunks"]), url)


def _item(read: Callable[[str], bytes], locators: list[str], index: int) -> dict:
    return {"index": index, "image": read(locators[index])}


def _name(locator: str, root: str) -> str:
    """The image's path inside the data it came from (a zip member's path, a file's path under ROOT: DATA or its
    CSV's folder; else its file name)."""
    if ZIP_SEPARATOR in locator:
        return locator.split(ZIP_SEPARATOR, 1)[1]
    inside = locator.startswith(root + os.sep)
    return os.path.relpath(locator, root).replace(os.sep, "/") if inside else Path(locator).name


def _remote_json(url: str, name: str) -> dict:
    """The JSON file NAME under the object-store URL; a UserError naming it when it cannot be read."""
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / name
        try:
            _store(url).download_file(f"{url}/{name}", str(local))
            return json.loads(local.read_text(encoding="utf-8"))
        except Exception as exc:  # the store's own errors (missing key, credentials, network) vary by backend
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"{url}/{name} could not be read ({reason}): write shards there with `imagefit shard DATA {url}`, "
                "and check the credentials (AWS_* variables, AWS_ENDPOINT_URL for an S3-compatible server)"
            ) from None


def shard_samples(folder: str | Path) -> tuple[list[Sample], str]:
    """The samples of a shard folder or URL (locators OUT::INDEX/NAME) and their task."""
    url = remote_url(folder)
    if url is None:
        facts = json.loads((Path(folder) / SHARD_FACTS).read_text(encoding="utf-8"))
    else:
        facts = _remote_json(url, SHARD_FACTS)
    root = url or str(Path(folder).resolve())
    samples = [
        Sample(f"{root}{ZIP_SEPARATOR}{index:0{DIGITS}d}/{name}", label, split)
        for index, (name, label, split) in enumerate(facts["samples"])
    ]
    return samples, facts.get("task", "single-label")


def read_shard_item(folder: str, member: str) -> bytes:
    """The bytes of image INDEX (MEMBER is INDEX/NAME) in the shard folder (or URL) FOLDER."""
    return _dataset(folder, os.getpid(), threading.get_ident())[int(member.split("/", 1)[0])]["image"]


@functools.lru_cache(maxsize=16)
def _dataset(folder: str, pid: int, thread: int):
    # One reader per process and thread (loader workers fork; the decode checks run in threads).
    del pid, thread
    from litdata import StreamingDataset

    # batch_decode off: a random read decodes its one item, not the window of ~250 around it (12x slower). From a
    # URL, chunks are downloaded into litdata's local cache, bounded by CACHE_BYTES.
    cache = None
    if remote_url(folder):  # under imagefit's cache ($IMAGEFIT_CACHE), not litdata's default in the home folder
        from imagefit.data.cache import cache_root, digest

        cache = str(cache_root() / "shards" / digest(folder))
    dataset = StreamingDataset(folder, cache_dir=cache, max_cache_size=CACHE_BYTES, batch_decode=False)
    if cache is not None:
        # litdata serves a random read from a URL by range requests for that item's bytes, never cached: 50 images/s
        # in training against 840 from local shards (benchmarks/RESULTS.md). Whole chunks go into the bounded cache
        # instead. Its public setter needs the reader that the first read makes, and that first read (on demand)
        # marks chunk 0 as requested, so chunk 0 would then wait 30 s for litdata's forced download: the flag is
        # set before any read.
        dataset._on_demand_bytes = False
    return dataset
