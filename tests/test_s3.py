"""s3.py: a listing page read by read_contents is what botocore would have read."""
import copy
import json
import re

import pytest

from datakit_data import s3
from helpers import BUCKET, assert_clean_error, ok, read_page

PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><Prefix>proj/</Prefix>
<KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok&amp;en</NextContinuationToken>
<Contents><Key>proj/a%20b.csv</Key><LastModified>2026-11-14T15:30:07.412Z</LastModified>
<ETag>&#34;5a444b8faa35aa284e146267c5d05a66&#34;</ETag><Size>1024</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>proj/caf%C3%A9/%26amp%3B.txt</Key><LastModified>2026-11-14T15:30:08Z</LastModified>
<ETag>&quot;e1-2&quot;</ETag><Size>0</Size><Owner><ID>x</ID><DisplayName>y</DisplayName></Owner></Contents>
<Contents><Size>7</Size><ETag>"unquoted"</ETag><Key>proj/odd&amp;order.txt</Key></Contents>
<Contents><Key>proj/%E2%80%AEevil</Key><LastModified>2026-11-14T15:30:09Z</LastModified><ETag>&#34;e&#34;</ETag>
<Size>3</Size></Contents>
<CommonPrefixes><Prefix>proj/sub%2F/</Prefix></CommonPrefixes>
</ListBucketResult>"""


def test_a_listing_page_reads_the_same_with_and_without_the_shortcut():
    plain, fast = read_page(PAGE, fast=False), read_page(PAGE, fast=True)
    fields = ("Key", "Size", "ETag", "LastModified")
    assert [{f: c.get(f, "") for f in fields} for c in plain["Contents"]] == fast["Contents"]
    assert [c["Key"] for c in fast["Contents"]] == [
        "proj/a b.csv", "proj/caf\u00e9/&amp;.txt", "proj/odd&order.txt", "proj/\u202eevil"]
    for key in ("IsTruncated", "NextContinuationToken", "CommonPrefixes", "KeyCount", "EncodingType"):
        assert plain[key] == fast[key], key


@pytest.mark.parametrize("body", [
    b"<ListBucketResult><Contents><Key>a</Key><Size>x</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
    b"<Error><Code>AccessDenied</Code></Error>",
    # What an XML parser reads otherwise, or refuses, and the patterns could misread:
    b"<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents ><Contents><Key>b</Key><Size>2</Size>"
    b"</Contents></ListBucketResult>",  # two objects, not one of b's fields
    b'<ListBucketResult><Contents id="1"><Key>a</Key><Size>1</Size></Contents><Contents><Key>b</Key>'
    b"<Size>2</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><!-- <Contents><Key>a</Key><Size>1</Size></Contents> --></ListBucketResult>",
    b"<ListBucketResult><Contents><Key><![CDATA[a</Key>]]></Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>caf&eacute;</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>a&ampb</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>a&#1;</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>a\x01</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>caf\xe9</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult>" + b"<Contents><Key>a</Key><Size>1</Size>" * 4000 + b"</ListBucketResult>",
    # What botocore reads otherwise, or refuses, though every object is plain:
    b"<ListBucketResult><?pi <Contents><Key>a</Key><Size>1</Size></Contents> ?><Contents><Key>b</Key><Size>2</Size>"
    b"</Contents></ListBucketResult>",  # one object in a processing instruction
    b"<ListBucketResult><CommonPrefixes><Contents><Key>a</Key><Size>1</Size></Contents></CommonPrefixes>"
    b"</ListBucketResult>",  # an object nested in another element
    b'<ListBucketResult xmlns:s3="u"><s3:Contents><Key>a</Key><Size>1</Size></s3:Contents><Contents><Key>b</Key>'
    b"<Size>2</Size></Contents></ListBucketResult>",  # a namespaced object beside a plain one
    b"<ListBucketResult><Contents><Key>a]]>b</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>a\xef\xbf\xbe</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>a\xef\xbf\xbf</Key><Size>1</Size></Contents></ListBucketResult>",
    b"<ListBucketResult></ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents>",  # after the root
    b"<Other><Contents><Key>a</Key><Size>1</Size></Contents></Other>",
    b"<ListBucketResult><Contents><Key>a</Key><Size>1</Size><1x>y</1x></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>a</Key><Size>1</Size><StorageClass>&x;</StorageClass></Contents>"
    b"</ListBucketResult>",  # a reference XML does not know, in a field not read
])
def test_a_page_of_another_shape_is_left_whole_to_botocore(body):
    response = {"status_code": 200, "headers": {}, "body": body}
    customized: dict = {}
    s3.read_contents(response_dict=copy.copy(response), customized_response_dict=customized)
    assert customized == {}


def test_line_ends_read_as_an_xml_parser_reads_them():
    page = PAGE.replace(b"\n", b"\r\n").replace(b"proj/a%20b.csv", b"proj/a\r\nb\rc&#13;d")
    plain, fast = read_page(page, fast=False), read_page(page, fast=True)
    assert fast["Contents"][0]["Key"] == plain["Contents"][0]["Key"] == "proj/a\nb\nc\rd"
    assert fast["Contents"] == [{f: c.get(f, "") for f in ("Key", "Size", "ETag", "LastModified")}
                                for c in plain["Contents"]]


def test_references_read_as_an_xml_parser_reads_them():
    page = PAGE.replace(b"proj/a%20b.csv", b"proj/&lt;&#233;&#xE9;&#x1F600;&apos;&gt;&amp;&#128;")
    plain, fast = read_page(page, fast=False), read_page(page, fast=True)
    assert fast["Contents"][0]["Key"] == plain["Contents"][0]["Key"] == "proj/<\u00e9\u00e9\U0001f600'>&\x80"


def _through_client(body: bytes) -> tuple[dict, dict]:
    """A page through the before-parse handlers of datakit's own client, as a real
    answer meets them: (what is left for botocore's parser, what read_contents read)."""
    from helpers import make_settings

    client = s3.client(make_settings(endpoint="http://127.0.0.1:9"))
    response = {"status_code": 200, "headers": {}, "body": body}
    customized: dict = {}
    model = client.meta.service_model.operation_model("ListObjectsV2")
    client.meta.events.emit("before-parse.s3.ListObjectsV2", operation_model=model,
                            response_dict=response, customized_response_dict=customized)
    return response, customized


def test_the_client_reads_a_page_before_botocore_looks_for_an_error_in_it():
    response, customized = _through_client(PAGE)
    assert response["status_code"] == 200
    assert len(customized["Contents"]) == 4
    assert b"<Contents>" not in response["body"] and b"<CommonPrefixes>" in response["body"]


@pytest.mark.parametrize("body", [
    PAGE[:PAGE.index(b"<Size>3</Size>")],  # cut short by the network, inside an object
    PAGE[:PAGE.index(b"<CommonPrefixes>")],  # cut short after the last whole object
    b'<?xml version="1.0"?><Error><Code>InternalError</Code><Contents><Key>a</Key><Size>1</Size>'
    b"</Contents></Error>",
])
def test_a_page_cut_short_or_an_error_sent_as_200_is_still_retried(body):
    # botocore turns these into a 500, which its retries and errors then handle.
    response, _ = _through_client(body)
    assert response["status_code"] == 500


def _compact(objects: list[tuple], order: tuple[str, ...], between: bytes = b"",
             orders: list[tuple[str, ...]] | None = None) -> bytes:
    """A page as S3 servers write it: no space, every object with the same fields in
    ``order`` (or the i-th object with the fields of ``orders[i]``)."""
    head = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Name>bkt</Name><Prefix>proj/</Prefix><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>"
            b"<IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;k</NextContinuationToken>")
    items = []
    for i, (key, etag, size, when) in enumerate(objects):
        fields = {"Key": key, "ETag": etag, "Size": size, "LastModified": when, "StorageClass": b"STANDARD",
                  "ChecksumAlgorithm": b"CRC64NVME"}
        items.append(b"<Contents>" + b"".join(b"<%s>%s</%s>" % (name.encode(), fields[name], name.encode())
                                              for name in (orders[i] if orders else order)) + b"</Contents>")
    return head + between.join(items) + b"<CommonPrefixes><Prefix>proj/sub/</Prefix></CommonPrefixes></ListBucketResult>"


