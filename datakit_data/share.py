"""`datakit data share PATH...`: files of data/ for people without an AWS account.

Each file gets a presigned link (S3's signature in the URL, good until an expiry),
pinned to the version the lock file holds where the bucket keeps versions, so that a
later push does not change what the recipient gets. The links go into a folder of
their own, never onto the screen:

    index.html     path, size, SHA-256, link and expiry of each file (plain HTML, no scripts)
    SHA256SUMS     for `sha256sum -c` / `shasum -a 256 -c`
    download.sh    downloads every file and checks it (macOS, Linux)
    download.ps1   the same for Windows PowerShell

A link lasts the earliest of the time asked for, 7 days (S3's limit for signatures)
and the signing credentials' own expiry (an SSO session, an assumed role): a link
signed with credentials that have expired stops working too. When that cuts the time
short, the user is told why.
"""
import concurrent.futures
import datetime
import html
import os
import shlex
import time
from typing import Callable

from . import lockfile, s3
from .engine import aws
from .exceptions import FlagError, SyncError
from .files import write_json
from .layout import Layout, state_folder
from .names import Inside, printable
from .plan import local_moved
from .record import SyncRecord
from .report import human_bytes
from .scan import check_path_found, gather
from .selection import Selection
from .settings import Settings

#: S3 refuses a signature meant to last longer (SigV4's limit).
MAX_SECONDS = 7 * 24 * 3600
#: Links one share writes at most: a folder of more files is better shared as an archive.
MAX_LINKS = 5000


def parse_days(text: str) -> float:
    """--days: a number of days, at most 7."""
    try:
        days = float(text)
    except ValueError:
        raise FlagError(f'--days "{printable(text)[:40]}" is not a number of days (e.g. 7, or 0.5 for 12 hours).') from None
    if not 0 < days <= 7 or days != days:
        raise FlagError(f"--days must be more than 0 and at most 7 (S3 keeps a link's signature 7 days at most), "
                        f"not {printable(text)[:40]}.")
    return days


def share(layout: Layout, settings: Settings, selection: Selection, *, days: float,
          say: Callable[[str], None]) -> str:
    """Write the share folder for the selected files; returns its path."""
    if settings.unsigned:
        raise FlagError("A share is signed with your credentials: it cannot be made with no-sign-request.")
    scan = gather(layout, settings, selection)
    check_path_found(scan, selection, settings)
    record = SyncRecord.load(layout, settings)
    lock = lockfile.read(lockfile.lock_path(layout)) if settings.lock_file else None
    pinned = lock.entries if lock is not None and (lock.bucket, lock.s3_path) == (settings.bucket, settings.path) \
        else {}
    chosen = sorted(path for path in scan.local if selection.covers(path))
    if not chosen:
        raise FlagError(f"No file of {selection.shown} is in data/: share files you have pushed.")
    if len(chosen) > MAX_LINKS:
        raise FlagError(f"{len(chosen):,} files: a share holds at most {MAX_LINKS:,} links. Share a folder of "
                        "fewer files, or one archive (a .zip) of them.")
    versioned = s3.versioning(settings) == "Enabled"
    refused, files = {}, []
    for path in chosen:
        local, recorded, remote = scan.local[path], record.files.get(path), scan.remote.get(path)
        entry = pinned.get(path)
        why = unshareable(path)
        if why:
            refused[path] = why
        elif recorded is None:
            refused[path] = "not pushed yet; push it first"
        elif local_moved(local, recorded):
            refused[path] = "changed here since it was pushed or pulled; push it first"
        elif versioned and entry is not None and entry.etag == recorded.etag.lower() and entry.version_id:
            files.append((path, entry.version_id, recorded.etag, local.size))
        elif remote is not None and remote.etag == recorded.etag:
            files.append((path, None, recorded.etag, local.size))
        else:
            refused[path] = "S3 holds another version now; pull or push it first"
    # A lock is input from outside: a pinned version must hold the recorded bytes (its ETag).
    for path, why in _versions_that_differ(settings, [f for f in files if f[1]]).items():
        refused[path] = why
    if refused:
        named = "; ".join(f"data/{printable(p)} ({why})" for p, why in sorted(refused.items())[:10])
        more = f"; and {len(refused) - 10} more" if len(refused) > 10 else ""
        raise SyncError(f"Not shared: the links would not give what data/ holds: {named}{more}. Nothing was written.")

    seconds, why_short = _lifetime(settings, days)
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    client = s3.presigner(settings)
    links = []
    for path, version_id, _, size in files:
        params = {"Bucket": settings.bucket, "Key": settings.key_prefix + path,
                  "ResponseContentDisposition": f"attachment; filename*=UTF-8''{_quoted(path.rpartition('/')[2])}"}
        if version_id:
            params["VersionId"] = version_id
        url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(seconds))
        # The local file is as recorded: its bytes are the ones shared, whatever a lock says.
        links.append((path, size, lockfile.sha256_of(os.path.join(layout.data, path)), url, bool(version_id)))
    folder = _write(layout, links, until)
    total = sum(size for _, size, _, _, _ in links)
    pinned_count = sum(1 for link in links if link[4])
    shown = os.path.relpath(folder, layout.root)
    say(f"Shared {len(links)} file(s) ({human_bytes(total)}) until {_when(until)}: open {shown}/index.html, "
        f"or send the folder {shown}/ (its scripts download and check every file).")
    if why_short:
        say(f"The links last less than asked: {why_short}.")
    if versioned and pinned_count < len(links):
        say(f"{len(links) - pinned_count} link(s) follow the latest version on S3 (no version id recorded for "
            "them: pull or push once to record it); the others stay on the version shared.")
    say("Anyone with the links can download these files until then; the folder is not in git (.datakit-data/).")
    return folder


