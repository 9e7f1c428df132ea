"""A cluster only your machines can join, without a cluster: which addresses the client
refuses and why (exporter.pipeline.placement.cluster.refusal), the TLS handshake failures it names,
and the certificate variables the settings check (exporter.model.settings). The real TLS
cluster is in tests/test_cluster.py."""

import shutil
import ssl
import subprocess

import pytest

from exporter.model.settings import ClusterAddress, SettingsError, resolve_settings
from exporter.pipeline.placement.cluster import is_loopback, refusal, split_address, tls_failure

# Bookkeeping, not ffmpeg: the first pass only (README: Test).
pytestmark = pytest.mark.once
OPENSSL = shutil.which("openssl")
LEAF_EXTENSIONS = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")


def make_certificates(directory, names=("scheduler", "worker", "client")):
    """A CA and, signed by it, one certificate and key per name, as docs/cluster.md makes
    them: {name: (cert, key)} and "ca"."""
    if OPENSSL is None:
        pytest.skip("no openssl command to make certificates with")
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*argv):
        subprocess.run([OPENSSL, *argv], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=reelexport test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    (directory / "leaf.ext").write_text(LEAF_EXTENSIONS)
    made = {"ca": directory / "ca.pem"}
    for name in names:
        openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", f"{name}.pem")
        made[name] = (directory / f"{name}.pem", directory / f"{name}.key")
    return made


# ---- the address policy (pure) -------------------------------------------------------------

@pytest.mark.parametrize("address, expected", [
    ("tls://10.0.0.5:8786", ("tls", "10.0.0.5")),
    ("tcp://scheduler.example:8786", ("tcp", "scheduler.example")),
    ("127.0.0.1:8786", ("tcp", "127.0.0.1")),
    ("tcp://[::1]:8786", ("tcp", "::1")),
    ("TCP://[fe80::1]:8786", ("tcp", "fe80::1")),
    ("tcp://::1", ("tcp", "::1")),
    ("tcp://localhost", ("tcp", "localhost")),
    ("inproc://host/1234/1", ("inproc", "host")),
])
def test_an_address_is_split_into_scheme_and_host(address, expected):
    assert split_address(address) == expected


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True),
    ("LOCALHOST.", True), ("10.0.0.5", False), ("0.0.0.0", False), ("::", False),
    ("scheduler.example", False), ("localhost.example", False), ("", False),
])
def test_loopback_is_this_machine_only_and_names_are_not_resolved(host, loopback):
    assert is_loopback(host) is loopback


PLAIN_REFUSED = ("cluster: tcp://10.0.0.5:8786 is plain tcp://, without encryption or "
                 "authentication: anyone who can reach that port can run code on every "
                 "worker; use tls:// with tls_ca=, tls_cert= and tls_key= (docs/cluster.md), "
                 "or cluster_insecure=yes if only your machines can reach it")
TLS_WITHOUT_CERTIFICATES = (
    "cluster: tls://10.0.0.5:8786 needs the cluster's certificates: tls_ca=, tls_cert= and "
    "tls_key= (or REELEXPORT_TLS_CA, REELEXPORT_TLS_CERT, REELEXPORT_TLS_KEY; "
    "docs/cluster.md)")
CERTIFICATES = {"tls_ca": "/c/ca.pem", "tls_cert": "/c/client.pem", "tls_key": "/c/client.key"}


def test_plain_tcp_off_this_machine_is_refused_unless_the_user_says_so():
    assert refusal(ClusterAddress("tcp://10.0.0.5:8786")) == PLAIN_REFUSED
    assert "plain tcp://" in refusal(ClusterAddress("10.0.0.5:8786"))     # Dask's default
    assert "plain ws://" in refusal(ClusterAddress("ws://scheduler.example:8786"))
    assert refusal(ClusterAddress("tcp://10.0.0.5:8786", insecure=True)) is None
    for local in ("tcp://127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786",
                  "127.0.0.1:8786", "inproc://host/1/2"):
        assert refusal(ClusterAddress(local)) is None, local


