"""Workload -> cloud-init user data that runs the workload's container on a VM.

The container's argv must reach Docker byte for byte, whatever the user put in
``env``, ``command`` or ``args`` (quotes, ``$(...)``, backticks, newlines...).
So every command is a cloud-init ``runcmd`` entry in list form, never a
string, and the YAML is produced by ``yaml.safe_dump``, never by string
formatting. The cloud-init docs promise that a list item is "executed as if
passed to execve(3)" (doc/examples/cloud-config-run-cmds.txt in
canonical/cloud-init; https://cloudinit.readthedocs.io/en/latest/reference/examples.html).
The implementation gets there by writing each list item into its runcmd
script with every element in single quotes and each ``'`` written as
``'\\''`` (``shellify`` in cloudinit/util.py, used by cc_runcmd.py): inside
POSIX single quotes no character is special, so the argv survives intact.
Only NUL cannot be carried (C strings), and is refused.

PyYAML and the email package's MIME classes are imported by the functions that
use them: every VM backend imports this module, and listing machines needs
neither (about 10 ms and 3 ms of import after boto3's).
"""

from __future__ import annotations

import email
import email.message
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vmkit.errors import SpecError
from vmkit.spec import Workload

if TYPE_CHECKING:
    from email.mime.base import MIMEBase

__all__ = ["CLOUD_CONFIG_HEADER", "docker_run_argv", "merge_cloud_config", "render_cloud_init"]

CLOUD_CONFIG_HEADER = "#cloud-config"
_SHELLSCRIPT = "#!"


def docker_run_argv(workload: Workload) -> list[str]:
    """The ``docker run`` argv that starts the workload's container.

    Pod semantics: ``command`` replaces the image's ENTRYPOINT and ``args``
    its CMD. Docker's ``--entrypoint`` takes one executable, so the rest of
    ``command`` goes before ``args``; it also clears the image's CMD, as a
    Pod's ``command`` without ``args`` does ("Passing --entrypoint clears out
    any default command set on the image":
    https://docs.docker.com/engine/containers/run/#default-entrypoint).
    Raises SpecError for values no argv can carry.
    """
    if workload.image is None:
        raise SpecError("image", "a container needs an image")
    if workload.image.startswith("-"):
        # Docker would read it as an option rather than as the image.
        raise SpecError("image", "must not start with '-'")
    argv = ["docker", "run", "-d", "--restart=always", "--name", f"vmkit-{workload.name}"]
    for port in workload.ports:
        argv += ["-p", f"{port.port}:{port.port}/{port.protocol}"]
    for key, value in workload.env.items():
        _no_nul(f"env.{key}", value)
        argv += ["-e", f"{key}={value}"]
    command = list(workload.command or [])
    args = list(workload.args or [])
    for index, item in enumerate(command):
        _no_nul(f"command.{index}", item)
    for index, item in enumerate(args):
        _no_nul(f"args.{index}", item)
    if command:
        argv += ["--entrypoint", command[0]]
    argv.append(workload.image)
    argv += command[1:] + args
    return argv


def _no_nul(field: str, value: str) -> None:
    # execve(2) takes C strings: a NUL would silently cut the value short.
    if "\0" in value:
        raise SpecError(field, "cannot contain a NUL character")


def _container_config(workload: Workload) -> dict[str, Any]:
    return {
        "package_update": True,
        # docker.io is in the Ubuntu and Debian archives, so no third-party repository.
        "packages": ["docker.io"],
        "runcmd": [
            # systemctl start waits for the unit to be up, so the daemon answers
            # before docker run is executed.
            ["systemctl", "enable", "--now", "docker"],
            docker_run_argv(workload),
        ],
    }


def _dump(config: Mapping[str, Any]) -> str:
    # ASCII output with \u escapes: with allow_unicode=True PyYAML writes U+0085
    # (NEL) raw and reads it back as a line break, so a value would change.
    import yaml

    body = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=False, width=2**16)
    return f"{CLOUD_CONFIG_HEADER}\n{body}"