def _versions_that_differ(settings: Settings, pinned: list) -> dict[str, str]:
    """{path: why} for pinned versions whose ETag is not the recorded one (a HEAD each)."""
    exceptions = aws.botocore().exceptions
    client = s3.client(settings)

    def check(item) -> tuple[str, str | None]:
        path, version_id, etag, _ = item
        try:
            answer = client.head_object(Bucket=settings.bucket, Key=settings.key_prefix + path, VersionId=version_id)
        except (exceptions.ClientError, exceptions.BotoCoreError):
            return path, "the version the lock names for it cannot be read on S3; pull or push it first"
        if str(answer.get("ETag") or "").strip('"').lower() != etag.lower():
            return path, "the version the lock names for it holds other bytes; pull or push it first"
        return path, None

    if not pinned:
        return {}
    with concurrent.futures.ThreadPoolExecutor(min(s3.workers(settings), len(pinned))) as pool:
        return {path: why for path, why in pool.map(check, pinned) if why}


def _lifetime(settings: Settings, days: float) -> tuple[float, str]:
    """(seconds the links last, why they last less than asked, or "")."""
    asked = days * 86400
    seconds, why = min(asked, MAX_SECONDS), ""
    ends, method = aws.credential_expiry(settings.profile)
    if ends is not None:
        left = (ends - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        if left <= 60:
            raise SyncError(f'The credentials of profile "{settings.profile_name}" have expired: renew them '
                            f"(`aws sso login --profile {settings.profile_name}`, or as your organisation issues "
                            "them), then share again.")
        if left < seconds:
            seconds = left
            what = "SSO session" if "sso" in method else "temporary credentials"
            why = (f'your {what} (profile "{settings.profile_name}") ends at {_when(ends)}, and links signed '
                   "with it stop working then; share again after renewing it for longer links")
    return seconds, why


def _when(moment: datetime.datetime) -> str:
    """A moment in UTC and in this machine's time zone."""
    local = moment.astimezone()
    utc = moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return utc if local.utcoffset() == datetime.timedelta(0) else f"{local:%Y-%m-%d %H:%M %Z} ({utc})"


def _quoted(name: str) -> str:
    import urllib.parse

    return urllib.parse.quote(name, safe="")


def _write(layout: Layout, links: list, until: datetime.datetime) -> str:
    """The share folder: index.html, SHA256SUMS, download.sh, download.ps1."""
    shares = state_folder(layout, os.path.join(state_folder(layout, layout.state), "shares"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"
    folder = Inside(shares).prepared(os.path.join(stamp, "index.html")).rpartition(os.sep)[0]
    expires = until.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = "\n".join(
        f"<tr><td>{html.escape(path)}</td><td>{size:,}</td><td><code>{sha}</code></td>"
        f'<td><a href="{html.escape(url, quote=True)}" download>download</a></td></tr>'
        for path, size, sha, url, _ in links)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Shared data</title></head>
<body>
<h1>Shared data</h1>
<p>These links work until <time datetime="{expires}">{html.escape(_when(until))}</time>.
Each file's SHA-256 lets you check what you downloaded (<code>SHA256SUMS</code> in this folder).
<code>download.sh</code> (macOS, Linux) and <code>download.ps1</code> (Windows) download every file and check it.</p>
<table>
<tr><th>file</th><th>bytes</th><th>SHA-256</th><th>link</th></tr>
{rows}
</table>
</body></html>
"""
    sums = "".join(f"{sha}  {path}\n" for path, _, sha, _, _ in links)
    shell = ["#!/bin/sh", "# Downloads the shared files next to this script and checks each one's SHA-256.",
             "set -eu", 'cd "$(dirname "$0")"',
             'get() { mkdir -p "$(dirname "$2")"; curl -fsSL -o "$2" "$1" 2>/dev/null || wget -q -O "$2" "$1"; }']
    shell += [f"get {shlex.quote(url)} {shlex.quote('./' + path)}" for path, _, _, url, _ in links]
    shell += ['if command -v sha256sum >/dev/null; then sha256sum -c SHA256SUMS; else shasum -a 256 -c SHA256SUMS; fi']
    power = ['$ErrorActionPreference = "Stop"', "Set-Location -LiteralPath $PSScriptRoot",
             "function Get-Shared($Url, $Name, $Sha) {",
             "  $Path = Join-Path $PSScriptRoot $Name",
             "  $dir = Split-Path -Parent $Path",
             "  if ($dir) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }",
             "  Invoke-WebRequest -Uri $Url -OutFile ([WildcardPattern]::Escape($Path)) -UseBasicParsing",
             "  $got = (Get-FileHash -Algorithm SHA256 -LiteralPath $Path).Hash.ToLower()",
             '  if ($got -ne $Sha) { throw "$Path does not have the SHA-256 it was shared with" }',
             '  Write-Output "${Name}: OK"',
             "}"]
    power += [f"Get-Shared {_ps(url)} {_ps(path)} {_ps(sha)}" for path, _, sha, url, _ in links]
    os.chmod(folder, 0o700)  # the links are as good as a key until they expire
    for name, text in (("index.html", page), ("SHA256SUMS", sums), ("download.sh", "\n".join(shell) + "\n"),
                       ("download.ps1", "\r\n".join(power) + "\r\n")):
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o700 if name == "download.sh" else 0o600)
        with open(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    write_json(os.path.join(folder, "share.json"), {"expires": expires, "files": len(links)})
    return folder


#: What ends a PowerShell single-quoted string: ' and the curly quotes PowerShell takes for it.
_PS_QUOTES = ("'", "\u2018", "\u2019", "\u201a", "\u201b")
#: Characters no Windows file name holds (and ':' names a drive or a stream there).
_NOT_ON_WINDOWS = set(':*?"<>|')


def _ps(text: str) -> str:
    """A PowerShell single-quoted string: every quote character doubled."""
    for quote in _PS_QUOTES:
        text = text.replace(quote, quote * 2)
    return "'" + text + "'"


def unshareable(path: str) -> str | None:
    """Why a path cannot be handed to download scripts on every system, or None."""
    if _NOT_ON_WINDOWS & set(path):
        return "its name holds a character Windows file names cannot (: * ? \" < > |); rename it to share it"
    if any(part.startswith(("~", "-")) for part in path.split("/")):
        return "a folder or file name starting with ~ or -, which download tools read as something else"
    return None
