"""renders=s3://BUCKET/PREFIX, as a user runs it: real doit, real ffmpeg, a real S3 API on
localhost (moto's server, credentials checked). What was fetched is read from the server's
own access log, not from the tool."""

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import (
    S3_BUCKET,
    TEST_FFMPEG,
    assert_conforms,
    aws_env,
    doit_env,
    executable,
    executed_tasks,
    leftovers,
    load_yaml,
    read_json,
    run_doit,
    small_platforms,
)

from exporter.media.samples import make_clip

RENDERS = f"s3://{S3_BUCKET}/renders"
# about buckets, not about ffmpeg: the first pass only
pytestmark = pytest.mark.once


def bucket(moto):
    import boto3
    return boto3.client("s3", endpoint_url=moto["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id=moto["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=moto["AWS_SECRET_ACCESS_KEY"])


def put(moto, prefix, relative, path):
    bucket(moto).upload_file(str(path), S3_BUCKET, f"{prefix}/{relative}")


def requests_since(moto, mark):
    """The server's requests logged after `mark` (a length of its log), as 'GET /key'."""
    text = Path(moto["MOTO_LOG"]).read_text(errors="replace")[mark:]
    return re.findall(r'"(?:\x1b\[[0-9;]*m)?([A-Z]+ /[^ ]*) HTTP', text)


def log_mark(moto):
    return len(Path(moto["MOTO_LOG"]).read_text(errors="replace"))


def fetches(requests, name="final.mp4"):
    return sorted(request for request in requests
                  if request.startswith("GET ") and request.endswith("/" + name))


@pytest.fixture
def in_bucket(moto, tmp_path, clip_cache, request):
    """A renders prefix of the test's own with two titles (alpha has a thumbnail), and the
    doit arguments and environment exporting it to YouTube and TikTok."""
    prefix = f"{request.node.name}/renders"
    clip = clip_cache("vertical", width=360, height=640, seconds=1, fps=30, audio=True)
    for title in ("alpha", "beta"):
        put(moto, prefix, f"women/18-23/{title}/final.mp4", clip)
        meta = tmp_path / f"{title}.json"
        meta.write_text(f'{{"title": "Title {title}", "hashtags": ["test"]}}')
        put(moto, prefix, f"women/18-23/{title}/metadata.json", meta)
    thumbnail = make_clip(tmp_path / "thumb-src.mp4", width=320, height=180, seconds=1,
                          pattern="color=c=red")
    from exporter.media.ffmpeg import run_ffmpeg
    run_ffmpeg([TEST_FFMPEG, "-loglevel", "error", "-i", str(thumbnail), "-frames:v", "1",
                "-update", "1", str(tmp_path / "thumbnail.jpg")])
    put(moto, prefix, "women/18-23/alpha/thumbnail.jpg", tmp_path / "thumbnail.jpg")
    platforms = small_platforms(tmp_path / "platforms")
    exports = tmp_path / "exports"

    class Setup:
        url = f"s3://{S3_BUCKET}/{prefix}"
        args = [f"renders=s3://{S3_BUCKET}/{prefix}", f"exports={exports}",
                f"platforms_dir={platforms}"]
        env = doit_env(**aws_env(moto))
    Setup.prefix, Setup.exports, Setup.platforms, Setup.clip = prefix, exports, platforms, clip
    return Setup


def test_a_library_in_a_bucket_is_exported_and_a_noop_downloads_nothing(moto, in_bucket):
    mark = log_mark(moto)
    first = run_doit("-n", "2", *in_bucket.args, env=in_bucket.env, check=0)
    assert sorted(executed_tasks(first.stdout)) == ["tiktok:alpha", "tiktok:beta",
                                                     "youtube:alpha", "youtube:beta"]
    clip_sha = hashlib.sha256(in_bucket.clip.read_bytes()).hexdigest()
    for title in ("alpha", "beta"):
        out = in_bucket.exports / "women/18-23" / title
        for platform in ("youtube", "tiktok"):
            assert_conforms(out / f"{platform}.mp4",
                            load_yaml(in_bucket.platforms / f"{platform}.yaml"), 1.0)
            sidecar = read_json(out / f"{platform}.export.json")
            assert sidecar["source"]["path"] == f"{in_bucket.url}/women/18-23/{title}/final.mp4"
            assert sidecar["source"]["sha256"] == clip_sha
    alpha = read_json(in_bucket.exports / "women/18-23/alpha/youtube.export.json")
    assert alpha["cover"]["from"] == "thumbnail.jpg"
    # each render fetched once, for both of its platforms; nothing downloaded is left
    assert fetches(requests_since(moto, mark)) == [
        f"GET /{S3_BUCKET}/{in_bucket.prefix}/women/18-23/{title}/final.mp4"
        for title in ("alpha", "beta")]
    assert not (in_bucket.exports / ".fetched").exists()
    assert leftovers(in_bucket.exports) == []

    mark = log_mark(moto)
    noop = run_doit("-n", "2", *in_bucket.args, env=in_bucket.env, check=0)
    assert executed_tasks(noop.stdout) == []
    # the library stamp holds: listing the bucket changed nothing of the mirror
    assert "4 exports up to date: nothing changed since the run of" in noop.stdout
    gets = [request for request in requests_since(moto, mark) if request.startswith("GET ")]
    assert gets and all("list-type=2" in request for request in gets), gets   # LIST only


def test_a_render_replaced_in_the_bucket_is_exported_again_alone(moto, in_bucket, tmp_path):
    run_doit("-n", "2", *in_bucket.args, env=in_bucket.env, check=0)
    changed = make_clip(tmp_path / "changed.mp4", width=360, height=640, seconds=1,
                        pattern="color=c=blue")
    put(moto, in_bucket.prefix, "women/18-23/beta/final.mp4", changed)
    mark = log_mark(moto)
    rerun = run_doit("-n", "2", *in_bucket.args, env=in_bucket.env, check=0)
    assert sorted(executed_tasks(rerun.stdout)) == ["tiktok:beta", "youtube:beta"]
    assert fetches(requests_since(moto, mark)) == [
        f"GET /{S3_BUCKET}/{in_bucket.prefix}/women/18-23/beta/final.mp4"]
    sidecar = read_json(in_bucket.exports / "women/18-23/beta/youtube.export.json")
    assert sidecar["source"]["sha256"] == hashlib.sha256(changed.read_bytes()).hexdigest()


def test_an_upload_is_recorded_as_current_until_the_render_changes_in_the_bucket(
        moto, in_bucket, tmp_path):
    """`doit uploaded` tells a stale export by the render's ETag, without downloading it."""
    run_doit(*in_bucket.args, "platforms=youtube", env=in_bucket.env, check=0)
    sidecar = read_json(in_bucket.exports / "women/18-23/alpha/youtube.export.json")
    assert sidecar["source"]["etag"]
    current = run_doit("uploaded", "youtube:alpha", "--id", "v1", *in_bucket.args,
                       env=in_bucket.env, check=0)
    assert "stale" not in current.stderr, current.stderr
    changed = make_clip(tmp_path / "changed.mp4", width=360, height=640, seconds=1,
                        pattern="color=c=green")
    put(moto, in_bucket.prefix, "women/18-23/alpha/final.mp4", changed)
    stale = run_doit("uploaded", "youtube:alpha", "--id", "v2", *in_bucket.args,
                     env=in_bucket.env, check=0)
    assert "youtube:alpha was uploaded stale" in stale.stderr, stale.stderr
    assert "source changed" in stale.stderr


@pytest.mark.parametrize("key", ["women/18-23/../final.mp4", "women/18-23/ctl\x01/final.mp4",
                                 "women/18-23/gamma/final.mp4/", "women/18-23/alpha/final.mp4/"],
                         ids=["dotdot", "control", "slash", "slash-beside"])
def test_a_key_that_is_not_a_path_is_refused_alone(moto, in_bucket, key):
    """obstore refuses a whole listing page for one such key, and lists `a/` as `a`: the
    key is refused in one line naming it, and the library's titles still export."""
    bucket(moto).put_object(Bucket=S3_BUCKET, Key=f"{in_bucket.prefix}/{key}", Body=b"x")
    run = run_doit("-n", "2", *in_bucket.args, env=in_bucket.env, check=2)
    printable = key.replace("\x01", "\\x01")
    refusals = [line for line in run.stderr.splitlines() if printable in line]
    assert refusals and "Traceback" not in run.stderr, run.stderr
    assert all(line.isprintable() for line in run.stderr.splitlines())
    if key.endswith("/"):
        assert all("a key ending in '/' is not a title's file" in line
                   or "a key ending in '/' is not a file" in line for line in refusals)
    clip_sha = hashlib.sha256(in_bucket.clip.read_bytes()).hexdigest()
    for title in ("alpha", "beta"):
        for platform in ("youtube", "tiktok"):
            sidecar = read_json(in_bucket.exports / f"women/18-23/{title}/{platform}.export.json")
            assert sidecar["source"]["sha256"] == clip_sha


def test_a_render_deleted_from_the_bucket_leaves_the_library(moto, in_bucket):
    run_doit(*in_bucket.args, "platforms=youtube", env=in_bucket.env, check=0)
    bucket(moto).delete_object(Bucket=S3_BUCKET,
                               Key=f"{in_bucket.prefix}/women/18-23/beta/final.mp4")
    bucket(moto).delete_object(Bucket=S3_BUCKET,
                               Key=f"{in_bucket.prefix}/women/18-23/beta/metadata.json")
    listed = run_doit("list", *in_bucket.args, env=in_bucket.env, check=0)
    assert "youtube:alpha" in listed.stdout and "youtube:beta" not in listed.stdout


# An ffmpeg that, during the encode, puts other bytes under the render's key, then encodes.
REPLACING_FFMPEG = """#!{python}
import os, sys, boto3
if any(arg == "libx264" for arg in sys.argv):
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1"
                 ).put_object(Bucket={bucket!r}, Key={key!r}, Body={body!r})
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


def test_a_render_replaced_during_its_export_is_not_recorded_as_exported(moto, in_bucket,
                                                                         tmp_path):
    import sys
    wrapper = executable(tmp_path / "ffmpeg-replacing", REPLACING_FFMPEG.format(
        python=sys.executable, bucket=S3_BUCKET, real=TEST_FFMPEG, body=b"a newer render",
        key=f"{in_bucket.prefix}/women/18-23/beta/final.mp4"))
    env = {**in_bucket.env, "REELEXPORT_FFMPEG": str(wrapper)}
    result = run_doit(*in_bucket.args, "segment=women", "platforms=youtube", "export:beta",
                      env=env)
    assert result.returncode != 0
    assert ("FAILED youtube:beta (women/18-23/beta): final.mp4 was replaced in the bucket "
            "during the export") in result.stderr
    out = in_bucket.exports / "women/18-23/beta"
    assert not (out / "youtube.mp4").exists() and not (out / "youtube.error.json").exists()


@pytest.mark.parametrize("change, expected", [
    ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"},
     "the credentials were refused (SignatureDoesNotMatch)"),
    ({"AWS_ACCESS_KEY_ID": "AKIANOTAKEY"}, "the credentials were refused (InvalidAccessKeyId)"),
])
def test_bad_credentials_are_one_line_and_nothing_runs(moto, in_bucket, change, expected):
    result = run_doit(*in_bucket.args, env={**in_bucket.env, **change})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [f"ERROR: {in_bucket.url}: {expected}"], lines
    assert "wrong-secret" not in result.stderr
    assert not list(in_bucket.exports.rglob("*.mp4"))


def test_a_missing_bucket_is_one_line(moto, tmp_path):
    result = run_doit("renders=s3://no-such-bucket/renders", f"exports={tmp_path / 'e'}",
                      env=doit_env(**aws_env(moto)))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "ERROR: s3://no-such-bucket/renders: the bucket does not exist"]


@pytest.mark.parametrize("var, expected", [
    ("renders=s3://Bad_Bucket/x", "renders=s3://Bad_Bucket/x: not a bucket URL"),
    ("exports=s3://media/a//b", "exports=s3://media/a//b: the prefix has an empty"),
])
def test_a_malformed_or_unsupported_bucket_var_is_one_line(tmp_path, var, expected):
    other = f"renders={tmp_path}" if var.startswith("exports=") else f"exports={tmp_path}"
    result = run_doit(other, var)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr


# ---- exports=s3://BUCKET/PREFIX -------------------------------------------------------------

def objects(moto, prefix):
    """The bucket's objects under `prefix`: relative key -> bytes."""
    s3 = bucket(moto)
    listed = s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix + "/").get("Contents", [])
    return {item["Key"][len(prefix) + 1:]: s3.get_object(Bucket=S3_BUCKET, Key=item["Key"])
            ["Body"].read() for item in listed}