OBJECTS = [
    (b"proj/a%20b.csv", b"&#34;5a444b8faa35aa284e146267c5d05a66&#34;", b"1024", b"2026-11-14T15:30:07.412Z"),
    (b"proj/caf%C3%A9/%26amp%3B.txt", b"&quot;e1-2&quot;", b"0", b"2026-11-14T15:30:08Z"),
    (b"proj/&lt;&#233;&#xE9;&apos;&gt;&amp;&#34;", b'"plain"', b"7", b"2026-11-14T15:30:09Z"),
    (b"proj/%E2%80%AEevil", b"", b"3", b"2026-11-14T15:30:10Z"),
]
SEAWEED = ("Key", "ETag", "Size", "StorageClass", "LastModified")
AWS = ("Key", "LastModified", "ETag", "ChecksumAlgorithm", "Size", "StorageClass")


@pytest.mark.parametrize("body", [
    _compact(OBJECTS, SEAWEED),
    _compact(OBJECTS, AWS),
    _compact(OBJECTS, ("Size", "Key")),  # no ETag, no time
    _compact(OBJECTS, AWS, between=b"\n"),  # something between objects
    _compact(OBJECTS, AWS, orders=[AWS, AWS, SEAWEED, SEAWEED]),  # orders differ
], ids=["seaweedfs", "aws", "few fields", "apart", "mixed orders"])
def test_a_page_of_alike_objects_reads_as_botocore_reads_it(body):
    plain, fast = read_page(body, fast=False), read_page(body, fast=True)
    fields = ("Key", "Size", "ETag", "LastModified")
    assert len(fast["Contents"]) == 4
    assert [{f: c.get(f, "") for f in fields} for c in plain["Contents"]] == fast["Contents"]
    assert fast["Contents"][2]["Key"] == "proj/<\u00e9\u00e9'>&\""
    for key in ("IsTruncated", "NextContinuationToken", "CommonPrefixes", "EncodingType", "Name"):
        assert plain[key] == fast[key], key


