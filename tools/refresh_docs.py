"""Refresh every excerpt of real output in README.md and docs/*.md from a fresh run.

    .venv/bin/python tools/refresh_docs.py                      # every excerpt
    .venv/bin/python tools/refresh_docs.py --only demo          # one (repeatable)
    .venv/bin/python tools/refresh_docs.py --check              # every marker there, once?
    .venv/bin/python tools/refresh_docs.py --print --only check # show it, write nothing

An excerpt is the text between two marker lines, each alone on its line:

    <!-- refresh: NAME -->
    ...generated: fenced code block(s), maybe a short line of prose...
    <!-- /refresh -->

and NAME is one of SOURCES:

    demo             `esxi-suspend demo`: the plan it logs, `…`, the end of its output
    check            `esxi-suspend check` against the built-in simulator (demo's fleet)
    outage-timeline  tests/end_to_end/test_nut_chain.py::test_outage_timeline's timeline,
                     with the upsmon FINALDELAY the chain ran with
    outage-log       what esxi-suspend logged in that same run (plan and host lines cut)
    install          `bash install.sh --root T` (a first install into a temporary tree T),
                     shown with T taken out of its paths
    trust            `esxi-suspend trust` on a terminal, answered yes, against the test suite's
                     fake ESXi host (tests/sshservers.py: OpenSSH, a root password)
    enroll           `esxi-suspend enroll` there with the password, then again (no password)

Every excerpt is made first; the files are written only once all of them are, and only
between the markers. `--check` reads the markers only (real output varies from run to run,
so no content is compared): each NAME exactly once across README.md and docs/*.md, no
unknown NAME, no block without its end; exit 1 naming what is wrong.

A good guest: the simulator, the NUT chain, the BMC simulator (ipmi_sim) and the fake ESXi
hosts listen on 127.0.0.0/8 only (127.0.0.1; the timeline's second host 127.0.0.2);
everything runs in one temporary directory (TMPDIR for the children too, and pip's cache),
removed at the end; no bytecode, no pytest cache. install.sh runs from a copy of the source
tree there (pip builds in the tree it installs from: build/ and *.egg-info/ stay out of this
checkout). Temporary paths in the output are shown as `…/` (the file's name kept); the random
ports of the simulator and the fake host as CHECK_PORT. The outage excerpts need root,
Debian's NUT and OpenIPMI's ipmi_sim with ipmitool (tests/run.sh installs them); trust and
enroll need root, sshd, unshare and busybox (the fake host's mount namespace, as their tests);
install needs pip access to the packages. A full refresh takes about a minute (50 s here):
the chain about 30 s, install.sh's venv and pip 10 to 35 s, trust and enroll 2 s.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START_RE = re.compile(r"<!--\s*refresh:\s*(\S*)\s*-->")
START_PREFIX = "<!-- refresh:"
END = "<!-- /refresh -->"
FENCE_RE = re.compile(r"(`{3,}|~{3,})")
SHORT = "…/"

CHECK_PORT = 2299  # the simulator's random port, as the docs' other excerpts show it
TIMELINE_TEST = "tests/end_to_end/test_nut_chain.py::test_outage_timeline"
TIMELINE_VARIABLE = "ESXI_SUSPEND_TIMELINE"  # test_nut_chain.TIMELINE_VARIABLE
DEBIAN_FINALDELAY = 5  # upsmon.conf's default on Debian
CHAIN_TIMEOUT = 300  # seconds for the chain's pytest run
DEMO_TIMEOUT = 120
INSTALL_TIMEOUT = 600  # a venv and pip
SETUP_TIMEOUT = 60  # one trust or enroll
SOURCE_SHOWN = "/root/esxi-suspend"  # the source tree install.sh runs from, as the docs show it


class RefreshError(Exception):
    """A marker problem (with its file and line) or a source that gave no output."""


# -- the markers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    name: str
    start: int  # 0-based index of the start marker's line
    end: int  # 0-based index of the end marker's line


def _where(label: str, index: int) -> str:
    return f"{label}:{index + 1}"


def find_blocks(text: str, label: str, names: Sequence[str]) -> list[Block]:
    """The marked blocks of one file, in order; RefreshError names the file and line of an
    unknown NAME, a start without its end, an end without its start or a marker not alone on
    its line. Lines inside a fenced code block outside the markers are not markers (a page
    may show the syntax)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    fence: str | None = None
    open_at: int | None = None
    open_name = ""
    for index, line in enumerate(lines):
        stripped = line.strip()
        if open_at is None and fence is not None:
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                fence = None
            continue
        if stripped == END:
            if open_at is None:
                raise RefreshError(f"{_where(label, index)}: {END} without a start marker")
            blocks.append(Block(open_name, open_at, index))
            open_at = None
            continue
        if stripped.startswith(START_PREFIX):
            match = START_RE.fullmatch(stripped)
            if match is None:
                raise RefreshError(
                    f"{_where(label, index)}: a marker alone on its line reads "
                    f"`<!-- refresh: NAME -->`, not {stripped!r}"
                )
            if open_at is not None:
                raise RefreshError(
                    f"{_where(label, open_at)}: refresh block {open_name!r} has no {END} "
                    f"before the next marker (line {index + 1})"
                )
            name = match.group(1)
            if name not in names:
                raise RefreshError(
                    f"{_where(label, index)}: unknown refresh marker {name!r} "
                    f"(known: {', '.join(names)})"
                )
            open_at, open_name = index, name
            continue
        if open_at is None:
            fenced = FENCE_RE.match(stripped)
            if fenced:
                fence = fenced.group(1)
    if open_at is not None:
        raise RefreshError(f"{_where(label, open_at)}: refresh block {open_name!r} has no {END}")
    return blocks


