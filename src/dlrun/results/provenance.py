"""Where a run came from, recorded so that it can be made again: the code (the git repository it
was started in: commit, branch, and the uncommitted changes as a patch), dlrun's own checkout, the
installed environment (every package, hashed), the host and device, and a hash of the resolved
config. The *_differences functions compare a recorded run with the present: what `dlrun
reproduce` says before it runs the same overrides again."""

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.layout import RunDir
from dlrun.results import artifacts

UNTRACKED_MAX_BYTES = 1 << 20  # an untracked file larger than this is named in the record, not copied into the patch
DLRUN_SOURCE = Path(__file__).resolve().parents[1]  # the dlrun package's directory


def git(folder, *args, ok=(0,)):
    """Git's output for `args` run in `folder`, or None where git or a repository is missing
    (an exit code outside `ok`)."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode in ok else None


def repository(folder):
    """The top of the git work tree that holds `folder`, or None."""
    top = git(folder, "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top and top.strip() else None


def working_patch(repo, base, leave_out=()):
    """(patch, untracked, not copied): the work tree of `repo` against the commit `base` as one
    patch, untracked files (those .gitignore does not exclude) added as new files; untracked
    files under a folder of `leave_out` (the outputs) are skipped, larger ones only named."""
    patch = git(repo, "diff", "--binary", base) or ""
    listed = (git(repo, "ls-files", "--others", "--exclude-standard", "-z") or "").split("\0")
    leave_out = [Path(p).resolve() for p in leave_out]
    untracked, too_large = [], []
    for name in filter(None, listed):
        path = (repo / name).resolve()
        if any(path == p or p in path.parents for p in leave_out):
            continue
        untracked.append(name)
        if path.lstat().st_size > UNTRACKED_MAX_BYTES:
            too_large.append(name)
            continue
        patch += git(repo, "diff", "--no-index", "--binary", "/dev/null", name, ok=(0, 1)) or ""
    return patch, untracked, too_large


def code_state(folder, run_dir, files):
    """The git record of the repository `folder` is in (None outside one); the uncommitted
    changes are added to `files` for the run's code.patch."""
    repo = repository(folder)
    commit = repo and (git(repo, "rev-parse", "HEAD") or "").strip()
    if not commit:
        return None
    from dlrun.config.sources import outputs_root

    patch, untracked, too_large = working_patch(repo, commit, (outputs_root(), run_dir))
    if patch:
        files[RunDir(run_dir).patch] = patch
    branch = (git(repo, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    return {"repository": str(repo), "commit": commit, "branch": None if branch == "HEAD" else branch,
            "dirty": bool(patch or too_large), "patch": RunDir(run_dir).patch.name if patch else None,
            "untracked": untracked, "not_in_patch": too_large}


@functools.cache
def dlrun_checkout():
    """dlrun's own commit and whether its tree is dirty, when it runs from a git checkout (an
    editable install); None when installed from a wheel."""
    repo = repository(DLRUN_SOURCE)
    commit = repo and (git(repo, "rev-parse", "HEAD") or "").strip()
    if not commit:
        return None
    dirty = bool((git(repo, "status", "--porcelain", "--untracked-files=no") or "").strip())
    diff = hashlib.sha256((git(repo, "diff", "HEAD") or "").encode()).hexdigest() if dirty else None
    return {"path": str(repo), "commit": commit, "dirty": dirty, "diff": diff}


@functools.cache
def packages():
    """Every installed distribution as `name==version`, sorted: the environment's lock."""
    from importlib.metadata import distributions

    found = {(d.metadata["Name"] or "").lower(): d.version for d in distributions() if d.metadata["Name"]}
    return tuple(f"{name}=={version}" for name, version in sorted(found.items()))


def _lock():
    """(environment.txt's text, its sha256) for the packages installed now."""
    text = "".join(f"{line}\n" for line in packages())
    return text, hashlib.sha256(text.encode()).hexdigest()


def environment(run_dir, files):
    """The environment's hash and size; the package list is added to `files` for the run's
    environment.txt."""
    text, digest = _lock()
    files[RunDir(run_dir).environment] = text
    return {"hash": digest, "packages": len(packages()),
            "file": RunDir(run_dir).environment.name}


def host(device):
    """The machine: Python, OS, host name, CPU, and the accelerator with its driver and CUDA."""
    import torch

    found = {"python": platform.python_version(), "os": platform.platform(), "hostname": socket.gethostname(),
             "cpu": _cpu_model(), "cpus": os.cpu_count(), "accelerator": None, "driver": None,
             "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
             else None}
    if str(device).startswith("cuda"):
        found["accelerator"] = torch.cuda.get_device_name(torch.device(device))
        found["driver"] = _nvidia_driver()
    elif str(device).startswith("mps"):
        found["accelerator"] = f"Apple {platform.machine()} (MPS)"
    return found


def _cpu_model():
    with_name = Path("/proc/cpuinfo")
    if with_name.is_file():
        for line in with_name.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or None


def _nvidia_driver():
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else None


def config_hash(cfg):
    """sha256 of the resolved config (keys sorted): equal exactly when two runs were configured alike."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


def gather(run_dir, cfg, device):
    """(the reproducibility fields of a run's summary.json (see record.FIELDS), {path: text} of
    the files they name). The files are the caller's to write with its record: a run refused
    before it starts leaves nothing behind."""
    from dlrun.results import reuse

    files = {}
    fields = {"code": code_state(Path.cwd(), run_dir, files), "dlrun_checkout": dlrun_checkout(),
              "environment": environment(run_dir, files), "host": host(device), "config_hash": config_hash(cfg)}
    fields["cache_key"] = reuse.key(cfg, device, files.get(RunDir(run_dir).patch), fields)
    return fields, files


def write_files(files):
    for path, text in files.items():
        artifacts.write_text(path, text)


def _by_file(patch):
    """A patch's changes file by file, without the `index` lines (blob names that differ between
    a new file's untracked and committed forms while its content is the same)."""
    files, current = {}, None
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            current = line.rsplit(" b/", 1)[-1]
            files[current] = []
        elif current is not None and not line.startswith("index "):
            files[current].append(line)
    return files


def code_differences(recorded, run_dir, folder):
    """What differs between the code a run recorded (commit + code.patch) and the work tree of
    the repository `folder` is in, as lines; [] when they are the same."""
    if recorded is None:
        return ["code: the run was not started in a git repository, so its code was not recorded"]
    short = recorded["commit"][:10]
    repo = repository(folder)
    if repo is None:
        return [f"code: {folder} is not in a git repository; the run was at commit {short} of {recorded['repository']}"]
    if git(repo, "cat-file", "-e", f"{recorded['commit']}^{{commit}}") is None:
        return [f"code: the run's commit {short} is not in {repo}: fetch it, or run from {recorded['repository']}"]
    from dlrun.config.sources import outputs_root

    lines = []
    head = (git(repo, "rev-parse", "HEAD") or "").strip()
    if head != recorded["commit"]:
        lines.append(f"code: HEAD is at {head[:10]}, the run was at {short}")
    patch_file = RunDir(run_dir).patch
    then = _by_file(patch_file.read_text(errors="replace") if recorded.get("patch") and patch_file.is_file() else "")
    now = _by_file(working_patch(repo, recorded["commit"], (outputs_root(), run_dir))[0])
    changed = sorted(name for name in then.keys() | now.keys() if then.get(name) != now.get(name))
    if changed:
        lines.append(f"code: {len(changed)} file(s) differ from the run's (commit {short}"
                     f"{' + ' + patch_file.name if recorded.get('patch') else ''}): {', '.join(changed)}")
    return lines


def environment_differences(recorded, run_dir):
    """Packages added, removed or at another version since the run (from its environment.txt)."""
    if not recorded:
        return []
    if _lock()[1] == recorded["hash"]:
        return []
    listed = RunDir(run_dir).environment
    if not listed.is_file():
        return [f"environment: its hash differs from the run's, and the run's {listed.name} is gone"]
    then = dict(line.split("==", 1) for line in listed.read_text().splitlines() if "==" in line)
    now = dict(line.split("==", 1) for line in packages())
    changes = [f"{name} {then.get(name, '(none)')} -> {now.get(name, '(none)')}"
               for name in sorted(then.keys() | now.keys()) if then.get(name) != now.get(name)]
    return [f"environment: {len(changes)} package(s) differ: {', '.join(changes)}"]


HOST_KEYS = ("python", "os", "hostname", "cpu", "cpus", "accelerator", "driver", "cuda", "cudnn")


def host_differences(recorded, present, keys=HOST_KEYS):
    """The host facts in `keys` that differ between two host records, as lines."""
    if not recorded:
        return []
    return [f"host: {key} {recorded.get(key)} -> {present.get(key)}" for key in keys
            if recorded.get(key) != present.get(key)]
