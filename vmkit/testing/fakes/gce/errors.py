"""The errors Compute Engine answers, synchronously (HttpError) or on an operation (OpError).

Messages and reasons are the API's own where a real answer was found:

* 404 ``notFound`` "The resource 'projects/p/zones/z/instances/x' was not found"
  (googleapis/nodejs-compute#377);
* 400 ``invalid`` "Invalid value for field 'resource.machineType': '...'.
  Machine type with name '...' does not exist in zone '...'."
  (taskcluster/community-tc-config#75);
* 412 ``conditionNotMet`` for a stale or missing label fingerprint, with
  location If-Match (googleapis/google-cloud-go#7802);
* operation errors QUOTA_EXCEEDED (403 FORBIDDEN, "Quota 'CPUS' exceeded.
  Limit: 8.0 in region us-east1.", GoogleCloudPlatform/ai-on-gke#849,
  mesosphere-backup/terraform-dcos#61) and ZONE_RESOURCE_POOL_EXHAUSTED
  (503 SERVICE UNAVAILABLE, CCExtractor/sample-platform#901,
  scylladb/scylla-cluster-tests#12477).
"""

from __future__ import annotations

from vmkit.testing.fakes._http import HttpError
from vmkit.testing.fakes.gce.state import OpError

__all__ = [
    "already_exists",
    "boot_disk_refused",
    "conflict_error",
    "exhausted_error",
    "invalid",
    "not_found",
    "not_ready",
    "quota_error",
]


def invalid(field: str, value: object, why: str) -> HttpError:
    return HttpError(400, f"Invalid value for field '{field}': '{value}'. {why}", reason="invalid")


def not_found(path: str) -> HttpError:
    return HttpError(404, f"The resource '{path}' was not found", reason="notFound")


def already_exists(path: str) -> HttpError:
    return HttpError(409, f"The resource '{path}' already exists", reason="alreadyExists")


def boot_disk_refused(verb: str) -> HttpError:
    """A boot disk detached or attached while the instance is not TERMINATED.

    The detach wording is Compute Engine's (400 ``invalidResourceUsage``,
    "To detach the boot disk, the instance must be in TERMINATED state.",
    litmuschaos/chaos-charts#562, GoogleCloudPlatform/cluster-toolkit#1366);
    no answer to an attach was found, so it says the same with "attach"
    (the rule itself is documented,
    https://cloud.google.com/compute/docs/disks/detach-reattach-boot-disk).
    """
    return HttpError(
        400,
        f"Invalid resource usage: 'To {verb} the boot disk, the instance must be in "
        "TERMINATED state.'.",
        reason="invalidResourceUsage",
    )


def not_ready(path: str) -> HttpError:
    return HttpError(400, f"The resource '{path}' is not ready", reason="resourceNotReady")


def quota_message(limit: int, region: str) -> str:
    return f"Quota 'CPUS' exceeded.  Limit: {float(limit):.1f} in region {region}."


def exhausted_message(project: str, zone: str) -> str:
    return (
        f"The zone 'projects/{project}/zones/{zone}' does not have enough resources "
        "available to fulfill the request.  Try a different zone, or try again later."
    )


def quota_error(limit: int, region: str) -> OpError:
    return OpError(
        code="QUOTA_EXCEEDED",
        message=quota_message(limit, region),
        http_status=403,
        http_message="FORBIDDEN",
        details=[
            {
                "quotaInfo": {
                    "metricName": "compute.googleapis.com/cpus",
                    "limitName": "CPUS-per-project-region",
                    "dimensions": {"region": region},
                    "limit": float(limit),
                }
            }
        ],
    )


def exhausted_error(project: str, zone: str) -> OpError:
    return OpError(
        code="ZONE_RESOURCE_POOL_EXHAUSTED",
        message=exhausted_message(project, zone),
        http_status=503,
        http_message="SERVICE UNAVAILABLE",
        details=[
            {
                "help": {
                    "links": [
                        {
                            "description": "Troubleshooting documentation",
                            "url": "https://cloud.google.com/compute/docs/resource-error",
                        }
                    ]
                }
            }
        ],
    )


def conflict_error(path: str) -> OpError:
    return OpError(
        code="RESOURCE_ALREADY_EXISTS",
        message=f"The resource '{path}' already exists",
        http_status=409,
        http_message="CONFLICT",
    )
