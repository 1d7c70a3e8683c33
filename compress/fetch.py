"""`python -m compress.fetch --from URL_OR_DIR --target T`: download one target's archive of a release, check
its sha256 and the sha256 of every file in it against the release's manifest.json, and unpack it atomically.

Anything that does not match is refused with a one-line error and nothing is left behind: the download goes
to a temp file beside the destination, the archive is unpacked into a temp folder beside it, and only a fully
verified folder is renamed into place. Standard library plus tqdm, so it also runs on the device itself."""
from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import re
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from .errors import UserError, one_line_errors
from .io import ensure_dir

FORMAT = "pizza-edge-release/1"
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 16 << 20
CHUNK = 1 << 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="URL_OR_DIR",
                   help="release base URL (http/https, e.g. https://github.com/OWNER/REPO/releases/download/v0.1.0) "
                        "or a local release folder (dist/<name>-<version>)")
    p.add_argument("--target", help="target whose archive to fetch (see --list)")
    p.add_argument("--dest", type=Path, help="folder to unpack into (default: ./<name>-<version>-<target>)")
    p.add_argument("--manifest-sha256", metavar="HEX",
                   help="expected sha256 of manifest.json (pins the release when the source is not trusted)")
    p.add_argument("--force", action="store_true", help="replace --dest if it exists")
    p.add_argument("--list", action="store_true", help="list the release's targets and exit")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default: 60)")


# --- reading from a URL or a folder ----------------------------------------------------------------------------

def _is_url(source: str) -> bool:
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        return True
    if "://" in source:
        raise UserError(f"unsupported source {source!r}: use an http(s) URL or a local folder")
    return False


def _open(source: str, name: str, timeout: float):
    """(readable stream, declared length or None, location) of one release file."""
    if _is_url(source):
        url = source.rstrip("/") + "/" + urllib.parse.quote(name)
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise UserError(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise UserError(f"cannot fetch {url}: {getattr(e, 'reason', e)}") from None
        length = resp.headers.get("Content-Length")
        return resp, int(length) if length and length.isdigit() else None, url
    path = Path(source) / name
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return f, os.fstat(f.fileno()).st_size, str(path)


def _copy(stream, out, limit: int, where: str, progress=None) -> tuple[int, str]:
    """Stream into `out`, hashing, and refuse more than `limit` bytes; returns (bytes, sha256)."""
    h, n = hashlib.sha256(), 0
    try:
        while chunk := stream.read(CHUNK):
            n += len(chunk)
            if n > limit:
                raise UserError(f"{where} is larger than the {limit:,} bytes the manifest allows")
            h.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress.update(len(chunk))
    except (OSError, http.client.HTTPException) as e:
        raise UserError(f"download of {where} failed after {n:,} bytes: {type(e).__name__}: {e}") from None
    return n, h.hexdigest()


def _checked(where: str, got_bytes: int, got_sha: str, declared: int | None, want_bytes: int, want_sha: str) -> None:
    if declared is not None and got_bytes != declared:
        raise UserError(f"download of {where} truncated: got {got_bytes:,} of {declared:,} bytes")
    if got_bytes != want_bytes:
        raise UserError(f"{where} is {got_bytes:,} bytes, the manifest says {want_bytes:,}: refusing it")
    if got_sha != want_sha:
        raise UserError(f"sha256 mismatch for {where}: got {got_sha}, the manifest says {want_sha}: refusing it")


def read_manifest(source: str, timeout: float, pin: str | None = None) -> dict:
    stream, declared, where = _open(source, MANIFEST, timeout)
    buf = io.BytesIO()
    with stream:
        n, sha = _copy(stream, buf, MANIFEST_MAX_BYTES, where)
    if declared is not None and n != declared:
        raise UserError(f"download of {where} truncated: got {n:,} of {declared:,} bytes")
    if pin and sha != pin.lower():
        raise UserError(f"sha256 mismatch for {where}: got {sha}, expected {pin.lower()} (--manifest-sha256)")
    try:
        doc = json.loads(buf.getvalue())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("targets"), dict):
        raise UserError(f"{where} is not a {FORMAT} release manifest")
    return doc


# --- verifying and unpacking -----------------------------------------------------------------------------------

def safe_name(name: str) -> bool:
    """A relative path that stays inside the folder it is unpacked into."""
    p = PurePosixPath(name)
    return bool(name) and "\\" not in name and ":" not in name and not p.is_absolute() and \
        all(part not in ("", ".", "..") for part in name.split("/"))