def _parse_cloud_config(text: str, field: str = "user_data") -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(field, f"is not valid cloud-config YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SpecError(field, f"#cloud-config must be a YAML mapping, not {type(loaded).__name__}")
    return loaded


def merge_cloud_config(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` (the user's) into ``base`` (vmkit's).

    Lists are concatenated with ``base``'s items first, mappings are merged
    the same way, and for any other value ``extra`` wins. A key that is a list
    or mapping on one side and something else on the other raises SpecError:
    letting the user's value win there would silently drop vmkit's entries
    (for ``runcmd``, the container itself).
    """
    merged = dict(base)
    for key, value in extra.items():
        if key not in merged:
            merged[key] = value
            continue
        mine = merged[key]
        if value is None and isinstance(mine, list | dict):
            continue  # "runcmd:" left empty adds nothing
        if isinstance(mine, list) and isinstance(value, list):
            merged[key] = mine + value
        elif isinstance(mine, dict) and isinstance(value, dict):
            merged[key] = merge_cloud_config(mine, value)
        elif isinstance(mine, list | dict) or isinstance(value, list | dict):
            kind = "a list" if isinstance(mine, list) else "a mapping"
            raise SpecError("user_data", f"{key!r} must be {kind} to merge with vmkit's own")
        else:
            merged[key] = value
    return merged


def render_cloud_init(workload: Workload) -> str | None:
    """User data for a VM of ``workload``: cloud-config text or a MIME multipart.

    * With ``image``: a ``#cloud-config`` that installs Docker, starts it and
      runs the container (see :func:`docker_run_argv`). A ``user_data`` that
      is itself ``#cloud-config`` is merged into it (:func:`merge_cloud_config`);
      any other ``user_data`` goes beside it in a MIME multipart message.
    * Without ``image``: the user's ``user_data`` unchanged (a cloud-config
      one is validated first), or None when there is none.

    The SSH key is never put here: backends pass it their own way. The result
    is deterministic (same workload, same text), so plans can be compared.
    Raises SpecError on ``user_data`` or a value no argv can carry.
    """
    user_data = workload.user_data
    if workload.image is None:
        if user_data is not None and _is_cloud_config(user_data):
            _parse_cloud_config(user_data)
        return user_data
    config = _container_config(workload)
    if user_data is None or not user_data.strip():
        return _dump(config)
    if _is_cloud_config(user_data):
        return _dump(merge_cloud_config(config, _parse_cloud_config(user_data)))
    return _multipart(config, user_data)


def _is_cloud_config(text: str) -> bool:
    return text.startswith(CLOUD_CONFIG_HEADER)


def _is_mime(text: str) -> bool:
    # cloud-init's own test: "mime-version:" within the first 4096 bytes
    # (convert_string in cloudinit/user_data.py).
    return "mime-version:" in text[:4096].lower()


def _multipart(config: dict[str, Any], user_data: str) -> str:
    """vmkit's cloud-config part first, then the user's part(s).

    A ``#!`` script is sent as text/x-shellscript. Anything else goes as
    text/plain: for such parts cloud-init detects the real type from the
    first line itself (#include, #cloud-boothook, ## template: jinja...;
    TYPE_NEEDED in cloudinit/user_data.py), so nothing is second-guessed here.
    A user MIME message has its cloud-config parts merged into vmkit's (two
    cloud-config parts would otherwise replace each other's lists) and its
    other parts carried over as they are.
    """
    parts: list[email.message.Message] = []
    if _is_mime(user_data):
        for part in email.message_from_string(user_data).walk():
            if part.is_multipart():
                continue
            text = _part_text(part)
            ctype = part.get_content_type()
            if ctype == "text/cloud-config" or (ctype == "text/plain" and _is_cloud_config(text)):
                config = merge_cloud_config(config, _parse_cloud_config(text))
            else:
                parts.append(part)
    else:
        subtype = "x-shellscript" if user_data.startswith(_SHELLSCRIPT) else "plain"
        parts.append(_text_part(user_data, subtype))
    cloud_config = _dump(config)
    if not parts:
        return cloud_config
    return _pack([_text_part(cloud_config, "cloud-config"), *parts])


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or part.get_content_maintype() != "text":
        return ""
    return payload.decode(part.get_content_charset() or "utf-8", errors="replace")


def _text_part(text: str, subtype: str) -> MIMEBase:
    # 7bit ASCII stays readable and small (EC2 user data is capped at 16KiB);
    # anything else is utf-8, which the email package base64-encodes.
    from email.mime.text import MIMEText

    charset = "us-ascii" if text.isascii() else "utf-8"
    return MIMEText(text, subtype, charset)


def _pack(parts: list[email.message.Message]) -> str:
    from email.mime.multipart import MIMEMultipart

    body = "".join(part.as_string() for part in parts)
    # A boundary derived from the content keeps the output deterministic; it
    # cannot occur in that content without the content containing its own hash.
    boundary = "vmkit-" + hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]
    message = MIMEMultipart("mixed", boundary=boundary)
    for part in parts:
        message.attach(part)
    return message.as_string()
