"""The variables a user sets (`doit exports=... segment=...`, or REELEXPORT_* in the
environment): their names, defaults and help. Read by the settings, by `doit help`, and by
the loader before anything heavy is imported (exports_named)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

DEFAULTS = {
    "renders": "data/renders",
    "exports": "data/exports",
    "platforms_dir": "platforms",
    "attempts": "3",
    "backoff": "2",
}
# Every doit var the settings read (`doit renders=... segment=...`): a command that starts
# runs of its own (doit watch) passes them on.
VAR_NAMES = ("renders", "exports", "platforms_dir", "segment", "age", "platforms", "preset",
             "ffmpeg", "attempts", "backoff", "retry", "cluster", "tls_ca", "tls_cert",
             "tls_key", "cluster_insecure", "c2pa_cert", "c2pa_key", "c2pa_alg", "c2pa_tsa")
# doit vars read elsewhere: `doit watch settle=SECONDS poll=SECONDS` (pipeline/plumbing/watch.py).
OTHER_VAR_NAMES = ("settle", "poll")
# What each variable means, as `doit help` lists them (default: DEFAULTS, or none).
VAR_HELP = {
    "renders": "the renders root: SEGMENT/AGE/TITLE/final.mp4, or s3://BUCKET/PREFIX",
    "exports": "the exports root (doit's DB, registry.json, index.html), or s3://BUCKET/PREFIX",
    "platforms_dir": "the folder of platform files (*.yaml)",
    "segment": "only these segments (comma-separated)",
    "age": "only these age groups (comma-separated)",
    "platforms": "only these platforms (comma-separated)",
    "preset": "the x264 preset for every platform (default: each platform file's)",
    "ffmpeg": "the ffmpeg to run (default: the bundled one; never PATH's)",
    "attempts": "tries per export when a failure is transient (1 or more)",
    "backoff": "seconds before the 2nd try, doubled for each further one (0 or more)",
    "retry": "retry=failed: try again the exports that failed on unchanged inputs",
    "cluster": "a Dask scheduler to run the media work on (tls://HOST:PORT)",
    "tls_ca": "the cluster's CA certificate (PEM)",
    "tls_cert": "this client's certificate for the cluster (PEM)",
    "tls_key": "this client's key for the cluster (PEM)",
    "cluster_insecure": "yes: a plain tcp:// scheduler not on this machine",
    "c2pa_cert": "sign every export (C2PA): the certificate chain, signer first (PEM)",
    "c2pa_key": "the signer's private key (PKCS#8 PEM); never copied anywhere",
    "c2pa_alg": "the signing algorithm (default es256; docs/credentials.md)",
    "c2pa_tsa": "a timestamp authority URL for the signatures (optional)",
    "settle": "doit watch: seconds a render must stay unchanged before it is exported",
    "poll": "doit watch: seconds between listings of a renders bucket",
}
# What doit takes for a variable: NAME=VALUE with NAME a word. An argument such as a URL
# (`--url https://host/watch?v=1`) is not a variable the user meant: never refused here.
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAMES = {
    "renders": "REELEXPORT_RENDERS",
    "exports": "REELEXPORT_EXPORTS",
    "platforms_dir": "REELEXPORT_PLATFORMS",
    "preset": "REELEXPORT_X264_PRESET",
    "ffmpeg": "REELEXPORT_FFMPEG",
    "attempts": "REELEXPORT_ATTEMPTS",
    "backoff": "REELEXPORT_BACKOFF_S",
    "cluster": "REELEXPORT_CLUSTER",
    "tls_ca": "REELEXPORT_TLS_CA",
    "tls_cert": "REELEXPORT_TLS_CERT",
    "tls_key": "REELEXPORT_TLS_KEY",
    "cluster_insecure": "REELEXPORT_CLUSTER_INSECURE",
    "c2pa_cert": "REELEXPORT_C2PA_CERT",
    "c2pa_key": "REELEXPORT_C2PA_KEY",
    "c2pa_alg": "REELEXPORT_C2PA_ALG",
    "c2pa_tsa": "REELEXPORT_C2PA_TSA",
}


def exports_named(variables: Iterable[str], environ: Mapping[str, str]) -> str:
    """The exports root as the settings will read it: the last `exports=` of the command
    line's variables (`NAME=VALUE` items), else REELEXPORT_EXPORTS, else the default."""
    said = [item.partition("=")[2] for item in variables if item.startswith("exports=")]
    if said:
        return said[-1]
    return environ.get(ENV_NAMES["exports"]) or DEFAULTS["exports"]
