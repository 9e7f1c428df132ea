"""Content credentials (C2PA): every export signed with what its render declared and what
the export did, read back here with c2pa's own Reader (not the code under test), the
certificates made by openssl as a user would (docs/credentials.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import c2pa
import pytest
from conftest import (
    doit_env,
    executed_tasks,
    made_once,
    media_facts,
    read_json,
    run_doit,
    small_platforms,
)

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SIGNER_EXTENSIONS = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                     "extendedKeyUsage=emailProtection\n")
# The two platforms of the shared run: YouTube's and Instagram's encodes are the same bytes
# (one encode, each platform's copy signed for itself).
PLATFORMS = ("youtube", "instagram")


def openssl(*args, cwd):
    subprocess.run(["/usr/bin/openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_signer(directory: Path, name: str, days: int = 365) -> tuple[Path, Path]:
    """A signer issued by the CA in `directory`: (its chain, signer first; its PKCS#8 key)."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.ec.key",
            cwd=directory)
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", f"{name}.ec.key", "-out", f"{name}.key",
            cwd=directory)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}/O=reelexport tests",
            "-out", f"{name}.csr", cwd=directory)
    (directory / "signer.cnf").write_text(SIGNER_EXTENSIONS)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", str(days), "-sha256", "-extfile", "signer.cnf",
            "-out", f"{name}.pem", cwd=directory)
    chain = directory / f"{name}.chain.pem"
    chain.write_bytes((directory / f"{name}.pem").read_bytes()
                      + (directory / "ca.pem").read_bytes())
    return chain, directory / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and its signers: `studio` (valid), `renewed` (a second certificate), `expired`
    (notAfter yesterday), and a key of no certificate."""
    _, made = made_once(tmp_path_factory, "c2pa-pki", make_pki)
    return {name: (Path(chain), Path(key)) for name, (chain, key) in made.items()}


def make_pki(directory):
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key",
            cwd=directory)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
            "-subj", "/CN=reelexport test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem",
            cwd=directory)
    signers = {name: make_signer(directory, name) for name in ("studio", "renewed", "stray")}
    signers["expired"] = make_signer(directory, "expired", days=-1)
    return {name: [str(chain), str(key)] for name, (chain, key) in signers.items()}


def signing_env(pki, name="studio", **extra):
    chain, key = pki[name]
    return doit_env(REELEXPORT_C2PA_CERT=str(chain), REELEXPORT_C2PA_KEY=str(key), **extra)


def manifest_store(path):
    """c2pa's own reading of a file: the whole store, validated."""
    with c2pa.Reader(str(path)) as reader:
        return json.loads(reader.json())


def active(store):
    return store["manifests"][store["active_manifest"]]


def actions_of(manifest):
    return next(a["data"]["actions"] for a in manifest["assertions"]
                if a["label"].startswith("c2pa.actions"))


def sign_render(path, pki):
    """A render that carries a manifest of its own (as a generator signing its output)."""
    chain, key = pki["studio"]
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
        alg=b"es256", sign_cert=chain.read_bytes(), private_key=key.read_bytes(), ta_url=None))
    definition = {"claim_generator_info": [{"name": "a generator", "version": "1"}],
                  "title": "generated", "format": "video/mp4",
                  "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                      {"action": "c2pa.created",
                       "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}]}}]}
    unsigned = path.with_name("unsigned.mp4")
    path.rename(unsigned)
    with c2pa.Builder(json.dumps(definition)) as builder, open(unsigned, "rb") as source, \
            open(path, "w+b") as destination:
        builder.sign(signer, "video/mp4", source, destination)
    unsigned.unlink()


TITLES = {"ai-story": {"ai_generated": True}, "mixed-story": {"ai_generated": "partly"},
          "camera-story": {}, "signed-render": {}}


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory, clip_cache, pki):
    """One signed run over four renders: AI-declared, partly generated, silent (a camera
    render: no declaration), and one carrying its own manifest."""
    def make(root):
        return make_signed_run(root, clip_cache, pki)
    _, made = made_once(tmp_path_factory, "c2pa-signed-run", make)
    exports = Path(made["exports"])
    return {"exports": exports, "args": made["args"], "env": signing_env(pki),
            "dir": exports / "women" / "18-23"}


def make_signed_run(root, clip_cache, pki):
    renders, exports = root / "renders", root / "exports"
    for title_id, declaration in TITLES.items():
        directory = renders / "women" / "18-23" / title_id
        directory.mkdir(parents=True)
        shutil.copy(clip_cache("vertical", width=360, height=640, seconds=1, fps=30),
                    directory / "final.mp4")
        (directory / "metadata.json").write_text(json.dumps(
            {"title": f"Story {title_id}", **declaration}))
    sign_render(renders / "women" / "18-23" / "signed-render" / "final.mp4", pki)
    args = [f"renders={renders}", f"exports={exports}",
            f"platforms_dir={small_platforms(root / 'platforms', PLATFORMS)}"]
    run_doit("-n", "2", *args, env=signing_env(pki), check=0)
    return {"exports": str(exports), "args": args}


