"""Microsoft.Network in the Azure fake: public IPs, virtual networks and subnets,
network interfaces (security groups are in ``nsg.py``) — with the Network RP's
reference and in-use rules.

Shapes follow the generated models of azure-mgmt-network 33.1.0
(``azure/mgmt/network/models/_models.py``: PublicIPAddress, VirtualNetwork, Subnet,
NetworkInterface, NetworkInterfaceIPConfiguration).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from typing import Any

from vmkit.testing.fakes._http import Request, Response
from vmkit.testing.fakes.azure import errors
from vmkit.testing.fakes.azure.core import NAME, RG, Json
from vmkit.testing.fakes.azure.errors import ArmError
from vmkit.testing.fakes.azure.nsg import NETWORK, SecurityGroupApi, bad_request
from vmkit.testing.fakes.azure.state import NIC, NSG, PIP, VNET, Resource, parse_id, ref_id

__all__ = ["NetworkApi"]


def _prefix(value: Any, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as exc:
        raise ArmError(
            400, "InvalidAddressPrefixFormat", f"Address prefix {value} of {what} is not valid."
        ) from exc


class NetworkApi(SecurityGroupApi):
    """The Network resource provider."""

    def _register_network(self) -> None:
        self._register_nsg()
        base = RG + "/providers/Microsoft.Network"
        self.tracked_routes(
            base + "/publicIPAddresses", PIP, "publicIPAddresses", self._pip_put, self._pip_delete
        )
        self.tracked_routes(
            base + "/virtualNetworks", VNET, "virtualNetworks", self._vnet_put, self._vnet_delete
        )
        subnets = base + r"/virtualNetworks/(?P<parent>[^/]+)/subnets"
        self.arm_route("PUT", f"{subnets}/{NAME}", "subnets", self._subnet_put)
        self.arm_route("GET", f"{subnets}/{NAME}", "subnets", self._subnet_get)
        self.arm_route("DELETE", f"{subnets}/{NAME}", "subnets", self._subnet_delete)
        self.arm_route("GET", subnets, "subnets.list", self._subnet_list)
        self.tracked_routes(
            base + "/networkInterfaces", NIC, "networkInterfaces", self._nic_put, self._nic_delete
        )
        self.renderer(PIP, self._pip_json)
        self.renderer(VNET, self._vnet_json)
        self.renderer(NIC, self._nic_json)
        self._public_ips_handed_out = 0

    # --------------------------------------------------------------- lookups

    def ip_configurations(self) -> Iterator[tuple[Resource, Json]]:
        """Every (NIC, stored ipConfiguration) pair."""
        for nic in self.store.of_type(NIC):
            yield from ((nic, cfg) for cfg in nic.properties.get("ipConfigurations", []))

    @staticmethod
    def ip_configuration_id(nic: Resource, cfg: Json) -> str:
        return f"{nic.id}/ipConfigurations/{cfg['name']}"

    def find_subnet(self, subnet_id: str) -> tuple[Resource, Json] | None:
        parsed = parse_id(subnet_id)
        if parsed is None or parsed.provider_type.lower() != VNET.lower():
            return None
        if (parsed.child_type or "").lower() != "subnets" or parsed.child_name is None:
            return None
        vnet = self.store.get(parsed.parent_key)
        if vnet is None:
            return None
        wanted = parsed.child_name.lower()
        subnet = next((s for s in vnet.properties["subnets"] if s["name"].lower() == wanted), None)
        return (vnet, subnet) if subnet is not None else None

    def _subnet_users(self, vnet: Resource, subnet: Json) -> list[str]:
        key = f"{vnet.id}/subnets/{subnet['name']}".lower()
        return [
            self.ip_configuration_id(nic, cfg)
            for nic, cfg in self.ip_configurations()
            if (ref_id(cfg["properties"].get("subnet")) or "").lower() == key
        ]

    def _pip_user(self, pip: Resource, skip_nic: Resource | None = None) -> str | None:
        for nic, cfg in self.ip_configurations():
            if (
                nic is not skip_nic
                and (ref_id(cfg["properties"].get("publicIPAddress")) or "").lower() == pip.key
            ):
                return self.ip_configuration_id(nic, cfg)
        return None

    # ---------------------------------------------------------- public IPs

    def _pip_put(self, request: Request) -> Response:
        def apply(res: Resource, body: Json, created: bool) -> None:
            sku = str((body.get("sku") or {}).get("name") or "Basic")
            props = body.get("properties") or {}
            method = str(props.get("publicIPAllocationMethod") or "Dynamic")
            if sku.lower() == "standard" and method.lower() != "static":
                raise errors.public_ip_must_be_static(res.id)
            res.top["sku"] = {
                "name": sku,
                "tier": str((body.get("sku") or {}).get("tier") or "Regional"),
            }
            if body.get("zones"):
                res.top["zones"] = list(body["zones"])
            res.properties.update(
                {
                    "publicIPAllocationMethod": method,
                    "publicIPAddressVersion": props.get("publicIPAddressVersion", "IPv4"),
                    "idleTimeoutInMinutes": props.get("idleTimeoutInMinutes", 4),
                    "ipTags": props.get("ipTags", []),
                }
            )
            res.properties.setdefault("resourceGuid", str(uuid.uuid4()))
            if "ipAddress" not in res.state:
                self._public_ips_handed_out += 1
                n = self._public_ips_handed_out
                res.state["ipAddress"] = f"20.{100 + (n >> 16) % 100}.{(n >> 8) % 256}.{n % 256}"
            # A deleteOption sent on the public IP itself is not kept: it only acts when set
            # on the NIC's ipConfiguration (Azure/azure-rest-api-specs#25475,
            # Azure/azure-sdk-for-java#38806).

        return self.put_tracked(request, PIP, apply, namespace=NETWORK)

    def _pip_delete(self, request: Request) -> Response:
        def check(pip: Resource) -> None:
            user = self._pip_user(pip)
            if user is not None:
                raise errors.public_ip_in_use(pip.id, user)

        return self.delete_tracked(request, PIP, NETWORK, check)

    def _pip_json(self, pip: Resource) -> Json:
        out = self.base_json(pip)
        user = self._pip_user(pip)
        if user is not None:
            out["properties"]["ipConfiguration"] = {"id": user}
        # Static addresses exist from creation; dynamic ones only while in use.
        if pip.properties["publicIPAllocationMethod"].lower() == "static" or user is not None:
            out["properties"]["ipAddress"] = pip.state["ipAddress"]
        return out

    # ------------------------------------------------- virtual networks, subnets

    def _subnet(self, vnet: Resource, raw: Any, siblings: list[Json]) -> Json:
        if not isinstance(raw, dict) or not raw.get("name"):
            raise bad_request("A subnet needs a name.")
        props = dict(raw.get("properties") or {})
        name = str(raw["name"])
        value = props.get("addressPrefix") or (props.get("addressPrefixes") or [None])[0]
        prefix = _prefix(value, f"subnet {name}")
        spaces = [
            _prefix(p, f"virtual network {vnet.name}")
            for p in vnet.properties["addressSpace"]["addressPrefixes"]
        ]
        if not any(prefix.subnet_of(space) for space in spaces):
            raise ArmError(
                400,
                "NetcfgInvalidSubnet",
                f"Subnet '{name}' is not valid in virtual network '{vnet.name}'.",
            )
        for other in siblings:
            if other["name"].lower() != name.lower() and prefix.overlaps(
                _prefix(other["properties"]["addressPrefix"], "subnet")
            ):
                raise ArmError(
                    400,
                    "NetcfgSubnetRangesOverlap",
                    f"Subnet '{name}' is not valid because its IP address range overlaps with that "
                    f"of an existing subnet in virtual network '{vnet.name}'.",
                )
        stored: Json = {"addressPrefix": str(prefix)}
        nsg_id = ref_id(props.get("networkSecurityGroup"))
        if nsg_id is not None:
            stored["networkSecurityGroup"] = {"id": self.referenced(nsg_id, NSG, vnet).id}
        return {"name": name, "properties": stored}

    def _vnet_put(self, request: Request) -> Response:
        def apply(res: Resource, body: Json, created: bool) -> None:
            props = body.get("properties") or {}
            prefixes = (props.get("addressSpace") or {}).get("addressPrefixes") or []
            if not prefixes:
                raise bad_request("A virtual network needs addressSpace.addressPrefixes.")
            spaces = [str(_prefix(p, f"virtual network {res.name}")) for p in prefixes]
            old_space = res.properties.get("addressSpace")
            res.properties["addressSpace"] = {"addressPrefixes": spaces}
            try:
                subnets: list[Json] = []
                for raw in props.get("subnets") or []:
                    subnets.append(self._subnet(res, raw, subnets))
                if not created:
                    kept = {s["name"].lower() for s in subnets}
                    for old in res.properties["subnets"]:
                        users = self._subnet_users(res, old)
                        if old["name"].lower() not in kept and users:
                            raise errors.subnet_in_use(old["name"], users[0])
            except ArmError:
                if old_space is not None:
                    res.properties["addressSpace"] = old_space
                raise
            res.properties["subnets"] = subnets
            res.properties.setdefault("resourceGuid", str(uuid.uuid4()))

        return self.put_tracked(request, VNET, apply, namespace=NETWORK)

    def _vnet_delete(self, request: Request) -> Response:
        def check(vnet: Resource) -> None:
            for subnet in vnet.properties["subnets"]:
                users = self._subnet_users(vnet, subnet)
                if users:
                    raise errors.subnet_in_use(subnet["name"], users[0])

        return self.delete_tracked(request, VNET, NETWORK, check)

    def _subnet_json(self, vnet: Resource, subnet: Json) -> Json:
        props = dict(subnet["properties"])
        props.setdefault("provisioningState", vnet.properties.get("provisioningState", "Succeeded"))
        users = self._subnet_users(vnet, subnet)
        if users:
            props["ipConfigurations"] = [{"id": u} for u in users]
        return {
            "id": f"{vnet.id}/subnets/{subnet['name']}",
            "name": subnet["name"],
            "type": f"{VNET}/subnets",
            "properties": props,
        }

    def _vnet_json(self, vnet: Resource) -> Json:
        out = self.base_json(vnet)
        out["properties"]["subnets"] = [
            self._subnet_json(vnet, s) for s in vnet.properties["subnets"]
        ]
        return out

    def _subnet_put(self, request: Request) -> Response:
        vnet = self.lookup(request, VNET, request.params["parent"])
        subnets: list[Json] = vnet.properties["subnets"]
        subnet = self._subnet(
            vnet, {"name": request.params["name"], **self.body_of(request)}, subnets
        )
        existing = self.child(subnets, subnet["name"])
        if existing is not None:
            subnet["name"] = existing["name"]
            subnets[subnets.index(existing)] = subnet
        else:
            subnets.append(subnet)
        op = self.begin_child(NETWORK, vnet, subnets, subnet)
        headers = self.lro_headers(op, request, location=False)
        return Response(200 if existing else 201, self._subnet_json(vnet, subnet), headers=headers)

    def _subnet_get(self, request: Request) -> Response:
        vnet = self.lookup(request, VNET, request.params["parent"])
        subnet = self.child(vnet.properties["subnets"], request.params["name"])
        if subnet is None:
            raise errors.child_not_found(f"{vnet.id}/subnets/{request.params['name']}")
        return Response(200, self._subnet_json(vnet, subnet))

    def _subnet_delete(self, request: Request) -> Response:
        vnet = self.lookup(request, VNET, request.params["parent"])
        subnets: list[Json] = vnet.properties["subnets"]
        subnet = self.child(subnets, request.params["name"])
        if subnet is None:
            return Response(204, None)
        users = self._subnet_users(vnet, subnet)
        if users:
            raise errors.subnet_in_use(subnet["name"], users[0])
        return self.delete_child(request, NETWORK, vnet, subnets, subnet)

    def _subnet_list(self, request: Request) -> Response:
        vnet = self.lookup(request, VNET, request.params["parent"])
        return self.page(request, [self._subnet_json(vnet, s) for s in vnet.properties["subnets"]])

    # ------------------------------------------------------- network interfaces

    def _private_ip(self, vnet: Resource, subnet: Json, wanted: Any, taken: set[str]) -> str:
        """Azure keeps the first four addresses and the last of every subnet
        (learn.microsoft.com/azure/virtual-network/virtual-networks-faq)."""
        net = ipaddress.IPv4Network(subnet["properties"]["addressPrefix"])
        first, last = int(net.network_address) + 4, int(net.broadcast_address) - 1
        if wanted:
            address = ipaddress.IPv4Address(str(wanted))
            if not first <= int(address) <= last:
                raise ArmError(
                    400,
                    "PrivateIPAddressNotInSubnet",
                    f"IP address {address} is not in the usable range of subnet {subnet['name']}.",
                )
            if str(address) in taken:
                raise ArmError(
                    400, "PrivateIPAddressInUse", f"IP address {address} is already in use."
                )
            return str(address)
        for value in range(first, last + 1):
            if str(ipaddress.IPv4Address(value)) not in taken:
                return str(ipaddress.IPv4Address(value))
        raise ArmError(
            400,
            "SubnetIsFull",
            f"Subnet {subnet['name']} with address prefix {net} does not have enough capacity for "
            "1 IP addresses.",
        )

    def _nic_put(self, request: Request) -> Response:
        def apply(res: Resource, body: Json, created: bool) -> None:
            props = body.get("properties") or {}
            raw_configs = props.get("ipConfigurations") or []
            if not raw_configs:
                raise bad_request("A network interface needs at least one IP configuration.")
            nsg_id = ref_id(props.get("networkSecurityGroup"))
            nsg = self.referenced(nsg_id, NSG, res) if nsg_id is not None else None
            if nsg is not None:
                # "this or dependent resource": the NSG a NIC joins must be idle too.
                self.check_idle(nsg, request)
            old = {c["name"].lower(): c for c in res.properties.get("ipConfigurations", [])}
            taken = {
                cfg["properties"]["privateIPAddress"]
                for nic, cfg in self.ip_configurations()
                if nic is not res
            }
            configs = [
                self._ip_configuration(res, raw, i, old, taken) for i, raw in enumerate(raw_configs)
            ]
            if not any(c["properties"]["primary"] for c in configs):
                configs[0]["properties"]["primary"] = True
            res.properties["ipConfigurations"] = configs
            if nsg is not None:
                res.properties["networkSecurityGroup"] = {"id": nsg.id}
            else:
                res.properties.pop("networkSecurityGroup", None)
            for flag in ("enableAcceleratedNetworking", "enableIPForwarding"):
                res.properties[flag] = bool(props.get(flag, False))
            res.properties.setdefault("resourceGuid", str(uuid.uuid4()))

        return self.put_tracked(request, NIC, apply, namespace=NETWORK)

    def _ip_configuration(
        self, nic: Resource, raw: Any, index: int, old: dict[str, Json], taken: set[str]
    ) -> Json:
        if not isinstance(raw, dict):
            raise bad_request("An IP configuration must be an object.")
        name = str(raw.get("name") or f"ipconfig{index + 1}")
        props = raw.get("properties") or {}
        subnet_id = ref_id(props.get("subnet"))
        if subnet_id is None:
            raise bad_request(f"IP configuration {name} needs a subnet.")
        found = self.find_subnet(subnet_id)
        if found is None or found[0].location != nic.location:
            raise errors.reference_not_found(subnet_id, nic.id)
        vnet, subnet = found
        canonical_subnet = f"{vnet.id}/subnets/{subnet['name']}"
        method = str(props.get("privateIPAllocationMethod") or "Dynamic")
        previous = old.get(name.lower())
        wanted = props.get("privateIPAddress") if method.lower() == "static" else None
        same_subnet = (
            previous is not None and ref_id(previous["properties"]["subnet"]) == canonical_subnet
        )
        if wanted is None and same_subnet and previous is not None:
            wanted = previous["properties"]["privateIPAddress"]
        address = self._private_ip(vnet, subnet, wanted, taken)
        taken.add(address)
        stored: Json = {
            "subnet": {"id": canonical_subnet},
            "privateIPAllocationMethod": method,
            "privateIPAddress": address,
            "privateIPAddressVersion": "IPv4",
            "primary": bool(props.get("primary", False)),
        }
        pip_ref = props.get("publicIPAddress")
        pip_id = ref_id(pip_ref)
        if pip_id is not None:
            pip = self.referenced(pip_id, PIP, nic)
            user = self._pip_user(pip, skip_nic=nic)
            if user is not None:
                raise ArmError(
                    400,
                    "PublicIPAddressInUse",
                    f"Resource {pip.id} is referenced by resource {user} and cannot be used by "
                    f"{nic.id}/ipConfigurations/{name}.",
                )
            stored["publicIPAddress"] = {"id": pip.id}
            delete_option = ((pip_ref or {}).get("properties") or {}).get("deleteOption")
            if delete_option:
                # Only here does a public IP's deleteOption act (azure-sdk-for-java#38806).
                stored["publicIPAddress"]["properties"] = {"deleteOption": str(delete_option)}
        return {"name": name, "properties": stored}

    def _nic_delete(self, request: Request) -> Response:
        def check(nic: Resource) -> None:
            vm_id = ref_id(nic.properties.get("virtualMachine"))
            if vm_id is not None and self.store.get(vm_id) is not None:
                raise errors.nic_in_use(nic.id, vm_id)

        return self.delete_tracked(request, NIC, NETWORK, check)

    def _nic_json(self, nic: Resource) -> Json:
        out = self.base_json(nic)
        state = nic.properties.get("provisioningState", "Succeeded")
        for cfg in out["properties"]["ipConfigurations"]:
            cfg["id"] = f"{nic.id}/ipConfigurations/{cfg['name']}"
            cfg["type"] = f"{NIC}/ipConfigurations"
            cfg["properties"]["provisioningState"] = state
        return out
