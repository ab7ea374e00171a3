"""Network security groups and their rules in the Azure fake.

Shapes: azure-mgmt-network 33.1.0 ``models/_models.py`` (NetworkSecurityGroup,
SecurityRule). An NSG lists the NICs and subnets it is associated with, and cannot be
deleted while it has any (InUseNetworkSecurityGroupCannotBeDeleted).
"""

from __future__ import annotations

import uuid
from typing import Any

from vmkit.testing.fakes._http import Request, Response
from vmkit.testing.fakes.azure import errors
from vmkit.testing.fakes.azure.core import NAME, NETWORK, RG, ArmCore, Json
from vmkit.testing.fakes.azure.errors import ArmError
from vmkit.testing.fakes.azure.state import NIC, NSG, VNET, Resource, ref_id

__all__ = ["NETWORK", "SecurityGroupApi", "bad_request"]


# Every NSG carries these six rules (learn.microsoft.com/azure/virtual-network/
# network-security-groups-overview#default-security-rules).
_DEFAULT_RULES = [
    ("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer", "*"),
    ("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*"),
    ("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", "Internet"),
    ("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*"),
]


def bad_request(message: str) -> ArmError:
    """The Network RP's answer to a body it cannot use."""
    return ArmError(400, "InvalidRequestFormat", f"Cannot parse the request. {message}")


