"""KubeRay's RayCluster fields: what each means here, and which ones are not acted on. Pure.

A KubeRay manifest applies with only ``apiVersion`` and the image changed. Its fields fall
in three sets:

- acted on: ``rayStartParams`` (``startParams`` is an alias; on a clash ``startParams``
  wins), per-group ``resources`` (turned into ``--num-cpus``/``--memory``/``--num-gpus``/
  ``--resources`` and overriding the start params, as KubeRay does), per-group ``labels``
  (added to the pods' labels), ``suspend``, ``managedBy``, ``headServiceAnnotations``,
  ``headService``, ``numOfHosts`` (pods per replica), the agent container's own
  ``command``/``args`` (run before the agent, or instead with ``ray.io/overwrite-container-cmd``), ``scaleStrategy.workersToDelete``, ``authOptions.mode``
  ``token`` (ember always checks a cluster token);
- recorded and ignored by design: ``rayVersion`` (ember implements one Ray API);
- not acted on yet: everything :func:`unsupported_fields` lists. The reconciler names them
  in a Warning Event and in the ``UnsupportedFields`` condition.
"""

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ember_node.start_flags import check_start_params

from ember_operator.quantities import QuantityError, parse_quantity

__all__ = [
    "AUTOSCALER_OPTIONS_USED",
    "MANAGERS_HERE",
    "managed_elsewhere",
    "merged_start_params",
    "resource_params",
    "unsupported_fields",
]

#: ``spec.managedBy`` values that mean "this operator" (unset means it too).
MANAGERS_HERE = ("ember.dev/ember-operator", "ray.io/kuberay-operator")

#: autoscalerOptions the in-tree autoscaler acts on (the others configure an autoscaler container)
AUTOSCALER_OPTIONS_USED = ("idleTimeoutSeconds", "upscalingMode")

_GPU_KEYS = ("gpu", "nvidia.com/gpu", "amd.com/gpu")

# spec-level fields the operator accepts but does not act on, with why.
_SPEC_UNSUPPORTED: Mapping[str, str] = {
    "gcsFaultToleranceOptions": "no Redis is used: the head keeps its state in its own state volume "
                                "(an emptyDir; annotate the RayCluster ember.dev/state-volume-claim: "
                                "<PVC name> to keep it across head pod rescheduling)",
    "tlsOptions": "TLS between nodes is set with the tls-* start params",
    "historyServerOptions": "no history server",
    "networkPolicy": "no NetworkPolicy is created",
}
_HEAD_UNSUPPORTED: Mapping[str, str] = {
    "enableIngress": "no Ingress is created",
    "ingressOptions": "no Ingress is created",
}
_WORKER_UNSUPPORTED: Mapping[str, str] = {
    "suspend": "only the whole cluster can be suspended",
    "priority": "groups have no priority",
}


def managed_elsewhere(spec: Mapping[str, Any]) -> str | None:
    """The controller named by ``spec.managedBy`` when it is not this operator, else None."""
    manager = spec.get("managedBy")
    if manager is None or manager == "" or manager in MANAGERS_HERE:
        return None
    return str(manager)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _number(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def resource_params(resources: Mapping[str, Any] | None) -> dict[str, str]:
    """Start params for a group's ``resources`` map (quantities by resource name).

    ``CPU``/``memory``/a GPU key become ``num-cpus``/``memory`` (bytes)/``num-gpus``; any
    other name goes into the ``resources`` JSON. Names match case-insensitively for the
    three well-known ones; a value that is not a quantity is skipped (the spec check
    reports it).
    """
    params: dict[str, str] = {}
    custom: dict[str, float] = {}
    for name, raw in (resources or {}).items():
        try:
            amount = parse_quantity(raw)
        except QuantityError:
            continue
        key = str(name).lower()
        if key == "cpu":
            params["num-cpus"] = _number(amount)
        elif key == "memory":
            params["memory"] = str(int(amount))
        elif key in _GPU_KEYS:
            params["num-gpus"] = _number(amount)
        else:
            custom[str(name)] = float(amount)
    if custom:
        params["resources"] = json.dumps(custom, sort_keys=True)
    return params


def merged_start_params(group: Mapping[str, Any]) -> dict[str, str]:
    """A group's start params: ``rayStartParams``, then ``startParams``, then ``resources``."""
    params = {str(k): _text(v) for k, v in (group.get("rayStartParams") or {}).items()}
    params.update({str(k): _text(v) for k, v in (group.get("startParams") or {}).items()})
    params.update(resource_params(group.get("resources")))
    return params


def _group_unsupported(where: str, group: Mapping[str, Any], table: Mapping[str, str]) -> list[str]:
    found = [f"{where}.{key} ({why})" for key, why in table.items() if group.get(key) not in (None, False)]
    if group.get("labels"):
        found.append(f"{where}.labels (as Ray node labels: ember has none; they label the pods)")
    if isinstance(group.get("rayStartParams") or {}, Mapping) and isinstance(group.get("startParams") or {}, Mapping):
        for key, why in check_start_params(merged_start_params(group)).ignored.items():
            found.append(f"{where}.rayStartParams.{key} (a Ray flag with no meaning here: {why})")
    return found


def unsupported_fields(spec: Mapping[str, Any]) -> list[str]:
    """Every field of a RayCluster spec that the operator accepts but does not act on.

    Each entry is the field's path and, in parentheses, why; empty when all is acted on.
    """
    found: list[str] = []
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    options = spec.get("autoscalerOptions") or {}
    used = AUTOSCALER_OPTIONS_USED if autoscaling else ()
    ignored_options = sorted(key for key, value in options.items()
                             if value not in (None, "", [], {}) and key not in used)
    if ignored_options:
        found.append(f"spec.autoscalerOptions.{{{','.join(ignored_options)}}} (no autoscaler container: "
                     "the operator scales in-tree)")
    found += [f"spec.{key} ({why})" for key, why in _SPEC_UNSUPPORTED.items() if spec.get(key)]
    auth = spec.get("authOptions") or {}
    if auth.get("mode") == "disabled":
        found.append("spec.authOptions.mode=disabled (ember always checks the cluster token)")
    if auth.get("secretName"):
        found.append("spec.authOptions.secretName (the token lives in the Secret <name>-token)")
    if auth.get("enableK8sTokenAuth"):
        found.append("spec.authOptions.enableK8sTokenAuth (no Kubernetes token review)")
    head = spec.get("headGroupSpec") or {}
    found += _group_unsupported("spec.headGroupSpec", head, _HEAD_UNSUPPORTED)
    for index, group in enumerate(spec.get("workerGroupSpecs") or []):
        if isinstance(group, Mapping):
            where = f"spec.workerGroupSpecs[{index}]"
            found += _group_unsupported(where, group, _WORKER_UNSUPPORTED)
            if group.get("idleTimeoutSeconds") is not None and not autoscaling:
                found.append(f"{where}.idleTimeoutSeconds (only with enableInTreeAutoscaling)")
    return found
