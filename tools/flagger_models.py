"""Strict pydantic models of Flagger's Canary and MetricTemplate (flagger.app/v1beta1).

No registry package ships a schema for Flagger's kinds, so these are written from Flagger's Go types
(fluxcd/flagger pkg/apis/flagger/v1beta1/canary.go CanarySpec, CanaryService, CanaryAnalysis,
CanaryMetric, CanaryWebhook, CanaryAlert, SessionAffinity; metric.go MetricTemplateSpec), field
names from their json tags. Unknown keys are rejected (extra="forbid"), required fields are those
without omitempty. Fields whose types are other projects' (Istio's trafficPolicy, match, retries,
headers, corsPolicy; Gateway API's mirror) are refused rather than passed unchecked:
the manifests here do not use them, and a validator that waved them through would not be strict.
"""

from __future__ import annotations

from typing import Dict, List, Literal, Optional, Union

from cloudcoil import apimachinery
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


NOT_CHECKED = ("trafficPolicy", "match", "retries", "headers", "corsPolicy", "mirror")


class LocalObjectReference(Strict):
    api_version: Optional[str] = Field(None, alias="apiVersion")
    kind: Optional[str] = None
    name: str


class CrossNamespaceObjectReference(Strict):
    api_version: Optional[str] = Field(None, alias="apiVersion")
    kind: Optional[str] = None
    name: str
    namespace: Optional[str] = None


class ScalerReplicas(Strict):
    min_replicas: Optional[int] = Field(None, alias="minReplicas")
    max_replicas: Optional[int] = Field(None, alias="maxReplicas")


class AutoscalerReference(Strict):
    api_version: Optional[str] = Field(None, alias="apiVersion")
    kind: Optional[str] = None
    name: str
    primary_scaler_queries: Optional[Dict[str, str]] = Field(None, alias="primaryScalerQueries")
    primary_scaler_replicas: Optional[ScalerReplicas] = Field(None, alias="primaryScalerReplicas")


class ParentReference(Strict):
    """Gateway API v1beta1 ParentReference (the type of CanaryService.gatewayRefs)."""

    group: Optional[str] = None
    kind: Optional[str] = None
    namespace: Optional[str] = None
    name: str
    section_name: Optional[str] = Field(None, alias="sectionName")
    port: Optional[int] = None


class CustomMetadata(Strict):
    labels: Optional[Dict[str, str]] = None
    annotations: Optional[Dict[str, str]] = None


class UnmanagedMetadata(Strict):
    annotations: Optional[List[str]] = None
    labels: Optional[List[str]] = None


class HTTPRewrite(Strict):
    uri: Optional[str] = None
    authority: Optional[str] = None
    type: Optional[str] = None


class CanaryService(Strict):
    name: Optional[str] = None
    port: int
    port_name: Optional[str] = Field(None, alias="portName")
    target_port: Optional[Union[int, str]] = Field(None, alias="targetPort")
    app_protocol: Optional[str] = Field(None, alias="appProtocol")
    traffic_distribution: Optional[str] = Field(None, alias="trafficDistribution")
    port_discovery: Optional[bool] = Field(None, alias="portDiscovery")
    headless: Optional[bool] = None
    timeout: Optional[str] = None
    backend_timeout: Optional[str] = Field(None, alias="backendTimeout")
    gateways: Optional[List[str]] = None
    gateway_refs: Optional[List[ParentReference]] = Field(None, alias="gatewayRefs")
    hosts: Optional[List[str]] = None
    delegation: Optional[bool] = None
    rewrite: Optional[HTTPRewrite] = None
    mesh_name: Optional[str] = Field(None, alias="meshName")
    backends: Optional[List[str]] = None
    apex: Optional[CustomMetadata] = None
    primary: Optional[CustomMetadata] = None
    canary: Optional[CustomMetadata] = None
    unmanaged_metadata: Optional[UnmanagedMetadata] = Field(None, alias="unmanagedMetadata")


class ThresholdRange(Strict):
    min: Optional[float] = None
    max: Optional[float] = None


class CanaryMetric(Strict):
    name: str
    interval: Optional[str] = None
    threshold: Optional[float] = None
    threshold_range: Optional[ThresholdRange] = Field(None, alias="thresholdRange")
    query: Optional[str] = None
    template_ref: Optional[CrossNamespaceObjectReference] = Field(None, alias="templateRef")
    template_variables: Optional[Dict[str, str]] = Field(None, alias="templateVariables")


