"""exporter.storage.objects against a real S3 API on localhost: moto's server, with its
authentication on, so wrong credentials are refused as a real bucket refuses them."""

import hashlib
import os
import subprocess
import sys

import pytest
from conftest import S3_BUCKET, free_port

from exporter.storage.objects import (
    ObjectChanged,
    ObjectLocation,
    ObjectStoreError,
    delete,
    download,
    head,
    list_objects,
    open_store,
    parse_location,
    upload,
)

# not ffmpeg: the first pass only
pytestmark = pytest.mark.once

BUCKET = S3_BUCKET


@pytest.fixture(autouse=True)
def no_process_aws(monkeypatch):
    """obstore also reads the process's AWS_* variables: only the test's own count."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def place(moto, request):
    """(store, location) of a prefix of the test's own in the bucket."""
    location = ObjectLocation(BUCKET, f"tests/{request.node.name}")
    return open_store(location, moto), location


def assert_one_line(error, *secrets):
    message = str(error.value)
    assert "\n" not in message and message.strip() == message
    for secret in secrets:
        assert secret not in message
    return message


@pytest.mark.parametrize("text, expected", [
    ("s3://media", ObjectLocation("media", "")),
    ("s3://media/", ObjectLocation("media", "")),
    ("s3://media/renders/2024/", ObjectLocation("media", "renders/2024")),
    ("S3://my-bucket.eu/x", ObjectLocation("my-bucket.eu", "x")),
    ("renders", None),
    ("/srv/renders", None),
    ("https://media/x", None),
])
def test_parse_location(text, expected):
    assert parse_location(text) == expected
    if expected is not None:
        assert str(expected) == f"s3://{text[5:]}".rstrip("/")


@pytest.mark.parametrize("text", ["s3://", "s3:///x", "s3://Media/x", "s3://me_dia", "s3://ab",
                                  "s3://-media", "s3://a..b", "s3://media/a//b",
                                  "s3://media/../b"])
def test_parse_location_refuses_a_malformed_url(text):
    with pytest.raises(ObjectStoreError) as error:
        parse_location(text)
    assert assert_one_line(error).startswith(f"{text}: ")


