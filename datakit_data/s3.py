"""Listing and deleting objects in-process, with the botocore that awscli carries.

Planning needs the S3 folder's listing before and after a transfer. Starting the
AWS CLI for each listing costs about half a second of interpreter start-up, more
than the listing itself, so listings (and batch deletes) use botocore directly,
with the same credential chain, profile and endpoint as the CLI. Transfers still
run in the AWS CLI (see aws_cli.py).
"""
import concurrent.futures
import contextlib
import datetime
import email.utils
import functools
import hashlib
import logging
import os
import re
import threading
import time
import urllib.parse
from sys import intern
from typing import Any, Iterable, Iterator, Mapping
from xml.etree import ElementTree

from . import conditions, failures
from .engine import aws
from .engine.aws import botocore
from .failures import explain_error
from .exceptions import DatakitDataError, SyncError
from .layout import PROJECT_CONFIG
from .masking import mask_secrets, without_credentials
from .names import printable
from .plan import Remote
from .settings import ATTEMPTS, CONNECT_TIMEOUT, READ_TIMEOUT, RETRY_ENV, Settings

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def client(settings: Settings) -> Any:
    """An S3 client for these settings: profile, endpoint, bounded retries, and no
    signature with `no-sign-request` (made once per settings); its listing pages are
    read by read_contents first."""
    served = botocore()
    try:
        sess = aws.session(settings.profile, text_times=True)
        options = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT}
        if not any(key in os.environ for key in RETRY_ENV):
            # total_max_attempts counts the first attempt; botocore's max_attempts does not.
            options["retries"] = {"mode": "standard", "total_max_attempts": ATTEMPTS}
        if settings.unsigned:
            options["signature_version"] = served.UNSIGNED
        made = sess.create_client(
            "s3", endpoint_url=without_credentials(settings.endpoint_url), config=served.config.Config(**options))
        aws.read_pages_first(made, read_contents)
        return made
    except served.exceptions.BotoCoreError as err:
        raise explain_error(err, settings, "list")


