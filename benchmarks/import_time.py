"""Import cost: what a script or the CLI pays before its first API call, next
to Libcloud and boto3, and which modules each command loads.

    python benchmarks/import_time.py [--rounds 21]

Each command runs in a fresh interpreter, all of them once per round in a
rotating order; the cost of a command is its wall time net of
``python -c pass`` in the same round, and the ratio vmkit / Libcloud is taken
round by round. Then each command runs once more under a probe that lists
``sys.modules`` at exit: how many modules it loaded, and which cloud SDKs.

Every command reads compiled bytecode, as an installed package does: the
commands write and read it under a temporary ``PYTHONPYCACHEPREFIX`` (filled
by the warm-up round), whatever ``PYTHONDONTWRITEBYTECODE`` says. Otherwise a
checkout of vmkit would be compiled from source at every run while Libcloud
and boto3 read the bytecode their installation wrote.

What to look for: ``import vmkit`` (with a Workload built, so pydantic's
validators are paid for) loads no cloud SDK and costs well under Libcloud's
``get_driver(Provider.EC2)``; ``vmkit ls --on aws`` loads boto3 and nothing of
the other clouds. ``vmkit ls --on aws`` runs against moto on 127.0.0.1.
``pydantic model`` (one model of one field, validated once) is the floor under
vmkit's figure: what any pydantic model costs, its plugin scan included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _aws_server import REGION, AwsServer
from _report import Spread, Targets, heading, options, ratio, rotated, rounds_of, table

VMKIT_IMPORT = "import vmkit; vmkit.Workload(name='w', image='nginx')"
# The least a pydantic model costs: one field, one validation. vmkit's spec is
# made of pydantic models, so this is the floor under vmkit's own figure.
PYDANTIC_MODEL = "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int\nM(x=1)"
LIBCLOUD_EC2 = (
    "from libcloud.compute.providers import get_driver; "
    "from libcloud.compute.types import Provider; get_driver(Provider.EC2)"
)
# Top-level packages of the cloud SDKs (google.* by its second part: google.auth
# and google.protobuf serve other libraries too, google.cloud is the SDK).
SDKS = ("boto3", "botocore", "s3transfer", "google.cloud", "google.api_core", "googleapiclient",
        "azure", "msrest", "kubernetes", "libcloud", "moto")  # fmt: skip
BOTO = {"boto3", "botocore", "s3transfer"}
# Written to stderr at exit by the probe, then the module names one a line.
MARKER = "@@vmkit-benchmark-modules"
PROBE = (
    "import atexit, sys\n"
    f"atexit.register(lambda: sys.stderr.write('\\n'.join(['{MARKER}', *sorted(sys.modules)])))\n"
)


@dataclass(frozen=True)
class Command:
    """One command: its short name in the tables, how it is typed, what runs,
    and the Python code that does the same (for the module probe)."""

    key: str
    shown: str
    argv: tuple[str, ...]
    code: str


def commands(endpoint: str) -> list[Command]:
    python = sys.executable
    script = str(Path(python).parent / "vmkit")
    ls_args = ["ls", "--on", "aws", "--region", REGION, "--endpoint", endpoint]

    def cli(args: list[str]) -> str:
        return f"import sys; sys.argv = ['vmkit', *{args!r}]; from vmkit.cli import main; main()"

    return [
        Command("pass", "python -c pass", (python, "-c", "pass"), "pass"),
        Command("vmkit", f'python -c "{VMKIT_IMPORT}"', (python, "-c", VMKIT_IMPORT), VMKIT_IMPORT),
        Command(
            "libcloud", f'python -c "{LIBCLOUD_EC2}"', (python, "-c", LIBCLOUD_EC2), LIBCLOUD_EC2
        ),
        Command(
            "boto3", 'python -c "import boto3"', (python, "-c", "import boto3"), "import boto3"
        ),
        Command(
            "pydantic model",
            "python -c 'from pydantic import BaseModel; class M(BaseModel): x: int; M(x=1)'",
            (python, "-c", PYDANTIC_MODEL),
            PYDANTIC_MODEL,
        ),
        Command("vmkit --help", "vmkit --help", (script, "--help"), cli(["--help"])),
        Command(
            "vmkit ls --on aws",
            "vmkit ls --on aws --region us-east-1 --endpoint http://127.0.0.1:<moto's port>",
            (script, *ls_args),
            cli(ls_args),
        ),
    ]


def run(argv: tuple[str, ...], env: dict[str, str]) -> float:
    """Wall time of one run (seconds); it must succeed."""
    started = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def modules(code: str, env: dict[str, str]) -> list[str]:
    """The names in ``sys.modules`` when ``code`` exits."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE + code],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if MARKER not in done.stderr:
        raise SystemExit(f"the probe did not run: {done.stderr[-2000:]}")
    return done.stderr.split(MARKER, 1)[1].split()


