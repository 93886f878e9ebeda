"""s3.read_contents against botocore alone, on thousands of odd listing pages.

Pages as S3 servers write them are mutated from a fixed seed (processing
instructions, comments, CDATA, namespaces, nested or misplaced objects, junk after
the root, odd characters and references, CR, fields reordered, repeated or
missing, attributes, spaces in tags, odd sizes, another root or declaration, a page
cut short). For every page, botocore after read_contents must read exactly what
botocore reads alone (each object's Key, Size, ETag and LastModified, and every
other field), or both must refuse the page.
"""
import random
import re

from helpers import read_page

SEED = 20261207
PAGES = 4000

NAMESPACE = b"http://s3.amazonaws.com/doc/2006-03-01/"
KEYS = [
    b"proj/a%20b.csv", b"proj/caf%C3%A9/%26amp%3B.txt", b"proj/&lt;&#233;&#xE9;&apos;&gt;&amp;&#34;",
    b"proj/%E2%80%AEevil", b"proj/caf\xc3\xa9.txt", b"proj/a+b", b"proj/tab\there", b"proj/&#13;cr",
    b"proj/rows/00.csv", b"proj/x", b"proj/sp ace ", b"proj/\xe2\x80\xae", b"proj/&#x1F600;",
]
ETAGS = [b"&#34;5a444b8faa35aa284e146267c5d05a66&#34;", b"&quot;e1-2&quot;", b'"plain"', b"", b"&#34;x&#34;"]
TIMES = [b"2026-11-14T15:30:07.412Z", b"2026-11-14T15:30:08Z", b"2026-02-29T00:00:00.000Z", b"yesterday"]
SIZES = [b"0", b"1", b"1024", b"007", b"5497558138880"]
AWS = ("Key", "LastModified", "ETag", "ChecksumAlgorithm", "Size", "StorageClass")
SEAWEED = ("Key", "ETag", "Size", "StorageClass", "LastModified")
FIELDS = ("Key", "Size", "ETag", "LastModified")
#: What may be put into text: each is odd for XML, or for a reader of XML.
ODD = [b"\r", b"\r\n", b"\xef\xbf\xbe", b"\xef\xbf\xbf", b"]]>", b"]]", b"\x01", b"&#13;", b"&#xD800;", b"&#0;",
       b"&amp;", b"&bogus;", b"&", b"<", b">", b"\t", b"\xc3\xa9", b"&#65534;", b"&#x10FFFF;", b"\xff", b"\xef\xbb\xbf",
       b"&#x;", b"&#60;Contents&#62;", b"<?pi ?>", b"<!-- -->", b"'", b'"', b"\x7f", b"\xc2\x85", b"\xe2\x80\xa8"]


def _block(rng: random.Random, order: tuple[str, ...], space: bytes) -> bytes:
    values = {"Key": rng.choice(KEYS), "ETag": rng.choice(ETAGS), "Size": rng.choice(SIZES),
              "LastModified": rng.choice(TIMES), "StorageClass": b"STANDARD", "ChecksumAlgorithm": b"CRC64NVME",
              "Owner": b"<ID>x</ID><DisplayName>y</DisplayName>"}
    return b"<Contents>" + b"".join(
        space + b"<%s>%s</%s>" % (name.encode(), values[name], name.encode()) for name in order) + space + b"</Contents>"


def _page(rng: random.Random) -> bytes:
    """A page as some S3 server could write it."""
    kind = rng.random()
    order = AWS if kind < 0.4 else SEAWEED if kind < 0.7 else tuple(rng.sample(AWS + ("Owner",), rng.randint(2, 7)))
    if "Key" not in order or "Size" not in order:
        order = ("Key", "Size") + tuple(f for f in order if f not in ("Key", "Size"))
    space = rng.choice([b"", b"", b"\n    "])
    between = rng.choice([b"", b"", b"\n  ", b" "])
    mixed = rng.random() < 0.2
    blocks = [_block(rng, tuple(rng.sample(order, len(order))) if mixed else order, space)
              for _ in range(rng.randint(1, 6))]
    head = b'<?xml version="1.0" encoding="UTF-8"?>\n' if rng.random() < 0.8 else b""
    encoding = b"<EncodingType>url</EncodingType>" if rng.random() < 0.7 else b""
    folders = b"<CommonPrefixes><Prefix>proj/sub/</Prefix></CommonPrefixes>" if rng.random() < 0.5 else b""
    return (head + b'<ListBucketResult xmlns="' + NAMESPACE + b'"><Name>bkt</Name><Prefix>proj/</Prefix>'
            b"<KeyCount>%d</KeyCount><MaxKeys>1000</MaxKeys>" % len(blocks) + encoding
            + b"<IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;k</NextContinuationToken>"
            + between + between.join(blocks) + between + folders + b"</ListBucketResult>")


