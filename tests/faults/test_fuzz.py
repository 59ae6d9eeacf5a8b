"""Property-based fuzzing (Hypothesis) of the arguments of create, exec, wait
and volume create, through the fault proxy (injecting nothing; it counts the
requests). Every outcome must be a value, an InvalidSpecError raised before any
request, or a documented server error: never a panic, and never a request the
API server refuses as invalid (a check sandlot should have made locally)."""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sandlot
from conftest import ADMIN_KUBECONFIG

from .conftest import FULL, Row, Scale
from .harness import BUSYBOX
from .proxy import FaultProxy

# Characters that matter to the rules: the allowed ones, each kind of
# separator, upper case, space, NUL and a non-ASCII letter.
CHARS = st.sampled_from(list("az09-_.:/ A\x00é=\n"))
TEXT = st.text(CHARS, max_size=12) | st.sampled_from(["", "a" * 64, "a" * 254, "ok", "-a", "a-"])
# Mostly valid values, so that many calls reach the API server and its own checks.
NAME = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z") | TEXT
LABEL = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,12}[A-Za-z0-9])?\Z") | TEXT
ENV = st.dictionaries(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=8) | TEXT,
    st.text(max_size=10),
    max_size=3,
)
QUANTITY = (
    st.builds(
        lambda sign, digits, fraction, suffix: sign + digits + fraction + suffix,
        st.sampled_from(["", "", "+", "-"]),
        st.sampled_from(["0", "1", "5", "64", "999999999999999999999"]),
        st.sampled_from(["", "", ".5", ".0001"]),
        st.sampled_from(["", "m", "k", "Ki", "Mi", "Gi", "M", "G", "E", "Ei", "e3", "e-3", "e100", "x"]),
    )
    | TEXT
)
PATH = (
    st.builds(
        lambda parts, trail: "/" + "/".join(parts) + trail,
        st.lists(
            st.sampled_from(["data", "dev", "proc", "sys", "shm", "tmp", ".", "..", "", "a b", "é"]) | TEXT, max_size=3
        ),
        st.sampled_from(["", "", "/"]),
    )
    | TEXT
)
# The test creates these two volumes first, so mounts of them reach the server.
VOLUMES = ("fuzz-a", "fuzz-b")
MOUNTED = (
    st.builds(lambda v, mode: v + mode, st.sampled_from(VOLUMES), st.sampled_from(["", ":ro", ":rw", ":x"])) | TEXT
)
SECONDS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 0.001, 1e19, -1.0, 5.0])