def presigner(settings: Settings) -> Any:
    """A client with botocore's own answer parsing (not read_contents' fast pages: it reads
    folders too) that signs with Signature Version 4 (the one S3 takes everywhere, and
    presigned links of at most 7 days)."""
    served = botocore()
    try:
        sess = aws.session(settings.profile)
        options = {"signature_version": "s3v4", "connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT}
        if settings.unsigned:
            options["signature_version"] = served.UNSIGNED
        return sess.create_client("s3", endpoint_url=without_credentials(settings.endpoint_url),
                                  config=served.config.Config(**options))
    except served.exceptions.BotoCoreError as err:
        raise explain_error(err, settings, "list")


#: A listing page's objects, and the fields of one, as S3 writes them. (Written out
#: as a loop over "<" rather than a lazy ".*?": five times sooner on a page.)
_CONTENTS = re.compile(rb"<Contents>([^<]*(?:<(?!/Contents>)[^<]*)*)</Contents>")
#: Every byte but the control characters XML 1.0 does not allow, even as a reference
#: (an XML parser refuses them): deleting these from a page leaves only those.
_XML_BYTES = bytes(c for c in range(256) if c >= 0x20 or c in (0x9, 0xA, 0xD))
_REFERENCE = re.compile(r"&(?:#([0-9]{1,7})|#x([0-9a-fA-F]{1,6})|(lt|gt|amp|apos|quot));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "apos": "'", "quot": '"'}
#: Where each object was cut out of a page, in what is left of it: NUL, which no page read
#: holds (it is not an XML character); and what stands in for each run of them for an
#: XML parser to say where they stood (in a page whose rest holds no such name).
_CUT_MARK = b"\0"
_RUN = re.compile(rb"\0(?:[ \t\n]*\0)*")
_CUT_NAME = "datakit-cut"
_CUT = b"<datakit-cut/>"


class _NotOurs(ValueError):
    """A page read_contents leaves whole to botocore's parser (which refuses it if it is
    not well-formed XML)."""


def read_contents(response_dict: dict, customized_response_dict: dict, **_: Any) -> None:
    """Read the objects of a listing page with two regular expressions, before botocore
    parses the rest of it.

    botocore's parser costs about 50 us per object, under the GIL: 5 s of the 7 s a
    100,000-object listing took. Here the objects' four fields we use are read from
    the page's bytes (references unescaped as an XML parser does) and the objects are
    cut out of the body, so botocore parses only what is left (the truncation mark,
    the continuation token, the folders). A page that botocore could read otherwise,
    or refuse, is left whole to botocore: one of any other shape, or one an XML parser
    would refuse in a way this reading could miss (a comment or CDATA, an object tag
    with attributes or spaces, an unknown reference, a character XML does not allow,
    "]]>", bytes that are not UTF-8), and one where an XML parser does not find each
    object cut out as a child of the ListBucketResult, or finds another object there
    (an object in a processing instruction, nested in another element, after the root,
    or a namespaced <s3:Contents>). Line ends are read as XML reads them (CR LF and CR
    as LF). Keys are still URL-decoded by botocore's own handler afterwards. A size
    with more digits than Python reads (which botocore refuses too) is an error that
    names its object.
    """
    body = response_dict.get("body")
    if not isinstance(body, bytes) or response_dict.get("status_code", 200) >= 300 or b"<Contents>" not in body:
        return
    # Every object opened as "<Contents>" and closed as "</Contents>", else not ours (this
    # also keeps the pattern from searching a page of unclosed objects at length). A
    # search for one byte costs 2 us a page, for two or more 70-230 us: the rare byte first.
    opened = body.count(b"<Contents")
    if opened != body.count(b"<Contents>") or opened != body.count(b"</Contents") \
            or opened != body.count(b"</Contents>") or body.translate(None, _XML_BYTES) \
            or (b"!" in body and b"<!" in body) or (b"]" in body and b"]]>" in body) \
            or (b"\xef" in body and (b"\xef\xbf\xbe" in body or b"\xef\xbf\xbf" in body)):
        return  # ("]]>" and U+FFFE, U+FFFF: what an XML parser refuses besides)
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # as an XML parser reads any document
    try:
        contents, rest = _alike(body, opened) or _one_by_one(body)
    except (_NotOurs, UnicodeDecodeError):
        return  # botocore reads the whole page
    except _Unread as err:
        if _cut_from_the_root(err.rest):
            raise _NotAListing(err.what) from None
        return  # (the object is not one botocore would read)
    if not _cut_from_the_root(rest):
        return
    response_dict["body"] = rest.replace(_CUT_MARK, b"")
    customized_response_dict["Contents"] = contents


def _cut_from_the_root(rest: bytes) -> bool:
    """Does an XML parser read what is left of a page (_CUT_MARK where each object
    was) as a ListBucketResult with each run of objects cut out among its children,
    and no other object? Then botocore reads the same objects in the whole page.

    Parsed as botocore parses (UTF-8, whatever the page declares), with _CUT for each
    run: about 10 us for a page's few other fields. An object's fields hold no
    element of _CUT_NAME (their names have no "-"), so any in the rest is the page's.
    """
    if _CUT_NAME.encode("ascii") in rest:
        return False
    marked, cuts = _RUN.subn(_CUT, rest)
    parser = ElementTree.XMLParser(target=ElementTree.TreeBuilder(), encoding="utf-8")
    try:
        parser.feed(marked)
        root = parser.close()
    except ElementTree.ParseError:
        return False  # botocore refuses the whole page too
    if root.tag.rpartition("}")[2] != "ListBucketResult":
        return False
    runs = 0
    for child in root:
        name = child.tag.rpartition("}")[2]
        if name == _CUT_NAME:
            runs += 1
        elif name == "Contents":
            return False  # one not cut out: <s3:Contents>
    return runs == cuts


def _one_by_one(body: bytes) -> tuple[list[dict], bytes]:
    """(objects, what is left of the page): each object read field by field."""
    contents, rest, start, unread = [], [], 0, None
    for match in _CONTENTS.finditer(body):
        fields = _fields_of(match.group(1))
        digits = fields.get(b"Size", b"")
        if b"Key" not in fields or not digits.isdigit():
            raise _NotOurs
        key = _xml_text(fields[b"Key"])
        try:
            size = int(digits)
        except ValueError:  # more digits than Python reads (4300): botocore refuses the page too
            size, unread = 0, unread or (key, len(digits))
        contents.append({"Key": key, "Size": size, "ETag": _xml_text(fields.get(b"ETag", b"")),
                         "LastModified": _xml_text(fields.get(b"LastModified", b""))})
        rest += (body[start:match.start()], _CUT_MARK)
        start = match.end()
    rest.append(body[start:])
    if unread is not None:
        key, digits = unread
        if b"<EncodingType>url</EncodingType>" in body:
            key = urllib.parse.unquote_plus(key)  # as botocore's handler decodes it
        raise _Unread(_no_such_size(key, f"{digits} digits"), b"".join(rest))
    return contents, b"".join(rest)


class _Unread(Exception):
    """A page with an object whose size Python cannot read (``what``), and what is left
    of it once its objects are cut out (``rest``): an error if botocore reads that object."""

    def __init__(self, what: str, rest: bytes):
        super().__init__(what)
        self.what, self.rest = what, rest


#: One field of an object, and the space before it: a plain element (groups 1 and 2:
#: name and text), or one holding plain elements (group 3: its name), as <Owner> does,
#: their text without references (a name starts with a letter or "_", as XML's do).
_FIELD = re.compile(rb"[ \t\n]*(?:<([A-Za-z_]\w*)>([^<]*)</\1>"
                    rb"|<([A-Za-z_]\w*)>(?:[ \t\n]*<([A-Za-z_]\w*)>[^<&]*</\4>)*[ \t\n]*</\3>)")
#: The fields of an object that datakit reads.
_WANTED = ("Key", "Size", "ETag", "LastModified")
_USED = tuple(name.encode() for name in _WANTED)
_AMPERSAND = ord("&")


def _fields_of(inner: bytes) -> dict[bytes, bytes]:
    """{name: text} of an object's plain fields (what an element like <Owner> holds is
    not among them). Anything else in it (markup an XML parser would refuse, text
    between fields, one of our four fields twice or holding elements, a reference
    XML does not know) raises _NotOurs: botocore reads that page."""
    fields, at = {}, 0
    while (field := _FIELD.match(inner, at)) is not None and field.end() > at:
        name = field.group(1)
        if name is not None:
            if name in fields and name in _USED:
                raise _NotOurs
            text = fields[name] = field.group(2)
            if _AMPERSAND in text and name not in _USED:  # (an int: 16 ns, where b"&" takes 135)
                _xml_text(text)  # a field not read must still be XML
        elif field.group(3) in _USED:
            raise _NotOurs
        at = field.end()
    if inner[at:].strip(b" \t\n"):
        raise _NotOurs
    return fields


#: One plain element (a name, text without markup, its end), as S3 writes an object's fields.
_ELEMENT = re.compile(r"<([A-Za-z]{1,64})>[^<]*</\1>")
#: _CONTENTS, for the page read as text.
_CONTENTS_TEXT = re.compile(_CONTENTS.pattern.decode("ascii"))


def _alike(body: bytes, opened: int) -> tuple[list[dict], bytes] | None:
    """(objects, what is left of the page) when every object on the page has the
    fields of the first, in the same order, each plain text: what S3 servers write.
    One pattern made for that order reads the whole page at once, three times sooner
    than object by object. None when any object differs (_one_by_one reads them)."""
    text = body.decode("utf-8")
    first = _CONTENTS_TEXT.search(text)
    if first is None:
        return None
    inner = first.group(1)
    elements = list(_ELEMENT.finditer(inner))
    fields = tuple(element.group(1) for element in elements)
    if not 0 < len(fields) <= 16 or len(set(fields)) != len(fields) or "Key" not in fields or "Size" not in fields \
            or sum(len(element.group(0)) for element in elements) != len(inner):
        return None  # nested or repeated fields, or text between them: not this reading
    shape = _shape(fields)
    found = shape.findall(text)
    if len(found) != opened:
        return None  # (each match starts at one "<Contents>": all of them, or not alike)
    key, size, etag, modified = (fields.index(name) if name in fields else None for name in _WANTED)
    contents = [{"Key": _text(one[key]), "Size": int(one[size]),
                 "ETag": "" if etag is None else _text(one[etag]),
                 "LastModified": "" if modified is None else _text(one[modified])} for one in found]
    # Every "</Contents>" ends one of them: n - 1 of them followed by "<Contents>" means
    # the objects stand together, nothing between them.
    cut = _CUT_MARK.decode("ascii")
    if text.count("</Contents><Contents>") == len(found) - 1:
        rest = text[:first.start()] + cut + text[text.rindex("</Contents>") + len("</Contents>"):]
    else:
        rest = shape.sub(cut, text)
    return contents, rest.encode("utf-8")


@functools.lru_cache(maxsize=8)
def _shape(fields: tuple[str, ...]) -> re.Pattern:
    """The pattern of an object with these fields in this order, each one's text a group
    (a size in digits only, as many as a size can have; a field not read without
    references, which would need a look)."""
    parts = [f"<{name}>({'[0-9]{1,19}' if name == 'Size' else '[^<]*' if name in _WANTED else '[^<&]*'})</{name}>"
             for name in fields]
    return re.compile("<Contents>" + "".join(parts) + "</Contents>")


def _text(value: str) -> str:
    """An element's text with XML's references unescaped (the quotes around an ETag,
    &quot; or &#34;, without the cost of a general unescape). A reference XML does not
    know, or to a character it does not allow, raises _NotOurs."""
    if "&" not in value:
        return value
    value = value.replace("&#34;", '"').replace("&quot;", '"')
    if "&" not in value:
        return value
    read, references = _REFERENCE.subn(_referenced, value)
    if references != value.count("&"):  # an "&" that starts no reference
        raise _NotOurs
    return read


def _xml_text(raw: bytes) -> str:
    """The text of an element read from the page's bytes: UTF-8, then as _text."""
    return _text(raw.decode("utf-8"))


def _referenced(match: re.Match) -> str:
    if match[3]:
        return _NAMED[match[3]]
    code = int(match[1]) if match[1] else int(match[2], 16)
    if not (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF):
        raise _NotOurs
    return chr(code)


def list_remote(settings: Settings, under: str = "") -> dict[str, Remote]:
    """{path under s3_path: Remote} for every object in the project's S3 folder
    (only those in its folder ``under``, e.g. "raw/2024/", when given).

    One request reads up to 1000 objects, and the next cannot be sent before it
    answers. A folder with more is listed again folder by folder: one request for
    its top-level names, then each top-level folder in parallel.
    """
    s3 = client(settings)
    base = settings.key_prefix
    prefix = base + under
    with _listing(settings):
        # A listing of its own: its continuation token is never sent.
        first = s3.list_objects_v2(Bucket=settings.bucket, Prefix=prefix)
        if not first.get("IsTruncated"):
            return _objects([first], base, prefix)
        pages = list(_pages(s3.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=prefix, Delimiter="/"), _NEXT_PAGE))
        folders = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", ())]
        found = _objects(pages, base, prefix)
        with concurrent.futures.ThreadPoolExecutor(min(workers(settings), max(1, len(folders)))) as pool:
            for part in pool.map(lambda folder: _list_all(s3, settings.bucket, folder, base), folders):
                found.update(part)
        return found


@contextlib.contextmanager
def _listing(settings: Settings) -> Iterator[None]:
    """A listing's failures, each as one line: botocore's, and a listing no S3 server sends."""
    exceptions = botocore().exceptions
    try:
        yield
    except (exceptions.BotoCoreError, exceptions.ClientError) as err:
        raise explain_error(err, settings, "list")
    except _NotAListing as err:
        raise _not_a_listing(settings, str(err)) from err
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        # What botocore's parser and handlers raise on a page no S3 server writes (a key
        # twice, a size of more digits than Python reads in a page left to botocore).
        raise _not_a_listing(settings, "a listing page that is not S3's XML", debug=True) from err


def _not_a_listing(settings: Settings, what: str, debug: bool = False) -> SyncError:
    more = "; `datakit --debug ...` shows more" if debug else ""
    return SyncError(f"{failures.doing('list', settings)} failed: {failures.shown_endpoint(settings)} sent {what}. "
                     f"Check that it is an S3 server, or \"s3_endpoint_url\" in {PROJECT_CONFIG}{more}.")


class _NotAListing(ValueError):
    """What a server sent that no S3 server sends in a listing (the words after "sent")."""


#: The fields of a page that say where the next page of its listing starts.
_NEXT_PAGE = ("NextContinuationToken",)
_NEXT_VERSIONS = ("NextKeyMarker", "NextVersionIdMarker")


def _pages(pages: Iterable[dict], fields: tuple[str, ...]) -> Iterator[dict]:
    """The pages of one listing, ended by an error when a page sends the listing back
    to where it has been: the same continuation (``fields``) twice. botocore's
    paginator stops a token sent twice in a row only; tokens going round (A, B, A)
    would list forever. An S3 server's tokens move on: each is new in its listing."""
    seen = set()
    for page in pages:
        if page.get("IsTruncated"):
            then = tuple(page.get(field) for field in fields)
            if then in seen:
                raise _NotAListing("the same continuation token twice in one listing: its pages go round in a "
                                   "circle and the listing would never end")
            seen.add(then)
        yield page


def _list_all(s3: Any, bucket: str, folder: str, prefix: str) -> dict[str, Remote]:
    return _objects(_pages(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder), _NEXT_PAGE),
                    prefix, folder)