@pytest.fixture
def to_bucket(moto, library, tmp_path, request):
    """Two local titles exported to YouTube and TikTok into a prefix of the test's own; the
    local tree in a state directory of the test's own."""
    library.add("women", "18-23", "alpha")
    library.add("men", "24-30", "beta", shape="landscape")
    prefix = f"{request.node.name}/exports"
    platforms = small_platforms(tmp_path / "platforms")
    state = tmp_path / "state"

    class Setup:
        url = f"s3://{S3_BUCKET}/{prefix}"
        args = [f"renders={library.root}", f"exports=s3://{S3_BUCKET}/{prefix}",
                f"platforms_dir={platforms}"]
        env = doit_env(REELEXPORT_STATE_DIR=str(state),
                       **aws_env(moto))
        local = state / S3_BUCKET / prefix
    Setup.prefix = prefix
    return Setup


def test_exports_are_published_to_a_bucket_and_a_noop_writes_nothing(moto, to_bucket):
    first = run_doit("-n", "2", *to_bucket.args, env=to_bucket.env, check=0)
    assert len(executed_tasks(first.stdout)) == 4
    published = objects(moto, to_bucket.prefix)
    local = {str(p.relative_to(to_bucket.local)): p.read_bytes()
             for p in to_bucket.local.glob("*/*/*/*") if p.is_file()}
    assert local and {k: v for k, v in published.items() if k.count("/") == 3} == local
    for name in ("registry.json", "history.jsonl", "index.html"):
        assert published[name] == (to_bucket.local / name).read_bytes()
    assert ".reelexport/lease.json" not in published, "the lease is dropped at the end"
    registry = json.loads(published["registry.json"])
    assert {row["status"] for row in registry["exports"]} == {"exported"}

    mark = log_mark(moto)
    noop = run_doit("-n", "2", *to_bucket.args, env=to_bucket.env, check=0)
    assert "4 exports up to date: nothing changed since the run of" in noop.stdout
    requests = requests_since(moto, mark)
    # one listing, nothing written: not even the lease (a proven no-op writes nothing)
    assert [r for r in requests if r.split()[0] in ("PUT", "POST", "DELETE")] == [], requests
    assert not [r for r in requests if r.startswith("GET ") and "list-type=2" not in r]


