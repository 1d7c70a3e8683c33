"""`python -m compress.fetch --from URL_OR_DIR --target T`: download one target's archive of a release, check
its sha256 and the sha256 of every file in it against the release's manifest.json, and unpack it atomically.

Anything that does not match is refused with a one-line error and nothing is left behind: the download goes
to a temp file beside the destination, the archive is unpacked into a temp folder beside it, and only a fully
verified folder is renamed into place. Redirects to another host are refused unless allowed by name, the whole
fetch has a deadline, and `--force` replaces only a folder an earlier fetch made (it holds MARKER).
Standard library plus tqdm, so it also runs on the device itself."""
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
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from edgecore.errors import UserError, one_line_errors
from edgecore.io import ensure_dir, open_regular

FORMAT = "pizza-edge-release/1"
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 16 << 20
CHUNK = 1 << 16
MARKER = ".pizza-edge-fetch.json"
# Release names, versions and target names become file and folder names: no separators, no leading dot.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class Deadline:
    """The whole fetch's time limit; each network wait gets at most the per-read timeout or what is left."""

    def __init__(self, seconds: float, per_read: float):
        self.seconds, self.per_read, self.end = seconds, per_read, time.monotonic() + seconds

    def timeout(self, where: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise UserError(f"{where}: the fetch took longer than --deadline {self.seconds:g} s: refusing it")
        return min(self.per_read, left)


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same host (or one the user allowed), and never from https to http: the
    manifest that vouches for every byte must come from where the user pointed."""

    def __init__(self, allowed: tuple[str, ...]):
        self.allowed = allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url,
                                                                                                     newurl))
        if old.scheme == "https" and new.scheme != "https":
            raise UserError(f"{req.full_url} redirects to {new.scheme}://{new.netloc} (not https): refusing it")
        if new.netloc != old.netloc and new.hostname not in self.allowed:
            raise UserError(f"{req.full_url} redirects to another host, {new.hostname}: refusing it "
                            f"(pass --allow-redirect {new.hostname} if you trust it)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="URL_OR_DIR",
                   help="release base URL (http/https, e.g. https://github.com/OWNER/REPO/releases/download/v0.1.0) "
                        "or a local release folder (dist/<name>-<version>)")
    p.add_argument("--target", help="target whose archive to fetch (see --list)")
    p.add_argument("--dest", type=Path, help="folder to unpack into (default: ./<name>-<version>-<target>)")
    p.add_argument("--manifest-sha256", metavar="HEX",
                   help="expected sha256 of manifest.json (pins the release when the source is not trusted)")
    p.add_argument("--force", action="store_true",
                   help="replace --dest if it exists and an earlier fetch made it (never any other folder)")
    p.add_argument("--list", action="store_true", help="list the release's targets and exit")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for each network read (default: 60)")
    p.add_argument("--deadline", type=float, default=1800.0,
                   help="seconds the whole fetch may take, however slowly a server trickles (default: 1800)")
    p.add_argument("--allow-redirect", action="append", default=[], metavar="HOST",
                   help="follow redirects to HOST (repeatable); GitHub release downloads redirect to "
                        "release-assets.githubusercontent.com")


class Net:
    """How this fetch reaches the network: the redirect policy and the deadline."""

    def __init__(self, timeout: float = 60.0, deadline: float = 1800.0, allow_redirect=()):
        if not (timeout > 0 and deadline > 0):  # also refuses nan
            raise UserError(f"--timeout and --deadline must be positive seconds, got {timeout} and {deadline}")
        self.deadline = Deadline(deadline, timeout)
        self.opener = urllib.request.build_opener(_SameHostRedirects(tuple(allow_redirect)))


# --- reading from a URL or a folder ----------------------------------------------------------------------------

def _is_url(source: str) -> bool:
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        return True
    if "://" in source:
        raise UserError(f"unsupported source {source!r}: use an http(s) URL or a local folder")
    return False


def _open(source: str, name: str, net: Net):
    """(readable stream, declared length or None, location) of one release file."""
    if _is_url(source):
        url = source.rstrip("/") + "/" + urllib.parse.quote(name)
        try:
            resp = net.opener.open(url, timeout=net.deadline.timeout(f"fetching {url}"))
        except urllib.error.HTTPError as e:
            raise UserError(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise UserError(f"cannot fetch {url}: {getattr(e, 'reason', e)}") from None
        length = resp.headers.get("Content-Length")
        return resp, int(length) if length and length.isdigit() else None, url
    path = Path(source) / name
    try:
        f = open_regular(path, "release file")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return f, os.fstat(f.fileno()).st_size, str(path)


def _copy(stream, out, limit: int, where: str, progress=None, deadline: Deadline | None = None) -> tuple[int, str]:
    """Stream into `out`, hashing, and refuse more than `limit` bytes (or, with a deadline, taking too long);
    returns (bytes, sha256). read1 returns what one socket read brought, so a trickling server meets the
    deadline instead of filling a whole chunk first."""
    h, n = hashlib.sha256(), 0
    read = getattr(stream, "read1", stream.read)
    try:
        while chunk := read(CHUNK):
            if deadline is not None:  # each read waits at most --timeout, so this bounds the overrun
                deadline.timeout(f"download of {where}")
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


def read_manifest(source: str, net: Net, pin: str | None = None) -> dict:
    stream, declared, where = _open(source, MANIFEST, net)
    buf = io.BytesIO()
    with stream:
        n, sha = _copy(stream, buf, MANIFEST_MAX_BYTES, where, deadline=net.deadline)
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
    for key in ("name", "version"):
        if not isinstance(doc.get(key), str) or not NAME_RE.fullmatch(doc[key]):
            raise UserError(f"{where}: release {key} {doc.get(key)!r} is malformed: refusing it")
    for target, section in doc["targets"].items():
        _check_section(where, target, section)
    return doc


def _check_section(where: str, target: str, section) -> None:
    """A target's entry: a safe name, its archive (a plain file name) and its files, all well-formed."""
    ok = NAME_RE.fullmatch(target) is not None and isinstance(section, dict)
    entry, files = (section.get("archive"), section.get("files")) if ok else (None, None)
    ok = ok and _entry_ok(entry) and "/" not in entry["name"] and isinstance(files, dict) \
        and all(isinstance(m, dict) and _entry_ok(dict(m, name=n)) for n, m in files.items()) \
        and isinstance(section.get("benchmark", {}), dict)
    if not ok:
        raise UserError(f"{where}: the entry for target {target!r} is malformed or names an unsafe path: refusing it")


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


def _download(source: str, entry: dict, folder: Path, net: Net) -> Path:
    """The verified archive as a temp file in `folder` (the caller removes it)."""
    from tqdm import tqdm

    stream, declared, where = _open(source, entry["name"], net)
    fd, tmp = tempfile.mkstemp(prefix=f".{entry['name']}.", suffix=".part", dir=folder)
    try:
        with stream, os.fdopen(fd, "wb") as out, \
                tqdm(total=entry["bytes"], unit="B", unit_scale=True, desc=entry["name"], disable=None) as bar:
            n, sha = _copy(stream, out, entry["bytes"], where, bar, net.deadline)
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


def _replaceable(dest: Path, force: bool) -> None:
    """Refuse an existing `dest` unless --force and an earlier fetch made it: --force must never delete a
    folder of the user's that merely has the same name."""
    if not os.path.lexists(dest):
        return
    if not force:
        raise UserError(f"{dest} already exists: choose another --dest"
                        + (" or pass --force to replace it" if dest.is_dir() else ""))
    marker = dest / MARKER
    if dest.is_symlink() or not dest.is_dir() or marker.is_symlink() or not marker.is_file():
        raise UserError(f"{dest} was not made by compress.fetch (no {MARKER} in it): refusing to replace it "
                        "even with --force; remove it yourself or choose another --dest")


def fetch(source: str, target: str, dest: Path | None, *, net: Net | None = None, pin: str | None = None,
          force: bool = False) -> tuple[Path, dict]:
    net = net or Net()
    manifest = read_manifest(source, net, pin)
    if target not in manifest["targets"]:
        raise UserError(f"target {target!r} is not in this release; it has: {', '.join(manifest['targets'])}")
    section = manifest["targets"][target]
    entry, files = section["archive"], section["files"]
    dest = Path(dest or f"{manifest['name']}-{manifest['version']}-{target}")
    _replaceable(dest, force)
    folder = ensure_dir(dest.absolute().parent)
    archive = _download(source, entry, folder, net)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder))
    try:
        _unpack(archive, files, tmp)
        (tmp / MARKER).write_text(json.dumps({"source": source, "name": manifest["name"], "target": target,
                                              "version": manifest["version"], "archive": entry}, indent=2) + "\n")
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
    git = manifest.get("git") if isinstance(manifest.get("git"), dict) else {}
    print(f"{manifest['name']} {manifest['version']} (commit {git.get('commit', '?')})")
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
    net = Net(args.timeout, args.deadline, args.allow_redirect)
    if args.list:
        _list(read_manifest(args.source, net, args.manifest_sha256))
        return 0
    dest, manifest = fetch(args.source, args.target, args.dest, net=net, pin=args.manifest_sha256, force=args.force)
    files = manifest["targets"][args.target]["files"]
    print(f"verified {len(files)} files (sha256) of {args.target} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