def test_tls_needs_certificates_given_or_in_dasks_config():
    assert refusal(ClusterAddress("tls://10.0.0.5:8786")) == TLS_WITHOUT_CERTIFICATES
    assert refusal(ClusterAddress("tls://10.0.0.5:8786", **CERTIFICATES)) is None
    assert refusal(ClusterAddress("tls://10.0.0.5:8786"), dask_tls=True) is None
    # cluster_insecure=yes does not stand in for certificates
    assert refusal(ClusterAddress("tls://10.0.0.5:8786", insecure=True)) == (
        TLS_WITHOUT_CERTIFICATES)


def test_certificates_given_with_a_plain_address_are_not_ignored_in_silence():
    assert refusal(ClusterAddress("tcp://127.0.0.1:8786", **CERTIFICATES)) == (
        "cluster: tcp://127.0.0.1:8786 is plain tcp://, yet tls_ca= and tls_cert= are "
        "given: write tls://127.0.0.1:8786 to use them")


def wrapped(ssl_error):
    """As Dask raises it: its own OSError, raised from the ssl one."""
    try:
        try:
            raise ssl_error
        except ssl.SSLError as error:
            raise OSError("TLS certificate does not match. Check your security "
                          "settings.") from error
    except OSError as error:
        return error


def test_a_tls_handshake_failure_is_named_in_one_line():
    address = "tls://10.0.0.5:8786"
    refused = OSError("in <TLS (closed)  local=tls://127.0.0.1:51346 remote=tls://10.0.0.5:"
                      "8786>: SSLError: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca "
                      "(_ssl.c:2580)")
    assert tls_failure(address, refused) == (
        "cluster: the scheduler at tls://10.0.0.5:8786 refused this client: tls_cert= is not "
        "signed by the CA it trusts (tlsv1 alert unknown ca)")
    unverified = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
           "certificate in certificate chain (_ssl.c:1006)")
    assert tls_failure(address, wrapped(unverified)) == (
        "cluster: the scheduler at tls://10.0.0.5:8786 is not one of the cluster's: its "
        "certificate is not signed by tls_ca= (certificate verify failed: self-signed "
        "certificate in certificate chain)")
    # TLS 1.3: the scheduler may close before its alert is read
    closed = OSError("in <TLS (closed)  local=tls://127.0.0.1:36226 remote=tls://10.0.0.5:"
                     "8786>: SSLEOFError: EOF occurred in violation of protocol (_ssl.c:2427)")
    assert tls_failure(address, closed) == (
        "cluster: the scheduler at tls://10.0.0.5:8786 closed the TLS connection at once: "
        "most likely it refused this client (a tls_cert= not signed by the CA it trusts)")
    other = OSError("SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1)")
    assert tls_failure(address, other) == (
        "cluster: the TLS handshake with the scheduler at tls://10.0.0.5:8786 failed "
        "(wrong version number)")
    assert tls_failure(address, OSError("Timed out trying to connect")) is None
    for line in (tls_failure(address, refused), PLAIN_REFUSED, TLS_WITHOUT_CERTIFICATES):
        assert "\n" not in line


# ---- the settings: tls_ca=, tls_cert=, tls_key=, cluster_insecure= --------------------------

def settings(values, environ=None):
    return resolve_settings(lambda name, default=None: values.get(name, default),
                            environ or {}, variables={})


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"), ("client", "other"))


def tls_vars(certificates, name="client"):
    cert, key = certificates[name]
    return {"tls_ca": str(certificates["ca"]), "tls_cert": str(cert), "tls_key": str(key)}


