"""dlrun's SLURM launcher (`hydra/launcher=slurm`): Hydra's submitit launcher, plus what a
cluster job of dlrun needs.

- Preemption and time limits. SLURM signals a job (USR2, `signal_delay_s` before its time
  limit, or on preemption). submitit's own handler would requeue at once, in the middle of a
  step; here the signal stops the run like SIGTERM does (the step finishes, last.pt keeps the
  exact mid-epoch position), and only then is the job handed to submitit's checkpointing, which
  requeues it with `resume=true`: the requeued job continues from last.pt and ends bit-identical
  to an uninterrupted one. The sweep goes on meanwhile (a preempted job is not an interrupted
  sweep).
- `tasks_per_node > 1` (or several nodes): the tasks of one job are the processes of one DDP run,
  the environment torchrun would give them exported from SLURM's.
"""

import signal
from pathlib import Path

from dlrun import stopping
from dlrun.layout import RunDir
from dlrun.results import record
from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def __call__(self, sweep_overrides, *args):
        import submitit

        environment = submitit.JobEnvironment()
        if environment.num_tasks > 1:
            # the rank's GPU is picked by dlrun from LOCAL_RANK: CUDA_VISIBLE_DEVICES stays as SLURM set it
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            if environment.global_rank > 0:  # rank 0 alone writes Hydra's record of the job
                sweep_overrides = [*sweep_overrides, "hydra.output_subdir=null"]
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's: checkpoint() below, scontrol requeue, exit
        signal.signal(signal.SIGUSR2, _stop_for_requeue)
        try:
            result = super().__call__(sweep_overrides, *args)
        finally:
            signal.signal(signal.SIGUSR2, requeue)
        if stopping.current().preempted and callable(requeue):
            try:
                requeue(signal.SIGUSR2, None)  # exits once the job is requeued
            except submitit.core.utils.UncompletedJobError as exc:  # max_num_timeout time limits reached
                _not_requeued(Path(result.hydra_cfg.hydra.runtime.output_dir), exc)  # the job's own directory
        return result

    def checkpoint(self, sweep_overrides, *args):
        """The job as submitit requeues it: the same overrides, resumed from its last.pt."""
        overrides = [o for o in sweep_overrides if not o.startswith("resume=")] + ["resume=true"]
        return super().checkpoint(overrides, *args)


def _not_requeued(job_dir, exc):
    """The job stays interrupted, and its summary.json says why it was not requeued."""
    file = RunDir(job_dir).summary
    if file.is_file():
        record.update(file, error=f"{exc} It stopped at SLURM's time limit with its exact position in "
                                  f"checkpoints/last.pt: continue the sweep with resume=true and a larger "
                                  f"hydra.launcher.timeout_min or max_num_timeout.")


def _stop_for_requeue(signum, frame):
    """SLURM's preemption or time-limit signal: the run stops as it does on SIGTERM, with the cause
    that makes its sweep go on (see dlrun/stopping.py)."""
    stopping.current().request(stopping.Reason("preemption", stopping.EXIT_CODES[signal.SIGTERM]))
