"""The Kubernetes manifests agree with the product: valid config, probes on the admin port."""

from __future__ import annotations

from pathlib import Path

import yaml

from sidecar.config import build_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def test_configmap_holds_a_valid_config() -> None:
    """The ConfigMap's sidecar.yaml passes the real validator."""
    configmap = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())
    config = build_config(yaml.safe_load(configmap["data"]["sidecar.yaml"]), {})
    assert str(config.signing.keys_file) == "/etc/sidecar/keys/jwks.json"


def test_deployment_probes_and_grace_period() -> None:
    """Probes use /readyz and /livez on the admin port; the grace period covers the drain."""
    deployment, _service = yaml.safe_load_all((DEPLOY / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (sidecar,) = [c for c in pod["containers"] if c["name"] == "introspection-sidecar"]
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}
    assert {p["containerPort"] for p in sidecar["ports"]} == {8080, 9090}
    configmap = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())
    shutdown = yaml.safe_load(configmap["data"]["sidecar.yaml"])["shutdown"]
    assert pod["terminationGracePeriodSeconds"] > shutdown["drain_seconds"] + shutdown["timeout"]
    keys_mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "keys")
    assert "subPath" not in keys_mount  # a subPath mount is never updated by the kubelet
    # The image runs as uid/gid 10001: the Secret's files must be readable by that group.
    assert pod["securityContext"]["fsGroup"] == 10001
    keys_volume = next(v for v in pod["volumes"] if v["name"] == "keys")
    assert keys_volume["secret"]["defaultMode"] & 0o040