def test_the_certificates_reach_the_cluster_address(certificates, monkeypatch, tmp_path):
    given = settings({"cluster": "tls://10.0.0.5:8786", **tls_vars(certificates)})
    cert, key = certificates["client"]
    assert given.cluster == ClusterAddress("tls://10.0.0.5:8786", str(certificates["ca"]),
                                           str(cert), str(key))
    assert str(given.cluster) == "tls://10.0.0.5:8786"
    # from the environment, relative paths made absolute (the client may run elsewhere)
    monkeypatch.chdir(cert.parent)
    environ = {"REELEXPORT_CLUSTER": "tls://10.0.0.5:8786", "REELEXPORT_TLS_CA": "ca.pem",
               "REELEXPORT_TLS_CERT": cert.name, "REELEXPORT_TLS_KEY": key.name,
               "REELEXPORT_CLUSTER_INSECURE": "no"}
    assert settings({}, environ).cluster == given.cluster
    # the key inside the certificate file
    both = tmp_path / "both.pem"
    both.write_text(cert.read_text() + key.read_text())
    inside = settings({"cluster": "tls://h:1", "tls_ca": str(certificates["ca"]),
                       "tls_cert": str(both)})
    assert (inside.cluster.tls_cert, inside.cluster.tls_key) == (str(both), None)
    # without cluster= nothing is read: a local run is not refused over them
    assert settings({"tls_ca": "/nowhere"}).cluster is None
    assert settings({"cluster": "tcp://10.0.0.5:8786", "cluster_insecure": "YES"}).cluster == (
        ClusterAddress("tcp://10.0.0.5:8786", insecure=True))


def test_a_wrong_certificate_variable_is_one_line_naming_it_and_its_file(
        certificates, tmp_path):
    cert, key = certificates["client"]
    _, other_key = certificates["other"]
    encrypted = tmp_path / "encrypted.key"
    subprocess.run([OPENSSL, "pkey", "-in", str(key), "-aes256", "-passout", "pass:x",
                    "-out", str(encrypted)], check=True, capture_output=True)
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    good = tls_vars(certificates)
    cases = {
        ("tls_ca", str(tmp_path / "absent.pem")):
            f"tls_ca={tmp_path}/absent.pem: cannot be read (No such file or directory)",
        ("tls_cert", str(tmp_path)): f"tls_cert={tmp_path}: cannot be read (Is a directory)",
        ("tls_ca", str(not_pem)):
            f"tls_ca={not_pem}: not a PEM certificate (no -----BEGIN CERTIFICATE----- line)",
        ("tls_cert", str(key)):
            f"tls_cert={key}: not a PEM certificate (no -----BEGIN CERTIFICATE----- line)",
        ("tls_key", str(cert)): f"tls_key={cert}: no PEM private key in it",
        ("tls_key", str(other_key)):
            f"tls_key={other_key}: not the key of that certificate (tls_cert={cert})",
        ("tls_key", str(encrypted)):
            f"tls_key={encrypted}: the key is encrypted and Dask cannot ask for its "
            "passphrase; decrypt it (openssl pkey -in KEY -out KEY.plain), readable by you "
            "alone",
        ("tls_ca", ""):
            f"tls_cert={cert}: tls_ca= is missing: a TLS cluster takes tls_ca=, tls_cert= and "
            "tls_key= (the key may be in the certificate file instead; docs/cluster.md)",
    }
    for (name, value), message in cases.items():
        with pytest.raises(SettingsError) as raised:
            settings({"cluster": "tls://10.0.0.5:8786", **good, name: value})
        assert str(raised.value) == message
    with pytest.raises(SettingsError) as raised:
        settings({"cluster": "tls://h:1", "tls_ca": str(certificates["ca"]),
                  "tls_cert": str(cert)})
    assert str(raised.value) == (f"tls_cert={cert}: no PEM private key in it; give the "
                                 "certificate's key with tls_key=")
    with pytest.raises(SettingsError) as raised:
        settings({"cluster": "tls://h:1"}, {"REELEXPORT_TLS_KEY": str(key)})
    assert str(raised.value).startswith(f"REELEXPORT_TLS_KEY={key}: tls_ca= is missing")


def test_cluster_insecure_takes_yes_or_no():
    for value, insecure in (("yes", True), ("no", False), ("", False), (" Yes ", True)):
        assert settings({"cluster": "tcp://h:1", "cluster_insecure": value}).cluster.insecure \
            is insecure
    with pytest.raises(SettingsError) as raised:
        settings({"cluster": "tcp://h:1"}, {"REELEXPORT_CLUSTER_INSECURE": "maybe"})
    assert str(raised.value) == (
        "REELEXPORT_CLUSTER_INSECURE=maybe: cluster_insecure= takes yes or no (yes: plain "
        "tcp:// to a scheduler that is not on this machine)")
