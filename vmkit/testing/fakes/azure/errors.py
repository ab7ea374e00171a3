"""ARM's error shape and the errors the Azure fake answers, each with its real code.

Every ARM error body is ``{"error": {"code", "message", "target"?, "details"?}}``
(the ``CloudError`` model of the SDKs). Codes and message texts below were taken
from real responses quoted in public issues; the source is cited next to each.
"""

from __future__ import annotations

from typing import Any

from vmkit.testing.fakes._http import HttpError

__all__ = ["ArmError"]

Json = dict[str, Any]


class ArmError(HttpError):
    """An error answered in ARM's shape, with optional extra response headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[Json] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, reason=code)
        self.code = code
        self.target = target
        self.details = details
        self.headers = headers or {}

    def body(self) -> Json:
        """The ``error`` object, as ARM nests it in responses and operation statuses."""
        error: Json = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details is not None:
            error["details"] = self.details
        return error


# Generic codes for injected HTTP faults. 429: webdevops/azure-metrics-exporter#36 (ARM
# throttling); 500: pulumi/pulumi-azure-native#1597.
STATUS_CODES = {
    400: ("BadRequest", "The request is invalid."),
    404: ("NotFound", "The requested resource was not found."),
    405: ("MethodNotAllowed", "The requested resource does not support this http method."),
    429: (
        "SubscriptionRequestsThrottled",
        "Number of requests for the subscription exceeded the backend storage limit. "
        "Please try again later.",
    ),
    500: ("InternalServerError", "An error occurred."),
    502: ("BadGateway", "The gateway did not receive a response in time."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway did not receive a response in time."),
}


def generic(status: int, message: str | None = None) -> ArmError:
    """An error for a bare HTTP status (fault injection, unknown routes)."""
    code, default = STATUS_CODES.get(status, ("Error", "The request failed."))
    return ArmError(status, code, message or default)


def missing_api_version() -> ArmError:
    # cloudquery/cloudquery#6626 and MicrosoftDocs/feedback#2279 quote this exact body.
    return ArmError(
        400,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )


def _challenge(description: str) -> dict[str, str]:
    # RFC 6750 challenge as Azure AD-protected resources send it
    # (learn.microsoft.com/previous-versions/azure/dn645539, "Errors from Secured Resources").
    return {
        "WWW-Authenticate": (
            'Bearer authorization_uri="https://login.microsoftonline.com/common", '
            f'error="invalid_token", error_description="{description}"'
        )
    }


def missing_authorization() -> ArmError:
    # hashicorp/terraform-provider-azurerm#3612: Status=401 Code="AuthenticationFailed".
    return ArmError(
        401,
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing.",
        headers=_challenge("The authentication failed because of missing 'Authorization' header."),
    )


def malformed_authorization() -> ArmError:
    # Azure/azure-sdk-for-python#4124: AuthenticationFailedInvalidHeader.
    return ArmError(
        401,
        "AuthenticationFailedInvalidHeader",
        "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        headers=_challenge(
            "The authentication failed because of an invalid 'Authorization' header."
        ),
    )


def invalid_token() -> ArmError:
    return ArmError(
        401,
        "InvalidAuthenticationToken",
        "The access token is invalid.",
        headers=_challenge("The access token is invalid."),
    )


def group_not_found(name: str) -> ArmError:
    # Azure/azure-cli#18097: "Resource group 'myResourceGroup' could not be found."
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def location_required() -> ArmError:
    # ARM's front door validates every PUT of a tracked resource for a location.
    return ArmError(
        400, "LocationRequired", "The location property is required for this definition."
    )


def group_location_conflict(name: str, existing: str, requested: str) -> ArmError:
    # The error Terraform users meet when re-creating a group in another region.
    return ArmError(
        409,
        "InvalidResourceGroupLocation",
        f"Invalid resource group location '{requested}'. The Resource group already exists in "
        f"location '{existing}'.",
    )


def group_being_deleted(name: str) -> ArmError:
    return ArmError(
        409,
        "ResourceGroupBeingDeleted",
        f"The resource group '{name}' is in deprovisioning state and cannot perform this "
        "operation.",
    )


def resource_location_conflict(name: str, group: str, existing: str, requested: str) -> ArmError:
    # ARM refuses to move a resource by re-PUTting it elsewhere: 409 InvalidResourceLocation.
    return ArmError(
        409,
        "InvalidResourceLocation",
        f"The resource '{name}' already exists in location '{existing}' in resource group "
        f"'{group}'. A resource with the same name cannot be created in location '{requested}'. "
        "Please select a new resource name.",
    )


def resource_not_found(provider_type: str, name: str, group: str) -> ArmError:
    # Azure/azure-powershell#15117 quotes this body for a missing VM.
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{provider_type}/{name}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def child_not_found(resource_id: str) -> ArmError:
    """A missing child (subnet, security rule): the RP answers, not the ARM front door.
    Shape from the ``details`` of Azure/azure-quickstart-templates#2824."""
    return ArmError(404, "NotFound", f"Resource {resource_id} not found.")