#: The largest size a listing can give: S3's Size is a 64-bit integer. (AWS S3's objects
#: stop at 5 TiB, MinIO's at 50 TiB: a bound of 5 TiB would refuse real objects.)
MAX_SIZE = 2 ** 63 - 1


def _no_such_size(key: str, size: str) -> str:
    """The words for an object listed with a size no S3 object has (``size``: "-1 bytes", "5000 digits")."""
    return f'object "{printable(key)}" with a size of {size}, which no S3 object has'


def _size_problem(key: str, size: object) -> str:
    if not isinstance(size, int):
        return f'object "{printable(key)}" without a size'
    digits = str(size)
    return _no_such_size(key, f"{digits} bytes" if len(digits) <= 20 else f"{len(digits.lstrip('-'))} digits")


def _objects(pages: Iterable[dict], prefix: str, asked: str) -> dict[str, Remote]:
    """{path under prefix: Remote} for the objects of these pages, which list the
    folder ``asked`` (prefix or a folder in it). An object no S3 server lists so (no
    key, outside that folder, no size or one no object has, a time the AWS CLI cannot
    read) raises _NotAListing, which names it."""
    found = {}
    for page in pages:
        contents = page.get("Contents", ())
        stamps = [str(item.get("LastModified", "")) for item in contents]
        odd_times = not _s3_times(stamps)
        for item, stamp in zip(contents, stamps):
            key, size = item.get("Key"), item.get("Size")
            if not isinstance(key, str):
                raise _NotAListing("an object without a key")
            if not key.startswith(asked):
                raise _NotAListing(f'object "{printable(key)}" outside {asked or "the bucket"}, which was asked for')
            if not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
                raise _NotAListing(_size_problem(key, size))
            if odd_times:
                _check_time(key, stamp)
            if key.endswith("/") and size == 0:
                continue  # a folder marker, not a file (the AWS CLI skips it too)
            path = intern(key[len(prefix):])  # the scan and the record hold it as one string
            found[path] = Remote(size, item.get("ETag", "").strip('"'), stamp)
    return found


