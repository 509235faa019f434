"""Strict structural checks of Kubernetes manifests, without a cluster.

Core objects (CronJob, Role, ConfigMap, pod templates ...) are walked against the models of the
official Kubernetes Python client (``openapi_types`` / ``attribute_map``, generated from the
API's OpenAPI spec): an unknown field, a wrong type or a missing required field is an error.
The KubeRay custom resources are checked against the fields of KubeRay's ``ray.io/v1`` Go types
(``raycluster_types.go``, ``rayjob_types.go``), transcribed below; their pod templates go
through the Kubernetes models.
"""

from __future__ import annotations

import kubernetes.client as k8s

_SCALARS = {"str": (str, int, float), "int": (int,), "bool": (bool,), "float": (int, float), "object": (object,),
            "datetime": (str,), "date": (str,)}


def check_model(value, type_name: str, path: str = "") -> list[str]:
    """Errors of ``value`` as an instance of the client's type ``type_name`` (e.g. ``V1CronJob``)."""
    if type_name.startswith("List["):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, item in enumerate(value) for e in check_model(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith("Dict["):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return [e for key, item in value.items() for e in check_model(item, inner, f"{path}.{key}")]
    if type_name in _SCALARS:
        ok = isinstance(value, _SCALARS[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    cls = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping"]
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    errors, attrs = [], {}
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        attrs[by_json[key]] = item
        errors += check_model(item, cls.openapi_types[by_json[key]], f"{path}.{key}")
    if not errors:
        try:
            cls(**attrs)  # the generated model refuses a missing required field
        except ValueError as exc:
            errors.append(f"{path}: {type_name}: {str(exc).splitlines()[0]}")
    return errors


# ---- KubeRay ray.io/v1: field -> type (a model name, a nested dict, or a scalar); "!" = required
_STR_MAP = "Dict[str, str]"
_HEAD = {"serviceType": "str", "headService": "V1Service", "enableIngress": "bool",
         "rayStartParams!": _STR_MAP, "template!": "V1PodTemplateSpec"}
_WORKER = {"groupName!": "str", "replicas": "int", "minReplicas": "int", "maxReplicas": "int", "numOfHosts": "int",
           "rayStartParams!": _STR_MAP, "template!": "V1PodTemplateSpec",
           "scaleStrategy": {"workersToDelete": "List[str]"}, "suspend": "bool", "idleTimeoutSeconds": "int"}
_AUTOSCALER = {"resources": "V1ResourceRequirements", "image": "str", "imagePullPolicy": "str",
               "env": "List[V1EnvVar]", "envFrom": "List[V1EnvFromSource]", "volumeMounts": "List[V1VolumeMount]",
               "securityContext": "V1SecurityContext", "idleTimeoutSeconds": "int", "upscalingMode": "str",
               "version": "str"}
RAY_CLUSTER_SPEC = {"headGroupSpec!": _HEAD, "workerGroupSpecs": [_WORKER], "rayVersion": "str",
                    "enableInTreeAutoscaling": "bool", "autoscalerOptions": _AUTOSCALER,
                    "headServiceAnnotations": _STR_MAP, "suspend": "bool", "managedBy": "str",
                    "authOptions": {"mode": "str"}, "gcsFaultToleranceOptions": "object"}
RAY_JOB_SPEC = {"entrypoint": "str", "metadata": _STR_MAP, "runtimeEnvYAML": "str", "jobId": "str",
                "submissionMode": "str", "entrypointResources": "str", "entrypointNumCpus": "float",
                "entrypointNumGpus": "float", "ttlSecondsAfterFinished": "int", "activeDeadlineSeconds": "int",
                "backoffLimit": "int", "rayClusterSpec": RAY_CLUSTER_SPEC, "submitterPodTemplate": "V1PodTemplateSpec",
                "clusterSelector": _STR_MAP, "submitterConfig": "object", "managedBy": "str",
                "deletionStrategy": "object", "shutdownAfterJobFinishes": "bool", "suspend": "bool"}
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")


def check_fields(value, schema, path: str = "") -> list[str]:
    if isinstance(schema, str):
        return check_model(value, schema, path)
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, item in enumerate(value) for e in check_fields(item, schema[0], f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping"]
    fields = {name.rstrip("!"): sub for name, sub in schema.items()}
    errors = [f"{path}.{name.rstrip('!')}: required" for name in schema if name.endswith("!") and name[:-1] not in value]
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{path}.{key}: unknown field")
        else:
            errors += check_fields(item, fields[key], f"{path}.{key}")
    return errors


def check_object(doc: dict) -> list[str]:
    """Errors of one manifest document, by its apiVersion and kind."""
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if api == "ray.io/v1":
        errors = check_model(doc.get("metadata", {}), "V1ObjectMeta", f"{kind}.metadata")
        spec = {"RayCluster": RAY_CLUSTER_SPEC, "RayJob": RAY_JOB_SPEC}.get(kind)
        if spec is None:
            return [f"unknown KubeRay kind {kind}"]
        errors += check_fields(doc.get("spec"), spec, f"{kind}.spec")
        extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
        errors += [f"{kind}.{k}: unknown field" for k in sorted(extra)]
        if kind == "RayJob":
            spec_value = doc.get("spec", {})
            if spec_value.get("submissionMode", "K8sJobMode") not in SUBMISSION_MODES:
                errors.append(f"RayJob.spec.submissionMode must be one of {SUBMISSION_MODES}")
            if not spec_value.get("entrypoint"):
                errors.append("RayJob.spec.entrypoint: required")
            if bool(spec_value.get("rayClusterSpec")) == bool(spec_value.get("clusterSelector")):
                errors.append("RayJob.spec: exactly one of rayClusterSpec or clusterSelector")
            # KubeRay's validation: a TTL needs shutdownAfterJobFinishes, which a clusterSelector job cannot use
            if spec_value.get("ttlSecondsAfterFinished") is not None and not spec_value.get("shutdownAfterJobFinishes"):
                errors.append("RayJob.spec.ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true")
            if spec_value.get("shutdownAfterJobFinishes") and spec_value.get("clusterSelector"):
                errors.append("RayJob.spec.shutdownAfterJobFinishes cannot apply to a clusterSelector job")
        return errors
    version = (api or "").split("/")[-1]  # v1, batch/v1, rbac.authorization.k8s.io/v1 ...
    type_name = f"{version.capitalize()}{kind}"
    if not hasattr(k8s, type_name):
        return [f"no Kubernetes model for {api} {kind}"]
    return check_model(doc, type_name, kind)