def reference_not_found(referenced: str, referrer: str) -> ArmError:
    # MicrosoftDocs/azure-docs#81734 and Azure/azure-quickstart-templates#2824 (with details).
    return ArmError(
        400,
        "InvalidResourceReference",
        f"Resource {referenced} referenced by resource {referrer} was not found. Please make "
        "sure that the referenced resource exists, and that both resources are in the same "
        "region.",
        details=[{"code": "NotFound", "message": f"Resource {referenced} not found."}],
    )


def nic_in_use(nic_id: str, vm_id: str) -> ArmError:
    # hashicorp/terraform-provider-azurerm#8105 and pulumi/pulumi-azure#441: 400 NicInUse,
    # answered both to a NIC DELETE and to a VM PUT that reuses another VM's NIC.
    return ArmError(
        400,
        "NicInUse",
        f"Network Interface {nic_id} is used by existing resource {vm_id}. In order to delete "
        "the network interface, it must be dissociated from the resource. To learn more, see "
        "aka.ms/deletenic.",
    )


def public_ip_in_use(pip_id: str, ip_configuration_id: str) -> ArmError:
    # oap-project/cloudtik#158 and hashicorp/terraform-provider-azurerm#2566 (400).
    return ArmError(
        400,
        "PublicIPAddressCannotBeDeleted",
        f"Public IP address {pip_id} can not be deleted since it is still allocated to "
        f"resource {ip_configuration_id}. In order to delete the public IP, disassociate/detach "
        "the Public IP address from the resource.  To learn how to do this, see "
        "aka.ms/deletepublicip.",
    )


def public_ip_must_be_static(pip_id: str) -> ArmError:
    # MicrosoftDocs/azure-docs#42889: 400 StandardSkuPublicIPAddressesMustBeStatic.
    return ArmError(
        400,
        "StandardSkuPublicIPAddressesMustBeStatic",
        f"Standard sku publicIp {pip_id} must have AllocationMethod set to Static.",
    )


def nsg_in_use(nsg_id: str, users: list[str]) -> ArmError:
    # pulumi/pulumi-azure-native#3051 and DataBiosphere/terra-workspace-manager#502.
    return ArmError(
        400,
        "InUseNetworkSecurityGroupCannotBeDeleted",
        f"Network security group {nsg_id} cannot be deleted because it is in use by the "
        f"following resources: {', '.join(users)}. In order to delete the Network security "
        "group, remove the association with the resource(s). To learn how to do this, see "
        "https://aka.ms/deletensg.",
    )


def subnet_in_use(subnet_name: str, ip_configuration_id: str) -> ArmError:
    # Azure/bicep#13267 and kubernetes-sigs/cluster-api-provider-azure#172 (400); the same
    # error answers a VNet PUT that drops a subnet in use (Azure-Samples/jmeter-aci-terraform#69).
    return ArmError(
        400,
        "InUseSubnetCannotBeDeleted",
        f"Subnet {subnet_name} is in use by {ip_configuration_id} and cannot be deleted. In "
        "order to delete the subnet, delete all the resources within the subnet. See "
        "aka.ms/deletesubnet.",
    )


def sku_not_available(vm_id: str, location: str, subscription: str) -> ArmError:
    # microsoft/PartsUnlimitedMRP#133 (body); Azure-Samples/azuresandbox#70 (409 Conflict).
    return ArmError(
        409,
        "SkuNotAvailable",
        f"The requested size for resource '{vm_id}' is currently not available in location "
        f"'{location}' zones '' for subscription '{subscription}'. Please try another size or "
        "deploy to a different location or zones. See https://aka.ms/azureskunotavailable for "
        "details.",
    )