#: A time as S3 writes it in a listing (ISO 8601, in UTC or with an offset), on a day of
#: the calendar (the 29th of February aside), which the AWS CLI reads (tested against
#: its own reading); and a page's times, one a line.
_S3_TIME = (r"[1-8][0-9]{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
            r"|(?:0[13578]|1[02])-31)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
            r"(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])")
_S3_TIMES = re.compile(f"(?:{_S3_TIME}\n)*{_S3_TIME}").fullmatch


def _s3_times(stamps: list[str]) -> bool:
    """Are these all times as S3 writes them? (One match over a page's times costs
    0.15 us an object, a match for each 0.25 us.)"""
    lines = "\n".join(stamps)
    return not stamps or (_S3_TIMES(lines) is not None and lines.count("\n") == len(stamps) - 1)


def _check_time(key: str, stamp: str) -> None:
    """Raise _NotAListing unless the AWS CLI reads this as an object's time.

    Its sync reads every listed LastModified with dateutil (and a pull sets each
    file's time from it): a time it cannot read stops it with Python's words
    ("Unknown string format: yesterday"), after status and planning said all was well.
    """
    if _s3_times([stamp]):
        return
    import dateutil.parser  # what the AWS CLI reads times with (awscli.customizations.s3.utils)
    import dateutil.tz

    try:
        dateutil.parser.parse(stamp).astimezone(dateutil.tz.tzlocal())
    except (ValueError, OverflowError):
        shown = printable(stamp)
        raise _NotAListing(f'object "{printable(key)}" ' + (
            f'last modified "{shown[:40]}{"..." if len(shown) > 40 else ""}", which is not a time' if stamp
            else "without a time (LastModified)")) from None


