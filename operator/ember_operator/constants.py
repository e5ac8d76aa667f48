"""Names shared by every layer of the operator: the API, labels, ports and paths.

These are part of the contract with the node agent (``ember start``), the
Helm charts and anyone selecting ember's objects with ``kubectl -l``.
"""

from typing import Final

# --- The custom resource -----------------------------------------------------------------
GROUP: Final = "ember.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "RayCluster"
PLURAL: Final = "rayclusters"

# --- Labels and annotations on every object the operator owns -----------------------------
LABEL_CLUSTER: Final = "ember.dev/cluster"
LABEL_NODE_TYPE: Final = "ember.dev/node-type"
LABEL_GROUP: Final = "ember.dev/group"
LABEL_APP_NAME: Final = "app.kubernetes.io/name"
LABEL_APP_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_APP_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
APP_NAME: Final = "ember"
MANAGER: Final = "ember-operator"

ANNOTATION_TEMPLATE_HASH: Final = "ember.dev/pod-template-hash"

NODE_TYPE_HEAD: Final = "head"
NODE_TYPE_WORKER: Final = "worker"
HEAD_GROUP: Final = "head"  # the value of LABEL_GROUP on the head pod and service

# --- The node agent's ports and files -----------------------------------------------------
GRPC_PORT: Final = 6380
METRICS_PORT: Final = 8080
DASHBOARD_PORT: Final = 8265
PORT_NAME_GRPC: Final = "grpc"
PORT_NAME_METRICS: Final = "metrics"
PORT_NAME_DASHBOARD: Final = "dashboard"
HEALTH_PATH: Final = "/healthz"

ENTRYPOINT: Final = "ember"
# The container running the agent: the one with this name, else the pod's first container.
AGENT_CONTAINER: Final = {"head": "ember-head", "worker": "ember-worker"}
TOKEN_KEY: Final = "token"
TOKEN_DIR: Final = "/etc/ember/token"
TOKEN_FILE: Final = f"{TOKEN_DIR}/{TOKEN_KEY}"
TOKEN_VOLUME: Final = "ember-token"
SHM_VOLUME: Final = "ember-shm"
ENV_NODE_NAME: Final = "EMBER_NODE_NAME"
ENV_POD_IP: Final = "EMBER_POD_IP"
GPU_RESOURCE: Final = "nvidia.com/gpu"

# --- Upgrade strategies -------------------------------------------------------------------
UPGRADE_RECREATE: Final = "Recreate"
UPGRADE_NONE: Final = "None"

# --- Status vocabulary --------------------------------------------------------------------
STATE_PROVISIONING: Final = "provisioning"
STATE_READY: Final = "ready"
STATE_SUSPENDED: Final = "suspended"
STATE_FAILED: Final = "failed"
STATES: Final = (STATE_PROVISIONING, STATE_READY, STATE_SUSPENDED, STATE_FAILED)

COND_HEAD_POD_READY: Final = "HeadPodReady"
COND_PROVISIONED: Final = "ClusterProvisioned"
COND_SUSPENDED: Final = "Suspended"
COND_REPLICA_FAILURE: Final = "ReplicaFailure"
COND_UNSUPPORTED: Final = "UnsupportedFields"  # fields accepted but not acted on

# Reason of ClusterProvisioned=False before the cluster was ever fully ready: the
# provisioning-time histogram is observed only when leaving this reason for True.
REASON_PROVISIONING: Final = "Provisioning"


def secret_name(cluster: str) -> str:
    """Name of the Secret holding the cluster's token."""
    return f"{cluster}-token"


def head_service_name(cluster: str) -> str:
    """Name of the head Service (also the DNS name workers dial)."""
    return f"{cluster}-head"


def head_address(cluster: str, namespace: str) -> str:
    """The ``host:port`` a worker agent passes to ``--address``."""
    return f"{head_service_name(cluster)}.{namespace}.svc:{GRPC_PORT}"