# Mutations: each takes a page and returns it changed (or unchanged where it finds no place).

def _blocks(page: bytes) -> list[re.Match]:
    return list(re.finditer(rb"<Contents>.*?</Contents>", page, re.S))


def _a_block(rng, page):
    found = _blocks(page)
    return rng.choice(found) if found else None


def _replace(page: bytes, match: re.Match, new: bytes) -> bytes:
    return page[:match.start()] + new + page[match.end():]


def _tag_boundary(rng, page) -> int:
    spots = [m.start() for m in re.finditer(rb"<", page)] + [len(page)]
    return rng.choice(spots)


def _text_spot(rng, page) -> int:
    """A place inside some element's text (between '>' and '<')."""
    spots = [m.start() + rng.randint(1, max(1, len(m.group(0)) - 1)) for m in re.finditer(rb">[^<]*<", page)]
    return rng.choice(spots) if spots else len(page) // 2


def _insert(page, at, what):
    return page[:at] + what + page[at:]


def pi_around_block(rng, page):
    block = _a_block(rng, page)
    return page if block is None else _replace(page, block, b"<?pi " + block.group(0) + b" ?>")


def pi_anywhere(rng, page):
    return _insert(page, _tag_boundary(rng, page), rng.choice([b"<?pi x?>", b"<?xml-stylesheet href='a'?>", b"<?p?>"]))


def comment(rng, page):
    block = _a_block(rng, page)
    if block is not None and rng.random() < 0.5:
        return _replace(page, block, b"<!-- " + block.group(0) + b" -->")
    return _insert(page, _tag_boundary(rng, page), b"<!-- c -->")


def cdata(rng, page):
    return re.sub(rb"<Key>([^<]*)</Key>", lambda m: b"<Key><![CDATA[" + m.group(1) + b"]]></Key>", page, count=1)


def namespaced_block(rng, page):
    block = _a_block(rng, page)
    if block is None:
        return page
    page = _replace(page, block, block.group(0).replace(b"<Contents>", b"<s3:Contents>").replace(
        b"</Contents>", b"</s3:Contents>"))
    return page.replace(b"<ListBucketResult ", b'<ListBucketResult xmlns:s3="' + NAMESPACE + b'" ', 1)


def namespaced_field(rng, page):
    name = rng.choice([b"Key", b"Size", b"ETag", b"StorageClass"])
    page = page.replace(b"<%s>" % name, b"<s3:%s>" % name, 1).replace(b"</%s>" % name, b"</s3:%s>" % name, 1)
    return page.replace(b"<ListBucketResult ", b'<ListBucketResult xmlns:s3="' + NAMESPACE + b'" ', 1)


def prefixed_root(rng, page):
    return page.replace(b'<ListBucketResult xmlns="', b'<s3:ListBucketResult xmlns:s3="', 1).replace(
        b"</ListBucketResult>", b"</s3:ListBucketResult>")


def nested_block(rng, page):
    block = _a_block(rng, page)
    if block is None:
        return page
    how = rng.randrange(3)
    if how == 0:
        return _replace(page, block, b"<Wrap>" + block.group(0) + b"</Wrap>")
    if how == 1:
        return _replace(page, block, b"<CommonPrefixes>" + block.group(0) + b"<Prefix>p/</Prefix></CommonPrefixes>")
    return _replace(page, block, block.group(0).replace(b"</Key>", b"<Contents><Key>in</Key><Size>1</Size>"
                                                                    b"</Contents></Key>", 1))


def after_root(rng, page):
    block = _a_block(rng, page)
    tail = rng.choice([block.group(0) if block else b"x", b"junk", b"<?pi?>", b"<!-- c -->", b"\n", b"<X/>"])
    if block is not None and rng.random() < 0.5:
        page = _replace(page, block, b"")
    return page + tail