def test_clean_removes_the_exports_from_the_bucket_too(moto, to_bucket):
    run_doit(*to_bucket.args, env=to_bucket.env, check=0)
    run_doit("clean", "export:alpha", *to_bucket.args, env=to_bucket.env, check=0)
    left = objects(moto, to_bucket.prefix)
    assert not [key for key in left if key.startswith("women/18-23/alpha/")]
    assert [key for key in left if key.startswith("men/24-30/beta/")]


def test_an_export_deleted_from_the_bucket_is_published_again_not_encoded(moto, to_bucket):
    run_doit(*to_bucket.args, env=to_bucket.env, check=0)
    video = to_bucket.local / "women/18-23/alpha/youtube.mp4"
    made = video.stat().st_mtime_ns
    bucket(moto).delete_object(Bucket=S3_BUCKET,
                               Key=f"{to_bucket.prefix}/women/18-23/alpha/youtube.mp4")
    rerun = run_doit(*to_bucket.args, env=to_bucket.env, check=0)
    assert executed_tasks(rerun.stdout) == ["youtube:alpha"]
    assert video.stat().st_mtime_ns == made, "published from the local file, not encoded"
    assert objects(moto, to_bucket.prefix)["women/18-23/alpha/youtube.mp4"] == \
        video.read_bytes()