@pytest.mark.parametrize("body", [
    _compact(OBJECTS, SEAWEED).replace(b"<Size>7</Size>", b"<Size>-7</Size>"),
    _compact(OBJECTS, SEAWEED).replace(b"&#233;", b"&#1;"),
    _compact(OBJECTS, SEAWEED).replace(b"&#233;", b"&eacute;"),
    _compact(OBJECTS, SEAWEED).replace(b"proj/a%20b.csv", b"proj/a\x0bb.csv"),
    _compact(OBJECTS, SEAWEED).replace(b"proj/a%20b.csv", b"proj/caf\xe9"),
    _compact(OBJECTS, SEAWEED).replace(b"<Key>proj/a%20b.csv</Key>", b"<Key>proj/a%20b.csv</Key><Key>x</Key>"),
])
def test_an_alike_page_with_one_bad_object_is_left_whole_to_botocore(body):
    response = {"status_code": 200, "headers": {}, "body": body}
    customized: dict = {}
    s3.read_contents(response_dict=copy.copy(response), customized_response_dict=customized)
    assert customized == {}


# Pages as a store writes them, through a real listing ---------------------------

def _listing(request) -> bool:
    return request.method == "GET" and "list-type" in request.query


def _odd_order_and_spaces(body: bytes) -> bytes:
    """The first two objects with their fields in reverse order and a space after them."""
    def turn(match):
        fields = re.findall(rb"<\w+>[^<]*</\w+>", match.group(0))
        return b"<Contents>" + b"".join(reversed(fields)) + b"</Contents>\n "

    return re.sub(rb"<Contents>.*?</Contents>", turn, body, count=2)


def test_a_store_writing_its_objects_in_another_shape_is_read_alike(project, bucket, standin):
    project.configure()
    for i in range(30):
        project.write(f"rows/{i:02d}.csv", f"{i}\n")
    ok(project.run("data", "push"))
    project.configure(s3_endpoint_url=standin.endpoint_url)
    standin.rewrite(_listing, _odd_order_and_spaces)

    report = json.loads(ok(project.run("data", "status", "--json")).stdout)
    assert report["unchanged"] == 30
    assert report["push"] == {"new": [], "changed": [], "restored": [], "deleted": [], "kept": {}, "bytes": {}}
    assert report["pull"]["new"] == [] and report["pull"]["changed"] == []


def _namespaced(body: bytes) -> bytes:
    """The page with its second object written as <s3:Contents>, the prefix declared."""
    declared = b'<ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/" '
    body = body.replace(b"<ListBucketResult ", declared, 1)
    second = body.index(b"<Contents>", body.index(b"<Contents>") + 1)
    end = body.index(b"</Contents>", second)
    return body[:second] + b"<s3:Contents>" + body[second + 10:end] + b"</s3:Contents>" + body[end + 11:]