def replace_blocks(
    text: str, label: str, names: Sequence[str], generated: Mapping[str, str]
) -> str:
    """`text` with each block named in `generated` holding that text instead; the marker
    lines and everything outside the blocks as they were."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    done = 0
    for block in find_blocks(text, label, names):
        if block.name not in generated:
            continue
        body = generated[block.name]
        if body and not body.endswith("\n"):
            body += "\n"
        out += lines[done : block.start + 1]
        out.append(body)
        done = block.end
    out += lines[done:]
    return "".join(out)


def marker_problems(
    documents: Mapping[str, str], names: Sequence[str], required: Sequence[str] | None = None
) -> list[str]:
    """What `--check` reports: marker errors, each name of `required` (default: all) not
    there, and each name there more than once (with where)."""
    problems: list[str] = []
    seen: dict[str, list[str]] = {name: [] for name in names}
    for label, text in documents.items():
        try:
            blocks = find_blocks(text, label, names)
        except RefreshError as exc:
            problems.append(str(exc))
            continue
        for block in blocks:
            seen[block.name].append(_where(label, block.start))
    for name, places in seen.items():
        if not places and name in (names if required is None else required):
            problems.append(f"missing: no `<!-- refresh: {name} -->` block")
        elif len(places) > 1:
            problems.append(f"{name!r} marked {len(places)} times: {', '.join(places)}")
    return problems


def documents(root: Path = ROOT) -> dict[str, str]:
    """README.md and docs/*.md, by their path from the root."""
    paths = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in paths if p.is_file()}


# -- the text of the excerpts ---------------------------------------------------------------


def fenced(text: str) -> str:
    return "```\n" + text.strip("\n") + "\n```\n"


def shorten(text: str, directory: Path) -> str:
    """Each path below `directory` as `…/` and its last part."""
    pattern = re.escape(str(directory)) + r"(?:/[^\s/()'\"]+)*/"
    return re.sub(pattern, SHORT, text)


def _timeline_text(line: str) -> str:
    """A demo timeline line's text: `  7.5  esxi-suspend  host …` -> `host …`."""
    parts = line.split(None, 2)
    return parts[2] if len(parts) == 3 else ""


PLAN_RE = re.compile(r"host \S+: plan: (.*)")
OWN_VM = "this machine's own VM:"  # depends on the machine the refresh runs on


def demo_excerpt(output: str) -> str:
    """The plan the demo logs, `…` for the timeline, and its output from each VM's fate to the
    end: one block."""
    lines = output.splitlines()
    plan = []
    for line in lines:
        match = PLAN_RE.fullmatch(_timeline_text(line))
        if match and not match.group(1).startswith(OWN_VM):
            plan.append(match.group(1))
    fates = [i for i, line in enumerate(lines) if line.startswith("each VM's fate:")]
    if not plan or not fates:
        raise RefreshError("demo: no plan or no VM fates in its output:\n" + output)
    return fenced("\n".join([*plan, "…", *lines[fates[0] :]]))


