"""``python -m mgglass.ensemble``: several fits recorded as one MLflow run (see ``__main__``); the
ensemble itself, the members' mean and spread, is :mod:`mgglass.task.ensemble`."""
