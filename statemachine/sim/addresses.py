"""Per-cluster identities of the simulated KubeVirt installs: sync address, export host, CA.

Every simulated cluster needs values a real install gets from its pods and certificates: the
synchronization controller's ``ip:port`` (KubeVirt CR ``status.synchronizationAddresses``), the
host of the ``virt-exportproxy`` Route (external VirtualMachineExport links), and the PEM of the
cluster's own KubeVirt CA (``kubevirt-ca``). They are derived deterministically from the cluster
name so that the seed defaults, the controllers and tests agree without sharing state.

The PEM blocks are placeholders in PEM armour (base64 of a readable label), not parseable X.509
certificates: the simulator compares them as text, as the CA merge and trust checks need.
"""
from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

SYNC_PORT = 9185
KUBEVIRT_NAMESPACE = "kubevirt"
CA_CONFIGMAP = "kubevirt-ca"
EXTERNAL_CA_CONFIGMAP = "kubevirt-external-ca"
EXPORT_CA_CONFIGMAP = "kubevirt-export-ca"

# Decision: fixed addresses for the two well-known clusters (readable in docs and tests), a
# hash-derived one for any other name.
_KNOWN_IPS = {"source": "10.128.0.15", "target": "10.129.0.15"}


def sync_ip(cluster: str) -> str:
    if cluster in _KNOWN_IPS:
        return _KNOWN_IPS[cluster]
    digest = hashlib.sha256(cluster.encode()).digest()
    return f"10.{130 + digest[0] % 100}.{digest[1]}.{1 + digest[2] % 250}"


def sync_address(cluster: str) -> str:
    """``ip:port`` of the cluster's simulated virt-synchronization-controller."""
    return f"{sync_ip(cluster)}:{SYNC_PORT}"


def export_host(cluster: str) -> str:
    """Host of the cluster's simulated virt-exportproxy Route."""
    return f"virt-exportproxy-kubevirt.apps.{cluster}.sim.smrun.io"


def cluster_of_export_host(host: str, clusters: list[str]) -> str | None:
    for name in clusters:
        if export_host(name) == host:
            return name
    return None


def _pem(label: str) -> str:
    body = base64.b64encode(f"smrun simulated certificate: {label}".encode()).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def ca_pem(cluster: str) -> str:
    """The PEM of the cluster's own KubeVirt CA (what its ``kubevirt-ca`` starts with)."""
    return _pem(f"kubevirt-ca {cluster}")


def export_ca_pem(cluster: str) -> str:
    """The CA of the cluster's export server / export proxy Route (``links.*.cert``)."""
    return _pem(f"kubevirt-export-ca {cluster}")


_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", re.S)


def pem_blocks(bundle: str) -> list[str]:
    """The certificate blocks of a PEM bundle, normalised to end with one newline."""
    return [b.rstrip("\n") + "\n" for b in _PEM_BLOCK.findall(bundle or "")]


def host_port(url: str) -> str:
    """``host:port`` of a connectURL that may or may not carry a scheme."""
    if "://" not in url:
        return url.strip()
    parts = urlsplit(url)
    return parts.netloc