def check_excerpt(output: str, port: int) -> str:
    text = output.replace(f"127.0.0.1:{port}", f"127.0.0.1:{CHECK_PORT}")
    return fenced(text) + (
        "\n(`esxi-suspend check` against the built-in simulator with the demo's fleet; its "
        f"random port shown as {CHECK_PORT}, its temporary directory as `…`.)\n"
    )


@dataclass(frozen=True)
class Kept:
    """What test_outage_timeline keeps: upsmon's FINALDELAY, the timeline, the run's log."""

    finaldelay: int
    timeline: str
    log: str


def parse_kept(text: str) -> Kept:
    head, _, rest = text.partition("\n\n")
    match = re.fullmatch(r"FINALDELAY (\d+)", head.strip())
    timeline, _, log = rest.partition("\n\n")
    if match is None or not timeline.startswith("t+") or not log:
        raise RefreshError(
            f"{TIMELINE_TEST} kept no `FINALDELAY N`, timeline and log: got\n{text[:500]}"
        )
    return Kept(int(match.group(1)), timeline.strip("\n"), log.strip("\n"))


def timeline_excerpt(kept: Kept) -> str:
    delay = kept.finaldelay
    if delay == DEBIAN_FINALDELAY:
        after = "Debian's default"
    else:
        later = "later" if delay < DEBIAN_FINALDELAY else "earlier"
        after = (
            f"with Debian's default `FINALDELAY {DEBIAN_FINALDELAY}` upsmon runs "
            f"SHUTDOWNCMD, and everything after it, {abs(DEBIAN_FINALDELAY - delay)} s {later}"
        )
    return fenced(kept.timeline) + f"\nupsmon ran with `FINALDELAY {delay}`: {after}.\n"


# Lines of the run's log the docs leave out: the plan (the demo shows one), the host's own
# lines (their gist follows in ours), the connect and restart lines the next ones repeat, and
# the test wrapper's exit line.
LOG_CUT = (
    re.compile(r"esxi-suspend: \w+: host \S+: plan: "),
    re.compile(r"esxi-suspend: \w+: host \S+: \[host\] "),
    re.compile(r"esxi-suspend: \w+: host \S+: connecting as "),
    re.compile(r"esxi-suspend: \w+: local: restarting the NUT monitor: "),
    re.compile(r"esxi-suspend exit \d+$"),
)


def log_excerpt(kept: Kept) -> str:
    lines = [line for line in kept.log.splitlines() if not any(c.match(line) for c in LOG_CUT)]
    return fenced("\n".join(lines))


# What this machine's pip configuration says about package indexes it lacks (pip.conf's
# extra-index-url): not install.sh's, and not what an admin's install shows.
PIP_INDEX_WARNING = re.compile(
    r"WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.\n?"
)


def install_excerpt(output: str, tree: Path, source: Path) -> str:
    """install.sh's output as on the machine itself: the tree `tree` out of every path (and
    of the first line's `into TREE`), the source tree as SOURCE_SHOWN, this machine's pip
    index warnings cut; then a line saying so, and what --root changed that stays."""
    text = output.replace(f" into {tree}:", ":", 1)
    text = text.replace(f"{tree}/", "/").replace(str(source), SOURCE_SHOWN)
    text, cut = PIP_INDEX_WARNING.subn("", text)
    if not text.startswith(f"Installing esxi-suspend from {SOURCE_SHOWN}:") or str(tree) in text:
        raise RefreshError("install: not the output of an install into its tree:\n" + output)
    notes = [
        "`bash install.sh --root T`, a first install into a temporary directory T, shown as on "
        "the machine itself: T taken out of every path and the first line's `into T`, the "
        f"source tree shown as `{SOURCE_SHOWN}`"
    ]
    if "--env-file" in text:
        notes.append(
            "kept from --root: the steps name the tree's env file (`--env-file "
            "/etc/esxi-suspend/esxi-suspend.env` here), which an install on the machine "
            "itself leaves out since that file is the default"
        )
    if "no upsmon.conf in" in text:
        notes.append("the tree has no NUT configuration, so no upsmon.conf is found")
    if cut:
        notes.append(
            f"{cut} warnings of this machine's pip configuration about package indexes it "
            "lacks left out"
        )
    return fenced(text) + "\n(" + "; ".join(notes) + ".)\n"