def test_a_namespaced_object_beside_plain_ones_is_listed_and_pull_delete_keeps_its_file(project, bucket, standin):
    project.configure()
    for i in range(3):
        project.write(f"rows/{i:02d}.csv", f"{i}\n")
    ok(project.run("data", "push"))
    project.configure(s3_endpoint_url=standin.endpoint_url)
    standin.rewrite(_listing, _namespaced)

    ok(project.run("data", "pull", "delete"))

    assert project.files() == {f"rows/{i:02d}.csv": f"{i}\n".encode() for i in range(3)}
    report = json.loads(ok(project.run("data", "status", "--json")).stdout)
    assert report["unchanged"] == 3


def _first(field: bytes, text: bytes):
    """A change of a page: the first object's ``field`` holds ``text``."""
    return lambda body: re.sub(rb"<%s>[^<]*</%s>" % (field, field), b"<%s>%s</%s>" % (field, text, field), body,
                               count=1)


@pytest.mark.parametrize("change, words", [
    (lambda body: body.replace(b"</Key>", b"</Key><Key>other</Key>", 1), "sent a listing page that is not S3's XML"),
    (lambda body: body.replace(b"<Size>", b"<Size><Size>", 1), ""),  # not XML
    (lambda body: body.replace(b"<Key>", b"<Key>elsewhere/", 1),
     'sent object "elsewhere/{name}/rows/00.csv" outside {name}/, which was asked for'),
    (_first(b"Size", b"9" * 5000),
     'sent object "{name}/rows/00.csv" with a size of 5000 digits, which no S3 object has'),
    (_first(b"Size", b"9" * 25), 'sent object "{name}/rows/00.csv" with a size of 25 digits, which no S3 object has'),
    (_first(b"LastModified", b"yesterday"),
     'sent object "{name}/rows/00.csv" last modified "yesterday", which is not a time'),
], ids=["key twice", "broken", "outside", "5000-digit size", "25-digit size", "time yesterday"])
def test_a_listing_page_no_s3_server_writes_is_a_clean_error(project, bucket, standin, change, words):
    project.configure()
    for i in range(3):
        project.write(f"rows/{i:02d}.csv", f"{i}\n")
    ok(project.run("data", "push"))
    project.write("rows/00.csv", "edited\n")
    (project.data / "rows/01.csv").unlink()
    before = bucket.objects(project.name)
    project.configure(s3_endpoint_url=standin.endpoint_url)
    standin.rewrite(_listing, change)

    for command in (("data", "status"), ("data", "push"), ("data", "pull")):
        text = assert_clean_error(project.run(*command))
        assert f"Listing s3://{BUCKET}/{project.name}/ failed: " in text, text
        assert words.format(name=project.name) in text, text
        if words:
            assert f"failed: {standin.endpoint_url} sent " in text and "Check that it is an S3 server" in text, text
    assert bucket.objects(project.name) == before


def _going_round(request) -> bytes:
    """A listing page whose next page is the one before it: tokens A, B, A, ..."""
    token = request.query.get("continuation-token", [""])[0]
    return (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Name>%s</Name><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
            b"<NextContinuationToken>%s</NextContinuationToken></ListBucketResult>"
            % (BUCKET.encode(), b"B" if token == "A" else b"A"))


def test_a_listing_whose_pages_go_round_in_a_circle_ends_in_a_clean_error(project, bucket, standin):
    project.configure()
    project.write("rows/00.csv", "0\n")
    ok(project.run("data", "push"))
    project.write("rows/00.csv", "edited\n")
    before = bucket.objects(project.name)
    project.configure(s3_endpoint_url=standin.endpoint_url)
    standin.reply(_listing, _going_round)

    for command in (("data", "status"), ("data", "push"), ("data", "pull")):
        text = assert_clean_error(project.run(*command, timeout=30))
        assert (f"Listing s3://{BUCKET}/{project.name}/ failed: {standin.endpoint_url} sent the same continuation "
                "token twice in one listing") in text, text
    assert bucket.objects(project.name) == before
    asked = [r.query.get("continuation-token", [""])[0] for r in standin.seen if _listing(r)]
    assert len(asked) <= 3 * 4, asked  # each run: the first page, then A, B and A again


