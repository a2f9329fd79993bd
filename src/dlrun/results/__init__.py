"""What a run leaves: metrics, plots and their workers, the report, summary.json's record,
checkpoints, exports and atomic file writes."""