FAKE_ESXI_VERSION = "6.7.0"
FAKE_HOST_WORDS = (
    "the test suite's fake ESXi host (OpenSSH on 127.0.0.1 reporting ESXi "
    f"{FAKE_ESXI_VERSION}, with a root password)"
)


def show_port(text: str, port: int) -> str:
    """The fake host's random `port` as CHECK_PORT, where a host's port is written."""
    return re.sub(rf"(127\.0\.0\.1\]?:|port |ESXI_PORT=){port}\b", rf"\g<1>{CHECK_PORT}", text)


def trust_excerpt(shown: str, port: int) -> str:
    return fenced(show_port(shown, port)) + (
        f"\n(`esxi-suspend trust 127.0.0.1 --port {CHECK_PORT}` on a terminal, answered "
        f"`yes`, against {FAKE_HOST_WORDS}; its random port shown as {CHECK_PORT}, the "
        "temporary directory holding the env file, key and known_hosts as `…`.)\n"
    )


def enroll_excerpt(first: str, again: str, port: int) -> str:
    return (
        fenced(show_port(first, port))
        + "\nRun again, once our key works:\n\n"
        + fenced(show_port(again, port))
        + f"\n(`esxi-suspend enroll 127.0.0.1 --port {CHECK_PORT}` on a terminal, the "
        "password typed at its prompt (not echoed), then `esxi-suspend enroll` with no "
        f"terminal, right after the trust above, against the same fake host; its random port "
        f"shown as {CHECK_PORT}, the temporary directory as `…`.)\n"
    )


# -- running the sources --------------------------------------------------------------------


def _child_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a child: TMPDIR a directory of its own below `tmp` (the chain's
    leftovers check counts all that is left in it), no bytecode written."""
    session = tmp / "t"
    session.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(session), "PYTHONDONTWRITEBYTECODE": "1", **extra}
    env.pop("CI", None)  # a machine without NUT skips the chain rather than failing it
    return env


def _run(
    argv: Sequence[str], env: Mapping[str, str], timeout: float, *, interleaved: bool = False
) -> tuple[int, str]:
    """Its exit status and its output: stdout, then stderr; or both as they came, as a
    terminal shows them, when `interleaved`."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if interleaved else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RefreshError(f"{' '.join(argv)}: no end after {timeout} s") from exc
    return done.returncode, done.stdout + (done.stderr or "")


def run_demo(tmp: Path) -> str:
    argv = [sys.executable, "-m", "esxi_suspend", "demo"]
    code, output = _run(argv, _child_env(tmp), DEMO_TIMEOUT)
    if code != 0:
        raise RefreshError(f"esxi-suspend demo: exit {code}\n{output[-3000:]}")
    return shorten(demo_excerpt(output), tmp)


UPSMON_CONF_LINES = (  # what install.sh --configure-upsmon adds for the early shutdown
    "NOTIFYCMD /sbin/upssched\n"
    "NOTIFYFLAG ONBATT SYSLOG+WALL+EXEC\n"
    "NOTIFYFLAG ONLINE SYSLOG+WALL+EXEC\n"
)


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def run_check(tmp: Path) -> str:
    """`check` as the CLI runs it (runner.run, dry run), against the simulator on 127.0.0.1,
    on its simulated clock as the demo counts it; NUT's configuration (NUT_CONFPATH) our
    samples as install.sh --configure-upsmon leaves them, not this machine's."""
    import logging

    from esxi_suspend import clock, runner
    from esxi_suspend.demo.command import DEFAULT_TIME_SCALE, prepare_env
    from esxi_suspend.demo.timeline import own_logging
    from esxi_suspend.simulator import SimulatedHost, default_fleet, generate_ed25519

    directory = tmp / "check"
    nut = directory / "nut"
    nut.mkdir(parents=True)
    (nut / "upsmon.conf").write_text((ROOT / "upsmon.conf.sample").read_text() + UPSMON_CONF_LINES)
    shutil.copyfile(ROOT / "upssched.conf.sample", nut / "upssched.conf")
    private_key, public_key = generate_ed25519()
    out = io.StringIO()
    with ExitStack() as stack:
        logger = stack.enter_context(own_logging())
        logger.addHandler(logging.NullHandler())  # its warnings are in the report
        stack.enter_context(_environ("NUT_CONFPATH", str(nut)))
        host = stack.enter_context(
            SimulatedHost(default_fleet(), authorized_key=public_key, time_scale=DEFAULT_TIME_SCALE)
        )
        env = prepare_env(directory, host, private_key, DEFAULT_TIME_SCALE)
        with redirect_stdout(out), clock.counting_on(host.simulated_now):
            code = runner.run(str(env), dry_run=True)
        port = host.port
    if code != 0:
        raise RefreshError(f"check: exit {int(code)}, not ready:\n{out.getvalue()}")
    return shorten(check_excerpt(out.getvalue(), port), tmp)