def odd_text(rng, page):
    return _insert(page, _text_spot(rng, page), rng.choice(ODD))


def carriage_returns(rng, page):
    how = rng.randrange(3)
    if how == 0:
        return page.replace(b"\n", b"\r\n")
    if how == 1:
        return page.replace(b"\n", b"\r")
    return page.replace(b"</Key>", b"\r</Key>", 1)


def _fields_change(rng, page, change):
    block = _a_block(rng, page)
    if block is None:
        return page
    inner = block.group(0)[len(b"<Contents>"):-len(b"</Contents>")]
    parts = re.findall(rb"\s*<\w+>(?:[^<]|<(?!/?Contents))*?</\w+>", inner)
    if not parts:
        return page
    return _replace(page, block, b"<Contents>" + b"".join(change(rng, parts)) + b"</Contents>")


def reordered(rng, page):
    return _fields_change(rng, page, lambda rng, parts: rng.sample(parts, len(parts)))


def repeated(rng, page):
    def twice(rng, parts):
        i = rng.randrange(len(parts))
        return parts[:i + 1] + [rng.choice([parts[i], parts[i].replace(b">", b">x", 1)])] + parts[i + 1:]
    return _fields_change(rng, page, twice)


def missing(rng, page):
    def without(rng, parts):
        i = rng.randrange(len(parts))
        return parts[:i] + parts[i + 1:]
    return _fields_change(rng, page, without)


def attribute(rng, page):
    tags = [m for m in re.finditer(rb"<([A-Za-z][\w:]*)(?=[ >])", page)]
    if not tags:
        return page
    tag = rng.choice(tags)
    return _insert(page, tag.end(), rng.choice([b' a="1"', b" a='<'", b' xmlns=""', b' xmlns:x="u"', b" a=1"]))


def space_in_tag(rng, page):
    tags = [m.end() - 1 for m in re.finditer(rb"</?[A-Za-z][\w:]*>", page)]
    return _insert(page, rng.choice(tags), rng.choice([b" ", b"\n", b"\t", b"/"])) if tags else page


def odd_size(rng, page):
    size = rng.choice([b" 12", b"12 ", b"-1", b"+3", b"1_000", b"", b"x", b"0012", b"9" * 25, b"9" * 5000,
                       b"\xd9\xa1", b"1.0", b"0x10", b"&#49;", b"1&#48;"])
    return re.sub(rb"<Size>[^<]*</Size>", b"<Size>" + size + b"</Size>", page, count=1)


def odd_name(rng, page):
    block = _a_block(rng, page)
    if block is None:
        return page
    name = rng.choice([b"1x", b"a-b", b"_x", b"x.y", b"\xc3\xa9", b"Key2", b"key", b"x:y"])
    field = b"<%s>v</%s>" % (name, name)
    return _replace(page, block, block.group(0).replace(b"</Contents>", field + b"</Contents>"))


def self_closing(rng, page):
    what = rng.choice([b"ETag", b"StorageClass", b"Key", b"Contents", b"LastModified"])
    return re.sub(rb"<%s>(?:[^<]|<(?!/%s>))*</%s>" % (what, what, what), b"<%s/>" % what, page, count=1)


def empty_field(rng, page):
    what = rng.choice([b"Key", b"ETag", b"LastModified", b"StorageClass"])
    return re.sub(rb"<%s>[^<]*</%s>" % (what, what), b"<%s></%s>" % (what, what), page, count=1)


def top_level_twice(rng, page):
    what = rng.choice([b"<IsTruncated>false</IsTruncated>", b"<NextContinuationToken>u</NextContinuationToken>",
                       b"<Name>other</Name>", b"<KeyCount>9</KeyCount>", b"<Prefix>q/</Prefix>"])
    return page.replace(b"<MaxKeys>", what + b"<MaxKeys>", 1)


def other_root(rng, page):
    name = rng.choice([b"Error", b"Foo", b"ListVersionsResult", b"Contents"])
    return re.sub(rb"ListBucketResult", name, page)