def _entry_ok(entry) -> bool:
    """name, bytes and sha256 present, well-formed and safe."""
    return isinstance(entry, dict) and isinstance(entry.get("name"), str) and safe_name(entry["name"]) and \
        isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0 and \
        isinstance(entry.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None


def _download(source: str, entry: dict, folder: Path, timeout: float) -> Path:
    """The verified archive as a temp file in `folder` (the caller removes it)."""
    from tqdm import tqdm

    stream, declared, where = _open(source, entry["name"], timeout)
    fd, tmp = tempfile.mkstemp(prefix=f".{entry['name']}.", suffix=".part", dir=folder)
    try:
        with stream, os.fdopen(fd, "wb") as out, \
                tqdm(total=entry["bytes"], unit="B", unit_scale=True, desc=entry["name"], disable=None) as bar:
            n, sha = _copy(stream, out, entry["bytes"], where, bar)
        _checked(where, n, sha, declared, entry["bytes"], entry["sha256"])
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _unpack(archive: Path, files: dict, into: Path) -> None:
    """Extract exactly the manifest's files, each checked for size and sha256 while it is written."""
    try:
        z = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise UserError(f"{archive.name} is not a valid zip: {e}") from None
    with z:
        names = [i.filename for i in z.infolist()]
        bad = next((n for n in names if not safe_name(n)), None)
        if bad is not None:
            raise UserError(f"unsafe path in archive: {bad!r}: refusing it")
        links = [i.filename for i in z.infolist() if (i.external_attr >> 16) & 0o170000 == 0o120000]
        if links:
            raise UserError(f"symbolic link in archive: {links[0]!r}: refusing it")
        if len(set(names)) != len(names) or set(names) != set(files):
            extra, missing = sorted(set(names) - set(files)), sorted(set(files) - set(names))
            raise UserError(f"archive contents differ from the manifest (extra: {extra or '-'}, missing: "
                            f"{missing or '-'}, duplicates: {len(names) - len(set(names))}): refusing it")
        for name in names:
            want = files[name]
            dst = into / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                with z.open(name) as src, open(dst, "wb") as out:
                    n, sha = _copy(src, out, want["bytes"], f"{name} in {archive.name}")
            except zipfile.BadZipFile as e:
                raise UserError(f"{name} in the archive is corrupt: {e}") from None
            _checked(f"{name} in the archive", n, sha, None, want["bytes"], want["sha256"])


def fetch(source: str, target: str, dest: Path | None, *, timeout: float = 60.0, pin: str | None = None,
          force: bool = False) -> tuple[Path, dict]:
    manifest = read_manifest(source, timeout, pin)
    if target not in manifest["targets"]:
        raise UserError(f"target {target!r} is not in this release; it has: {', '.join(manifest['targets'])}")
    section = manifest["targets"][target]
    entry, files = section.get("archive", {}), section.get("files", {})
    files_ok = isinstance(files, dict) and all(isinstance(m, dict) and _entry_ok(dict(m, name=n))
                                               for n, m in files.items())
    if not _entry_ok(entry) or "/" in entry["name"] or not files_ok:
        raise UserError(f"the manifest's entry for {target} is malformed or names an unsafe path: refusing it")
    dest = Path(dest or f"{manifest['name']}-{manifest['version']}-{target}")
    if dest.exists() and not (force and dest.is_dir()):
        raise UserError(f"{dest} already exists: choose another --dest"
                        + (" or pass --force to replace it" if dest.is_dir() else ""))
    folder = ensure_dir(dest.absolute().parent)
    archive = _download(source, entry, folder, timeout)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder))
    try:
        _unpack(archive, files, tmp)
        tmp.chmod(0o755)
        old = folder / f".{dest.name}.old"
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        archive.unlink()
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, manifest


def _list(manifest: dict) -> None:
    print(f"{manifest['name']} {manifest['version']} (commit {manifest.get('git', {}).get('commit', '?')})")
    for name, t in manifest["targets"].items():
        print(f"  {name:18s} {t['archive']['bytes']:>12,} B  {len(t['files'])} files  "
              f"benchmark: {t.get('benchmark', {}).get('verdict', 'not recorded')}")


@one_line_errors("interrupted: nothing was unpacked")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m compress.fetch", description=__doc__.splitlines()[0].split(": ", 1)[1])
    add_arguments(p)
    args = p.parse_args(argv)
    if not args.list and not args.target:
        p.error("--target is required (or --list)")
    args.source = re.sub(r"/?manifest\.json$", "", args.source) or "."  # the manifest's own address works too
    if args.list:
        _list(read_manifest(args.source, args.timeout, args.manifest_sha256))
        return 0
    dest, manifest = fetch(args.source, args.target, args.dest, timeout=args.timeout,
                           pin=args.manifest_sha256, force=args.force)
    files = manifest["targets"][args.target]["files"]
    print(f"verified {len(files)} files (sha256) of {args.target} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