#: Parallel in-process requests (botocore keeps 10 connections per client).
HEAD_WORKERS = 10


def workers(settings: Settings) -> int:
    """How many in-process requests run at once: HEAD_WORKERS, or fewer when the user
    limits max_concurrent_requests."""
    return min(HEAD_WORKERS, settings.max_concurrent_requests or HEAD_WORKERS)


def head_remote(settings: Settings, paths: Iterable[str]) -> dict[str, Remote]:
    """{path: Remote} for those of these paths that exist under s3_path, one HEAD each,
    in parallel: cheaper than a listing when a few objects of a large folder matter."""
    exceptions = botocore().exceptions
    s3 = client(settings)
    prefix = settings.key_prefix

    def head(path: str) -> tuple[str, Remote | None]:
        try:
            answer = s3.head_object(Bucket=settings.bucket, Key=prefix + path)
        except exceptions.ClientError as err:
            if _code(err) in ("404", "NoSuchKey", "NotFound"):
                return path, None
            raise
        return path, Remote(int(answer["ContentLength"]), answer.get("ETag", "").strip('"'),
                            str(answer.get("LastModified", "")))

    try:
        with concurrent.futures.ThreadPoolExecutor(workers(settings)) as pool:
            return {path: obj for path, obj in pool.map(head, list(paths)) if obj is not None}
    except (exceptions.BotoCoreError, exceptions.ClientError) as err:
        raise explain_error(err, settings, "list")


