"""Where the released Cu64Zr36 glasses come from: an explicit root, $MGGLASS_DATA_DIR, or a verified download."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from .errors import GlassDataError

# The public SymGNN repository (Li et al., ICML 2024), datasets/raw_data/.
OFFICIAL_BASE_URL = "https://raw.githubusercontent.com/haoyuli02/SymGNN/main/datasets/raw_data/"
SHA256 = {
    "test0.pickle": "0828b3128532ff6e4e2bcf2fb4cb1976258d327fd68a5f43910390baf2dc45f0",
    "train0.pickle": "17e71d9599ea0efc0a30470a492d85b0cfcb301060cb7762dff0127b8ee214ac",
    "train1.pickle": "c9feb236ca670b16269d493ac1a78ee7940bb1b309f8ab3cb093d3e68fdfaddb",
    "train2.pickle": "8b80667c6fbc7365c834a6d10e252dfcb24601ab975be6e83883cf8abccdce87",
    "train3.pickle": "733dbee48fe37b0c8ddcc1918e342bf34ade80d3d5fffd8c51a5218cf622d019",
    "train4.pickle": "9517cb1de08afc103001f37151a95f33e18032063eba72ae9935c9f8fc41d1f6",
    "train5.pickle": "f2d3f706fa01209ecb3d54a48a564418a340a70eaf5b1a956f4838a1ce0f3986",
    "train6.pickle": "bfd476cbcce8e8bf83990b42e94d1d771249d5f417f9798eeb0152f6b11c3b8f",
}


def cache_dir() -> Path:
    """User cache for downloads and processed graphs ($MGGLASS_CACHE_DIR, else ~/.cache/mgglass)."""
    return Path(os.environ.get("MGGLASS_CACHE_DIR") or Path.home() / ".cache" / "mgglass")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, dest: str | Path, base_url: str = OFFICIAL_BASE_URL) -> Path:
    """Download one official file into ``dest`` unless a verified copy is there; verify its SHA-256."""
    if name not in SHA256:
        raise GlassDataError(name, f"not an official file (known: {', '.join(sorted(SHA256))}); "
                                   "give a file of your own by its path or set data.root")
    dest = Path(dest)
    path = dest / name
    if path.is_file() and sha256_file(path) == SHA256[name]:
        return path
    dest.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.part")  # per process: ranks may download at once
    url = base_url.rstrip("/") + "/" + name
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except Exception as e:  # noqa: BLE001 - any failure becomes one clear line
        tmp.unlink(missing_ok=True)
        raise GlassDataError(url, f"download failed ({type(e).__name__}: {e})") from None
    got = sha256_file(tmp)
    if got != SHA256[name]:
        tmp.unlink(missing_ok=True)
        raise GlassDataError(url, f"SHA-256 mismatch (got {got}, expected {SHA256[name]}); the file was removed")
    tmp.replace(path)
    return path


def resolve_files(names: list[str], root: str | Path | None = None, base_url: str = OFFICIAL_BASE_URL) -> list[Path]:
    """Paths of ``names``: under ``root`` if given, else under $MGGLASS_DATA_DIR, else the official
    files downloaded. An absolute path is that file under any of them; with neither folder set, so is
    a name with a folder in it (``runs/my.extxyz``), while a bare name must be an official file."""
    root = root or os.environ.get("MGGLASS_DATA_DIR")
    if root:
        return [Path(root) / n for n in names]
    return [Path(n) if Path(n).name != str(n) else fetch(n, cache_dir() / "cuzr", base_url) for n in names]
