"""`logger=mlflow`: each run an MLflow run, each sweep an MLflow experiment.

A run logs its flattened config as params, every epoch's metrics (step = epoch), the test
metrics and objective at the end, and summary.json, metrics.csv, report.html and best.pt as
artifacts; its status follows the run's (FINISHED, FAILED, KILLED for an interruption). A resume
in the same directory continues the same MLflow run (its id is kept in the run directory).

A sweep is one experiment (named after the sweep directory) holding a parent run for the sweep
and one child run per job; the parent gets the leaderboard. The sweep's process creates both and
hands them to its jobs in a file of the sweep directory (layout.SweepDir.mlflow_sweep), which a
job reads in whatever process or node a launcher runs it (joblib's workers, SLURM's jobs).

The tracking URI is `mlflow.tracking_uri`, else $MLFLOW_TRACKING_URI, else a SQLite store in the
outputs directory (outputs/mlflow.db, artifacts in outputs/mlartifacts).
"""

import os
import urllib.parse
import urllib.request
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.config import sources as configs
from dlrun.config.sources import flat_items
from dlrun.errors import ConfigError, DlrunError, first_line
from dlrun.layout import RunDir, SweepDir
from dlrun.results import artifacts
from dlrun.sweeps import tracking

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param's value
# A run's outcome (tracking.outcome) as MLflow's run status; any other outcome is FAILED.
STATUSES = {"finished": "FINISHED", "pruned": "FINISHED", "interrupted": "KILLED"}


def tracking_uri(cfg):
    """Where runs are tracked: the config's URI, MLflow's environment variable, or the local store."""
    uri = OmegaConf.select(cfg, "mlflow.tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(configs.outputs_root() / 'mlflow.db').resolve()}"


# The tracking stores MLflow opens by URI scheme ("" for a plain path).
SCHEMES = ("", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")


def check_server(uri):
    """A URI MLflow cannot track to, or a tracking server that does not answer, is one clear error
    before the run starts (MLflow's own client would raise a KeyError for an unknown scheme, or
    retry for minutes, then raise a traceback)."""
    scheme = urllib.parse.urlparse(uri).scheme.partition("+")[0]  # postgresql+psycopg2 is postgresql
    if scheme not in SCHEMES and len(scheme) > 1:  # one letter: a Windows drive
        raise ConfigError(f"mlflow.tracking_uri={uri}: MLflow cannot track to a '{scheme}' URI. Use a path, or a URI "
                          f"of one of: {', '.join(s + '://' for s in SCHEMES if s)}.")
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DlrunError(f"logger=mlflow: the MLflow tracking server at {uri} does not answer ({reason}). Start it "
                         f"(mlflow server ...) or set mlflow.tracking_uri to one that runs; without either, runs go "
                         f"to outputs/mlflow.db.") from None


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment(client, uri, name):
    """The id of the experiment `name`, created if new (its artifacts beside a local store)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(name).experiment_id


def flat_params(cfg):
    """The resolved config as MLflow params: dotted keys, values as text (lists written as lists)."""
    return {key: str(value)[:MAX_PARAM_CHARS] for key, value in flat_items(OmegaConf.to_container(cfg, resolve=True))}


class TrackedRun:
    """One dlrun run as an MLflow run (rank 0 only), begun by `start` once the run has started; a
    job of the sweep in `sweep_dir` is a child run of the sweep's."""

    def __init__(self, cfg, run_dir, sweep_dir=None):
        self.cfg, self.run = cfg, RunDir(run_dir)
        self.sweep_file = SweepDir(sweep_dir).mlflow_sweep if sweep_dir is not None else None
        self.client = self.run_id = None

    def start(self):
        sweep = artifacts.read_json(self.sweep_file) if self.sweep_file and self.sweep_file.is_file() else None
        uri = sweep["uri"] if sweep else tracking_uri(self.cfg)
        self.client = _client(uri)
        if self.run.mlflow_run.is_file():  # a resume in this directory: the same MLflow run goes on
            self.run_id = artifacts.read_json(self.run.mlflow_run)["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        if sweep:
            experiment = sweep["experiment_id"]
            tags = {"mlflow.parentRunId": sweep["parent_run_id"]}
        else:
            experiment, tags = _experiment(self.client, uri, self.cfg.mlflow.experiment), {}
        created = self.client.create_run(experiment, run_name=self.run.root.name,
                                         tags={**tags, "dlrun.run_dir": str(self.run.root.resolve())})
        self.run_id = created.info.run_id
        artifacts.write_json(self.run.mlflow_run, {"run_id": self.run_id, "tracking_uri": uri})
        self._log_params(flat_params(self.cfg))

    def _log_params(self, params):
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, values, step):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items() if tracking.is_number(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, outcome, error=None):
        """The results of the run (those written), and its status (tracking.outcome's, as MLflow
        names it); nothing before `start`."""
        if self.run_id is None:
            return
        final, epochs = tracking.final_metrics(self.run)
        self.log_metrics(final, epochs)
        for path, name in tracking.files_of(self.run):
            folder = str(Path(name).parent) if Path(name).parent != Path(".") else None
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
        if error is not None:
            self.client.set_tag(self.run_id, "dlrun.error", first_line(error)[:MAX_PARAM_CHARS])
        self.client.set_terminated(self.run_id, status=STATUSES.get(outcome, "FAILED"))


def start_sweep(cfg, sweep_dir):
    """The sweep's experiment and parent run (created, or found again when the sweep is resumed),
    in the sweep directory's record that its jobs read."""
    sweep_dir = Path(sweep_dir)
    record = SweepDir(sweep_dir).mlflow_sweep
    if record.is_file():
        sweep = artifacts.read_json(record)
        _client(sweep["uri"]).update_run(sweep["parent_run_id"], status="RUNNING")
    else:
        uri = tracking_uri(cfg)  # checked by tracking.check before the sweep
        client = _client(uri)
        experiment = _experiment(client, uri, f"{cfg.mlflow.experiment} sweep {sweep_dir.resolve()}")
        parent = client.create_run(experiment, run_name=f"sweep {sweep_dir.name}",
                                   tags={"dlrun.sweep_dir": str(sweep_dir.resolve())})
        sweep = {"uri": uri, "experiment_id": experiment, "parent_run_id": parent.info.run_id}
        sweep_dir.mkdir(parents=True, exist_ok=True)
        artifacts.write_json(record, sweep)


def end_sweep(cfg, sweep_dir, failed):
    """The leaderboard into the parent run, which ends FAILED if a job did."""
    record = SweepDir(sweep_dir).mlflow_sweep
    if not record.is_file():
        return
    sweep = artifacts.read_json(record)
    client = _client(sweep["uri"])
    for path in tracking.sweep_files(sweep_dir):
        client.log_artifact(sweep["parent_run_id"], str(path))
    client.set_terminated(sweep["parent_run_id"], status="FAILED" if failed else "FINISHED")


def check(cfg):
    """Before the run: a tracking URI MLflow can use, and a server that answers."""
    check_server(tracking_uri(cfg))