def has_objects(settings: Settings, under: str = "") -> bool:
    """Does anything live under s3_path (or its folder ``under``) yet?"""
    s3 = client(settings)
    with _listing(settings):
        answer = s3.list_objects_v2(Bucket=settings.bucket, Prefix=settings.key_prefix + under, MaxKeys=1)
    return bool(answer.get("Contents"))


class ConditionsUnsupported(Exception):
    """The store rejected the ETag conditions of a batch delete (``code``: its answer)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def delete_remote(settings: Settings, expect: Mapping[str, str], *, conditional: bool = True,
                  check_first: bool = True, probe: bool = True) -> tuple[list[str], tuple[str, str] | None]:
    """Delete objects under s3_path, each only while it is still the version the plan saw
    (``expect``: {path: ETag}), up to 1000 per request: (the paths refused, because S3
    holds another version now; what the probe showed, or None).

    ``conditional`` sends each ETag with its key (S3's conditional delete), with
    ``probe`` first one key alone under an ETag no object has (a store that enforces
    the condition refuses it, one that ignores it deletes what was planned anyway), and
    raises ConditionsUnsupported if the store rejects the ETags. ``check_first``
    (always so without conditions) reads each object's ETag just before (HEAD) and
    deletes only those still the same: on a store that ignores the conditions, a push
    landing between that check and the delete is not seen.
    """
    exceptions = botocore().exceptions
    s3 = client(settings)
    prefix = settings.key_prefix
    if check_first or not conditional:
        now = head_remote(settings, list(expect))
        refused = [p for p, etag in expect.items() if p in now and now[p].etag != etag]
        expect = {p: etag for p, etag in expect.items() if p in now and p not in refused}
    else:
        refused = []

    def delete(entries: list[dict]) -> list[dict]:
        """One batch delete: the errors S3 answered, by entry."""
        try:
            answer = s3.delete_objects(Bucket=settings.bucket, Delete={"Objects": entries, "Quiet": True})
        except exceptions.ClientError as err:
            code = _code(err)
            if conditional and (code in ("NotImplemented", "501", "MalformedXML") or _status(err) == 501):
                raise ConditionsUnsupported(code)
            raise explain_error(err, settings, "delete")
        except exceptions.BotoCoreError as err:
            raise explain_error(err, settings, "delete")
        return list(answer.get("Errors") or [])

    probed = None
    pending = sorted(expect)
    if conditional and probe:
        subject = next((path for path in pending if expect[path]), None)
        if subject is not None:
            errors = delete([{"Key": prefix + subject, "ETag": f'"{conditions.WRONG_ETAG}"'}])
            codes = {str(error.get("Code")) for error in errors}
            if not errors:
                probed = (conditions.IGNORED, "deleted")
                pending.remove(subject)  # deleted, as planned
            elif "PreconditionFailed" in codes:
                probed = (conditions.PROVEN, "PreconditionFailed")
            elif "NotImplemented" in codes:
                raise ConditionsUnsupported("NotImplemented")
    for attempt in range(conditions.CONFLICT_ATTEMPTS):
        racing = []
        for start in range(0, len(pending), 1000):
            entries = []
            for path in pending[start:start + 1000]:
                entry = {"Key": prefix + path}
                if conditional and expect[path]:
                    entry["ETag"] = f'"{expect[path]}"'
                entries.append(entry)
            failed = []
            for error in delete(entries):
                path = str(error.get("Key", ""))[len(prefix):]
                code = error.get("Code")
                if code == "PreconditionFailed":
                    refused.append(path)
                elif code == "ConditionalRequestConflict" and attempt + 1 < conditions.CONFLICT_ATTEMPTS:
                    racing.append(path)
                elif code == "ConditionalRequestConflict":
                    refused.append(path)
                elif code == "NoSuchKey":
                    continue  # already gone: what this delete wanted
                elif conditional and code == "NotImplemented":
                    raise ConditionsUnsupported(code)
                else:
                    failed.append(error)
            if failed:
                first = failed[0]
                raise SyncError(
                    f"Could not delete {len(failed)} object(s) from {mask_secrets(settings.s3_url)}, e.g. "
                    f"{printable(first.get('Key'))}: {printable(first.get('Message') or first.get('Code'))}. "
                    "Check your permissions."
                )
        if not racing:
            break
        pending = racing
        time.sleep(conditions.backoff(attempt))
    return refused, probed


def _code(err) -> str:
    """The S3 error code of a botocore error ("" when it has none: no answer came)."""
    response = getattr(err, "response", None)
    return str((response.get("Error") or {}).get("Code") or "") if isinstance(response, dict) else ""


def _status(err) -> int:
    return int((err.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)


def check_bucket(settings: Settings) -> tuple[bool, str]:
    """`datakit config verify`: (True, "") when the bucket answers, else (False, why)."""
    try:
        has_objects(settings)
    except DatakitDataError as err:
        return False, str(err)
    return True, ""


def etag_is_md5(settings: Settings, path: str) -> bool:
    """Is this object's ETag the MD5 of its content (not so with SSE-KMS or SSE-C)?"""
    exceptions = botocore().exceptions
    try:
        head = client(settings).head_object(Bucket=settings.bucket, Key=settings.key_prefix + path)
    except (exceptions.BotoCoreError, exceptions.ClientError):
        return True  # cannot tell: assume the common case, and call a mismatch a conflict
    encryption = head.get("ServerSideEncryption") or ""
    return not encryption.startswith("aws:kms") and not head.get("SSECustomerAlgorithm")


def noncurrent_expiry(settings: Settings) -> int | None:
    """The fewest days after which the bucket's lifecycle rules expire noncurrent versions
    of this project's objects; 0 when no rule does; None when the rules cannot be read."""
    exceptions = botocore().exceptions
    try:
        answer = client(settings).get_bucket_lifecycle_configuration(Bucket=settings.bucket)
    except exceptions.ClientError as err:
        code = str((err.response.get("Error") or {}).get("Code") or "")
        return 0 if code == "NoSuchLifecycleConfiguration" else None
    except exceptions.BotoCoreError:
        return None
    prefix = settings.key_prefix
    found = []
    for rule in answer.get("Rules") or []:
        if not isinstance(rule, dict) or rule.get("Status") != "Enabled":
            continue
        where = rule.get("Filter") if isinstance(rule.get("Filter"), dict) else {}
        scope = where.get("Prefix", (where.get("And") or {}).get("Prefix", rule.get("Prefix", ""))) or ""
        days = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
        if isinstance(days, int) and days > 0 and isinstance(scope, str) and \
                (prefix.startswith(scope) or scope.startswith(prefix)):
            found.append(days)
    return min(found, default=0)


def versioning(settings: Settings) -> str | None:
    """The bucket's versioning: "Enabled", "Suspended", "" (never turned on), or None
    when the server does not say (no permission, or no such feature)."""
    exceptions = botocore().exceptions
    try:
        answer = client(settings).get_bucket_versioning(Bucket=settings.bucket)
    except exceptions.ClientError:
        return None
    except exceptions.BotoCoreError as err:
        raise explain_error(err, settings, "list")
    return answer.get("Status", "")


def list_versions(settings: Settings, under: str = "") -> list[dict]:
    """Every version and deletion marker under s3_path/under, as dicts: path, version_id,
    time (as S3 sent it), size, deleted, latest, etag. Folder markers are left out."""
    s3 = client(settings)
    base = settings.key_prefix
    found = []
    with _listing(settings):
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=settings.bucket, Prefix=base + under)
        for page in _pages(pages, _NEXT_VERSIONS):
            for kind, deleted in (("Versions", False), ("DeleteMarkers", True)):
                for item in page.get(kind, ()):
                    if item["Key"].endswith("/") and int(item.get("Size", 0)) == 0:
                        continue  # a folder marker, as in a listing
                    found.append({
                        "path": item["Key"][len(base):], "version_id": item.get("VersionId") or "null",
                        "time": str(item.get("LastModified", "")), "size": int(item.get("Size", 0)),
                        "deleted": deleted, "latest": bool(item.get("IsLatest")),
                        "etag": item.get("ETag", "").strip('"'),
                    })
    return found