def invalid_parameter(message: str, target: str) -> ArmError:
    """Compute's 400 InvalidParameter with its target, e.g. Azure/azure-cli#228 (adminPassword),
    ComputeCanada/magic_castle#44 (linuxConfiguration), ansible/ansible#25924 (customData)."""
    return ArmError(400, "InvalidParameter", message, target=target)


def property_change_not_allowed(prop: str) -> ArmError:
    # Quoted by hashicorp/terraform-provider-azurerm (ssh keys, additionalUnattendContent);
    # deployments wrap it as a 409 Conflict.
    return ArmError(
        409,
        "PropertyChangeNotAllowed",
        f"Changing property '{prop}' is not allowed.",
        target=prop,
    )


def operation_not_allowed(message: str) -> ArmError:
    """Compute's 409 OperationNotAllowed, e.g. "Disk X is attached to VM Y."
    (ansible/ansible#54644) or an action on a deallocated VM."""
    return ArmError(409, "OperationNotAllowed", message)


def image_not_found(urn: str) -> ArmError:
    # Quoted in many Terraform write-ups: "PlatformImageNotFound: The platform image
    # 'Canonical:UbuntuServer:22_04-lts:latest' is not available."
    return ArmError(
        404,
        "PlatformImageNotFound",
        f"The platform image '{urn}' is not available. Verify that all fields in the storage "
        "profile are correct.",
    )


def cores_quota_exceeded(
    location: str, limit: int, usage: int, required: int, subscription: str
) -> ArmError:
    """A VM PUT (or start) that would pass the regional vCPU quota: Compute refuses it at
    once with 409 OperationNotAllowed, before any VM exists. Text and status as quoted in
    cloud-barista/cb-spider#1558 (RESPONSE 409 Conflict to the VM PUT) and
    nforgeio/neonKUBE#1671 ("Status: 409 (Conflict) ErrorCode: OperationNotAllowed")."""
    return ArmError(
        409,
        "OperationNotAllowed",
        "Operation could not be completed as it results in exceeding approved Total Regional "
        f"Cores quota. Additional details - Deployment Model: Resource Manager, Location: "
        f"{location}, Current Limit: {limit}, Current Usage: {usage}, Additional Required: "
        f"{required}, (Minimum) New Limit Required: {usage + required}. Submit a request for "
        "Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/"
        f"UsageAndQuota.ReactView/Parameters/%7B%22subscriptionId%22:%22{subscription}%22%7D "
        "by specifying parameters listed in the 'Details' section for deployment to succeed. "
        "Please read more about quota limits at "
        "https://docs.microsoft.com/en-us/azure/azure-supportability/regional-quota-requests",
    )


def another_operation_in_progress(operation_url: str) -> ArmError:
    """The Network RP refuses an operation on a resource (or one it references) while
    another is still running, with 429 so that clients retry: Azure/azure-libraries-for-net
    #1001 (the Network team: 429 "when ... an operation on a resource with references that
    are in an updating state"); the text is quoted in microsoft/AzureTRE#2222."""
    return ArmError(
        429,
        "AnotherOperationInProgress",
        "Another operation on this or dependent resource is in progress. To retrieve status "
        f"of the operation use uri: {operation_url}.",
    )


def resource_exists(resource_id: str) -> ArmError:
    """A PUT sent with ``If-None-Match: *`` on a resource that exists: 412 (RFC 9110
    section 13.1.2), code PreconditionFailed as Compute answers a failed condition
    (kubernetes-sigs/cloud-provider-azure#9728). Compute takes the header on VM PUTs from
    api-version 2023-09-01 (Azure/azure-rest-api-specs#26368; "Set to '*' to allow a new
    record set to be created, but to prevent updating an existing record set",
    learn.microsoft.com/javascript/api/@azure/arm-compute/virtualmachinescreateorupdateoptionalparams)."""
    return ArmError(
        412,
        "PreconditionFailed",
        f"The resource {resource_id} already exists and the request's If-None-Match header is '*'.",
    )


def scope_locked(resource_id: str, lock_scope: str, operation: str = "delete") -> ArmError:
    """An operation a management lock forbids: 409 ScopeLocked, text as quoted in
    Azure/apiops#606 and hashicorp/terraform-provider-azurerm#17478."""
    return ArmError(
        409,
        "ScopeLocked",
        f"The scope '{resource_id}' cannot perform {operation} operation because following "
        f"scope(s) are locked: '{lock_scope}'. Please remove the lock and try again.",
    )
