"""dlrun's warm launcher (`hydra/launcher=warm`): many small jobs with little besides their own work.

Hydra's basic launcher composes every job's config from the YAML files again (about 0.17 s a
job here), and the joblib launcher starts fresh worker processes that import torch again (seconds
each). This one:

- composes each job's config as Hydra's `load_sweep_config` does, with what does not change
  between the jobs of a sweep made once: the config files are read once (one caching repository
  for the sweep) and the config composed from each distinct defaults list is kept, so a job costs
  a copy and its own overrides (tests/test_warm_launcher.py checks the result equals Hydra's);
- with `n_jobs` > 1, forks that many workers from this process once torch and dlrun's training
  modules are imported (forked, not spawned: nothing to import again; the launching process has
  run no torch operation, so no thread pool is copied mid-use), and each worker takes the next
  job as soon as it is free, runs it through Hydra's `run_job` like the basic launcher (dlrun's
  run path gives every job its own seed, logging, stop state and record), and sends its result
  back; each worker's torch uses its share of the cores;
- on a machine with GPUs, worker k keeps GPU k (CUDA_VISIBLE_DEVICES, set before the worker
  touches CUDA), so a job runs on the GPU of whichever worker is free when it starts.

Stops follow the sweep's protocol (dlrun/stopping.py): a Ctrl-C or SIGTERM to the process group
stops the running jobs (each saves its position and marks the sweep stopping), a worker between
jobs marks the sweep stopping, and no job starts after that.
"""

import copy
import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import open_dict

log = logging.getLogger(__name__)


class WarmLauncher(Launcher):
    def __init__(self, n_jobs=2):
        self.n_jobs = n_jobs
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config):
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        remember_compositions(hydra_context.config_loader)

    def launch(self, job_overrides, initial_job_idx):
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        workers = min(int(self.n_jobs), len(job_overrides))
        log.info(f"Launching {len(job_overrides)} jobs in {max(workers, 1)} warm process(es)")
        jobs = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            jobs.append(self._job_config(idx, overrides))
        if workers <= 1:
            return [self._run(job) for job in jobs]
        return _in_workers(self, jobs, workers)

    def _job_config(self, idx, overrides):
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = idx
            config.hydra.job.num = idx
        return config

    def _run(self, config):
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def remember_compositions(loader):
    """Make `loader` (Hydra's ConfigLoaderImpl) read the config files once, make each distinct
    defaults list once and compose it once: later jobs get a copy with their own overrides. Jobs
    whose overrides change Hydra's own settings (hydra.*) get a repository of their own, as those
    can move the search path."""
    if getattr(loader, "_dlrun_remembers", False):
        return
    parse, compose = loader._parse_overrides_and_create_caching_repo, loader._compose_config_from_defaults_list
    repository, composed = {}, {}

    def parse_once(config_name, overrides):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        key = (config_name, tuple(o for o in overrides if o.lstrip("+~").startswith("hydra")))
        if key not in repository:
            repository[key] = parse(config_name, overrides)[1]
            _SHARED[id(repository[key])] = repository[key]
        return OverridesParser.create().parse_overrides(overrides=overrides), repository[key]

    def compose_once(defaults, repo):
        key = (id(repo), tuple((d.config_path, d.parent, d.package, d.is_self, d.primary) for d in defaults))
        if key not in composed:
            composed[key] = compose(defaults=defaults, repo=repo)
        return copy.deepcopy(composed[key])

    loader._parse_overrides_and_create_caching_repo = parse_once
    loader._compose_config_from_defaults_list = compose_once
    loader._dlrun_remembers = True
    from hydra._internal import config_loader_impl

    if config_loader_impl.create_defaults_list is not _defaults_once:
        _DEFAULTS["make"] = config_loader_impl.create_defaults_list
        config_loader_impl.create_defaults_list = _defaults_once


_SHARED = {}  # id -> the caching repositories a remembering loader shares between jobs (kept alive: ids stay unique)
_DEFAULTS = {"made": {}}