def object_metadata(settings: Settings, path: str, version_id: str | None = None) -> dict:
    """The user metadata of an object (of one version), {} when it cannot be read."""
    exceptions = botocore().exceptions
    # "null" names the version an object had before versioning was turned on.
    extra = {"VersionId": version_id} if version_id else {}
    try:
        answer = client(settings).head_object(Bucket=settings.bucket, Key=settings.key_prefix + path, **extra)
    except (exceptions.BotoCoreError, exceptions.ClientError):
        return {}
    return answer.get("Metadata") or {}


def seconds(stamp: str) -> float | None:
    """An object's time as S3 sent it, in a listing (ISO 8601) or a HEAD (HTTP date)."""
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(stamp).timestamp()
    except (TypeError, ValueError):
        return None


def download_version(settings: Settings, path: str, version_id: str | None, target: str, *,
                     stop: threading.Event, etag: str = "") -> None:
    """Write one version of an object to target, a new file; stop between chunks when
    ``stop`` is set (the partial file is never moved into data/). Without a version id:
    the current version, which must still be the one with ``etag``.

    ``etag`` is the version's ETag as listed: what arrives must be that version (a
    server that ignores the version id sends the current bytes). Its ETag must be the
    listed one, and where the ETag is the MD5 of the content, so must the bytes' MD5;
    otherwise target is removed and the download refused by name.
    """
    exceptions = botocore().exceptions
    try:
        which = {"VersionId": version_id} if version_id else {}
        answer = client(settings).get_object(Bucket=settings.bucket, Key=settings.key_prefix + path, **which)
        sent_etag = str(answer.get("ETag") or "").strip('"')
        if version_id is None and etag and sent_etag != etag:
            raise SyncError(f"data/{printable(path)} changed on S3 while it was fetched: run the command again.")
        if (version_id and answer.get("VersionId") not in (None, version_id)) or (etag and sent_etag and sent_etag != etag):
            raise _not_that_version(path, version_id)
        plain_md5 = bool(etag) and _MD5.fullmatch(etag) is not None and not (
            str(answer.get("ServerSideEncryption") or "").startswith("aws:kms") or answer.get("SSECustomerAlgorithm"))
        digest = hashlib.md5(usedforsecurity=False)
        with open(target, "xb") as fh:
            for chunk in answer["Body"].iter_chunks(1024 * 1024):
                if stop.is_set():
                    return
                fh.write(chunk)
                if plain_md5:
                    digest.update(chunk)
        if plain_md5 and digest.hexdigest() != etag.lower():
            os.unlink(target)
            if version_id is None:
                raise SyncError(f"data/{printable(path)} arrived with other bytes than its ETag says: run the command again.")
            raise _not_that_version(path, version_id)
    except exceptions.ClientError as err:
        code = str((err.response.get("Error") or {}).get("Code") or "")
        if code in GONE_CODES:
            raise SyncError(f"data/{printable(path)}: S3 holds no such version ({code}).", kind="gone") from err
        raise explain_error(err, settings, "pull")
    except exceptions.BotoCoreError as err:
        raise explain_error(err, settings, "pull")


