"""One run and its tasks: the run path (job), the flow of a run, stops, and the tasks beside
training (predict, lr_find, inspect), fine-tuning and debugging."""