def sdks(names: list[str]) -> list[str]:
    """The cloud SDK packages among module names."""
    return [s for s in SDKS if any(n == s or n.startswith(s + ".") for n in names)]


def main() -> None:
    parser = options(__doc__.splitlines()[0], rounds=21)
    args = parser.parse_args()
    rounds = rounds_of(args)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "VMKIT_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    # Fake credentials for `vmkit ls --on aws` against moto, and no config file of
    # the developer's that could point boto3 elsewhere.
    env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip

    with (
        AwsServer() as server,
        tempfile.TemporaryDirectory() as home,
        tempfile.TemporaryDirectory() as bytecode,
    ):
        # No targets file of the developer's: `--on aws` is the provider.
        env["XDG_CONFIG_HOME"] = home
        env["PYTHONPYCACHEPREFIX"] = bytecode
        endpoint = server.fresh()
        every = commands(endpoint)
        for command in every:  # warm the OS caches; not counted
            run(command.argv, env)
        walls = {c.shown: Spread() for c in every}
        for round_ in range(rounds):
            for command in rotated(every, round_):
                walls[command.shown].add(run(command.argv, env))
        loaded = {c.shown: modules(c.code, env) for c in every}

    by_key = {c.key: c.shown for c in every}
    base = walls[by_key["pass"]]
    nets = {
        c.shown: Spread([w - b for w, b in zip(walls[c.shown].values, base.values, strict=True)])
        for c in every
    }
    heading(
        "Import cost",
        f"{rounds} rounds, every command once per round in a fresh interpreter; "
        "wall time in ms; net = minus `python -c pass` of the same round.\n"
        f"interpreter: {sys.executable} (Python {sys.version.split()[0]}); bytecode "
        "compiled once, in the warm-up round",
    )
    print("commands:")
    for command in every:
        print(f"  {command.key:<17}  {command.shown}")
    print()
    rows = []
    for command in every:
        median, spread = walls[command.shown].cells(1000, 1)
        net = "" if command is every[0] else nets[command.shown].cells(1000, 1)[0]
        found = sdks(loaded[command.shown])
        rows.append(
            [
                command.key,
                median,
                spread,
                net,
                str(len(loaded[command.shown])),
                ", ".join(found) or "none",
            ]
        )
    table(["command", "median", "min-max", "net", "sys.modules", "cloud SDKs in sys.modules"], rows)

    vmkit_net, libcloud_net = nets[by_key["vmkit"]], nets[by_key["libcloud"]]
    versus = ratio(vmkit_net, libcloud_net)
    vs_boto3 = ratio(vmkit_net, nets[by_key["boto3"]])
    floor = nets[by_key["pydantic model"]]
    print()
    table(
        ["ratio (net, round by round)", "median", "min-max"],
        [
            ["vmkit / libcloud", *versus.cells()],
            ["vmkit / boto3", *vs_boto3.cells()],
            ["pydantic model / libcloud", *ratio(floor, libcloud_net).cells()],
            ["vmkit / pydantic model", *ratio(vmkit_net, floor).cells()],
        ],
    )

    targets = Targets("import")
    net_ms = vmkit_net.median * 1000
    targets.check("vmkit net import <= 150 ms", f"{net_ms:.1f} ms", net_ms <= 150)
    targets.check(
        "vmkit net import <= 0.65x Libcloud get_driver(EC2)",
        f"{versus.median:.2f}x",
        versus.median <= 0.65,
    )
    in_import = sdks(loaded[by_key["vmkit"]])
    targets.check("import vmkit loads no cloud SDK", ", ".join(in_import) or "none", not in_import)
    in_ls = sdks(loaded[by_key["vmkit ls --on aws"]])
    targets.check(
        "vmkit ls --on aws loads no SDK but boto3",
        ", ".join(in_ls) or "none",
        bool(in_ls) and set(in_ls) <= BOTO,
    )
    targets.report(args.json)


if __name__ == "__main__":
    main()