#: What S3 answers for a version (or object) it no longer holds.
GONE_CODES = ("NoSuchVersion", "NoSuchKey", "404", "InvalidArgument")
_MD5 = re.compile(r"[0-9a-fA-F]{32}")


def _not_that_version(path: str, version_id: str) -> SyncError:
    return SyncError(
        f"S3 sent other bytes than version {printable(version_id)[:80]} of data/{printable(path)}: the server "
        "ignored the version asked for. Nothing of it was written to data/; this server cannot go back in "
        "time with --as-of (its own tools may)."
    )


def list_parts(settings: Settings, path: str, upload_id: str) -> list[tuple[int, int, str]] | None:
    """(part number, size, ETag) of each part S3 holds of a multipart upload, in order;
    None when the upload is gone or its parts cannot be read (it is then started over)."""
    exceptions = botocore().exceptions
    found, marker = [], 0
    try:
        while True:
            page = client(settings).list_parts(Bucket=settings.bucket, Key=settings.key_prefix + path,
                                               UploadId=upload_id, PartNumberMarker=marker)
            for part in page.get("Parts") or []:
                found.append((int(part["PartNumber"]), int(part["Size"]), str(part.get("ETag") or "").strip('"')))
            following = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or following <= marker or len(found) > 10_000:
                break
            marker = following
    except (exceptions.BotoCoreError, exceptions.ClientError, KeyError, TypeError, ValueError):
        return None
    return sorted(found)


def abort_upload(settings: Settings, path: str, upload_id: str) -> bool:
    """Abort a multipart upload of ours that will not be continued (its parts stop
    costing storage): True when it is gone (aborted, or already gone), False when S3
    would not (no permission, no connection)."""
    exceptions = botocore().exceptions
    try:
        client(settings).abort_multipart_upload(Bucket=settings.bucket, Key=settings.key_prefix + path,
                                                UploadId=upload_id)
    except exceptions.ClientError as err:
        if _code(err) == "NoSuchUpload":
            return True
        log.debug("Could not abort the unfinished upload of %s: %s", printable(path), _code(err))
        return False
    except exceptions.BotoCoreError as err:
        log.debug("Could not abort the unfinished upload of %s: %s", printable(path), type(err).__name__)
        return False
    return True
