"""A table's Application Auto Scaling targets and policies: read, re-applied, removed.

DynamoDB auto scaling lives outside DynamoDB, in Application Auto Scaling, keyed by resource id
(``table/<name>`` and ``table/<name>/index/<gsi>``), so a restored table has none. Targets and
policies are kept relative to their table (``""`` for the table, ``index/<gsi>`` for an index),
so those of two tables compare and copy. Only provisioned tables can scale; awops never asks
Application Auto Scaling about an on-demand table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "dynamodb"
_POLICY_CONFIGURATIONS = (
    "TargetTrackingScalingPolicyConfiguration",
    "StepScalingPolicyConfiguration",
)


@dataclass
class ScalingSetup:
    """Targets ``{"resource", "dimension", "min", "max", "suspended"}`` and policies
    ``{"resource", "dimension", "name", "type", "configuration"}``, sorted."""

    targets: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        if not self.targets and not self.policies:
            return "none"
        targets = ", ".join(
            f"{_label(t['resource'], t['dimension'])} {t['min']}-{t['max']}" for t in self.targets
        )
        policies = ", ".join(
            f"{p['name']} ({p['type']}, {_label(p['resource'], p['dimension'])})"
            for p in self.policies
        )
        return f"targets: {targets or 'none'}; policies: {policies or 'none'}"


def _label(resource: str, dimension: str) -> str:
    capacity = dimension.rsplit(":", 1)[-1].replace("CapacityUnits", "")
    return f"{resource or 'table'} {capacity}"


def resource_id(table: str, relative: str) -> str:
    return f"table/{table}" + (f"/{relative}" if relative else "")


def _relative(table: str, absolute: str) -> str:
    return absolute.removeprefix(f"table/{table}").lstrip("/")


def read_scaling(client: Any, table: str, indexes: list[str]) -> ScalingSetup:
    """The targets and policies of ``table`` and its ``indexes``."""
    ids = [resource_id(table, "")] + [resource_id(table, f"index/{name}") for name in indexes]
    setup = ScalingSetup()
    for start in range(0, len(ids), 50):  # DescribeScalableTargets takes 50 ids at most
        request: dict[str, Any] = {"ServiceNamespace": NAMESPACE, "ResourceIds": ids[start:][:50]}
        while True:
            page = client.describe_scalable_targets(**request)
            for target in page.get("ScalableTargets", []):
                setup.targets.append(
                    {
                        "resource": _relative(table, target["ResourceId"]),
                        "dimension": target["ScalableDimension"],
                        "min": target["MinCapacity"],
                        "max": target["MaxCapacity"],
                        "suspended": target.get("SuspendedState") or {},
                    }
                )
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    for resource in sorted({resource_id(table, t["resource"]) for t in setup.targets}):
        request = {"ServiceNamespace": NAMESPACE, "ResourceId": resource}
        while True:
            page = client.describe_scaling_policies(**request)
            for policy in page.get("ScalingPolicies", []):
                configuration = {
                    key: policy[key] for key in _POLICY_CONFIGURATIONS if key in policy
                }
                setup.policies.append(
                    {
                        "resource": _relative(table, policy["ResourceId"]),
                        "dimension": policy["ScalableDimension"],
                        "name": policy["PolicyName"],
                        "type": policy["PolicyType"],
                        "configuration": configuration,
                    }
                )
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    setup.targets.sort(key=lambda t: (t["resource"], t["dimension"]))
    setup.policies.sort(key=lambda p: (p["resource"], p["dimension"], p["name"]))
    return setup


def apply_scaling(client: Any, table: str, setup: ScalingSetup) -> None:
    """Register ``setup``'s targets on ``table``, then put its policies.

    No ``RoleARN`` is passed: Application Auto Scaling then uses its service-linked role for
    DynamoDB, as the console does, and awops needs no ``iam:PassRole``.
    """
    for target in setup.targets:
        request: dict[str, Any] = {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": resource_id(table, target["resource"]),
            "ScalableDimension": target["dimension"],
            "MinCapacity": target["min"],
            "MaxCapacity": target["max"],
        }
        if target["suspended"]:
            request["SuspendedState"] = target["suspended"]
        client.register_scalable_target(**request)
    for policy in setup.policies:
        client.put_scaling_policy(
            PolicyName=policy["name"],
            ServiceNamespace=NAMESPACE,
            ResourceId=resource_id(table, policy["resource"]),
            ScalableDimension=policy["dimension"],
            PolicyType=policy["type"],
            **policy["configuration"],
        )


def remove_scaling(client: Any, table: str, indexes: list[str]) -> None:
    """Deregister every target of ``table`` (their policies go with them)."""
    for target in read_scaling(client, table, indexes).targets:
        client.deregister_scalable_target(
            ServiceNamespace=NAMESPACE,
            ResourceId=resource_id(table, target["resource"]),
            ScalableDimension=target["dimension"],
        )