def _defaults_once(repo, config_name, overrides_list, prepend_hydra, skip_missing):
    """Hydra's create_defaults_list, made once per shared repository and choice of config groups:
    the defaults depend on the group overrides only, and the config overrides are the job's own
    (split as Hydra's Overrides splits them). Other repositories: Hydra's own, every time."""
    make = _DEFAULTS["make"]
    if _SHARED.get(id(repo)) is not repo:
        return make(repo, config_name, overrides_list, prepend_hydra, skip_missing)
    given = [o for o in overrides_list if not o.is_sweep_override()]
    plain = [o for o in given if isinstance(o.value(), dict) or not repo.group_exists(o.key_or_group)]
    key = (id(repo), config_name, prepend_hydra, skip_missing, tuple(o.input_line for o in given if o not in plain))
    if key not in _DEFAULTS["made"]:
        _DEFAULTS["made"][key] = make(repo, config_name, overrides_list, prepend_hydra, skip_missing)
    return dataclasses.replace(_DEFAULTS["made"][key], config_overrides=plain)


def _in_workers(launcher, jobs, workers):
    """Run `jobs` (composed configs) in `workers` forked processes, each taking the next as soon
    as it is free; their results in the jobs' order."""
    _import_training()
    context = multiprocessing.get_context("fork")
    todo, done = context.SimpleQueue(), context.Queue()
    for index in range(len(jobs)):
        todo.put(index)
    for _ in range(workers):
        todo.put(None)
    processes = [context.Process(target=_work, args=(launcher, jobs, todo, done, k, workers), daemon=True)
                 for k in range(workers)]
    for process in processes:
        process.start()
    results = {}
    while len(results) < len(jobs) and (any(p.is_alive() for p in processes) or not done.empty()):
        try:
            index, result = done.get(timeout=0.5)
        except queue.Empty:
            continue
        results[index] = result
    for process in processes:
        process.join()
    return [results.get(i) or _lost(job) for i, job in enumerate(jobs)]


def _import_training():
    """What every job imports, imported before the fork so no worker imports it again."""
    import torch  # noqa: F401

    import dlrun.tasks.flow  # noqa: F401


def _work(launcher, jobs, todo, done, worker, workers):
    """A worker: its share of the cores (and its GPU), then jobs until the queue says stop."""
    from dlrun import stopping

    folder = str(launcher.config.hydra.sweep.dir)
    stopping.SweepStop(folder).install(at_once=lambda: os._exit(stopping.EXIT_CODES[signal.SIGINT]))
    _own_share(worker, workers)
    try:
        while (index := todo.get()) is not None:
            done.put((index, _picklable(launcher._run(jobs[index]))))
    finally:  # a job that did not finish is recorded as failed by the parent (_lost)
        logging.shutdown()


def _own_share(worker, workers):
    """This worker's torch threads (its share of the cores) and, with GPUs, its own GPU."""
    import torch

    from dlrun.machine import cores

    torch.set_num_threads(max(1, cores() // workers))
    gpus = _gpu_count()
    if gpus > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(worker % gpus)


def _gpu_count():
    """GPUs on this machine, counted without initialising CUDA in this process (nvidia-smi's
    device files), so that a worker can still choose its own."""
    return len([p for p in Path("/dev").glob("nvidia[0-9]*")]) if Path("/dev").is_dir() else 0


def _picklable(result):
    """A job's result as the parent can receive it: an exception that does not pickle is replaced
    by its text."""
    import pickle

    try:
        pickle.dumps(result)
        return result
    except Exception:  # noqa: BLE001
        result._return_value = RuntimeError(str(result._return_value))
        return result


def _lost(config):
    """The result of a job whose worker ended before it finished (killed, or out of memory): its
    record says so, and the sweep goes on with it as a failed job."""
    from hydra.core.utils import JobStatus

    from dlrun.layout import RunDir
    from dlrun.results import record

    job_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
    said = "its warm worker process ended (killed, or out of memory) before the job finished"
    if RunDir(job_dir).summary.is_file():
        record.update(RunDir(job_dir).summary, status="failed", error=f"{said}; checkpoints/last.pt, if there is one, "
                                                                      f"is its last saved position")
    log.error("job %s: %s", config.hydra.job.num, said)
    return JobReturn(overrides=list(config.hydra.overrides.task), cfg=config, hydra_cfg=None, working_dir=str(job_dir),
                     task_name=str(config.hydra.job.name), status=JobStatus.COMPLETED, _return_value=float("nan"))
