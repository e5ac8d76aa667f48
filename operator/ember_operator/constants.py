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

# KubeRay's labels, alongside ours, for tools that select Ray pods by them
LABEL_RAY_CLUSTER: Final = "ray.io/cluster"
LABEL_RAY_NODE_TYPE: Final = "ray.io/node-type"
LABEL_RAY_GROUP: Final = "ray.io/group"
LABEL_RAY_IS_NODE: Final = "ray.io/is-ray-node"
RAY_HEAD_GROUP: Final = "headgroup"  # KubeRay's ray.io/group value on the head

# On the RayCluster: keep the agent container's own command as it is (KubeRay's
# annotation, and ours); the generated one is then only in $EMBER_START_CMD.
ANNOTATIONS_OVERWRITE_CMD: Final = ("ray.io/overwrite-container-cmd", "ember.dev/overwrite-container-cmd")
# The generated `ember start ...` command line, in the agent container's environment
ENV_START_CMD: Final = "EMBER_START_CMD"
ENV_KUBERAY_START_CMD: Final = "KUBERAY_GEN_RAY_START_CMD"
SHELL: Final = ("/bin/sh", "-c")

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
# The head Service's ports as KubeRay names them (Service port -> the agent's port)
PORT_NAME_GCS: Final = "gcs-server"
GCS_PORT: Final = 6379  # Ray's head port: here the head's gRPC port
PORT_NAME_CLIENT: Final = "client"
CLIENT_PORT: Final = 10001  # Ray Client's port: remote drivers reach the head's gRPC port
HEALTH_PATH: Final = "/healthz"

ENTRYPOINT: Final = "ember"
# The container running the agent: the one with this name, else the pod's first container.
AGENT_CONTAINER: Final = {"head": "ember-head", "worker": "ember-worker"}
TOKEN_KEY: Final = "token"
TOKEN_DIR: Final = "/etc/ember/token"
TOKEN_FILE: Final = f"{TOKEN_DIR}/{TOKEN_KEY}"
TOKEN_VOLUME: Final = "ember-token"
SHM_VOLUME: Final = "ember-shm"
# The head's state volume (ember start --state-dir): an emptyDir, which survives container
# restarts, or the PVC named by this annotation on the RayCluster, which also follows a
# rescheduled head pod. The agent makes its own 0700 directory inside the mount.
STATE_VOLUME: Final = "ember-state"
STATE_MOUNT: Final = "/var/lib/ember/state"
STATE_DIR: Final = f"{STATE_MOUNT}/head"
ANNOTATION_STATE_CLAIM: Final = "ember.dev/state-volume-claim"
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

# Condition types as KubeRay's (RayClusterProvisioned never reverts once True)
COND_HEAD_POD_READY: Final = "HeadPodReady"
COND_PROVISIONED: Final = "RayClusterProvisioned"
COND_SUSPENDING: Final = "RayClusterSuspending"
COND_SUSPENDED: Final = "RayClusterSuspended"
COND_REPLICA_FAILURE: Final = "ReplicaFailure"
COND_UNSUPPORTED: Final = "UnsupportedFields"  # fields accepted but not acted on

# Reasons of RayClusterProvisioned, as KubeRay's
REASON_PROVISIONING: Final = "RayClusterPodsProvisioning"
REASON_PROVISIONED: Final = "AllPodRunningAndReadyFirstTime"


def secret_name(cluster: str) -> str:
    """Name of the Secret holding the cluster's token."""
    return f"{cluster}-token"


def head_service_name(cluster: str) -> str:
    """Default name of the head Service, as KubeRay's (also the DNS name workers dial)."""
    return f"{cluster}-head-svc"


def head_address(cluster: str, namespace: str, service: str | None = None) -> str:
    """The ``host:port`` a worker agent passes to ``--address`` (``service``: a custom name)."""
    return f"{service or head_service_name(cluster)}.{namespace}.svc:{GRPC_PORT}"
