"""The CLI's kubeconfig reader: files, contexts, namespaces, credentials, and a clear refusal for each bad input."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from certmint.cli.errors import Exit
from certmint.cli.kubeconfig import KubeconfigError, load_connection
from certmint.pki.keys import encode_private_key
from tests.unit.builders import build_ca, cached_key

CA = build_ca("Cluster CA", key=cached_key("ECDSA", 256))
CLIENT = build_ca("admin", key=cached_key("ECDSA", 384), parent=CA, ca=False)
CLIENT_KEY_PEM = encode_private_key(cached_key("ECDSA", 384), "PKCS8")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def config(
    *,
    current: str | None = "admin",
    contexts: dict[str, dict[str, Any]] | None = None,
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    contexts = contexts if contexts is not None else {"admin": {"cluster": "local", "user": "admin"}}
    clusters = clusters if clusters is not None else {"local": {"server": "https://127.0.0.1:6443"}}
    users = users if users is not None else {"admin": {"token": "t0k3n"}}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "contexts": [{"name": k, "context": v} for k, v in contexts.items()],
        "clusters": [{"name": k, "cluster": v} for k, v in clusters.items()],
        "users": [{"name": k, "user": v} for k, v in users.items()],
    }
    if current:
        body["current-context"] = current
    return body


def write(path: Path, body: dict[str, Any] | str) -> Path:
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return path


def refused(**kwargs: Any) -> str:
    with pytest.raises(KubeconfigError) as raised:
        load_connection(**kwargs)
    assert raised.value.code == Exit.API
    return raised.value.message


def test_the_current_context_gives_server_token_ca_and_default_namespace(tmp_path: Path) -> None:
    body = config(
        clusters={"local": {"server": "https://127.0.0.1:6443/", "certificate-authority-data": b64(CA.cert_pem)}}
    )
    conn = load_connection(kubeconfig=str(write(tmp_path / "c", body)), environ={})

    assert conn.credentials.server == "https://127.0.0.1:6443"
    assert conn.credentials.token == "t0k3n"
    assert conn.credentials.ca_data == CA.cert_pem
    assert (conn.namespace, conn.context) == ("default", "admin")


def test_context_and_namespace_options_win_over_the_file(tmp_path: Path) -> None:
    body = config(
        contexts={
            "admin": {"cluster": "local", "user": "admin"},
            "dev": {"cluster": "local", "user": "admin", "namespace": "shop"},
        }
    )
    path = str(write(tmp_path / "c", body))

    assert load_connection(kubeconfig=path, context="dev", environ={}).namespace == "shop"
    assert load_connection(kubeconfig=path, context="dev", namespace="web", environ={}).namespace == "web"


def test_kubeconfig_env_files_merge_and_the_first_value_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "a", config(users={"admin": {"token": "first"}}, clusters={}))
    second = write(
        tmp_path / "b",
        config(current="other", users={"admin": {"token": "second"}}, clusters={"local": {"server": "https://b:1"}}),
    )
    env = {"KUBECONFIG": f"{first}:{tmp_path / 'missing'}:{second}"}
    conn = load_connection(environ=env)

    assert (conn.context, conn.credentials.token, conn.credentials.server) == ("admin", "first", "https://b:1")


def test_home_kube_config_is_the_default(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    write(tmp_path / ".kube" / "config", config())

    assert load_connection(environ={"HOME": str(tmp_path)}).context == "admin"


def test_relative_files_are_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(CA.cert_pem)
    (tmp_path / "pki" / "client.crt").write_bytes(CLIENT.cert_pem)
    (tmp_path / "pki" / "client.key").write_bytes(CLIENT_KEY_PEM)
    (tmp_path / "pki" / "token").write_text("from-a-file\n")
    body = config(
        clusters={"local": {"server": "https://h:1", "certificate-authority": "pki/ca.crt"}},
        users={
            "admin": {"client-certificate": "pki/client.crt", "client-key": "pki/client.key", "tokenFile": "pki/token"}
        },
    )
    conn = load_connection(kubeconfig=str(write(tmp_path / "c", body)), environ={})

    assert conn.credentials.ca_data == CA.cert_pem
    assert conn.credentials.certificate_data == CLIENT.cert_pem
    assert conn.credentials.private_key_data == CLIENT_KEY_PEM
    assert conn.credentials.token == "from-a-file"


def test_an_exec_plugin_provides_the_token_and_gets_the_exec_info(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',"
        " 'status': {'token': os.environ['GREETING'] + '-' + info['spec']['cluster']['server']}}))\n"
    )
    exec_spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(plugin)],
        "env": [{"name": "GREETING", "value": "hello"}],
        "provideClusterInfo": True,
    }
    body = config(users={"admin": {"exec": exec_spec}})
    conn = load_connection(kubeconfig=str(write(tmp_path / "c", body)), environ={})

    assert conn.credentials.token == "hello-https://127.0.0.1:6443"


def test_an_exec_plugin_that_fails_is_named_with_its_last_stderr_line(tmp_path: Path) -> None:
    exec_spec = {"command": sys.executable, "args": ["-c", "import sys; sys.exit('token expired, log in again')"]}
    body = config(users={"admin": {"exec": exec_spec}})
    message = refused(kubeconfig=str(write(tmp_path / "c", body)), environ={})

    assert message.endswith("exited with 1: token expired, log in again")


def test_in_cluster_when_there_is_no_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("certmint")
    (tmp_path / "ca.crt").write_bytes(CA.cert_pem)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    conn = load_connection(environ=env, in_cluster_dir=tmp_path)

    assert (conn.credentials.server, conn.namespace, conn.context) == ("https://10.0.0.1:443", "certmint", "in-cluster")
    assert conn.credentials.token_path == str(tmp_path / "token")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{not: [yaml", "cannot be read"),
        ("- a list", "is not a kubeconfig"),
        (config(current=None), "no current-context in"),
        (config(current="gone"), "context 'gone' not found in"),
        (config(clusters={}), "names cluster 'local', which is not in"),
        (config(users={}), "names user 'admin', which is not in"),
        (config(clusters={"local": {}}), "its cluster has no server"),
        (config(clusters={"local": {"server": "127.0.0.1:6443"}}), "is not an http(s) URL"),
        (config(clusters={"local": {"server": "https://h", "certificate-authority-data": "!!"}}), "is not base64"),
        (
            config(clusters={"local": {"server": "https://h", "certificate-authority-data": b64(b"junk")}}),
            "the certificate authority is not a PEM certificate",
        ),
        (config(clusters={"local": {"server": "https://h", "certificate-authority": "/no/such/ca"}}), "cannot be read"),
        (config(users={"admin": {"username": "a", "password": "b"}}), "user username is not supported"),
        (config(users={"admin": {"auth-provider": {"name": "gcp"}}}), "user auth-provider is not supported"),
        (config(clusters={"local": {"server": "https://h", "proxy-url": "http://p"}}), "proxy-url is not supported"),
        (config(users={"admin": {"client-certificate-data": b64(CLIENT.cert_pem)}}), "needs a client key"),
        (
            config(
                users={
                    "admin": {
                        "client-certificate-data": b64(CLIENT.cert_pem),
                        "client-key-data": b64(encode_private_key(cached_key("ECDSA", 256), "PKCS8")),
                    }
                }
            ),
            "the client key does not match the client certificate",
        ),
        (config(users={"admin": {"exec": {"command": "/no/such/plugin"}}}), "failed to run"),
        (config(users={"admin": {"exec": {"command": "true"}}}), "did not print an ExecCredential"),
    ],
)
def test_a_bad_kubeconfig_is_refused_with_the_reason(tmp_path: Path, body: dict[str, Any] | str, expected: str) -> None:
    assert expected in refused(kubeconfig=str(write(tmp_path / "c", body)), environ={})


def test_no_kubeconfig_at_all_says_where_it_looked(tmp_path: Path) -> None:
    assert "no kubeconfig found (no ~/.kube/config)" in refused(environ={"HOME": str(tmp_path)})
    assert "KUBECONFIG names no existing file" in refused(environ={"KUBECONFIG": str(tmp_path / "nope")})
    assert refused(kubeconfig=str(tmp_path / "nope"), environ={}) == f"kubeconfig {tmp_path / 'nope'} does not exist"


def test_a_kubeconfig_in_json_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config()))

    assert load_connection(kubeconfig=str(path), environ={}).credentials.token == "t0k3n"