def test_key_joins_prefix_and_refuses_to_leave_it():
    assert ObjectLocation("media", "renders").key("a/b.mp4") == "renders/a/b.mp4"
    assert ObjectLocation("media").key("a/b.mp4") == "a/b.mp4"
    for outside in ("../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(ObjectStoreError):
            ObjectLocation("media", "renders").key(outside)


def test_obstore_is_imported_only_when_used():
    code = ("import sys, exporter.storage.objects as o; o.parse_location('s3://media/x'); "
            "assert 'obstore' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_upload_then_list_shows_size_and_etag(place, tmp_path):
    store, location = place
    (tmp_path / "a.mp4").write_bytes(b"first video")
    (tmp_path / "b.json").write_bytes(b"{}")
    etag_a = upload(store, tmp_path / "a.mp4", location.key("t1/a.mp4"))
    etag_b = upload(store, tmp_path / "b.json", location.key("t1/b.json"))
    assert etag_a == hashlib.md5(b"first video").hexdigest()    # a single PUT: the MD5
    assert list_objects(store, location) == {"t1/a.mp4": (11, etag_a), "t1/b.json": (2, etag_b)}
    assert head(store, location.key("t1/a.mp4")) == (11, etag_a)
    assert head(store, location.key("t1/none.mp4")) is None
    delete(store, location.key("t1/a.mp4"))
    assert list(list_objects(store, location)) == ["t1/b.json"]


def test_download_writes_the_bytes_and_no_temporary(place, tmp_path):
    store, location = place
    data = os.urandom(300_000)
    (tmp_path / "up.mp4").write_bytes(data)
    etag = upload(store, tmp_path / "up.mp4", location.key("v.mp4"))
    target = tmp_path / "down" / "v.mp4"
    target.parent.mkdir()
    assert download(store, location.key("v.mp4"), target, expect_etag=etag) == (
        etag, hashlib.sha256(data).hexdigest())
    assert target.read_bytes() == data
    assert os.listdir(target.parent) == ["v.mp4"]


def test_download_of_a_replaced_object_is_refused(place, tmp_path):
    store, location = place
    (tmp_path / "v.mp4").write_bytes(b"old bytes")
    listed = upload(store, tmp_path / "v.mp4", location.key("v.mp4"))
    (tmp_path / "v.mp4").write_bytes(b"new bytes")
    upload(store, tmp_path / "v.mp4", location.key("v.mp4"))
    target = tmp_path / "down" / "v.mp4"
    target.parent.mkdir()
    with pytest.raises(ObjectChanged) as error:
        download(store, location.key("v.mp4"), target, expect_etag=listed)
    assert assert_one_line(error) == (f"s3://{BUCKET}/{location.key('v.mp4')}: the object "
                                      f"changed since it was listed (its ETag is no longer "
                                      f"{listed})")
    assert os.listdir(target.parent) == []


def test_upload_create_only_refuses_an_existing_object(place, tmp_path):
    store, location = place
    (tmp_path / "v.mp4").write_bytes(b"theirs")
    upload(store, tmp_path / "v.mp4", location.key("v.mp4"), create_only=True)
    (tmp_path / "v.mp4").write_bytes(b"mine")
    with pytest.raises(ObjectChanged) as error:
        upload(store, tmp_path / "v.mp4", location.key("v.mp4"), create_only=True)
    assert "written by someone else meanwhile" in assert_one_line(error)
    assert list_objects(store, location)["v.mp4"][0] == len(b"theirs")


def test_upload_if_etag_of_an_old_version_is_refused(place, tmp_path):
    store, location = place
    source = tmp_path / "v.mp4"
    source.write_bytes(b"version one")
    one = upload(store, source, location.key("v.mp4"))
    source.write_bytes(b"version two, someone else's")
    two = upload(store, source, location.key("v.mp4"), if_etag=one)
    source.write_bytes(b"version three, from version one")
    with pytest.raises(ObjectChanged) as error:
        upload(store, source, location.key("v.mp4"), if_etag=one)
    assert assert_one_line(error).endswith(
        f"written by someone else meanwhile (its ETag is no longer {one})")
    download(store, location.key("v.mp4"), tmp_path / "back.mp4")
    assert (tmp_path / "back.mp4").read_bytes() == b"version two, someone else's"
    assert head(store, location.key("v.mp4"))[1] == two


def test_a_large_file_goes_up_in_parts_and_comes_back(place, tmp_path):
    store, location = place
    data = os.urandom(12 << 20)
    (tmp_path / "big.mp4").write_bytes(data)
    etag = upload(store, tmp_path / "big.mp4", location.key("big.mp4"))
    assert etag.endswith("-3")          # multipart: 5 MiB parts, the ETag of the parts' MD5s
    assert list_objects(store, location) == {"big.mp4": (12 << 20, etag)}
    etag_back, sha = download(store, location.key("big.mp4"), tmp_path / "back.mp4", etag)
    assert (etag_back, sha) == (etag, hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("wrong, code", [("AWS_ACCESS_KEY_ID", "InvalidAccessKeyId"),
                                         ("AWS_SECRET_ACCESS_KEY", "SignatureDoesNotMatch")])
def test_wrong_credentials_are_one_line(moto, wrong, code):
    environ = dict(moto, **{wrong: "wrong-" + wrong.lower()})
    with pytest.raises(ObjectStoreError) as error:
        list_objects(open_store(ObjectLocation(BUCKET), environ), ObjectLocation(BUCKET))
    message = assert_one_line(error, moto["AWS_SECRET_ACCESS_KEY"],
                              environ["AWS_SECRET_ACCESS_KEY"])
    assert message == f"s3://{BUCKET}: the credentials were refused ({code})"


def test_a_session_token_is_never_said(moto, tmp_path):
    environ = dict(moto, AWS_SESSION_TOKEN="session-token-secret-123")
    (tmp_path / "v.mp4").write_bytes(b"x")
    with pytest.raises(ObjectStoreError) as error:
        upload(open_store(ObjectLocation(BUCKET), environ), tmp_path / "v.mp4", "v.mp4")
    assert_one_line(error, "session-token-secret-123", moto["AWS_SECRET_ACCESS_KEY"])


def test_a_missing_bucket_is_one_line(moto, tmp_path):
    location = ObjectLocation("no-such-bucket", "renders")
    store = open_store(location, moto)
    with pytest.raises(ObjectStoreError) as error:
        list_objects(store, location)
    assert assert_one_line(error) == "s3://no-such-bucket/renders: the bucket does not exist"
    with pytest.raises(ObjectStoreError) as error:
        download(store, location.key("a.mp4"), tmp_path / "a.mp4")
    assert assert_one_line(error) == ("s3://no-such-bucket/renders/a.mp4: the bucket does "
                                      "not exist")
    assert not (tmp_path / "a.mp4").exists()


def test_an_endpoint_nothing_listens_on_is_one_line(moto):
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = open_store(ObjectLocation(BUCKET), dict(moto, AWS_ENDPOINT_URL=endpoint))
    with pytest.raises(ObjectStoreError) as error:
        head(store, "a.mp4")
    assert assert_one_line(error, moto["AWS_SECRET_ACCESS_KEY"]) == (
        f"s3://{BUCKET}/a.mp4: cannot reach the endpoint {endpoint} (connection refused)")


def test_a_profile_of_the_shared_files_gives_the_keys_region_and_endpoint(moto, tmp_path):
    """AWS_PROFILE as the AWS CLI reads it (obstore reads no profile): the keys from
    ~/.aws/credentials, the region and endpoint from ~/.aws/config; variables win."""
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        f"[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = nope\n\n"
        f"[studio]\naws_access_key_id = {moto['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {moto['AWS_SECRET_ACCESS_KEY']}\n")
    (aws / "config").write_text(f"[profile studio]\nregion = us-east-1\n"
                                f"endpoint_url = {moto['AWS_ENDPOINT_URL']}\n")
    environ = {"HOME": str(tmp_path), "AWS_PROFILE": "studio"}
    from exporter.storage.objects import profile_settings
    assert profile_settings(environ) == {
        "AWS_ACCESS_KEY_ID": moto["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": moto["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto["AWS_ENDPOINT_URL"]}
    assert profile_settings({"HOME": str(tmp_path)})["AWS_ACCESS_KEY_ID"] == "AKIADEFAULT"
    assert "AWS_ACCESS_KEY_ID" not in profile_settings({**environ, "AWS_ACCESS_KEY_ID": "X"})
    location = ObjectLocation(BUCKET, "tests/profile")
    store = open_store(location, environ)
    assert list_objects(store, location) == {}