DENY_SIDECARS = """{{"Version": "2012-10-17", "Statement": [
 {{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}},
 {{"Effect": "Deny", "Action": "s3:PutObject",
   "Resource": "arn:aws:s3:::{bucket}/{prefix}/*/*/*/*.export.json"}}]}}"""


def test_an_upload_cut_off_mid_way_leaves_no_sidecar_and_the_next_run_finishes_it(
        moto, to_bucket):
    """The bucket refuses the sidecars (the last file of each export): the exports are made
    and their other files uploaded, none is recorded as published; with the right granted
    again, the next run uploads them without encoding anything again."""
    import boto3
    iam = boto3.client("iam", endpoint_url=moto["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id=moto["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=moto["AWS_SECRET_ACCESS_KEY"])
    user = f"cut-{abs(hash(to_bucket.prefix)) % 10**8}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="no-sidecars", PolicyDocument=DENY_SIDECARS
                        .format(bucket=S3_BUCKET, prefix=to_bucket.prefix))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    cut = {**to_bucket.env, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
           "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    first = run_doit(*to_bucket.args, env=cut)
    assert first.returncode != 0
    failed = [line for line in first.stderr.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 4 and all("export.json: access was refused" in line or
                                    "AccessDenied" in line for line in failed), failed
    published = objects(moto, to_bucket.prefix)
    assert not [k for k in published if k.endswith(".export.json")]
    videos = {p: p.stat().st_mtime_ns for p in to_bucket.local.rglob("*.mp4")
              if ".shared" not in p.parts}
    assert len(videos) == 4

    second = run_doit(*to_bucket.args, env=to_bucket.env, check=0)
    assert len(executed_tasks(second.stdout)) == 4
    assert {p: p.stat().st_mtime_ns for p in videos} == videos, "nothing encoded again"
    published = objects(moto, to_bucket.prefix)
    for path in to_bucket.local.glob("*/*/*/*"):
        assert published[str(path.relative_to(to_bucket.local))] == path.read_bytes()


def test_a_local_tree_made_anew_resumes_from_the_bucket_without_encoding(moto, to_bucket):
    """Another machine, or a lost state directory: the exports the bucket holds are
    fetched and kept (their sidecars say they were made from these inputs), not encoded
    or uploaded again; the history comes back from the bucket."""
    run_doit(*to_bucket.args, env=to_bucket.env, check=0)
    before = objects(moto, to_bucket.prefix)
    shutil.rmtree(to_bucket.local)
    mark = log_mark(moto)
    again = run_doit(*to_bucket.args, env=to_bucket.env, check=0)
    assert len(executed_tasks(again.stdout)) == 4
    requests = requests_since(moto, mark)
    assert not [r for r in requests if r.startswith("PUT ")
                and r.rsplit(".", 1)[-1] in ("mp4", "jpg")], requests
    events = [json.loads(line) for line in
              (to_bucket.local / "history.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("made") == 8      # 4 restored, 4 of this run
    assert [e["video"] for e in events[-4:]] == ["kept"] * 4
    after = objects(moto, to_bucket.prefix)
    for path in to_bucket.local.glob("*/*/*/*"):
        relative = str(path.relative_to(to_bucket.local))
        assert after[relative] == path.read_bytes()
        if path.suffix in (".mp4", ".jpg"):
            assert after[relative] == before[relative]
    noop = run_doit(*to_bucket.args, env=to_bucket.env, check=0)
    assert "4 exports up to date: nothing changed since the run of" in noop.stdout


def test_a_second_coordinator_is_refused_in_one_line(moto, to_bucket, tmp_path):
    lease = tmp_path / "lease.json"
    lease.write_text(json.dumps({"run_id": "0123456789abcdef", "host": "render-02",
                                 "pid": 4242, "taken_at": time.time(),
                                 "renewed_at": time.time()}))
    put(moto, to_bucket.prefix, ".reelexport/lease.json", lease)
    result = run_doit(*to_bucket.args, env=to_bucket.env)
    assert result.returncode == 4, "refused as when another run holds the tree's lock"
    [line] = result.stderr.strip().splitlines()
    assert re.fullmatch(re.escape(
        f"reelexport: refused: {to_bucket.url}: another run is exporting into it (run "
        f"0123456789ab, host render-02, pid 4242, for 0 min, renewed ") + r"\d s ago" +
        re.escape(f"; its lease {to_bucket.url}/.reelexport/lease.json is taken over once not "
                  "renewed for 60 min, or at once from the same machine when its process is "
                  "gone)"), line), line
    assert not [k for k in objects(moto, to_bucket.prefix) if k.endswith(".mp4")]
    # a lease left by a run of this machine that was killed (its process gone) is taken over
    from exporter.storage.lease import this_process
    lease.write_text(json.dumps({**this_process(), "run_id": "killed", "pid": 2**22 + 17,
                                 "taken_at": time.time(), "renewed_at": time.time()}))
    put(moto, to_bucket.prefix, ".reelexport/lease.json", lease)
    run_doit(*to_bucket.args, env=to_bucket.env, check=0)


def test_a_run_renews_its_lease_and_stops_when_another_run_took_it_over(moto, to_bucket,
                                                                         tmp_path):
    """A run silent past the lease's staleness (a laptop asleep) may find its lease taken
    over: it stops writing at once, and leaves the other run's lease alone."""
    import sys
    lease_key = f"{to_bucket.prefix}/.reelexport/lease.json"
    wrapper = executable(tmp_path / "ffmpeg-taking-over", REPLACING_FFMPEG.format(
        python=sys.executable, bucket=S3_BUCKET, real=TEST_FFMPEG, key=lease_key,
        body=b'{"host": "render-02", "pid": 4242}'))
    renewing = {**to_bucket.env, "REELEXPORT_LEASE_RENEW_S": "0"}
    stopped = run_doit(*to_bucket.args, env={**renewing, "REELEXPORT_FFMPEG": str(wrapper)})
    assert stopped.returncode != 0
    assert (f"reelexport: stopped: {to_bucket.url}: another run took over this run's lease "
            f"({to_bucket.url}/.reelexport/lease.json), so this run stops; the exports it "
            "finished are kept") in stopped.stderr, stopped.stderr
    assert len(executed_tasks(stopped.stdout)) < 4
    left = objects(moto, to_bucket.prefix)
    assert left[".reelexport/lease.json"] == b'{"host": "render-02", "pid": 4242}', \
        "the other run's lease is left alone"
    assert "registry.json" not in left, "nor is the prefix's root written once it is lost"

    bucket(moto).delete_object(Bucket=S3_BUCKET, Key=lease_key)     # that run ended
    mark = log_mark(moto)
    finished = run_doit(*to_bucket.args, env=renewing, check=0)
    assert executed_tasks(finished.stdout)
    leases = [r for r in requests_since(moto, mark)
              if r.startswith("PUT ") and r.endswith("/.reelexport/lease.json")]
    assert len(leases) > 2, "taken, then renewed as its exports started and finished"
    assert ".reelexport/lease.json" not in objects(moto, to_bucket.prefix)