SECRETS_FOUND = "SECRETS FOUND IN OUTPUT"  # tests/conftest.py's section
LEFTOVERS = "LEFTOVERS: THE SESSION CHANGED THE MACHINE"


def run_chain(tmp: Path) -> Kept:
    """The test, in a pytest session of its own. The test keeps its file only once it passed;
    the session may still fail after it: a secret in the output refuses the excerpt, the
    leftovers check (which also sees what others change on this machine meanwhile) is
    passed on as a warning."""
    kept = tmp / "timeline.txt"
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", TIMELINE_TEST]
    code, output = _run(argv, _child_env(tmp, **{TIMELINE_VARIABLE: str(kept)}), CHAIN_TIMEOUT)
    if not kept.exists() or SECRETS_FOUND in output:
        raise RefreshError(f"{TIMELINE_TEST}: exit {code}, kept nothing:\n{output[-3000:]}")
    if code != 0:
        section = output[output.find(LEFTOVERS) :] if LEFTOVERS in output else output[-2000:]
        print(
            f"refresh_docs: warning: {TIMELINE_TEST} passed, its session then exit {code}:\n"
            + shorten(section, tmp),
            file=sys.stderr,
        )
    return parse_kept(shorten(kept.read_text(encoding="utf-8"), tmp))


def copy_source(directory: Path) -> Path:
    """The source tree's files as git sees them (tracked and untracked, not ignored; as they
    are on disk, edits included) copied to `directory`."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RefreshError(f"git ls-files: exit {done.returncode}: {done.stderr.decode()}")
    for name in sorted(set(os.fsdecode(n) for n in done.stdout.split(b"\0") if n)):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return directory


def run_install(tmp: Path) -> str:
    """install.sh from a copy of the source tree into a tree of its own, as a first install;
    its output as a terminal shows it."""
    source = copy_source(tmp / "src").resolve()
    tree = (tmp / "root").resolve()
    argv = ["bash", str(source / "install.sh"), "--root", str(tree)]
    env = _child_env(tmp, PIP_CACHE_DIR=str(tmp / "pip-cache"))
    env.pop("DESTDIR", None)
    code, output = _run(argv, env, INSTALL_TIMEOUT, interleaved=True)
    if code != 0:
        raise RefreshError(f"bash install.sh --root: exit {code}\n{output[-3000:]}")
    return shorten(install_excerpt(output, tree, source), tmp)


TRUST_PROMPT = "Type yes if the fingerprint matches the console: "  # setup/trust.py
ENROLL_PROMPT = "password (used for this one login, never stored): "  # setup/enroll.py


def run_trust_enroll(tmp: Path) -> dict[str, str]:
    """trust, enroll and enroll again, as tests/integration/test_setup_commands.py runs them:
    against a fake ESXi host taking a root password (tests/sshservers.py), with an env file,
    a key and no ESXI_HOST, as install.sh leaves them. The password is refused in the output."""
    sys.path.append(str(ROOT / "tests"))
    from sshservers import ServerUnavailable, running_enroll_server, ssh_keygen
    from terminal import run_on_terminal

    directory = tmp / "setup"
    etc = directory / "etc"
    etc.mkdir(parents=True, mode=0o700)
    key = ssh_keygen(etc / "id_ed25519", comment="esxi-suspend")
    env_file = etc / "esxi-suspend.env"
    env_file.write_text(
        f"ESXI_KEY_FILE={key}\nESXI_KNOWN_HOSTS={etc / 'known_hosts'}\n"
        "ESXI_CONNECT_TIMEOUT=5\nUPS_SERVICE=none\nUPS_RESTART_COMMAND=/bin/true\n"
    )
    env_file.chmod(0o600)
    env = _child_env(tmp, ESXI_SUSPEND_ENV=str(env_file), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "esxi_suspend"]
    try:
        with running_enroll_server(directory / "esxi", FAKE_ESXI_VERSION) as server:
            where = [server.host, "--port", str(server.port)]
            password = server.password
            steps = [
                ("trust", [*command, "trust", *where], (TRUST_PROMPT, "yes\n")),
                ("enroll", [*command, "enroll", *where], (ENROLL_PROMPT, password + "\n")),
            ]
            shown: dict[str, str] = {}
            for name, argv, answer in steps:
                try:
                    code, text = run_on_terminal(argv, [answer], env=env, timeout=SETUP_TIMEOUT)
                except TimeoutError as exc:
                    raise RefreshError(f"esxi-suspend {name}: {exc}") from exc
                if code != 0:
                    raise RefreshError(f"esxi-suspend {name}: exit {code}\n{text}")
                shown[name] = text
            code, again = _run([*command, "enroll"], env, SETUP_TIMEOUT)
            if code != 0:
                raise RefreshError(f"esxi-suspend enroll, again: exit {code}\n{again}")
            port = server.port
    except ServerUnavailable as exc:
        raise RefreshError(f"trust, enroll: no fake ESXi host here: {exc}") from exc
    if any(password in text for text in (*shown.values(), again)):
        raise RefreshError("trust, enroll: the password is in the output; nothing written")
    return {
        "trust": shorten(trust_excerpt(shown["trust"], port), tmp),
        "enroll": shorten(enroll_excerpt(shown["enroll"], again, port), tmp),
    }


SOURCES = ("demo", "check", "outage-timeline", "outage-log", "install", "trust", "enroll")


def generate(wanted: Sequence[str], tmp: Path) -> dict[str, str]:
    """The excerpt of each name in `wanted`; the chain runs once for both of its, the fake
    ESXi host once for trust and enroll (enroll needs the trust before it)."""
    made: dict[str, str] = {}
    runs: dict[str, Callable[[Path], str]] = {
        "demo": run_demo,
        "check": run_check,
        "install": run_install,
    }
    for name in wanted:
        if name in runs:
            made[name] = runs[name](tmp)
    if {"outage-timeline", "outage-log"} & set(wanted):
        kept = run_chain(tmp)
        made["outage-timeline"] = timeline_excerpt(kept)
        made["outage-log"] = log_excerpt(kept)
    if {"trust", "enroll"} & set(wanted):
        made.update(run_trust_enroll(tmp))
    return {name: made[name] for name in wanted}


# -- the command ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/refresh_docs.py",
        description="Refresh the excerpts of real output between <!-- refresh: NAME --> "
        "markers in README.md and docs/*.md.",
    )
    parser.add_argument(
        "--only", action="append", choices=SOURCES, metavar="NAME", help="only NAME (repeatable)"
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--check",
        action="store_true",
        help="only verify every marker is there exactly once; exit 1 naming what is not",
    )
    what.add_argument(
        "--print", action="store_true", help="print the excerpts, write no file (no markers needed)"
    )
    return parser


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    args = _parser().parse_args(argv)
    wanted = list(dict.fromkeys(args.only or SOURCES))
    docs = documents(root)
    if not args.print:
        # before anything runs; what --only leaves alone may be missing, a broken marker not
        problems = marker_problems(docs, SOURCES, SOURCES if args.check else wanted)
        for problem in problems:
            print(f"refresh_docs: {problem}", file=sys.stderr)
        if args.check or problems:
            return 1 if problems else 0
    # short: the chain puts NUT's sockets below it (108 bytes at most), as tests/run.sh does
    tmp = Path(tempfile.mkdtemp(prefix="esxi-", dir="/tmp"))
    try:
        made = generate(wanted, tmp)
    except RefreshError as exc:
        print(f"refresh_docs: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.print:
        for name, text in made.items():
            sys.stdout.write(f"<!-- refresh: {name} -->\n{text}{END}\n")
        return 0
    # read again: someone may have edited a page while the sources ran
    for label, text in documents(root).items():
        try:
            new = replace_blocks(text, label, SOURCES, made)
        except RefreshError as exc:
            print(f"refresh_docs: {exc} (not written)", file=sys.stderr)
            return 1
        if new != text:
            (root / label).write_text(new, encoding="utf-8")
            print(f"refresh_docs: {label}: refreshed")
    return 0


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # nothing written outside README.md and docs/
    sys.exit(main())
