"""Strict pydantic models of the Envoy Gateway kinds shipped in envoy-gateway/ (gateway.envoyproxy.io/v1alpha1).

No registry package ships a schema for Envoy Gateway's CRDs (npm and PyPI have none; Gateway API's own
kinds come from npm @kubernetes-models/gateway-api), so these are written from Envoy Gateway's Go types
(envoyproxy/gateway d32f2829 api/v1alpha1: envoyproxy_types.go EnvoyProxySpec, ProxyBootstrap,
MergeBackendsConfig; envoypatchpolicy_types.go; envoyextensionypolicy_types.go, policy_helpers.go
PolicyTargetReferences; wasm_types.go), field names from their json tags. Unknown keys are rejected
(extra="forbid"). Only the fields the manifests here use are modelled; the other fields of those specs
are refused by name as "not checked" rather than passed unchecked (NOT_CHECKED).
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional

from cloudcoil import apimachinery
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# Real fields of EnvoyProxySpec / EnvoyExtensionPolicySpec not modelled here (envoyproxy_types.go:40-...,
# envoyextensionypolicy_types.go:45-92): refused with a clear reason.
NOT_CHECKED = {
    "EnvoyProxy": (
        "provider", "logging", "telemetry", "concurrency", "routingType", "extraArgs", "mergeGateways",
        "shutdown", "filterOrder", "backendTLS", "ipFamily", "preserveRouteOrder", "luaValidation", "lua",
        "dynamicModules", "geoIP", "mergeType",
    ),
    "EnvoyExtensionPolicy": ("extProc", "lua", "dynamicModule", "targetSelectors", "targetRef"),
}


class LabelSelectorRequirement(Strict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: Optional[List[str]] = None


class LabelSelector(Strict):
    match_labels: Optional[Dict[str, str]] = Field(None, alias="matchLabels")
    match_expressions: Optional[List[LabelSelectorRequirement]] = Field(None, alias="matchExpressions")


class MergeBackendsConfig(Strict):
    selector: Optional[LabelSelector] = None


class JSONPatchOperation(Strict):
    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: Optional[str] = None
    json_path: Optional[str] = Field(None, alias="jsonPath")
    from_: Optional[str] = Field(None, alias="from")
    value: Optional[Any] = None

    @model_validator(mode="after")
    def target(self) -> "JSONPatchOperation":
        if self.path is None and self.json_path is None:
            raise ValueError("one of path and jsonPath is required")
        return self


class ProxyBootstrap(Strict):
    type: Optional[Literal["Merge", "Replace", "JSONPatch"]] = None
    value: Optional[str] = None
    json_patches: Optional[List[JSONPatchOperation]] = Field(None, alias="jsonPatches")


class EnvoyProxySpec(Strict):
    bootstrap: Optional[ProxyBootstrap] = None
    merge_backends: Optional[MergeBackendsConfig] = Field(None, alias="mergeBackends")


class EnvoyProxy(Strict):
    api_version: Literal["gateway.envoyproxy.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["EnvoyProxy"]
    metadata: apimachinery.ObjectMeta
    spec: EnvoyProxySpec


class LocalPolicyTargetReference(Strict):
    group: Literal["gateway.networking.k8s.io"]
    kind: str
    name: str


class LocalPolicyTargetReferenceWithSectionName(LocalPolicyTargetReference):
    section_name: Optional[str] = Field(None, alias="sectionName")


ResourceType = Literal[
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
]


class EnvoyJSONPatchConfig(Strict):
    type: ResourceType
    name: str
    operation: JSONPatchOperation


class EnvoyPatchPolicySpec(Strict):
    type: Literal["JSONPatch"]
    json_patches: Optional[List[EnvoyJSONPatchConfig]] = Field(None, alias="jsonPatches")
    target_ref: LocalPolicyTargetReference = Field(alias="targetRef")
    priority: Optional[int] = None


class EnvoyPatchPolicy(Strict):
    api_version: Literal["gateway.envoyproxy.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["EnvoyPatchPolicy"]
    metadata: apimachinery.ObjectMeta
    spec: EnvoyPatchPolicySpec


class SecretObjectReference(Strict):
    group: Optional[str] = None
    kind: Optional[Literal["Secret"]] = None
    name: str
    namespace: Optional[str] = None


class WasmCodeSourceTLSConfig(Strict):
    ca_certificate_ref: SecretObjectReference = Field(alias="caCertificateRef")


SHA256 = Field(None, pattern=r"^[a-f0-9]{64}$")


class HTTPWasmCodeSource(Strict):
    url: str
    sha256: Optional[str] = SHA256
    tls: Optional[WasmCodeSourceTLSConfig] = None


class ImageWasmCodeSource(Strict):
    url: str
    sha256: Optional[str] = SHA256
    pull_secret_ref: Optional[SecretObjectReference] = Field(None, alias="pullSecretRef")
    tls: Optional[WasmCodeSourceTLSConfig] = None


class WasmCodeSource(Strict):
    type: Literal["HTTP", "Image"]
    http: Optional[HTTPWasmCodeSource] = None
    image: Optional[ImageWasmCodeSource] = None
    pull_policy: Optional[Literal["IfNotPresent", "Always"]] = Field(None, alias="pullPolicy")

    @model_validator(mode="after")
    def union(self) -> "WasmCodeSource":
        # wasm_types.go:68-69 (CEL rules on the union).
        if (self.type == "HTTP") != (self.http is not None) or (self.type == "Image") != (self.image is not None):
            raise ValueError("type HTTP needs http (and only it), type Image needs image (and only it)")
        return self


class WasmEnv(Strict):
    host_keys: Optional[List[str]] = Field(None, alias="hostKeys")


class Wasm(Strict):
    name: Optional[str] = None
    root_id: Optional[str] = Field(None, alias="rootID")
    code: WasmCodeSource
    # Free-form JSON for the extension: checked by the filter's own parser instead.
    config: Optional[Any] = None
    fail_open: Optional[bool] = Field(None, alias="failOpen")
    env: Optional[WasmEnv] = None


class EnvoyExtensionPolicySpec(Strict):
    target_refs: List[LocalPolicyTargetReferenceWithSectionName] = Field(alias="targetRefs")
    merge_type: Optional[Literal["StrategicMerge", "JSONMerge"]] = Field(None, alias="mergeType")
    wasm: Optional[List[Wasm]] = Field(None, max_length=16)


class EnvoyExtensionPolicy(Strict):
    api_version: Literal["gateway.envoyproxy.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["EnvoyExtensionPolicy"]
    metadata: apimachinery.ObjectMeta
    spec: EnvoyExtensionPolicySpec


MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"): EnvoyProxy,
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyPatchPolicy"): EnvoyPatchPolicy,
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"): EnvoyExtensionPolicy,
}