def test_an_ai_declared_render_is_signed_as_generated(signed_run):
    video = signed_run["dir"] / "ai-story" / "youtube.mp4"
    store = manifest_store(video)
    assert store["validation_state"] == "Valid", store.get("validation_status")
    manifest = active(store)
    assert manifest["title"] == "Story ai-story"
    assert manifest["claim_generator_info"][0]["name"] == "reelexport"
    actions = actions_of(manifest)
    assert actions[0] == {**actions[0], "action": "c2pa.created",
                          "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}
    assert [a["action"] for a in actions[1:]] == ["c2pa.transcoded", "c2pa.resized"]
    assert manifest["signature_info"]["common_name"] == "studio"
    # the sidecar records the signed file and its manifest
    sidecar = read_json(signed_run["dir"] / "ai-story" / "youtube.export.json")
    assert sidecar["output"]["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert sidecar["output"]["size_bytes"] == video.stat().st_size
    assert sidecar["credentials"]["label"] == store["active_manifest"]
    assert sidecar["credentials"]["claims"]["digital_source_type"] == (
        IPTC + "trainedAlgorithmicMedia")
    # still a streamable export of its platform (moov before mdat: MediaInfo's reading)
    facts = media_facts(video)
    assert facts["streamable"] and (facts["width"], facts["height"]) == (270, 480)


def test_a_partly_generated_render_is_signed_as_composite(signed_run):
    actions = actions_of(active(manifest_store(signed_run["dir"] / "mixed-story" /
                                               "instagram.mp4")))
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == IPTC + "compositeWithTrainedAlgorithmicMedia"
    request = read_json(signed_run["dir"] / "mixed-story" / "metadata_youtube.json")["request"]
    assert request["status"]["containsSyntheticMedia"] is True


def test_a_silent_render_makes_no_ai_claim(signed_run):
    store = manifest_store(signed_run["dir"] / "camera-story" / "youtube.mp4")
    assert store["validation_state"] == "Valid"
    manifest = active(store)
    assert "digitalSourceType" not in json.dumps(manifest)
    actions = actions_of(manifest)
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.transcoded", "c2pa.resized"]
    [ingredient] = manifest["ingredients"]
    assert (ingredient["title"], ingredient["relationship"]) == ("final.mp4", "parentOf")


def test_a_render_manifest_is_kept_as_the_ingredient(signed_run):
    store = manifest_store(signed_run["dir"] / "signed-render" / "youtube.mp4")
    assert store["validation_state"] == "Valid"
    manifest = active(store)
    [ingredient] = manifest["ingredients"]
    assert ingredient["relationship"] == "parentOf" and ingredient["active_manifest"]
    parent = store["manifests"][ingredient["active_manifest"]]
    assert parent["claim_generator_info"][0]["name"] == "a generator"
    assert actions_of(parent)[0]["digitalSourceType"] == IPTC + "trainedAlgorithmicMedia"
    assert actions_of(manifest)[0]["action"] == "c2pa.opened"


def test_shared_encodes_are_signed_per_platform(signed_run):
    directory = signed_run["dir"] / "ai-story"
    youtube, instagram = (read_json(directory / f"{name}.export.json") for name in PLATFORMS)
    assert youtube["encode"]["shared_key"] == instagram["encode"]["shared_key"]
    assert youtube["credentials"]["label"] != instagram["credentials"]["label"]
    for name in PLATFORMS:
        assert manifest_store(directory / f"{name}.mp4")["validation_state"] == "Valid"


def test_status_registry_gallery_and_queue_show_the_credentials(signed_run):
    args, env = signed_run["args"], signed_run["env"]
    again = run_doit(*args, env=env, check=0)
    assert executed_tasks(again.stdout) == []           # the signer is part of up to date
    status = run_doit("status", *args, env=env, check=0).stdout
    assert "credentials: signed by studio" in status
    # the render with its own manifest declares nothing itself: its claim is its ingredient's
    assert "8 of 8 exports (2 AI-generated, 4 no AI claim, 2 partly AI-generated)" in status
    document = json.loads(run_doit("status", "--json", *args, env=env, check=0).stdout)
    assert document["credentials"]["signing"] == "on"
    assert document["credentials"]["signed"] == 8
    registry = read_json(signed_run["exports"] / "registry.json")
    row = next(r for r in registry["exports"]
               if (r["title_id"], r["platform"]) == ("ai-story", "youtube"))
    assert row["credentials"]["digital_source_type"] == IPTC + "trainedAlgorithmicMedia"
    assert row["credentials"]["label"].startswith("urn:c2pa:")
    gallery = (signed_run["exports"] / "index.html").read_text()
    assert "AI-generated; transcoded, resized; signed by studio" in gallery
    queue = json.loads(run_doit("uploads", "--json", *args, env=env, check=0).stdout)
    entries = [*queue["ready"]]
    assert entries and all(entry["credentials"]["signer"] == "studio" for entry in entries)


def test_signing_turned_on_renewed_and_a_tampered_export(library, pki):
    """Off: as before. On: the video in place signed, not encoded. A new certificate:
    signed again. A tampered export: status --check says so, the next run makes it anew."""
    library.add("men", "18-23", "one")
    platforms = small_platforms(library.root.parent / "platforms", ("tiktok",))
    args = library.args(f"platforms_dir={platforms}")
    video = library.exports / "men" / "18-23" / "one" / "tiktok.mp4"
    run_doit(*args, check=0)
    with pytest.raises(c2pa.C2paError):
        manifest_store(video)
    assert "credentials: off" in run_doit("status", *args, check=0).stdout
    assert "credentials" not in read_json(video.with_name("tiktok.export.json"))

    for signer in ("studio", "renewed"):
        signed = run_doit(*args, env=signing_env(pki, signer), check=0)
        assert executed_tasks(signed.stdout) == ["tiktok:one"]
        made = [json.loads(line) for line in
                (library.exports / "history.jsonl").read_text().splitlines()][-1]
        assert (made["video"], made["causes"]) == ("signed", ["signer changed"]), made
        assert active(manifest_store(video))["signature_info"]["common_name"] == signer

    data = bytearray(video.read_bytes())
    data[-2000] ^= 0xFF                                 # in the media data, after the manifest
    video.write_bytes(data)
    assert manifest_store(video)["validation_state"] == "Invalid"
    env = signing_env(pki, "renewed")
    assert run_doit("status", "--check", *args, env=env).returncode == 1
    run_doit(*args, env=env, check=0)
    assert manifest_store(video)["validation_state"] == "Valid"
    assert run_doit("status", "--check", *args, env=env).returncode == 0


@pytest.mark.parametrize("case, expected", [
    ("expired", "the certificate expired on"),
    ("stray key", "not the key of the certificate in REELEXPORT_C2PA_CERT="),
    ("missing key", "REELEXPORT_C2PA_CERT="),
])
def test_a_signer_that_cannot_sign_stops_the_run_at_load(library, pki, case, expected):
    library.add("men", "18-23", "one")
    chain, key = pki["expired" if case == "expired" else "studio"]
    env = doit_env(REELEXPORT_C2PA_CERT=str(chain),
                   **({"REELEXPORT_C2PA_KEY": str(pki["stray"][1] if case == "stray key"
                                                  else key)}
                      if case != "missing key" else {}))
    for command in ([], ["status", "--check"]):
        result = run_doit(*command, *library.args(), env=env, check=3)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (library.exports / "men").exists()


# ---- the pure parts, and the signer's checks, in-process --------------------------------

def test_what_the_manifest_states_follows_the_declaration():
    from exporter.media.credentials import manifest_definition, wanted_claims, what_it_did

    def first(ai, parent=False):
        definition = manifest_definition(title="t", ai_generated=ai, did=["c2pa.transcoded"],
                                         render_has_manifest=parent, render_name="final.mp4",
                                         tool_version="0")
        return wanted_claims(definition, "final.mp4", parent)
    assert first(True)["actions"][0] == "c2pa.created"
    assert first("partly")["digital_source_type"] == IPTC + "compositeWithTrainedAlgorithmicMedia"
    for silent in (None, False):
        claims = first(silent)
        assert (claims["actions"][0], claims["digital_source_type"]) == ("c2pa.opened", None)
        assert claims["ingredient"] == {"title": "final.mp4", "relationship": "parentOf",
                                        "has_manifest": False}
    kept = first(True, parent=True)         # the render's own manifest: opened, claim kept
    assert kept["actions"][0] == "c2pa.opened" and kept["ingredient"]["has_manifest"]
    assert what_it_did("remux", (1080, 1920), 0, (1080, 1920)) == ["c2pa.repackaged"]
    assert what_it_did("encode", (1920, 1080), 90, (1080, 1920)) == ["c2pa.transcoded"]
    assert what_it_did("encode", (640, 360), 0, (1080, 1920)) == ["c2pa.transcoded",
                                                                  "c2pa.resized"]


def test_a_ca_certificate_or_another_algorithm_is_refused(pki):
    from exporter.media.credentials import load_credentials
    from exporter.model.settings import SettingsError, SigningFiles
    chain, key = pki["studio"]
    ca = chain.with_name("ca.pem")
    with pytest.raises(SettingsError, match="a CA certificate"):
        load_credentials(SigningFiles(cert=str(ca), key=str(key)))
    with pytest.raises(SettingsError, match="signs with secp384r1"):
        load_credentials(SigningFiles(cert=str(chain), key=str(key), alg="es384"))
    with pytest.raises(SettingsError, match="cannot be read"):
        load_credentials(SigningFiles(cert=str(chain) + ".gone", key=str(key)))
    assert load_credentials(SigningFiles(cert=str(chain), key=str(key))).signer == "studio"
