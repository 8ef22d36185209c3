"""Executors behind one interface, ``concurrent.futures.Executor.submit``, looked up
by name, and the runner that drives jobs through them."""

from tileindex.executors.distributed import DaskExecutor
from tileindex.executors.process import process_pool
from tileindex.executors.registry import EXECUTORS, ExecutorSpec, default_workers, get_executor
from tileindex.executors.runner import MAX_RETRIES, Job, TaskRunner
from tileindex.executors.serial import SerialExecutor

__all__ = [
    "EXECUTORS",
    "MAX_RETRIES",
    "DaskExecutor",
    "ExecutorSpec",
    "Job",
    "SerialExecutor",
    "TaskRunner",
    "default_workers",
    "get_executor",
    "process_pool",
]