class CanaryAlert(Strict):
    name: str
    severity: Optional[Literal["info", "warn", "error"]] = None
    provider_ref: CrossNamespaceObjectReference = Field(alias="providerRef")


class CanaryWebhook(Strict):
    type: Optional[
        Literal[
            "rollout",
            "pre-rollout",
            "post-rollout",
            "confirm-rollout",
            "confirm-promotion",
            "event",
            "rollback",
            "confirm-traffic-increase",
        ]
    ] = None
    name: str
    url: str
    mute_alert: Optional[bool] = Field(None, alias="muteAlert")
    timeout: Optional[str] = None
    metadata: Optional[Dict[str, str]] = None
    retries: Optional[int] = None
    disable_tls: Optional[bool] = Field(None, alias="disableTLS")


class SessionAffinity(Strict):
    cookie_name: Optional[str] = Field(None, alias="cookieName")
    domain: Optional[str] = None
    http_only: Optional[bool] = Field(None, alias="httpOnly")
    max_age: Optional[int] = Field(None, alias="maxAge")
    partitioned: Optional[bool] = None
    path: Optional[str] = None
    same_site: Optional[str] = Field(None, alias="sameSite")
    secure: Optional[bool] = None
    primary_cookie_name: Optional[str] = Field(None, alias="primaryCookieName")


class CanaryAnalysis(Strict):
    interval: str
    iterations: Optional[int] = None
    mirror: Optional[bool] = None
    mirror_weight: Optional[int] = Field(None, alias="mirrorWeight")
    max_weight: Optional[int] = Field(None, alias="maxWeight")
    step_weight: Optional[int] = Field(None, alias="stepWeight")
    step_weights: Optional[List[int]] = Field(None, alias="stepWeights")
    step_weight_promotion: Optional[int] = Field(None, alias="stepWeightPromotion")
    threshold: int
    primary_ready_threshold: Optional[int] = Field(None, alias="primaryReadyThreshold")
    canary_ready_threshold: Optional[int] = Field(None, alias="canaryReadyThreshold")
    alerts: Optional[List[CanaryAlert]] = None
    metrics: Optional[List[CanaryMetric]] = None
    webhooks: Optional[List[CanaryWebhook]] = None
    session_affinity: Optional[SessionAffinity] = Field(None, alias="sessionAffinity")

    @model_validator(mode="after")
    def weights(self) -> "CanaryAnalysis":
        sw = self.step_weights or []
        if any(w <= 0 or w > 100 for w in sw) or sw != sorted(sw):
            raise ValueError("stepWeights must rise within 1..100")
        return self


class CanarySpec(Strict):
    provider: Optional[str] = None
    metrics_server: Optional[str] = Field(None, alias="metricsServer")
    target_ref: LocalObjectReference = Field(alias="targetRef")
    autoscaler_ref: Optional[AutoscalerReference] = Field(None, alias="autoscalerRef")
    ingress_ref: Optional[LocalObjectReference] = Field(None, alias="ingressRef")
    route_ref: Optional[LocalObjectReference] = Field(None, alias="routeRef")
    upstream_ref: Optional[CrossNamespaceObjectReference] = Field(None, alias="upstreamRef")
    service: CanaryService
    analysis: Optional[CanaryAnalysis] = None
    progress_deadline_seconds: Optional[int] = Field(None, alias="progressDeadlineSeconds")
    skip_analysis: Optional[bool] = Field(None, alias="skipAnalysis")
    revert_on_deletion: Optional[bool] = Field(None, alias="revertOnDeletion")
    suspend: Optional[bool] = None


class Canary(Strict):
    api_version: Literal["flagger.app/v1beta1"] = Field(alias="apiVersion")
    kind: Literal["Canary"]
    metadata: apimachinery.ObjectMeta
    spec: CanarySpec


class SecretRef(Strict):
    name: str


class MetricTemplateProvider(Strict):
    type: Optional[str] = None
    address: Optional[str] = None
    headers: Optional[Dict[str, List[str]]] = None
    secret_ref: Optional[SecretRef] = Field(None, alias="secretRef")
    region: Optional[str] = None
    insecure_skip_verify: Optional[bool] = Field(None, alias="insecureSkipVerify")


class MetricTemplateSpec(Strict):
    provider: Optional[MetricTemplateProvider] = None
    query: Optional[str] = None


class MetricTemplate(Strict):
    api_version: Literal["flagger.app/v1beta1"] = Field(alias="apiVersion")
    kind: Literal["MetricTemplate"]
    metadata: apimachinery.ObjectMeta
    spec: MetricTemplateSpec