CREATE = st.fixed_dictionaries(
    {"image": st.sampled_from([BUSYBOX, BUSYBOX, "", " busybox", "docker.io/library/busybox:1.36 ", "UPPER:1"])},
    optional={
        "name": st.none() | NAME,
        "command": st.none() | st.lists(TEXT, max_size=3),
        "args": st.none() | st.lists(TEXT, max_size=3),
        "env": st.none() | ENV,
        "tags": st.none() | st.dictionaries(LABEL, LABEL | st.just(""), max_size=3),
        "volume_mounts": st.none() | st.dictionaries(PATH, MOUNTED, max_size=3),
        "resources": st.none() | st.dictionaries(st.sampled_from(["cpu", "memory", "gpu", ""]), QUANTITY, max_size=2),
        "ttl_seconds": st.none() | st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1, 2**31 - 1, 2**31]),
        "run_as_user": st.none() | st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1, 65534, 2**31]),
        "runtime_class": st.none() | TEXT,
        "read_only_root_filesystem": st.booleans(),
        "network": st.none() | st.sampled_from(["internet", "none", "allowlist", "unrestricted", "open"]) | TEXT,
        "allow_egress": st.none()
        | st.lists(
            st.sampled_from(["203.0.113.0/24", "198.51.100.7/32:443", "pypi.org", "10.0.0.1/8", "kube-system/x"])
            | TEXT,
            max_size=3,
        ),
    },
)
# Commands that end by themselves whatever their arguments.
EXEC = st.fixed_dictionaries(
    {
        "command": st.builds(
            lambda head, rest: [head, *rest],
            st.sampled_from(["echo", "true", "printf", "/no/such"]),
            st.lists(TEXT, max_size=3),
        )
        | TEXT.map(lambda text: "echo " + text),
    },
    optional={
        "stdin": st.none() | TEXT | st.binary(max_size=64),
        "timeout": st.none() | SECONDS.filter(lambda s: math.isnan(s) or s < 0 or s > 0.5),
        "env": st.none() | ENV,
        "workdir": st.none() | PATH,
    },
)
WAIT = st.fixed_dictionaries(
    {
        "phase": st.sampled_from(["running", "succeeded", "failed", "queued", "terminated", "RUNNING", ""])
        | st.lists(st.sampled_from(["succeeded", "creating", "nope"]), max_size=3)
        | TEXT,
        "timeout": SECONDS,
    }
)
VOLUME = st.fixed_dictionaries(
    {"name": NAME},
    optional={
        "size": QUANTITY,
        "storage_class": st.none() | st.sampled_from(["standard"]) | TEXT,
        "access_mode": st.sampled_from(["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "rwo"]) | TEXT,
        "tags": st.none() | st.dictionaries(LABEL, LABEL, max_size=2),
    },
)
CALLS = st.one_of(
    st.tuples(st.just("create"), CREATE),
    st.tuples(st.just("exec"), EXEC),
    st.tuples(st.just("wait"), WAIT),
    st.tuples(st.just("volume"), VOLUME),
)


@contextlib.contextmanager
def sync_client_through(kubeconfig: Path, namespace: str) -> Iterator[sandlot.Client]:
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        client = sandlot.Client(namespace)
        client.connect()
    finally:
        if saved is None:
            del os.environ["KUBECONFIG"]
        else:
            os.environ["KUBECONFIG"] = saved
    with client:
        yield client


def test_fuzzed_arguments_fail_locally_or_are_accepted(
    sandlot_namespace: str, scale: Scale, record: Callable[[Row], None], tmp_path: Path
) -> None:
    proxy = FaultProxy(ADMIN_KUBECONFIG, tmp_path)
    outcomes: Counter[str] = Counter()
    findings: dict[str, list[str]] = defaultdict(list)

    def requests() -> int:
        """Requests an operation made: all but listing, watching and namespace reads."""
        return sum(
            1
            for seen in proxy.snapshot()
            if not (
                seen.method == "GET"
                and seen.target.split("?")[0].endswith(("/pods", "/namespaces/" + sandlot_namespace))
            )
        )

    try:
        with sync_client_through(proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig"), sandlot_namespace) as client:
            for volume in VOLUMES:
                client.volumes.create(volume, size="1Mi")
            box = client.sandboxes.create(BUSYBOX)
            ended = client.sandboxes.create(BUSYBOX, command=["true"])
            box.wait("running", timeout=120)
            ended.wait("succeeded", timeout=120)

            def call(kind: str, kwargs: dict[str, Any]) -> object:
                if kind == "create":
                    image = kwargs.pop("image")
                    sb = client.sandboxes.create(image, **kwargs)
                    sb.terminate()
                    return sb
                if kind == "exec":
                    return box.exec(kwargs.pop("command"), **kwargs)
                if kind == "wait":
                    return ended.wait(kwargs.pop("phase"), **kwargs)
                # Kept: a delete waits until the name is free, which is slow (the namespace goes at the end).
                return client.volumes.create(kwargs.pop("name"), **kwargs)

            @settings(
                max_examples=scale.fuzz_examples,
                deadline=None,
                database=None,
                derandomize=not FULL,
                suppress_health_check=list(HealthCheck),
            )
            @given(CALLS)
            # Inputs that once panicked, failed late or passed local checks (issue 14, item 11).
            @example(("wait", {"phase": "running", "timeout": 1e19}))
            @example(("create", {"image": BUSYBOX, "ttl_seconds": 2**40}))
            @example(("create", {"image": BUSYBOX, "volume_mounts": {"/proc": "fuzz-a"}}))
            @example(("exec", {"command": ["true"], "workdir": ""}))
            @example(("exec", {"command": ["echo", "a\x00b"]}))
            def one(kind_and_kwargs: tuple[str, dict[str, Any]]) -> None:
                kind, kwargs = kind_and_kwargs
                shown = f"{kind}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
                before = requests()
                try:
                    call(kind, dict(kwargs))
                    outcome = "value"
                except sandlot.InvalidSpecError as err:
                    outcome = "invalid before any request"
                    if requests() != before:
                        outcome = "InvalidSpecError after a request"
                        findings[outcome].append(f"{shown}: {err}")
                except sandlot.ApiError as err:
                    outcome = f"ApiError {err.status}"
                    if err.status in (400, 422):
                        outcome = "refused by the API server as invalid"
                        findings[outcome].append(f"{shown}: {err}")
                except sandlot.SandlotError as err:
                    outcome = type(err).__name__
                    if isinstance(err, sandlot.PermissionDeniedError):
                        findings["refused with 403"].append(f"{shown}: {err}")
                except (TypeError, OverflowError, ValueError) as err:
                    outcome = f"{type(err).__name__} at the call"
                    findings[outcome].append(f"{shown}: {err}")
                except BaseException as err:
                    if isinstance(err, KeyboardInterrupt | SystemExit):
                        raise
                    outcome = f"{type(err).__name__} (panic)" if "Panic" in type(err).__name__ else type(err).__name__
                    findings["panic" if "Panic" in type(err).__name__ else outcome].append(f"{shown}: {err}")
                outcomes[f"{kind}: {outcome}"] += 1

            one()
            box.terminate()
    finally:
        proxy.close()
        total = sum(outcomes.values())
        panics = len(findings["panic"])
        refused = len(findings["refused by the API server as invalid"]) + len(
            findings["InvalidSpecError after a request"]
        )
        shortest = {kind: min(examples, key=len)[:200] for kind, examples in findings.items() if examples}
        record(
            Row(
                "fuzzed create/exec/wait/volume arguments",
                f"{total} Hypothesis examples: " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())),
                f"panics {panics} (want 0); accepted locally, refused by the API server as invalid {refused} (want 0)"
                + "".join(f"; {kind} e.g. `{example}`" for kind, example in shortest.items()),
                "n/a",
                panics == 0 and refused == 0,
            )
        )
    assert findings["panic"] == []
    assert findings["InvalidSpecError after a request"] == []
    assert findings["refused by the API server as invalid"] == []