def test_version_listing_markers_that_come_round_again_end_the_listing():
    pages = [{"IsTruncated": True, "NextKeyMarker": "a", "NextVersionIdMarker": "1"},
             {"IsTruncated": True, "NextKeyMarker": "a", "NextVersionIdMarker": "2"},
             {"IsTruncated": True, "NextKeyMarker": "b", "NextVersionIdMarker": "1"},
             {"IsTruncated": True, "NextKeyMarker": "a", "NextVersionIdMarker": "1"}]
    read = []
    with pytest.raises(s3._NotAListing, match="the same continuation token twice"):
        for page in s3._pages(pages, s3._NEXT_VERSIONS):
            read.append(page)
    assert read == pages[:3]


def test_the_last_page_of_a_listing_may_carry_a_token_seen_before():
    pages = [{"IsTruncated": True, "NextContinuationToken": "A"}, {"IsTruncated": False, "NextContinuationToken": "A"}]
    assert list(s3._pages(pages, s3._NEXT_PAGE)) == pages


# Times and sizes no S3 object has ----------------------------------------------

STAMPS = ["2026-11-14T15:30:07.412Z", "2026-11-14T15:30:07Z", "2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z",
          "2026-04-31T00:00:00Z", "2026-12-31T23:59:59.999999999Z", "2026-13-01T00:00:00Z", "2026-11-14T24:00:00Z",
          "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "Thu, 14 Nov 2026 15:30:07 GMT", "2026-11-14 15:30:07",
          "2026-11-14T15:30:07+01:00", "2026-11-14T15:30:07.1-0530", "2026-11-14T15:30:07+2400", "yesterday", "",
          "1e9", "2026-11-14T15:30:07Z\n2026-11-14T15:30:07Z"]


@pytest.mark.parametrize("stamp", STAMPS)
def test_a_listed_time_is_refused_exactly_when_the_aws_cli_cannot_read_it(stamp):
    from awscli.customizations.s3.utils import _date_parser  # how its sync reads a listed LastModified

    try:
        _date_parser(stamp)
        cli_reads = True
    except (ValueError, OverflowError):
        cli_reads = False
    page = {"Contents": [{"Key": "proj/a.csv", "Size": 1, "LastModified": "2026-11-14T15:30:07Z"},
                         {"Key": "proj/b.csv", "Size": 1, "LastModified": stamp}]}

    if cli_reads:
        assert s3._objects([page], "proj/", "proj/")["b.csv"].last_modified == stamp
    else:
        with pytest.raises(s3._NotAListing, match='object "proj/b.csv" (last modified|without a time)'):
            s3._objects([page], "proj/", "proj/")


@pytest.mark.parametrize("size, words", [(-1, "-1 bytes"), (2 ** 63, "9223372036854775808 bytes"),
                                         (10 ** 30, "31 digits"), ("12", None), (None, None)])
def test_an_object_listed_with_a_size_no_object_has_is_named(size, words):
    page = {"Contents": [{"Key": "proj/a.csv", "Size": size, "LastModified": "2026-11-14T15:30:07Z"}]}
    expected = f"with a size of {words}, which no S3 object has" if words else "without a size"
    with pytest.raises(s3._NotAListing, match=f'object "proj/a.csv" {re.escape(expected)}'):
        s3._objects([page], "proj/", "proj/")


def test_a_size_of_more_digits_than_python_reads_names_its_object_as_botocore_would_decode_it():
    body = _compact(OBJECTS, SEAWEED).replace(b"<Size>1024</Size>", b"<Size>" + b"9" * 5000 + b"</Size>")
    with pytest.raises(ValueError):
        read_page(body, fast=False)  # botocore alone refuses it too, naming nothing
    with pytest.raises(s3._NotAListing, match='object "proj/a b.csv" with a size of 5000 digits'):
        read_page(body, fast=True)


def test_a_size_of_more_digits_than_python_reads_in_an_object_botocore_never_reads_is_no_error():
    hidden = b"<?pi <Contents><Key>proj/x</Key><Size>" + b"9" * 5000 + b"</Size></Contents> ?>"
    body = _compact(OBJECTS, SEAWEED).replace(b"<CommonPrefixes>", hidden + b"<CommonPrefixes>")
    plain, fast = read_page(body, fast=False), read_page(body, fast=True)
    assert [c["Key"] for c in fast["Contents"]] == [c["Key"] for c in plain["Contents"]]
    assert len(fast["Contents"]) == 4