class SecurityGroupApi(ArmCore):
    """NSGs and their security rules."""

    def _register_nsg(self) -> None:
        base = RG + "/providers/Microsoft.Network/networkSecurityGroups"
        self.tracked_routes(base, NSG, "networkSecurityGroups", self._nsg_put, self._nsg_delete)
        rules = base + r"/(?P<parent>[^/]+)/securityRules"
        self.arm_route("PUT", f"{rules}/{NAME}", "securityRules", self._rule_put)
        self.arm_route("GET", f"{rules}/{NAME}", "securityRules", self._rule_get)
        self.arm_route("DELETE", f"{rules}/{NAME}", "securityRules", self._rule_delete)
        self.arm_route("GET", rules, "securityRules.list", self._rule_list)
        self.renderer(NSG, self._nsg_json)

    @staticmethod
    def _rule(raw: Any) -> Json:
        if not isinstance(raw, dict) or not raw.get("name"):
            raise bad_request("A security rule needs a name.")
        props = dict(raw.get("properties") or {})
        for required in ("protocol", "access", "direction", "priority"):
            if props.get(required) in (None, ""):
                raise bad_request(f"Security rule {raw['name']} has no {required}.")
        priority = props["priority"]
        if not isinstance(priority, int) or not 100 <= priority <= 4096:
            # Custom rules take priorities 100-4096 (network-security-groups-overview).
            raise ArmError(
                400,
                "SecurityRuleInvalidPriority",
                f"Security rule has invalid Priority. Value provided: {priority} Allowed "
                "values: 100-4096.",
            )
        props.pop("provisioningState", None)
        return {"name": str(raw["name"]), "properties": props}

    @staticmethod
    def _check_rules(rules: list[Json]) -> None:
        seen: dict[tuple[int, str], str] = {}
        for rule in rules:
            key = (rule["properties"]["priority"], str(rule["properties"]["direction"]).lower())
            if key in seen:
                raise ArmError(
                    400,
                    "SecurityRuleConflict",
                    f"Security rule {rule['name']} conflicts with rule {seen[key]}. Rules cannot "
                    "have the same Priority and Direction. To learn more, see aka.ms/nsgrules.",
                )
            seen[key] = rule["name"]

    def _nsg_put(self, request: Request) -> Response:
        def apply(res: Resource, body: Json, created: bool) -> None:
            props = body.get("properties") or {}
            rules = [self._rule(r) for r in props.get("securityRules") or []]
            self._check_rules(rules)
            res.properties["securityRules"] = rules
            res.properties.setdefault("resourceGuid", str(uuid.uuid4()))

        return self.put_tracked(request, NSG, apply, namespace=NETWORK)

    def _nsg_users(self, nsg: Resource) -> list[str]:
        users = [
            nic.id
            for nic in self.store.of_type(NIC)
            if (ref_id(nic.properties.get("networkSecurityGroup")) or "").lower() == nsg.key
        ]
        for vnet in self.store.of_type(VNET):
            users += [
                f"{vnet.id}/subnets/{s['name']}"
                for s in vnet.properties["subnets"]
                if (ref_id(s["properties"].get("networkSecurityGroup")) or "").lower() == nsg.key
            ]
        return users

    def _nsg_delete(self, request: Request) -> Response:
        def check(nsg: Resource) -> None:
            users = self._nsg_users(nsg)
            if users:
                raise errors.nsg_in_use(nsg.id, users)

        return self.delete_tracked(request, NSG, NETWORK, check)

    def _rule_json(self, nsg: Resource, rule: Json, kind: str = "securityRules") -> Json:
        props = dict(rule["properties"])
        props.setdefault("provisioningState", nsg.properties.get("provisioningState", "Succeeded"))
        return {
            "id": f"{nsg.id}/{kind}/{rule['name']}",
            "name": rule["name"],
            "type": f"{NSG}/{kind}",
            "properties": props,
        }

    def _nsg_json(self, nsg: Resource) -> Json:
        out = self.base_json(nsg)
        props = out["properties"]
        props["securityRules"] = [self._rule_json(nsg, r) for r in nsg.properties["securityRules"]]
        props["defaultSecurityRules"] = [
            self._rule_json(
                nsg,
                {
                    "name": name,
                    "properties": {
                        "protocol": "*",
                        "sourcePortRange": "*",
                        "destinationPortRange": "*",
                        "sourceAddressPrefix": src,
                        "destinationAddressPrefix": dst,
                        "access": access,
                        "priority": priority,
                        "direction": direction,
                    },
                },
                "defaultSecurityRules",
            )
            for name, priority, direction, access, src, dst in _DEFAULT_RULES
        ]
        users = self._nsg_users(nsg)
        nic_ids = [u for u in users if "/networkinterfaces/" in u.lower()]
        if nic_ids:
            props["networkInterfaces"] = [{"id": u} for u in nic_ids]
        subnet_ids = [u for u in users if u not in nic_ids]
        if subnet_ids:
            props["subnets"] = [{"id": u} for u in subnet_ids]
        return out

    def _rule_put(self, request: Request) -> Response:
        nsg = self.lookup(request, NSG, request.params["parent"])
        rule = self._rule({"name": request.params["name"], **self.body_of(request)})
        rules: list[Json] = nsg.properties["securityRules"]
        existing = self.child(rules, rule["name"])
        self._check_rules([r for r in rules if r is not existing] + [rule])
        if existing is not None:
            rule["name"] = existing["name"]
            rules[rules.index(existing)] = rule
        else:
            rules.append(rule)
        op = self.begin_child(NETWORK, nsg, rules, rule)
        headers = self.lro_headers(op, request, location=False)
        return Response(200 if existing else 201, self._rule_json(nsg, rule), headers=headers)

    def _rule_get(self, request: Request) -> Response:
        nsg = self.lookup(request, NSG, request.params["parent"])
        rule = self.child(nsg.properties["securityRules"], request.params["name"])
        if rule is None:
            raise errors.child_not_found(f"{nsg.id}/securityRules/{request.params['name']}")
        return Response(200, self._rule_json(nsg, rule))

    def _rule_delete(self, request: Request) -> Response:
        nsg = self.lookup(request, NSG, request.params["parent"])
        rules: list[Json] = nsg.properties["securityRules"]
        rule = self.child(rules, request.params["name"])
        if rule is None:
            return Response(204, None)
        return self.delete_child(request, NETWORK, nsg, rules, rule)

    def _rule_list(self, request: Request) -> Response:
        nsg = self.lookup(request, NSG, request.params["parent"])
        return self.page(
            request, [self._rule_json(nsg, r) for r in nsg.properties["securityRules"]]
        )