def declaration(rng, page):
    page = re.sub(rb"^<\?xml[^>]*\?>\n?", b"", page)
    head = rng.choice([b'<?xml version="1.1"?>', b'<?xml version="1.0" encoding="ISO-8859-1"?>', b"\xef\xbb\xbf",
                       b' <?xml version="1.0"?>', b'<?xml version="1.0" standalone="maybe"?>', b"\n"])
    return head + page


def unused_field_text(rng, page):
    text = rng.choice([b"&bogus;", b"&#1;", b"&amp;", b"&", b"&#xFFFE;", b"a&lt;b"])
    return re.sub(rb"<StorageClass>[^<]*</StorageClass>", b"<StorageClass>" + text + b"</StorageClass>", page,
                  count=1)


def text_between_fields(rng, page):
    return page.replace(b"</Key>", b"</Key>" + rng.choice([b"junk", b"&amp;", b"&bad;", b" "]), 1)


def owner(rng, page):
    inner = rng.choice([b"text", b"<ID>&bad;</ID>", b"<ID><X>1</X></ID>", b"<ID>a</ID>junk", b""])
    return page.replace(b"</Contents>", b"<Owner>" + inner + b"</Owner></Contents>", 1)


def structured_field(rng, page):
    what = rng.choice([b"LastModified", b"ETag", b"Key", b"Size", b"StorageClass"])
    return re.sub(rb"<%s>[^<]*</%s>" % (what, what), b"<%s><X>1</X></%s>" % (what, what), page, count=1)


def doctype(rng, page):
    page = re.sub(rb"^<\?xml[^>]*\?>\n?", b"", page)
    return b'<!DOCTYPE ListBucketResult [<!ENTITY e "v">]>' + page.replace(b"proj/x", b"proj/&e;")


def cut_short(rng, page):
    return page[:rng.randrange(len(page))]


def lone_tag(rng, page):
    return _insert(page, _tag_boundary(rng, page), rng.choice([b"<Contents>", b"</Contents>", b"<Key>"]))


MUTATIONS = [pi_around_block, pi_anywhere, comment, cdata, namespaced_block, namespaced_field, prefixed_root,
             nested_block, after_root, odd_text, odd_text, odd_text, carriage_returns, reordered, repeated, missing,
             attribute, space_in_tag, odd_size, odd_name, self_closing, empty_field, top_level_twice, other_root,
             declaration, unused_field_text, text_between_fields, owner, structured_field, doctype, cut_short,
             lone_tag]


def odd_pages(seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        page = _page(rng)
        for mutation in rng.sample(MUTATIONS, rng.choice([0, 1, 1, 1, 2, 2, 3])):
            page = mutation(rng, page)
        yield page


def reading(body: bytes, fast: bool):
    """What a listing of this page holds, as datakit uses it, or "refused"."""
    try:
        parsed = read_page(body, fast)
    except Exception:  # botocore's own errors, and whatever else refuses the page
        return "refused"
    contents = [{f: item.get(f, "") for f in FIELDS} for item in parsed.get("Contents", ())]
    others = {k: v for k, v in parsed.items() if k not in ("Contents", "ResponseMetadata")}
    # A field botocore reads twice becomes the text of a list of elements, with their addresses.
    return re.sub(r" at 0x[0-9a-f]+", "", repr((contents, others)))


def test_every_odd_page_reads_as_botocore_alone_reads_it():
    differences, read_fast = [], 0
    for page in odd_pages(SEED, PAGES):
        plain, fast = reading(page, fast=False), reading(page, fast=True)
        if plain != fast:
            differences.append((page, plain, fast))
        read_fast += _read_by_us(page)
    shown = "\n".join(f"{page!r}\n  botocore: {plain}\n  with us:  {fast}" for page, plain, fast in differences[:5])
    assert not differences, f"{len(differences)} of {PAGES} pages read otherwise:\n{shown}"
    # The test means something only if many odd pages still take the fast path.
    assert read_fast > PAGES // 4, read_fast


def _read_by_us(page: bytes) -> bool:
    """Did read_contents take this page's objects (rather than leave it whole)?"""
    from datakit_data import s3

    customized: dict = {}
    try:
        s3.read_contents(response_dict={"status_code": 200, "headers": {}, "body": page},
                         customized_response_dict=customized)
    except Exception:
        return False
    return "Contents" in customized
